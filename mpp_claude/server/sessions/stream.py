"""Metering a session-paid answer as it streams: usage tap, receipt frame, in-band error frames.

* ``UsageTap`` wraps the upstream and keeps the latest Anthropic usage numbers of a streamed
  answer (and whether ``message_stop`` has passed), so the exact cost is known as soon as the
  last frame goes out;
* ``Metered`` charges one request when its answer ends (the hold becomes ``spent`` for the
  exact usage) and writes the final ``event: payment-receipt`` frame: just before
  ``data: [DONE]`` on ``/v1/chat/completions``, right after the ``message_stop`` event on
  ``/v1/messages`` (whose streams have no ``[DONE]``); a stream that breaks off is charged
  what the usage row says and still ends with the receipt frame;
* ``error_frame``: the frame that ends a stream in the route's own shape (OpenAI ``data:``
  error, Anthropic ``event: error``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

import anyio

from ...convert.sse import DONE_FRAME
from ..rendering import anthropic_error_body
from ..serving import _note_usage
from ..upstreams.base import Upstream, UpstreamResponse
from .book import ChannelRecord


def sse_frame(event: str, data: Any) -> bytes:
    """One SSE frame ``event: <event>`` with compact JSON ``data``."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def error_frame(message: str, code: str, *, anthropic: bool) -> bytes:
    """A payment error that ends a stream: Anthropic ``event: error``, or OpenAI ``data:`` + ``[DONE]``."""
    if anthropic:
        body = anthropic_error_body(message, status=402)
        body["error"]["code"] = code
        return sse_frame("error", body)
    data = {"error": {"message": message, "type": "payment_error", "param": None, "code": code}}
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n".encode() + DONE_FRAME


class UsageTap:
    """An upstream wrapper that keeps the latest usage numbers of a streamed answer, so the exact
    cost is known when the last frame is translated (before the serving code records it).

    ``stopped`` turns true once a complete ``message_stop`` event went through and the chunk that
    carried it ended on an event boundary (a frame may be written after it)."""

    def __init__(self, inner: Upstream) -> None:
        self.inner = inner
        self.usage: dict[str, Any] = {}
        self.stopped = False

    async def send(self, body: Mapping[str, Any], *, stream: bool, headers: Mapping[str, str] | None = None
                   ) -> UpstreamResponse:
        up = await self.inner.send(body, stream=stream, headers=headers)
        if up.stream is not None:
            up.stream = self._tap(up.stream)
        return up

    async def _tap(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        pending = b""
        stop = False
        async for chunk in chunks:
            if not pending and chunk.endswith(b"\n\n") and b'"usage"' not in chunk \
                    and b"message_stop" not in chunk:
                self.stopped = stop
                yield chunk  # whole events, none with usage numbers or the end: nothing to read
                continue
            work = (pending + chunk).replace(b"\r\n", b"\n")
            *events, pending = work.split(b"\n\n")
            for raw in events:
                if b'"usage"' in raw:
                    self._read(raw)
                if b"message_stop" in raw and _event_name(raw) == "message_stop":
                    stop = True
            self.stopped = stop and not pending
            yield chunk

    def _read(self, raw: bytes) -> None:
        name, data = "", []
        for line in raw.decode("utf-8", "replace").split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
        _note_usage(name, "\n".join(data), self.usage)

    async def aclose(self) -> None:
        return None


def _event_name(raw: bytes) -> str:
    for line in raw.split(b"\n"):
        if line.startswith(b"event:"):
            return line[6:].strip().decode("utf-8", "replace")
    return ""


class _Gate(Protocol):
    async def finish(self, channel_id: str, request_id: str, cost: int) -> ChannelRecord: ...

    def receipt(self, record: ChannelRecord, challenge_id: str, *, cost: int | None = None) -> Any: ...


class Metered:
    """Charges one served request when its response ends (hold -> exact usage).

    Args:
        gate: the session gate.
        channel_id, request_id, challenge_id: what is charged, and for the receipt.
        entry: the request's access-log entry (``entry.cost``: the usage row's cost).
        cost_now: the exact cost of what the upstream reported so far.
        stopped: for ``/v1/messages``: whether the answer's ``message_stop`` has gone out (the
            receipt frame follows it); ``None``: chat completions (receipt before ``[DONE]``).
    """

    def __init__(self, gate: _Gate, channel_id: str, request_id: str, challenge_id: str, entry: Any,
                 cost_now: Callable[[], int], stopped: Callable[[], bool] | None = None) -> None:
        self.gate, self.channel_id, self.request_id = gate, channel_id, request_id
        self.challenge_id, self.entry, self.cost_now, self.stopped = challenge_id, entry, cost_now, stopped
        self.done: ChannelRecord | None = None
        self.cost = 0

    async def finish(self, cost: int) -> ChannelRecord:
        """Charge ``cost`` (once; later calls return the same record)."""
        if self.done is None:
            self.cost = cost
            with anyio.CancelScope(shield=True):
                self.done = await self.gate.finish(self.channel_id, self.request_id, cost)
        assert self.done is not None
        return self.done

    def receipt_frame(self, record: ChannelRecord) -> bytes:
        receipt = self.gate.receipt(record, self.challenge_id, cost=self.cost)
        return sse_frame("payment-receipt", receipt.to_wire_dict())

    async def stream(self, inner: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Pass ``inner`` through; charge the exact usage as soon as the last frame is known and
        write the receipt frame (see the module docstring for where)."""
        try:
            async for chunk in inner:
                if self.done is None and self.stopped is None and chunk.endswith(DONE_FRAME):
                    head = chunk[: -len(DONE_FRAME)]
                    if head:
                        yield head
                    record = await self.finish(self.cost_now())
                    yield self.receipt_frame(record) + DONE_FRAME
                    continue
                if chunk:
                    yield chunk
                if self.done is None and self.stopped is not None and self.stopped():
                    yield self.receipt_frame(await self.finish(self.cost_now()))
        except BaseException:
            with anyio.CancelScope(shield=True):
                aclose = getattr(inner, "aclose", None)
                if aclose is not None:
                    await aclose()
                await self.finish(int(self.entry.cost or 0))
            raise
        if self.done is None:  # no end frame (the stream broke off): charge what the usage row says
            record = await self.finish(int(self.entry.cost or 0))
            yield self.receipt_frame(record)
