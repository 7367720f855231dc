"""``PaidApp``: the Starlette app, with ``POST`` on a paid path dispatched without the router.

A Starlette request crosses ``ServerErrorMiddleware``, the user middleware (``AccessLog``),
``ExceptionMiddleware``, the router (a regular expression per route until one matches),
``Route.handle`` and ``request_response``'s two wrappers, and an endpoint's exception (a 402
is one) is caught and rendered by the handler registered for its class.  For the two paid
routes that walk is a measurable part of the server's work on each leg of a paid request.

``PaidApp`` keeps the same outer middleware (built from the same list, so the 500 answer and
the access log are the very same code) and replaces only the innermost part, exception
handling plus routing, with ``_Direct``: it calls the endpoint found by the router for that
path, maps its exceptions with the same handlers in the same way (the handler registered for
the nearest class in the exception's MRO, a status handler first for ``HTTPException``, a
``RuntimeError`` when the answer had already started, anything unhandled raised on to
``ServerErrorMiddleware``), and sets the same scope keys the router sets.  When the only user
middleware is a logger with ``begin``/``end`` (``AccessLog``), ``_Fused`` runs the error
middleware's steps, the logger's and ``_Direct``'s in one frame with one ``send`` wrapper, in
the same order.

The short way is taken only where it is equivalent: for ``POST`` on a path whose first
matching route is a plain ``Route`` with the endpoint ``create_app`` gave it (so not once
``enable_sessions`` wrapped the endpoint), with no ``root_path``, and only while the
application has no debug mode, no 500 handler and no body-size limit of Starlette's own.
Everything else goes through the Starlette stack, unchanged.  Like Starlette's own middleware
stack, the decision is taken when the app serves its first request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .observability import RequestLog

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, Exception], Awaitable[Response | None]]


class _Direct:
    """The endpoint of one route with Starlette's exception handling, without router or wrappers."""

    __slots__ = ("_endpoint", "_handlers", "_route", "_status_handlers")

    def __init__(self, route: Route, endpoint: Endpoint, handlers: Mapping[Any, Handler],
                 status_handlers: Mapping[int, Handler]) -> None:
        self._route = route
        self._endpoint = endpoint
        self._handlers = handlers
        self._status_handlers = status_handlers

    def _handler(self, exc: Exception) -> Handler | None:
        handler = self._status_handlers.get(exc.status_code) if isinstance(exc, HTTPException) else None
        if handler is None:
            for cls in type(exc).__mro__:
                handler = self._handlers.get(cls)
                if handler is not None:
                    break
        return handler

    async def _render(self, exc: Exception, request: Request, started: list[bool], scope: Scope,
                      receive: Receive, send: Send) -> None:
        handler = self._handler(exc)
        if handler is None:
            raise exc
        if started[0]:
            raise RuntimeError("Caught handled exception, but response already started.") from exc
        response = await handler(request, exc)
        if response is not None:
            await response(scope, receive, send)
        exc.__traceback__ = None  # a reused exception instance would accumulate tracebacks

    async def run(self, scope: Scope, receive: Receive, send: Send, started: list[bool]) -> None:
        """Serve the request; ``send`` sets ``started[0]`` when the answer starts."""
        scope["starlette.exception_handlers"] = (self._handlers, self._status_handlers)
        scope["route"] = self._route
        scope["endpoint"] = self._endpoint
        scope["path_params"] = dict(scope.get("path_params", {}))
        request = Request(scope, receive, send)
        # Two levels, as Starlette's ExceptionMiddleware around request_response: an exception
        # raised while a handler answers is looked up once more.
        try:
            try:
                response = await self._endpoint(request)
                await response(scope, receive, send)
            except Exception as exc:
                await self._render(exc, request, started, scope, receive, send)
        except Exception as exc:
            await self._render(exc, request, started, scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = [False]

        async def sender(message: Message) -> None:
            if message["type"] == "http.response.start":
                started[0] = True
            await send(message)

        await self.run(scope, receive, sender, started)


class RequestLogger(Protocol):
    """A logging middleware the short way can run in the same frame (``app.AccessLog``)."""

    def begin(self, scope: Scope) -> tuple[RequestLog, float]: ...

    def end(self, entry: RequestLog, start: float) -> None: ...


class _Fused:
    """``ServerErrorMiddleware(logger(_Direct))`` in one frame, one ``send`` wrapper.

    The same steps in the same order: the entry begins; the endpoint runs with Starlette's
    exception mapping; the entry ends and is emitted (status 500 if no answer started); then an
    exception nothing handled gets the plain 500 (if no answer started) and is raised on.
    """

    __slots__ = ("_direct", "_logger")

    def __init__(self, logger: RequestLogger, direct: _Direct) -> None:
        self._logger = logger
        self._direct = direct

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        entry, start = self._logger.begin(scope)
        started = [False]

        async def sender(message: Message) -> None:
            if message["type"] == "http.response.start":
                started[0] = True
                entry.status = int(message["status"])
            await send(message)

        try:
            try:
                await self._direct.run(scope, receive, sender, started)
            finally:
                self._logger.end(entry, start)
        except Exception:
            if not started[0]:  # what ServerErrorMiddleware answers without a 500 handler
                await PlainTextResponse("Internal Server Error", status_code=500)(scope, receive, send)
            raise


class PaidApp(Starlette):
    """Starlette whose ``POST`` on the ``direct`` paths skips routing (see the module docstring).

    Args:
        direct: path -> the endpoint its route is created with (``/v1/chat/completions`` ...).
        *args, **kwargs: as for ``Starlette``.
    """

    def __init__(self, *args: Any, direct: Mapping[str, Endpoint], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._direct_endpoints = dict(direct)
        self._direct: dict[str, ASGIApp] = {}

    def build_middleware_stack(self) -> ASGIApp:
        """Starlette's stack, and beside it the short stacks of the direct paths (if equivalent)."""
        stack = super().build_middleware_stack()
        self._direct = self._build_direct()
        return stack

    def _build_direct(self) -> dict[str, ASGIApp]:
        handlers = dict(self.exception_handlers)
        if self.debug or 500 in handlers or Exception in handlers or getattr(self, "max_body_size", None):
            return {}
        mapped = ExceptionMiddleware(self.router, handlers=handlers, debug=False)
        exc_handlers: Mapping[Any, Handler] | None = getattr(mapped, "_exception_handlers", None)
        status_handlers: Mapping[int, Handler] | None = getattr(mapped, "_status_handlers", None)
        if exc_handlers is None or status_handlers is None:  # a Starlette whose internals changed
            return {}
        direct: dict[str, ASGIApp] = {}
        for path, endpoint in self._direct_endpoints.items():
            route = self._route_for(path)
            if route is None or route.endpoint is not endpoint:
                continue
            inner = _Direct(route, endpoint, exc_handlers, status_handlers)
            app: ASGIApp = inner
            for cls, args, kwargs in reversed(self.user_middleware):
                app = cls(app, *args, **kwargs)
            if len(self.user_middleware) == 1 and getattr(app, "app", None) is inner \
                    and callable(getattr(app, "begin", None)) and callable(getattr(app, "end", None)):
                direct[path] = _Fused(app, inner)  # type: ignore[arg-type]  # begin/end checked above
            else:
                direct[path] = ServerErrorMiddleware(app, handler=None, debug=False)
        return direct

    def _route_for(self, path: str) -> Route | None:
        """The route the router picks for ``POST path``, if it is a plain, fully matching ``Route``."""
        probe: Scope = {"type": "http", "method": "POST", "path": path, "root_path": ""}
        for route in self.router.routes:
            match, _ = route.matches(probe)
            if match is Match.NONE:
                continue
            return route if match is Match.FULL and type(route) is Route else None
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self
        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            direct = self._direct.get(scope["path"])
            if direct is not None:
                await direct(scope, receive, send)
                return
        await self.middleware_stack(scope, receive, send)
