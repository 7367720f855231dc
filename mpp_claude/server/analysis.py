"""The paid retry reuses its 402's request analysis (JSON parse, conversion, quote).

A charge-paid request is sent twice with the same body: unpaid (answered 402 with challenges)
and then paid.  Both legs parse the body, convert it (``/v1/chat/completions``) or validate it
(``/v1/messages``), and quote it: the same pure work on the same bytes, with the same result
(the conversion takes no thinking store here, so the ``now`` it is given plays no part).

``Analyses`` keeps the analysis of a small body that is about to get a 402 (the request has no
``Payment`` credential), and hands it to the first request with a credential and the same
route and body, once: the entry is removed when taken, so each 402 serves at most its own
retry and a body sent again unpaid is analysed again.

No request ever sees another's objects: the kept analysis is the 402 leg's own, which ends
with the 402 (nothing of that request reads or changes it afterwards), and the taker gets a
copy of every dict and list in it (``fresh``); the rest is immutable (text, numbers, frozen
dataclasses such as ``ModelInfo`` and ``Quote``).
"""

from __future__ import annotations

import copy
import dataclasses
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

ANALYSES_KEPT = 256  # bodies waiting for their paid retry (the oldest is dropped first)
ANALYSIS_MAX_BODY = 16 * 1024  # only small bodies are kept, as for the route-terms cache

T = TypeVar("T")

_IMMUTABLE = frozenset({str, int, float, bool, type(None), bytes})
_SHARED = object()  # ``_plan`` of a frozen dataclass: share the instance
_DEEP = object()  # ``_plan`` of anything else: ``copy.deepcopy``
_plans: dict[type, Any] = {}


def _plan(kind: type) -> Any:
    """How ``fresh`` copies an instance of ``kind``: ``_SHARED``, ``_DEEP`` or its field names."""
    params = getattr(kind, "__dataclass_params__", None)
    if params is None:
        return _DEEP
    if params.frozen:
        return _SHARED  # the frozen dataclasses kept here hold immutable values (model rows, quotes)
    fields = dataclasses.fields(kind)
    return tuple(f.name for f in fields) if all(f.init for f in fields) else _DEEP


def fresh(value: T) -> T:
    """A copy of ``value`` sharing nothing mutable with it.

    Dicts, lists and tuples are copied element by element, non-frozen dataclasses field by
    field; text, numbers, ``None`` and frozen dataclasses are shared (immutable); anything
    else is ``copy.deepcopy``-ed.  Several times faster than ``copy.deepcopy`` on a converted request.
    """
    kind = type(value)
    immutable = _IMMUTABLE
    if kind is dict:
        return {k: v if type(v) in immutable else fresh(v)  # type: ignore[return-value]
                for k, v in value.items()}  # type: ignore[attr-defined]
    if kind is list:
        return [v if type(v) in immutable else fresh(v) for v in value]  # type: ignore[attr-defined, return-value]
    if kind in immutable:
        return value
    if kind is tuple:
        return tuple(fresh(v) for v in value)  # type: ignore[attr-defined, return-value]
    plan = _plans.get(kind)
    if plan is None:
        plan = _plans[kind] = _plan(kind)
    if plan is _SHARED:
        return value
    if plan is _DEEP:
        return copy.deepcopy(value)
    return kind(**{name: v if type(v := getattr(value, name)) in immutable else fresh(v) for name in plan})


class Analyses:
    """Analyses of unpaid requests, each taken once by the paid retry with the same route and body.

    Args:
        kept: at most this many are kept (the oldest is dropped).
        max_body: bodies larger than this are never kept.
    """

    def __init__(self, kept: int = ANALYSES_KEPT, max_body: int = ANALYSIS_MAX_BODY) -> None:
        self._kept: OrderedDict[tuple[str, bytes], Any] = OrderedDict()
        self._max = kept
        self._max_body = max_body

    def __len__(self) -> int:
        return len(self._kept)

    def keep(self, route: str, body: bytes, analysis: Any) -> None:
        """Keep ``analysis`` of ``body`` on ``route`` for its paid retry (small bodies only).

        ``analysis`` must not be read or changed by its request afterwards (the 402 leg ends).
        """
        if len(body) > self._max_body:
            return
        key = (route, body)
        self._kept[key] = analysis
        self._kept.move_to_end(key)
        while len(self._kept) > self._max:
            self._kept.popitem(last=False)

    def reuse(self, route: str, body: bytes, *, paying: bool, analyse: Callable[[], T]) -> T:
        """The analysis of ``body`` on ``route``: its 402's (taken) for a request ``paying``,
        else ``analyse()``, kept for the paid retry when the request is not ``paying``."""
        if paying:
            kept = self.take(route, body)
            if kept is not None:
                return kept  # type: ignore[no-any-return]
        result = analyse()
        if not paying:  # a 402 follows: its paid retry will send this very body
            self.keep(route, body, result)
        return result

    def take(self, route: str, body: bytes) -> Any | None:
        """A fresh copy of the analysis kept for ``body`` on ``route`` (removed), or ``None``."""
        kept = self._kept.pop((route, body), None)
        return None if kept is None else fresh(kept)
