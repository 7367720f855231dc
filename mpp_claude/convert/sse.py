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
from mpp_claude.protocol.encoding import loads_bounded

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
            return loads_bounded(self.data)
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
        self._buf = bytearray()  # the unfinished last line (appends are amortised O(1))
        self._event = ""
        self._data: list[str] = []
        self._size = 0
        self._max = max_event_bytes

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Parse ``chunk``; returns the events completed by it (possibly none).

        Raises:
            ConversionError: 502 when an event exceeds ``max_event_bytes``.
        """
        if b"\n" not in chunk and b"\r" not in chunk:  # no line ends: only buffer
            self._buf += chunk
            if len(self._buf) > self._max:
                raise self._too_big()
            return []
        work = bytes(self._buf) + chunk
        held = b""
        if work[-1:] == b"\r":  # a CR at the end: a following LF may belong to it
            work, held = work[:-1], b"\r"
        if b"\r" in work:
            work = work.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        cut = work.rfind(b"\n")
        self._buf = bytearray(work[cut + 1:] + held)
        events: list[SseEvent] = []
        if cut >= 0:
            # splitting at LF never cuts a UTF-8 sequence, so the complete part decodes as a whole
            for line in work[:cut].decode("utf-8", "replace").split("\n"):
                self._line(line, events)
        if len(self._buf) > self._max:
            raise self._too_big()
        return events

    def flush(self) -> list[SseEvent]:
        """End of input: an unterminated last line is processed; an undispatched event is dropped.

        (The SSE rules discard an event without its blank line; callers detect the truncated
        stream from the missing ``message_stop`` instead.)
        """
        events: list[SseEvent] = []
        rest = bytes(self._buf).rstrip(b"\r")
        if rest:
            self._line(rest.decode("utf-8", "replace"), events)
        self._buf = bytearray()
        self._event, self._data, self._size = "", [], 0
        return events

    def _too_big(self) -> ConversionError:
        return ConversionError("upstream event too large", status=502, type="server_error",
                               code="upstream_invalid_response")

    def _line(self, line: str, events: list[SseEvent]) -> None:
        if not line:
            if self._data:
                events.append(SseEvent(self._event or "message", "\n".join(self._data)))
            self._event, self._data, self._size = "", [], 0
            return
        if line[0] == ":":
            return
        name, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._size += len(value)
            if self._size > self._max:
                raise self._too_big()
            self._data.append(value)
        elif name == "event":
            self._event = value


def encode_frame(payload: Any) -> bytes:
    """``data: <compact JSON>\\n\\n`` for one OpenAI chunk or error object."""
    return b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"
