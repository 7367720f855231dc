"""The paid retry's reuse of its 402's analysis: copies share nothing, each entry serves once."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from mpp_claude.convert.request import chat_request_to_messages
from mpp_claude.convert.types import ConvertOptions
from mpp_claude.server.analysis import Analyses, fresh
from mpp_claude.server.app import create_app
from mpp_claude.server.config import build_config
from mpp_claude.server.pricing import AtomicAmount, Quote
from mpp_claude.server.stores import MemoryStore
from mpp_claude.server.upstreams import LocalUpstream

CHAT: dict[str, Any] = {"model": "claude-haiku-4-5", "max_tokens": 64, "user": "u1", "stop": ["x"],
        "messages": [{"role": "system", "content": "be brief"},
                     {"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}


def _containers(value: Any, out: list[Any]) -> list[Any]:
    """Every dict and list reachable through dicts, lists, tuples and dataclass fields."""
    if isinstance(value, (dict, list)):
        out.append(value)
        for item in (value.values() if isinstance(value, dict) else value):
            _containers(item, out)
    elif isinstance(value, tuple):
        for item in value:
            _containers(item, out)
    elif hasattr(value, "__dataclass_fields__") and not value.__dataclass_params__.frozen:
        for name in value.__dataclass_fields__:
            _containers(getattr(value, name), out)
    return out


def test_fresh_copies_every_container_of_a_converted_request() -> None:
    """Equal to the original, and no dict or list of one is a dict or list of the other."""
    mreq = chat_request_to_messages(json.loads(json.dumps(CHAT)), options=ConvertOptions())
    quote = Quote("claude-haiku-4-5", AtomicAmount(5), 10, 64)
    original = (mreq, quote)
    copied = fresh(original)
    assert copied == original
    mine = {id(c) for c in _containers(original, [])}
    assert len(mine) > 8 and not mine & {id(c) for c in _containers(copied, [])}
    assert copied[0].model is mreq.model and copied[1] is quote  # frozen: shared
    copied[0].body["messages"][0]["content"] = []
    copied[0].ignored_params.append("x")
    assert mreq == chat_request_to_messages(json.loads(json.dumps(CHAT)), options=ConvertOptions())


@dataclass
class _Odd:
    items: set[int] = field(default_factory=set)


def test_fresh_deep_copies_what_it_does_not_know() -> None:
    """A set (or any other type) inside is deep-copied, never shared."""
    odd: dict[str, Any] = {"a": _Odd({1}), "b": {2}}
    copied = fresh(odd)
    assert copied == odd and copied["a"].items is not odd["a"].items and copied["b"] is not odd["b"]


def test_analyses_serve_each_entry_once_per_route_and_body() -> None:
    """Taken once (a copy); another route or body misses; large bodies are not kept; bounded."""
    analyses = Analyses(kept=2, max_body=10)
    analyses.keep("/a", b"body", {"x": [1]})
    assert analyses.take("/b", b"body") is None and analyses.take("/a", b"other") is None
    taken = analyses.take("/a", b"body")
    assert taken == {"x": [1]} and analyses.take("/a", b"body") is None
    analyses.keep("/a", b"x" * 11, {"big": True})
    assert len(analyses) == 0
    for i in range(3):
        analyses.keep("/a", bytes([i]), i)
    assert len(analyses) == 2 and analyses.take("/a", b"\x00") is None and analyses.take("/a", b"\x02") == 2


class _FakeRpc:
    async def chain_id(self) -> int:
        return 31337


def _scope(app: Any, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "headers": headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
            "state": {}, "app": app}


MESSAGES: dict[str, Any] = {"model": "claude-haiku-4-5", "max_tokens": 64, "system": "x",
                            "messages": CHAT["messages"][1:]}
PLAIN = [(b"content-type", b"application/json")]
PAYING = [*PLAIN, (b"authorization", b"Payment eyJ9")]


async def _run(app: Any, path: str, payload: bytes, headers: list[tuple[bytes, bytes]]) -> list[Any]:
    sent: list[Any] = []
    chunks = [{"type": "http.request", "body": payload, "more_body": False}]

    async def receive() -> Any:
        return chunks.pop(0)

    async def send(message: Any) -> None:
        sent.append(message)

    await app(_scope(app, path, headers), receive, send)
    return sent


@pytest.mark.parametrize(("path", "payload"), [("/v1/chat/completions", CHAT), ("/v1/messages", MESSAGES)])
def test_only_unpaid_requests_leave_an_analysis_and_a_credential_takes_it(path: str, payload: Any) -> None:
    """A 402 keeps its analysis; a request with a Payment credential and the same body takes it and
    is answered exactly as the same request is when nothing was kept."""
    cfg = build_config(flags={"secret_key": "k" * 40, "recipient": "0x" + "cd" * 20, "rpc_url": "http://x",
                              "chain_id": 31337, "store": "memory://", "realm": "unit.test"})
    app = create_app(cfg, store=MemoryStore(), upstream=LocalUpstream(seed=b"a"), rpc=_FakeRpc(),  # type: ignore[arg-type]
                     clock=lambda: 1_900_000_000.0, nonce=lambda: "fixed")
    body = json.dumps(payload).encode()

    async def flow() -> tuple[Any, ...]:
        async with app.router.lifespan_context(app):
            analyses = app.state.services.analyses
            without = await _run(app, path, body, PAYING)  # nothing kept: analysed afresh
            assert len(analyses) == 0
            unpaid = await _run(app, path, body, PLAIN)
            kept = len(analyses)
            with_kept = await _run(app, path, body, PAYING)  # takes the 402's analysis
            return without, unpaid, kept, with_kept, len(analyses)

    without, unpaid, kept, with_kept, left = asyncio.run(flow())
    assert unpaid[0]["status"] == 402 and kept == 1 and left == 0
    assert without[0]["status"] == 402 and with_kept == without
