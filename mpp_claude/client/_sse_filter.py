"""Take the payment frames out of an SSE byte stream before the caller's parser sees it (pure).

A session-paid stream carries, besides the application's frames, ``event:
payment-need-voucher`` (the server waits for a voucher) and ``event: payment-receipt`` (the
final receipt).  The openai SDK's SSE decoder would hand them to the chunk parser, so
``SseFilter.feed`` returns the bytes without them plus the payment events found, in order.
Only complete frames (ended by a blank line) are passed on; a frame split across chunks is
held until its end arrives.  ``\\r\\n`` line ends are normalised to ``\\n``.
"""

from __future__ import annotations

from dataclasses import dataclass

PAYMENT_EVENTS = frozenset({"payment-need-voucher", "payment-receipt"})


@dataclass(frozen=True, slots=True)
class PaymentEvent:
    """A payment frame taken out of the stream: its ``event`` name and joined ``data``."""

    event: str
    data: str


def _payment_event(frame: bytes) -> PaymentEvent | None:
    event, data = None, []
    for line in frame.split(b"\n"):
        if line.startswith(b"event:"):
            event = line[6:].strip().decode("utf-8", "replace")
        elif line.startswith(b"data:"):
            value = line[5:]
            data.append((value[1:] if value.startswith(b" ") else value).decode("utf-8", "replace"))
    if event not in PAYMENT_EVENTS:
        return None
    return PaymentEvent(event, "\n".join(data))


class SseFilter:
    """Incremental filter (one per response)."""

    __slots__ = ("_buf", "_cr")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._cr = False

    def feed(self, chunk: bytes) -> tuple[bytes, list[PaymentEvent]]:
        """Add ``chunk``; returns (bytes to pass on, payment events found)."""
        if b"\r" in chunk or self._cr:
            self._cr = True
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if not self._buf and b"event: payment-" not in chunk and b"event:payment-" not in chunk \
                and chunk.endswith(b"\n\n"):
            return chunk, []  # fast path: whole frames, none of them ours
        self._buf += chunk
        out = bytearray()
        events: list[PaymentEvent] = []
        while True:
            end = self._buf.find(b"\n\n")
            if end < 0:
                break
            frame = bytes(self._buf[:end])
            del self._buf[:end + 2]
            found = _payment_event(frame) if b"event:" in frame else None
            if found is None:
                out += frame + b"\n\n"
            else:
                events.append(found)
        return bytes(out), events

    def flush(self) -> bytes:
        """What is left at the end of the stream (an unterminated frame, passed on as is)."""
        rest = bytes(self._buf)
        self._buf.clear()
        found = _payment_event(rest) if rest.strip() else None
        return b"" if found is not None else rest
