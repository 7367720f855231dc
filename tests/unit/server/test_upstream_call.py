"""UpstreamCall: started early, taken later, or abandoned (cancelled, its answer closed)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Mapping
from typing import Any

import anyio
import pytest

from mpp_claude.errors import UpstreamError
from mpp_claude.server.early import UpstreamCall
from mpp_claude.server.upstreams.base import UpstreamResponse

BODY = {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


class FakeUpstream:
    """Counts sends; each answer counts its ``aclose``.  ``gate``: sends wait for it first;
    ``error``: sends raise it; ``stubborn``: a send that is cancelled answers all the same."""

    def __init__(self, *, gate: asyncio.Event | None = None, error: BaseException | None = None,
                 stubborn: bool = False) -> None:
        self.gate, self.error, self.stubborn = gate, error, stubborn
        self.sent: list[tuple[dict[str, Any], bool, dict[str, str]]] = []
        self.closed = 0
        self.cancelled = 0

    async def send(self, body: Mapping[str, Any], *, stream: bool,
                   headers: Mapping[str, str] | None = None) -> UpstreamResponse:
        self.sent.append((dict(body), stream, dict(headers or {})))
        if self.gate is not None:
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                if not self.stubborn:
                    raise
        if self.error is not None:
            raise self.error

        async def close() -> None:
            self.closed += 1

        return UpstreamResponse(200, {}, json={"type": "message"}, _close=close)

    async def aclose(self) -> None:
        return None


def _call(up: FakeUpstream, stream: bool = False) -> UpstreamCall:
    return UpstreamCall(up, BODY, stream=stream, headers={"anthropic-beta": "x"})


def _run(main: Any) -> Any:
    """``asyncio.run(main())``, failing on anything the loop reports (e.g. a task exception that
    was never retrieved) and on tasks still pending at the end."""
    reported: list[dict[str, Any]] = []

    async def wrapper() -> Any:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: reported.append(ctx))
        result = await main()
        gc.collect()
        await asyncio.sleep(0)
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not others, others
        return result

    result = asyncio.run(wrapper())
    assert not reported, reported
    return result


def test_result_without_start_sends_now_in_the_same_task() -> None:
    """Not started: ``result`` is the plain ``send`` (no task), with the body, stream and headers."""
    up = FakeUpstream()

    async def main() -> None:
        call = _call(up, stream=True)
        answer = await call.result()
        assert answer.status == 200 and not call.started
        assert up.sent == [(BODY, True, {"anthropic-beta": "x"})]

    _run(main)


def test_start_is_idempotent_and_runs_before_the_answer_is_asked_for() -> None:
    """``start`` twice makes one call; it runs at the next suspension; ``result`` takes its answer."""
    up = FakeUpstream()

    async def main() -> None:
        call = _call(up)
        call.start()
        call.start()
        assert call.started and up.sent == []  # a task: nothing ran yet
        await asyncio.sleep(0)
        assert len(up.sent) == 1  # ran while this coroutine waited
        answer = await call.result()
        assert answer.json == {"type": "message"} and len(up.sent) == 1 and up.closed == 0
        assert await call.abandon() is False  # taken: the taker closes it
        assert up.closed == 0

    _run(main)


def test_upstream_error_of_a_started_call_is_raised_by_result() -> None:
    """The started call's UpstreamError reaches ``result``'s caller as it was raised."""
    error = UpstreamError("down", code="upstream_connection_error", status=502)
    up = FakeUpstream(error=error)

    async def main() -> None:
        call = _call(up)
        call.start()
        await asyncio.sleep(0)
        with pytest.raises(UpstreamError) as raised:
            await call.result()
        assert raised.value is error

    _run(main)


def test_abandon_before_start_never_calls_the_upstream() -> None:
    """Abandoned before its claims: nothing sent, and a late ``start`` starts nothing."""
    up = FakeUpstream()

    async def main() -> None:
        call = _call(up)
        assert await call.abandon() is False
        call.start()
        await asyncio.sleep(0)
        assert not call.started and up.sent == []

    _run(main)


def test_abandon_closes_an_answer_already_produced() -> None:
    """The call answered before the payment failed: its answer is closed once, never taken."""
    up = FakeUpstream()

    async def main() -> None:
        call = _call(up, stream=True)
        call.start()
        await asyncio.sleep(0)
        assert len(up.sent) == 1
        assert await call.abandon() is True
        assert up.closed == 1
        assert await call.abandon() is False and up.closed == 1

    _run(main)


def test_abandon_cancels_a_call_still_waiting_for_its_answer() -> None:
    """The payment failed while the upstream was still answering: the send is cancelled."""
    up = FakeUpstream(gate=asyncio.Event())

    async def main() -> None:
        call = _call(up)
        call.start()
        await asyncio.sleep(0)
        assert len(up.sent) == 1 and up.cancelled == 0
        assert await call.abandon() is True
        assert up.cancelled == 1 and up.closed == 0

    _run(main)


def test_abandon_closes_the_answer_of_a_send_that_ignored_its_cancellation() -> None:
    """A send that answers although it was cancelled: that answer is closed too."""
    up = FakeUpstream(gate=asyncio.Event(), stubborn=True)

    async def main() -> None:
        call = _call(up)
        call.start()
        await asyncio.sleep(0)
        assert await call.abandon() is True
        assert up.cancelled == 1 and up.closed == 1

    _run(main)


@pytest.mark.parametrize("error", [UpstreamError("down", code="upstream_timeout", status=504),
                                   RuntimeError("a bug in the upstream")])
def test_abandon_retrieves_the_error_of_a_failed_call(error: Exception) -> None:
    """A started call that failed is abandoned quietly: its exception is retrieved (the loop
    reports nothing), nothing is closed."""
    up = FakeUpstream(error=error)

    async def main() -> None:
        call = _call(up)
        call.start()
        await asyncio.sleep(0)
        assert await call.abandon() is True
        assert up.closed == 0

    _run(main)


def test_abandon_works_inside_a_cancelled_scope() -> None:
    """The client went away (the request's scope is cancelled): the abandon still waits for the
    call and closes its answer (it is shielded)."""
    up = FakeUpstream()
    outcome: list[bool] = []

    async def main() -> None:
        call = _call(up)
        with anyio.CancelScope() as scope:
            call.start()
            await asyncio.sleep(0)
            scope.cancel()
            try:
                await anyio.sleep(1)
            finally:
                outcome.append(await call.abandon())
        assert scope.cancelled_caught

    _run(main)
    assert outcome == [True] and up.closed == 1


def test_cancelled_while_waiting_cancels_the_call() -> None:
    """The request is cancelled while ``result`` waits for the started call: the send is
    cancelled with it and the cancellation goes on."""
    up = FakeUpstream(gate=asyncio.Event())

    async def main() -> None:
        call = _call(up)
        call.start()
        taker = asyncio.create_task(call.result())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        taker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await taker
        assert up.cancelled == 1 and up.closed == 0

    _run(main)


def test_cancelled_just_after_the_call_answered_closes_the_answer() -> None:
    """The call has answered but the waiting request is cancelled before it resumes: ``result``
    raises the cancellation and closes the answer nobody will read."""
    gate = asyncio.Event()
    up = FakeUpstream(gate=gate)

    async def main() -> None:
        call = _call(up)
        call.start()
        taker = asyncio.create_task(call.result())
        await asyncio.sleep(0)  # the call waits for its gate, the taker for the call
        gate.set()
        await asyncio.sleep(0)  # the call answers; the taker's wake-up is queued behind this
        taker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await taker
        assert up.cancelled == 0 and up.closed == 1

    _run(main)


def test_outside_asyncio_start_does_nothing_and_result_calls_after() -> None:
    """Under trio (the app in another ASGI server) no asyncio task can be made: ``start`` leaves
    the call to ``result``, which makes it in the request's own task."""
    pytest.importorskip("trio", reason="anyio's trio backend needs trio (not installed)")
    up = FakeUpstream()

    async def main() -> None:
        call = _call(up)
        call.start()
        assert not call.started and up.sent == []
        answer = await call.result()
        assert answer.status == 200 and len(up.sent) == 1
        assert await call.abandon() is False

    anyio.run(main, backend="trio")


# --- prepare: pure work on the answer, done in the started task -----------------------------------


def _preparing(up: FakeUpstream, seen: list[str], *, fail: bool = False) -> UpstreamCall:
    def prepare(answer: UpstreamResponse) -> str:
        seen.append("prepare")
        if fail:
            raise ValueError("cannot render this answer")
        return f"rendered {answer.json}"

    return UpstreamCall(up, BODY, stream=False, headers={}, prepare=prepare)


def test_prepare_runs_in_the_started_task_and_is_read_once_the_answer_is_taken() -> None:
    """Started early, ``prepare`` runs right after the answer, before anyone asks for it; its value
    is readable only once ``result`` took the answer."""
    up, seen = FakeUpstream(), []

    async def main() -> None:
        call = _preparing(up, seen)
        call.start()
        await asyncio.sleep(0)
        assert seen == ["prepare"] and call.prepared is None  # done, but not taken yet
        answer = await call.result()
        assert answer.json == {"type": "message"}
        assert call.prepared == "rendered {'type': 'message'}" and seen == ["prepare"]

    _run(main)


def test_prepare_is_not_run_for_a_call_made_by_result() -> None:
    """Not started early: nothing overlaps, so nothing is prepared (the caller renders itself)."""
    up, seen = FakeUpstream(), []

    async def main() -> None:
        call = _preparing(up, seen)
        answer = await call.result()
        assert answer.status == 200 and call.prepared is None and seen == []

    _run(main)


def test_prepare_that_raises_leaves_the_answer_and_nothing_prepared() -> None:
    """A failing ``prepare`` neither fails the call nor leaks a task error: ``prepared`` is ``None``
    and the caller meets the error when it renders the answer itself."""
    up, seen = FakeUpstream(), []

    async def main() -> None:
        call = _preparing(up, seen, fail=True)
        call.start()
        answer = await call.result()
        assert answer.json == {"type": "message"} and seen == ["prepare"] and call.prepared is None

    _run(main)


def test_abandoned_call_prepared_value_is_never_exposed() -> None:
    """The payment failed after the answer was prepared: the answer is closed, and ``prepared``
    stays ``None`` (an abandoned call is nobody's answer)."""
    up, seen = FakeUpstream(), []

    async def main() -> None:
        call = _preparing(up, seen)
        call.start()
        await asyncio.sleep(0)
        assert seen == ["prepare"]
        assert await call.abandon() is True
        assert up.closed == 1 and call.prepared is None

    _run(main)
