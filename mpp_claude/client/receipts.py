"""What the client tells its caller about a payment: quotes before, receipts after.

A paid response carries a :class:`PaymentReceipt` in ``response.extensions["mpp_receipt"]``
(httpx and httpx2).  :func:`receipt_of` finds it from any response object, including the
openai SDK's ``with_raw_response`` wrappers and ``APIStatusError``s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ProtocolError
from ..protocol.receipt import Receipt, parse_receipt
from ..tempo import tip20

EXT_RECEIPT = "mpp_receipt"
EXT_QUOTE = "mpp_quote"


def display(amount: int, decimals: int = tip20.DECIMALS) -> str:
    """Base units as a plain decimal string without trailing zeros: ``10000`` -> ``"0.01"``."""
    text = format(tip20.to_display(amount, decimals), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True, slots=True)
class Quote:
    """The price of one request, shown to approval callbacks and returned in dry-run mode.

    ``amount`` is in base units of ``currency`` (``decimals`` places); ``expires`` is Unix
    seconds; ``budget_left`` maps each active limit's name to the base units it has left
    *after* this payment would be reserved (missing = unlimited).
    """

    origin: str
    path: str
    method: str
    intent: str
    amount: int
    currency: str
    symbol: str
    decimals: int
    payee: str
    chain_id: int | None
    challenge_id: str
    expires: int | None
    description: str | None
    budget_left: dict[str, int]

    @property
    def display_amount(self) -> str:
        """``amount`` in whole tokens without trailing zeros (``"0.01"``), for display only."""
        return display(self.amount, self.decimals)

    def __str__(self) -> str:
        return (f"{self.display_amount} {self.symbol} to {self.payee} for {self.origin}{self.path} "
                f"(chain {self.chain_id}, challenge {self.challenge_id})")


@dataclass(frozen=True, slots=True)
class PaymentReceipt:
    """One payment this client made, and the server's receipt for it.

    Attributes:
        receipt_header: the server's ``Payment-Receipt`` value as sent (``None``: none sent).
        receipt: (property) that header parsed, on first use (``None`` if the server sent none
            or a malformed one, ``receipt_error`` says why; the payment may still have settled:
            see ``tx_hash``).
        amount, currency, symbol, payee, chain_id: what was paid (base units).
        tx_hash: the signed transaction's hash (``None`` for a zero-amount proof).
        challenge_id, origin, path: what it paid for (the path carries no query string).
        request_id: the ``Idempotency-Key`` of the logical request.
        ledger_id: the ledger row (``None`` when no ledger is kept).
        model: the ``model`` of an OpenAI-style JSON request body, when there was one.
    """

    receipt_header: str | None
    amount: int
    currency: str
    symbol: str
    payee: str
    chain_id: int | None
    tx_hash: str | None
    challenge_id: str
    origin: str
    path: str
    request_id: str
    ledger_id: int | None
    model: str | None = None
    _parsed: tuple[Receipt | None, str | None] | None = field(default=None, init=False, repr=False,
                                                               compare=False)

    def _read(self) -> tuple[Receipt | None, str | None]:
        got = self._parsed
        if got is None:  # parsed once, when first needed (any thread: the result is the same)
            got = read_receipt(self.receipt_header)
            object.__setattr__(self, "_parsed", got)
        return got

    @property
    def receipt(self) -> Receipt | None:
        """The parsed ``Payment-Receipt`` (``None``: missing or malformed, see ``receipt_error``)."""
        return self._read()[0]

    @property
    def receipt_error(self) -> str | None:
        """Why :attr:`receipt` is ``None`` (``"missing"`` or the parse error), else ``None``."""
        return self._read()[1]

    @property
    def reference(self) -> str | None:
        """The receipt's reference (the tx hash for a Tempo charge), else our tx hash."""
        return self.receipt.reference if self.receipt is not None else self.tx_hash

    @property
    def display_amount(self) -> str:
        return display(self.amount)


def read_receipt(header: str | None) -> tuple[Receipt | None, str | None]:
    """``(receipt, None)``, or ``(None, why)`` for a missing (``why`` is ``"missing"``) or
    malformed ``Payment-Receipt`` value: a bad receipt never loses the paid response."""
    if header is None:
        return None, "missing"
    try:
        return parse_receipt(header), None
    except ProtocolError as exc:
        return None, str(exc)


def receipt_of(response: Any) -> PaymentReceipt | None:
    """The payment receipt attached to ``response``, or ``None`` for an unpaid response.

    Accepts an ``httpx``/``httpx2`` response, an openai ``APIResponse`` / ``LegacyAPIResponse``
    (``client.chat.completions.with_raw_response.create(...)``) or an ``openai.APIStatusError``.
    """
    for attr in ("http_response", "response"):  # unwrap SDK wrappers / errors
        inner = getattr(response, attr, None)
        if inner is not None and inner is not response and hasattr(inner, "extensions"):
            response = inner
            break
    ext = getattr(response, "extensions", None)
    if not isinstance(ext, dict):
        return None
    found = ext.get(EXT_RECEIPT)
    return found if isinstance(found, PaymentReceipt) else None
