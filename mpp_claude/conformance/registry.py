"""The operation registry of the conformance adapter, and the request → response envelope.

An operation is a function from the request's ``input`` (parsed JSON) to the success
``value`` (JSON-ready).  It reports a failure by raising:

* :class:`AdapterError` with an explicit conformance error type, or
* a :class:`~mpp_claude.errors.ProtocolError` (reported as the operation's declared
  error type: ``parse_error`` for ``challenge.parse``, ``generation_error`` for
  ``challenge.id`` …), or
* a :class:`~mpp_claude.errors.VerificationError` (reported as ``verification_error``).

Anything else is a bug: it is reported as ``unknown_error`` and its traceback goes to
stderr.

Adding operations from another module::

    # mpp_claude/conformance/tempo_ops.py
    from mpp_claude.conformance.registry import operation

    @operation("tempo.receipt.verify", error_type="verification_error")
    def receipt_verify(inp: Mapping[str, Any]) -> dict[str, Any]:
        ...

and list the module in :data:`OP_MODULES` (``tempo_ops`` already is; a listed module
that does not exist is skipped, so the adapter works before it is written).
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from mpp_claude.errors import ProtocolError, VerificationError

__all__ = [
    "ERROR_TYPES",
    "OPERATIONS",
    "OP_MODULES",
    "AdapterError",
    "Handler",
    "Operation",
    "handle_request",
    "load_operations",
    "operation",
]

#: Error types the harness understands (protocol.schema.json ``ErrorType``).
ERROR_TYPES = frozenset({
    "parse_error", "format_error", "encoding_error", "generation_error", "verification_error",
    "http_error", "unsupported_operation", "unknown_error",
})

#: Modules whose import registers operations, in order.  Missing ones are skipped.
OP_MODULES = ("mpp_claude.conformance.core_ops", "mpp_claude.conformance.tempo_ops")

Handler = Callable[[Any], Any]


class AdapterError(Exception):
    """An operation failed with a specific conformance error type."""

    def __init__(self, type: str, message: str) -> None:
        if type not in ERROR_TYPES:
            raise ValueError(f"unknown conformance error type {type!r}")
        super().__init__(message)
        self.type = type
        self.message = message


@dataclass(frozen=True, slots=True)
class Operation:
    """A registered operation: its name, handler and the error type it reports."""

    name: str
    handler: Handler
    error_type: str


OPERATIONS: dict[str, Operation] = {}


def operation(name: str, *, error_type: str) -> Callable[[Handler], Handler]:
    """Decorator registering ``handler`` as operation ``name``.

    Args:
        name: the harness operation name (``challenge.parse``).
        error_type: the conformance error type that protocol errors of this op map to.
    Raises:
        ValueError: ``name`` is already registered or ``error_type`` is unknown.
    """
    if error_type not in ERROR_TYPES:
        raise ValueError(f"unknown conformance error type {error_type!r}")

    def register(handler: Handler) -> Handler:
        if name in OPERATIONS:
            raise ValueError(f"conformance operation {name!r} is registered twice")
        OPERATIONS[name] = Operation(name, handler, error_type)
        return handler

    return register


_loaded = False


def load_operations() -> dict[str, Operation]:
    """Import every module of :data:`OP_MODULES` (once) and return the registry.

    A module that does not exist is skipped; any other import error propagates (a broken
    op module is a bug to see, not to hide).
    """
    global _loaded
    if not _loaded:
        for module in OP_MODULES:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name != module:
                    raise
        _loaded = True
    return OPERATIONS


def _error(type: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"type": type, "message": message}}


def handle_request(request: Any) -> dict[str, Any]:
    """Run one harness request ``{"schema": 1, "op", "input", "context"?}``.

    Returns:
        ``{"ok": true, "value": …}`` or ``{"ok": false, "error": {"type", "message"}}``;
        never raises for bad input.
    """
    if not isinstance(request, Mapping):
        return _error("unknown_error", "request must be a JSON object")
    if request.get("schema") != 1:
        return _error("unknown_error", f"unsupported request schema {request.get('schema')!r}")
    name = request.get("op")
    if not isinstance(name, str) or "input" not in request:
        return _error("unknown_error", "request needs 'op' (string) and 'input'")
    op = load_operations().get(name)
    if op is None:
        return _error("unsupported_operation", f"operation {name!r} is not implemented")
    try:
        value = op.handler(request["input"])
    except AdapterError as exc:
        return _error(exc.type, exc.message)
    except ProtocolError as exc:
        return _error(op.error_type, str(exc))
    except VerificationError as exc:
        return _error("verification_error", str(exc))
    except Exception as exc:  # a bug: report it without crashing the harness, show the trace
        traceback.print_exc(file=sys.stderr)
        return _error("unknown_error", f"{type(exc).__name__}: {exc}")
    return {"ok": True, "value": value}
