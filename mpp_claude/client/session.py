"""Session intent on the client (opt-in): pay for LLM calls from a payment channel.

``MppClient(wallet, ..., session=SessionPolicy(max_deposit="5"))`` (or the transports in
``_session_shell``) answers a 402 that offers a ``tempo``/``session`` challenge by opening a
channel (deposit bounded by ``max_deposit``), then pays every later request to that origin
with cumulative vouchers signed locally: no chain call and no 402 round trip once a live
challenge is cached.  By default a voucher signs ahead for about ten requests (``headroom``,
at most $0.05), so most requests re-send the last voucher: no signing, no ledger write.  The
channel, the highest signed amount and its signature are kept in the channel store
(``channels.ChannelStore``, by default the ledger's SQLite file) before a voucher leaves the
process, so a restarted client resumes the same channel; a 410 from the server evicts it.

Closing: ``close_sessions()`` asks the server to close each channel with a voucher for what it
reported spent; the escrow refunds the rest.  Without the server (gone, or refusing),
``request_close(id)`` / ``withdraw(id)`` / ``reclaim()`` force the close on chain
(``_session_reclaim``): ``requestClose``, the escrow's grace period (15 min), ``withdraw``.

Budgets and the ledger count vouchers like charges: each voucher's increase over the previous
one is reserved in every budget (scoped, per client, rolling 24 h, rate) and written to the
ledger (one row, ``settled``, referencing the channel) before it is signed.  When a channel is
finalised, by the server's close or a withdraw, what its vouchers authorised beyond what the
payee settled on chain is given back to the ledger and the client's budget.

Public here: ``SessionPolicy``, ``SessionReceipt`` and ``session_receipt_of(response)``.  The
decisions and bookkeeping are ``_session_core.SessionCore``; the transports doing the HTTP and
chain I/O are in ``_session_shell`` (sync) and ``_session_async``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..protocol.challenge import Challenge
from ..protocol.receipt import Receipt
from .policy import usd

EXT_SESSION_RECEIPT = "mpp_session_receipt"
#: default sign-ahead: this many requests' worth of the offer's price ...
AUTO_HEADROOM_REQUESTS = 10
#: ... but never more than this (base units, $0.05) at risk beyond what was charged
AUTO_HEADROOM_CAP = 50_000


@dataclass(frozen=True)
class SessionPolicy:
    """What the client may lock and sign in payment channels.

    Args:
        max_deposit: the most locked in one channel (USD like ``"5"``, or base units as int);
            caps the opening deposit, every top-up and every voucher.
        deposit: the opening deposit (default: the offer's ``suggestedDeposit``), at most
            ``max_deposit`` and at least what the first request needs.
        headroom: signed beyond what a request needs (USD like ``"0.02"``, or base units as int), so
            the next requests re-send the same voucher (no signing, no ledger write).  ``None``
            (default): ``AUTO_HEADROOM_REQUESTS`` requests' worth, at most ``AUTO_HEADROOM_CAP``;
            ``0``: a new voucher for every request.  Budgets reserve it when it is signed; what
            the server never charged is given back when the channel is closed.
        top_up: the smallest top-up worth a transaction (default: ``deposit``).
        fee_token: TIP-20 paying the open/top-up fees (``None``: the account default).
        escrows: chain id -> escrow address accepted besides the canonical ones (a devnet's).
        channels: ``"default"`` (the ledger's SQLite file), a path, a store, or ``None`` (memory).
    """

    max_deposit: int | str | Decimal
    deposit: int | str | Decimal | None = None
    headroom: int | str | Decimal | None = None
    top_up: int | str | Decimal | None = None
    fee_token: str | None = None
    escrows: Mapping[int, str] = field(default_factory=dict)
    channels: Any = "default"

    @property
    def max_deposit_units(self) -> int:
        return usd(self.max_deposit)

    def headroom_for(self, amount: int) -> int:
        """Base units to sign ahead beyond a request that may cost ``amount``."""
        if self.headroom is not None:
            return usd(self.headroom)
        return min(amount * AUTO_HEADROOM_REQUESTS, AUTO_HEADROOM_CAP)


@dataclass(frozen=True, slots=True)
class SessionOffer:
    """A ``tempo``/``session`` challenge this client may pay."""

    challenge: Challenge
    amount: int
    currency: str
    recipient: str
    chain_id: int
    escrow: str
    suggested_deposit: int


@dataclass(frozen=True, slots=True)
class SessionReceipt:
    """The server's session receipt for one request (amounts in base units)."""

    receipt: Receipt
    channel_id: str
    challenge_id: str
    accepted_cumulative: int
    spent: int
    amount: int | None
    tx_hash: str | None

    @classmethod
    def from_receipt(cls, receipt: Receipt) -> SessionReceipt:
        e = receipt.extra

        def num(name: str) -> int | None:
            value = e.get(name)
            return int(value) if isinstance(value, str) and value.isdigit() else None

        return cls(receipt, str(e.get("channelId", receipt.reference)).lower(), str(e.get("challengeId", "")),
                   num("acceptedCumulative") or 0, num("spent") or 0, num("amount"),
                   e.get("txHash") if isinstance(e.get("txHash"), str) else None)


class ReceiptBox:
    """Holds the final session receipt of a response (filled when a stream ends).

    A stream's header receipt is superseded by its final ``payment-receipt`` frame, so it is
    parsed only if asked for before (or without) that frame: ``defer(parse)``.
    """

    __slots__ = ("_pending", "_receipt")

    def __init__(self, receipt: SessionReceipt | None = None) -> None:
        self._receipt = receipt
        self._pending: Callable[[], SessionReceipt | None] | None = None

    def defer(self, parse: Callable[[], SessionReceipt | None]) -> None:
        """Parse the receipt with ``parse`` on first access unless a later receipt is set first."""
        self._pending = parse

    @property
    def empty(self) -> bool:
        """No receipt, not even a deferred one."""
        return self._receipt is None and self._pending is None

    @property
    def receipt(self) -> SessionReceipt | None:
        if self._pending is not None:
            parse, self._pending = self._pending, None
            self._receipt = parse() or self._receipt
        return self._receipt

    @receipt.setter
    def receipt(self, value: SessionReceipt | None) -> None:
        self._receipt, self._pending = value, None


def session_receipt_of(response: Any) -> SessionReceipt | None:
    """The session receipt of a response (for a stream: once it was read to the end)."""
    for attr in ("http_response", "response"):
        inner = getattr(response, attr, None)
        if inner is not None and inner is not response and hasattr(inner, "extensions"):
            response = inner
            break
    ext = getattr(response, "extensions", None)
    box = ext.get(EXT_SESSION_RECEIPT) if isinstance(ext, dict) else None
    return box.receipt if isinstance(box, ReceiptBox) else None
