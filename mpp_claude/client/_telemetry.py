"""OpenTelemetry spans for payments, when ``opentelemetry-api`` is installed (zero cost otherwise).

One span ``mpp.pay`` per payment with the amount, currency, origin, chain, challenge id and,
once signed, the tx hash.  Never the credential.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import trace as _trace
except ImportError:  # pragma: no cover - optional dependency
    _trace = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from .receipts import Quote


@contextmanager
def span(name: str, quote: Quote) -> Iterator[Any]:
    """A span around one payment (``None`` is yielded when OpenTelemetry is absent)."""
    if _trace is None:
        yield None
        return
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
