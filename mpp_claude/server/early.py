"""``UpstreamCall``: a paid route's upstream request, startable while its payment settles.

A paid request waits twice: for its payment to settle on chain (broadcast and receipt, about
a block on Tempo mainnet, ~0.5 s) and for the upstream's answer.  Once a ``transaction``
credential has passed every local check and its claims are made (challenge id, transaction
hash, sponsor gas), only the chain's verdict is missing.  ``PaymentGate.authorize`` then calls
its ``on_claimed`` callback, the route's ``UpstreamCall.start``, which starts the upstream
call as a task; the settlement goes on meanwhile, and ``serving`` takes the started call's
answer with ``result`` once ``Paid`` exists.

Nothing the upstream says reaches the client before the payment settled: the answer's
headers, the receipt, the stored idempotent copy and the usage row are all made after
``Paid``, exactly as without the overlap.  Only pure work on the answer may run early: a
``prepare`` function (e.g. the OpenAI rendering of a JSON message) runs in the same task
right after the answer arrived, and its value (``prepared``) is used only once ``Paid`` exists.
When the settlement fails (or the client goes away while it runs), ``abandon`` drops the call:
the task is cancelled and an answer it already produced is closed (stream and connection
released); the client gets the very answer it would have got without the overlap, and nothing
is served or recorded as used.

The operator's exposure: one upstream call for a credential that passed every local check and
the claims but then failed on chain (refused by the node, or mined and reverted, which costs
the payer its gas: so it is bounded).  ``ServerConfig.upstream_during_settlement = False``
(``--upstream-after-settlement``) keeps the strict order: settle, then call the upstream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import sniffio

from .upstreams.base import Upstream, UpstreamResponse

log = logging.getLogger("mpp_claude.server")


def _on_asyncio() -> bool:
    try:
        return sniffio.current_async_library() == "asyncio"
    except sniffio.AsyncLibraryNotFoundError:
        return False


class UpstreamCall:
    """One ``Upstream.send`` whose start may come before the code that takes its answer.

    Args:
        upstream: where to send.
        body: the Messages request body (not copied: the caller does not change it afterwards).
        stream: ask for Server-Sent Events.
        headers: extra upstream request headers (see ``serving.upstream_headers``).
        prepare: pure work on the answer, run in the task of a call started early, right after
            the answer arrived (while the payment may still settle); its value is ``prepared``.
            It must not send, store or record anything.  If it raises, the exception is
            dropped and ``prepared`` stays ``None``: the caller then does the work itself and
            meets the same error where it would have without the overlap.
    """

    __slots__ = ("_body", "_delivered", "_headers", "_prepare", "_prepared", "_stream", "_taken", "_task",
                 "_upstream")

    def __init__(self, upstream: Upstream, body: Mapping[str, Any], *, stream: bool,
                 headers: Mapping[str, str],
                 prepare: Callable[[UpstreamResponse], Any] | None = None) -> None:
        self._upstream = upstream
        self._body = body
        self._stream = stream
        self._headers = headers
        self._prepare = prepare
        self._prepared: Any = None
        self._delivered = False  # ``result`` returned the started task's answer
        self._task: asyncio.Task[UpstreamResponse] | None = None
        self._taken = False  # ``result`` or ``abandon`` was called: the call is spoken for

    @property
    def started(self) -> bool:
        """Whether ``start`` made a task of the call."""
        return self._task is not None

    @property
    def prepared(self) -> Any:
        """What ``prepare`` returned for the answer ``result`` gave, or ``None`` (no ``prepare``,
        the call was not started early, it raised, or ``result`` has not returned that answer:
        an abandoned call's is never exposed)."""
        return self._prepared if self._delivered else None

    async def _send(self) -> UpstreamResponse:
        """The task of a call started early: the upstream's answer, then ``prepare`` on it."""
        answer = await self._upstream.send(self._body, stream=self._stream, headers=self._headers)
        if self._prepare is not None:
            try:
                self._prepared = self._prepare(answer)
            except Exception as exc:  # the caller redoes the work and meets the error there
                log.debug("preparing the upstream answer early failed: %s", type(exc).__name__)
        return answer

    def start(self) -> None:
        """Start the call as a task of the running event loop.

        Idempotent; does nothing once ``result`` or ``abandon`` was called, and outside asyncio
        (the app under trio: ``result`` then makes the call after settlement).  Called from a
        coroutine running on the loop (``PaymentGate``'s claim callback is).
        """
        if self._task is None and not self._taken and _on_asyncio():
            self._task = asyncio.create_task(self._send())

    async def result(self) -> UpstreamResponse:
        """The upstream's answer: the started call's, or (not started) the call made now.

        The caller owns the answer from then on (``aclose`` it when its stream is not read to
        the end).  A cancellation while waiting cancels the call and closes what it produced.

        Returns:
            The ``UpstreamResponse``.

        Raises:
            UpstreamError: no usable upstream answer (as ``Upstream.send``); whatever else
                ``send`` raised is raised as it is.
        """
        self._taken = True
        task = self._task
        if task is None:
            return await self._upstream.send(self._body, stream=self._stream, headers=self._headers)
        try:
            answer = await task
        except asyncio.CancelledError:
            await _discard(task)  # ``await task`` passed the cancellation on: release what it made
            raise
        self._delivered = True
        return answer

    async def abandon(self) -> bool:
        """Drop the call because the payment failed: cancel it, close an answer it produced.

        Returns:
            True when a started call was dropped; False when it never started or ``result``
            took it (its answer is then the taker's to close).
        """
        task, self._task = self._task, None
        taken, self._taken = self._taken, True  # abandoned: a later ``start`` starts nothing
        if task is None or taken:
            return False
        await _discard(task)
        return True


async def _discard(task: asyncio.Task[UpstreamResponse]) -> None:
    """Cancel ``task``, wait for it to end (shielded: this runs while a cancellation unwinds),
    and close the answer it produced if it had produced one."""
    task.cancel()
    with anyio.CancelScope(shield=True):
        await asyncio.wait((task,))
        if task.cancelled():
            return
        error = task.exception()  # retrieved, so asyncio does not report it as never retrieved
        if error is not None:
            log.debug("abandoned upstream call had failed: %s", type(error).__name__)
            return
        await task.result().aclose()
