"""Incremental Server-Sent Events parser (bytes in, events out) and the OpenAI frame encoder.

Follows the WHATWG event-stream rules the Anthropic stream uses: lines end with CRLF, LF or CR;
``data`` lines of one event are joined with ``\\n``; a blank line dispatches; lines starting with
``:`` are comments; ``id``/``retry`` are ignored (a proxy has no use for them).  Work per call is
proportional to the bytes fed; nothing but the unfinished last line and event is kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from mpp_claude.errors import ConversionError

__all__ = ["DONE_FRAME", "SseEvent", "SseParser", "encode_frame"]

DONE_FRAME = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched event: ``event`` name (``"message"`` when absent) and joined ``data``."""

    event: str
    data: str

    def json(self) -> Any:
        """``data`` decoded as JSON.

        Raises:
            ConversionError: 502 ``upstream_invalid_response`` when it is not JSON.
        """
        try:
            return json.loads(self.data)
        except ValueError as exc:
            raise ConversionError(f"upstream event {self.event!r} carries invalid JSON", status=502,
                                  type="server_error", code="upstream_invalid_response") from exc


class SseParser:
    """Feed bytes as they arrive; get complete events back.

    Args:
        max_event_bytes: refuse (502) an event or line larger than this, so a broken upstream
            cannot make the proxy buffer without bound.
    """

    def __init__(self, *, max_event_bytes: int = 16 * 1024 * 1024) -> None:
        self._buf = bytearray()
        self._event = ""
        self._data: list[str] = []
        self._size = 0
        self._max = max_event_bytes
        self._skip_lf = False

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Parse ``chunk``; returns the events completed by it (possibly none).

        Raises:
            ConversionError: 502 when an event exceeds ``max_event_bytes``.
        """
        if not chunk:
            return []
        buf = self._buf
        if self._skip_lf and chunk[:1] == b"\n":
            chunk = chunk[1:]
        self._skip_lf = False
        buf += chunk
        events: list[SseEvent] = []
        start = 0
        n = len(buf)
        while start < n:
            lf = buf.find(b"\n", start)
            cr = buf.find(b"\r", start, lf if lf >= 0 else n)
            if cr >= 0:
                end, nxt = cr, cr + 1
                if nxt < n and buf[nxt] == 0x0A:
                    nxt += 1
                elif nxt == n:
                    self._skip_lf = True  # a CR at the end: a following LF belongs to it
            elif lf >= 0:
                end, nxt = lf, lf + 1
            else:
                break
            self._line(bytes(buf[start:end]), events)
            start = nxt
        del buf[:start]
        if len(buf) > self._max:
            raise self._too_big()
        return events

    def flush(self) -> list[SseEvent]:
        """End of input: an unterminated last line is processed; an undispatched event is dropped.

        (The SSE rules discard an event without its blank line; callers detect the truncated
        stream from the missing ``message_stop`` instead.)
        """
        events: list[SseEvent] = []
        if self._buf:
            self._line(bytes(self._buf), events)
            self._buf.clear()
        self._event, self._data, self._size = "", [], 0
        return events

    def _too_big(self) -> ConversionError:
        return ConversionError("upstream event too large", status=502, type="server_error",
                               code="upstream_invalid_response")

    def _line(self, raw: bytes, events: list[SseEvent]) -> None:
        if not raw:
            if self._data or self._event:
                if self._data:
                    events.append(SseEvent(self._event or "message", "\n".join(self._data)))
                self._event, self._data, self._size = "", [], 0
            return
        if raw[:1] == b":":
            return
        line = raw.decode("utf-8", "replace")
        name, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._size += len(raw)
            if self._size > self._max:
                raise self._too_big()
            self._data.append(value)
        elif name == "event":
            self._event = value


def encode_frame(payload: Any) -> bytes:
    """``data: <compact JSON>\\n\\n`` for one OpenAI chunk or error object."""
    return b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"
