"""Configuration of the server's session intent (off unless a ``SessionSettings`` is given).

From the server configuration (flags, environment, TOML; ``server.config``): ``sessions =
true`` (``--session``, ``MPP_SESSIONS``) turns it on; the ``session_*`` keys below set it up,
``session_payee_key`` being required.  ``session_settings`` validates them (pure).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SESSION_ENV = {
    "sessions": "MPP_SESSIONS", "session_payee_key": "MPP_SESSION_PAYEE_KEY",
    "session_escrow": "MPP_SESSION_ESCROW", "session_suggested_deposit": "MPP_SESSION_SUGGESTED_DEPOSIT",
    "session_min_deposit": "MPP_SESSION_MIN_DEPOSIT", "session_settle_amount": "MPP_SESSION_SETTLE_AMOUNT",
    "session_settle_seconds": "MPP_SESSION_SETTLE_SECONDS", "session_fee_token": "MPP_SESSION_FEE_TOKEN",
    "session_voucher_wait": "MPP_SESSION_VOUCHER_WAIT",
    "session_settle_on_shutdown": "MPP_SESSION_SETTLE_ON_SHUTDOWN",
    "session_close_watch_seconds": "MPP_SESSION_CLOSE_WATCH_SECONDS",
}
"""Configuration key -> environment variable."""

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class SessionSettings:
    """How the server offers and runs sessions (payment channels).  Amounts in base units.

    Args:
        payee_key: hex private key of the payment recipient (``config.recipient``): the escrow
            accepts ``settle``/``close`` only from the payee.
        escrow: the v1 escrow address; ``None`` = the canonical escrow of the chain.
        suggested_deposit: ``suggestedDeposit`` of the offer.
        min_deposit: the smallest opening deposit accepted.
        min_voucher_delta: ``minVoucherDelta`` (0: any increase).
        settle_every_amount: settle on chain once this much spent is unsettled (0: never by amount).
        settle_every_seconds: settle when the last settlement is this old and something is
            unsettled (0: never by time); a background sweeper checks every
            ``min(settle_every_seconds, 5)`` seconds, so idle channels are settled too.  Without
            either, the payee is paid at close.
        settle_on_shutdown: when the server stops, settle every channel with unsettled spent.
        close_watch_seconds: every this many seconds, read the escrow's state of each open channel
            with unsettled spent (one ``getChannel`` call each; none when nothing is unsettled);
            when its payer requested a forced close, settle it at once and serve it no more
            (``closewatch``).  The escrow lets the payer withdraw what is not settled
            ``CLOSE_GRACE_PERIOD`` (15 min) later; 0 turns the watch off (the payee then risks
            everything spent since the last settlement).  At most ``MAX_CLOSE_WATCH_S``.
        voucher_wait: seconds a stream waits for a voucher after ``payment-need-voucher``.
        channel_state_ttl: seconds on-chain channel state is cached between vouchers.
        hold_ttl: seconds after which a request's hold is dropped (a crashed worker's).
        fee_token: TIP-20 the payee pays settle/close fees with (``None``: account default).
    """

    payee_key: str = field(repr=False)
    escrow: str | None = None
    suggested_deposit: int = 1_000_000
    min_deposit: int = 1
    min_voucher_delta: int = 0
    settle_every_amount: int = 0
    settle_every_seconds: float = 0.0
    voucher_wait: float = 60.0
    channel_state_ttl: float = 5.0
    hold_ttl: float = 3600.0
    fee_token: str | None = None
    settle_on_shutdown: bool = False
    close_watch_seconds: float = 15.0


MAX_CLOSE_WATCH_S = 300
"""The longest close-watch period accepted: a third of the escrow's 15-minute grace period."""


def _flag(raw: Mapping[str, Any], key: str, problems: list[str]) -> bool:
    value = raw.get(key, False)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on", "0", "false", "no", "off", ""}:
        return text in {"1", "true", "yes", "on"}
    problems.append(f"{key}: expected true/false, got {value!r}")
    return False


def _int(raw: Mapping[str, Any], key: str, default: int, problems: list[str]) -> int:
    value = raw.get(key, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = -1
    if isinstance(value, bool) or number < 0:
        problems.append(f"{key}: expected an integer >= 0, got {value!r}")
        return default
    return number


def _address(raw: Mapping[str, Any], key: str, problems: list[str]) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    if not _ADDRESS.match(str(value)):
        problems.append(f"{key}: expected a 0x-prefixed 20-byte hex address, got {value!r}")
        return None
    return str(value).lower()


def session_settings(raw: Mapping[str, Any], problems: list[str]) -> SessionSettings | None:
    """``SessionSettings`` from the merged configuration ``raw`` (the ``session_*`` keys).

    Appends one line per problem to ``problems`` (and returns ``None``) instead of raising.
    """
    start = len(problems)
    key = raw.get("session_payee_key")
    if not key:
        problems.append("session_payee_key: required with sessions (the recipient's private key, which "
                        "settles and closes channels; MPP_SESSION_PAYEE_KEY)")
    elif not _KEY.match(str(key)):
        problems.append("session_payee_key: expected a 32-byte hex private key (value not shown)")
    elif _ADDRESS.match(str(raw.get("recipient", ""))):
        from ...tempo.signer import LocalSigner

        owner = LocalSigner(bytes.fromhex(str(key).removeprefix("0x"))).address
        if owner.lower() != str(raw["recipient"]).lower():
            problems.append(f"session_payee_key: belongs to {owner}, not the recipient {raw['recipient']} "
                            "(only the payee can settle and close channels)")
    settings = SessionSettings(
        payee_key=str(key or ""), escrow=_address(raw, "session_escrow", problems),
        suggested_deposit=_int(raw, "session_suggested_deposit", 1_000_000, problems),
        min_deposit=max(1, _int(raw, "session_min_deposit", 1, problems)),
        settle_every_amount=_int(raw, "session_settle_amount", 0, problems),
        settle_every_seconds=float(_int(raw, "session_settle_seconds", 0, problems)),
        voucher_wait=float(_int(raw, "session_voucher_wait", 60, problems)),
        fee_token=_address(raw, "session_fee_token", problems),
        settle_on_shutdown=_flag(raw, "session_settle_on_shutdown", problems),
        close_watch_seconds=float(_int(raw, "session_close_watch_seconds", 15, problems)))
    if settings.close_watch_seconds > MAX_CLOSE_WATCH_S:
        problems.append(f"session_close_watch_seconds: at most {MAX_CLOSE_WATCH_S} (a payer's forced close "
                        "must be seen well within the escrow's 15-minute grace period; 0 turns it off)")
    return settings if len(problems) == start else None
