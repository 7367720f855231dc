"""Metering a native Anthropic stream (``/v1/messages``): the receipt frame follows
``message_stop`` on an event boundary, once; error frames in both shapes."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

from mpp_claude.server.sessions.stream import Metered, UsageTap, error_frame
from mpp_claude.server.upstreams.base import UpstreamResponse

EVENTS = (b'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":7}}}\n\n'
          b'event: content_block_delta\ndata: {"type":"content_block_delta"}\n\n'
          b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":12}}\n\n'
          b'event: message_stop\ndata: {"type":"message_stop"}\n\n')


class FakeGate:
    def __init__(self) -> None:
        self.finished: list[int] = []

    async def finish(self, channel_id: str, request_id: str, cost: int) -> Any:
        self.finished.append(cost)
        return SimpleNamespace(channel_id=channel_id)

    def receipt(self, record: Any, challenge_id: str, *, cost: int | None = None) -> Any:
        return SimpleNamespace(to_wire_dict=lambda: {"amount": str(cost)})


class Up:
    def __init__(self, data: bytes, size: int) -> None:
        self.data, self.size = data, size

    async def send(self, body: Any, *, stream: bool, headers: Any = None) -> UpstreamResponse:
        async def chunks() -> Any:
            for i in range(0, len(self.data), self.size):
                yield self.data[i:i + self.size]

        return UpstreamResponse(200, {}, stream=chunks())


def run(data: bytes, size: int) -> tuple[bytes, list[int], dict[str, Any]]:
    async def go() -> tuple[bytes, list[int], dict[str, Any]]:
        tap, gate = UsageTap(Up(data, size)), FakeGate()  # type: ignore[arg-type]
        up = await tap.send({}, stream=True)
        assert up.stream is not None
        metered = Metered(gate, "0x" + "11" * 32, "r", "ch", SimpleNamespace(cost=5),
                          lambda: tap.usage.get("output_tokens", 0), lambda: tap.stopped)
        out = b"".join([c async for c in metered.stream(up.stream)])
        return out, gate.finished, tap.usage

    return asyncio.run(go())


def test_receipt_follows_message_stop_for_any_split() -> None:
    for size in (1, 5, 33, len(EVENTS)):
        for data in (EVENTS, EVENTS.replace(b"\n", b"\r\n")):
            out, finished, usage = run(data, size)
            assert out.startswith(data) and finished == [12]
            tail = out[len(data):]
            assert tail.startswith(b"event: payment-receipt\ndata: ") and tail.endswith(b"\n\n")
            assert json.loads(tail.split(b"data: ", 1)[1]) == {"amount": "12"}
            assert usage == {"input_tokens": 7, "output_tokens": 12}


def test_a_stream_without_message_stop_is_charged_the_usage_row() -> None:
    broken = EVENTS[: EVENTS.index(b"event: message_stop")]
    out, finished, _ = run(broken, 40)
    assert finished == [5] and out.startswith(broken) and b"payment-receipt" in out[len(broken):]


def test_error_frames_in_each_shape() -> None:
    anthropic = error_frame("no voucher", "insufficient_balance", anthropic=True)
    assert anthropic.startswith(b"event: error\ndata: ")
    body = json.loads(anthropic.split(b"data: ", 1)[1])
    assert body["type"] == "error" and body["error"]["message"] == "no voucher"
    openai = error_frame("no voucher", "insufficient_balance", anthropic=False)
    assert openai.startswith(b"data: {") and openai.endswith(b"data: [DONE]\n\n")
    assert json.loads(openai.split(b"\n\n")[0][6:])["error"]["code"] == "insufficient_balance"
