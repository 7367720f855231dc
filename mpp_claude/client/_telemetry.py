"""OpenTelemetry spans for payments, when ``opentelemetry-api`` is installed (zero cost otherwise).

One span ``mpp.pay`` per payment with the amount, currency, origin, chain, challenge id and,
once signed, the tx hash.  Never the credential.  With only the API installed and no tracer
provider set, no span is made (it could not record anything).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import trace as _trace
except ImportError:  # pragma: no cover - optional dependency
    _trace = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from .receipts import Quote


_NO_SPAN: AbstractContextManager[None] = nullcontext(None)  # stateless: one shared instance


def span(name: str, quote: Quote) -> AbstractContextManager[Any]:
    """A span around one payment (``None`` is yielded when OpenTelemetry is absent: then this
    costs one attribute read, not a generator)."""
    if _trace is None or _no_provider():
        return _NO_SPAN
    return _span(name, quote)


def _no_provider() -> bool:
    """True while no tracer provider is installed: every span would be a non-recording no-op
    (about 10 us each), so none is made.  Checked per payment: a provider set later counts."""
    proxy = getattr(_trace, "ProxyTracerProvider", None)
    return proxy is not None and isinstance(_trace.get_tracer_provider(), proxy)


@contextmanager
def _span(name: str, quote: Quote) -> Iterator[Any]:
    assert _trace is not None
    tracer = _trace.get_tracer("mpp_claude.client")
    with tracer.start_as_current_span(name) as sp:
        sp.set_attribute("mpp.amount", quote.amount)
        sp.set_attribute("mpp.currency", quote.currency)
        sp.set_attribute("mpp.origin", quote.origin)
        sp.set_attribute("mpp.path", quote.path)
        sp.set_attribute("mpp.chain_id", quote.chain_id or 0)
        sp.set_attribute("mpp.challenge_id", quote.challenge_id)
        sp.set_attribute("mpp.payee", quote.payee)
        yield sp


def tx(sp: Any, tx_hash: str | None) -> None:
    """Record the signed transaction's hash on the span."""
    if sp is not None and tx_hash:
        sp.set_attribute("mpp.tx_hash", tx_hash)
