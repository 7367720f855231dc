"""Session credential payloads, the SSE ``payment-need-voucher`` data and receipt fields (pure).

Credential ``payload`` objects (draft-tempo-session-00 "Payload Actions"; mpp-protocol.md
§4.6), discriminated by ``action``::

    open     type "transaction", channelId, transaction, cumulativeAmount, signature,
             authorizedSigner?
    topUp    type "transaction", channelId, transaction, additionalDeposit
    voucher  channelId, cumulativeAmount, signature
    close    channelId, cumulativeAmount, signature

Unknown actions are refused; unknown fields are ignored.  Every field is checked for
format (hex lengths, decimal strings, signature length) *before* any ECDSA work, as the
draft's DoS section asks.  Malformed input raises ``MalformedCredentialProblem``.

``parse_*`` reads what a peer sent; ``*_payload`` builds what we send.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import MalformedCredentialProblem, ParseError
from ._abi import normalize_address, normalize_channel_id
from .accounting import ChannelAccount
from .voucher import Voucher

MAX_AMOUNT = 2**128 - 1
MAX_TRANSACTION_BYTES = 16 * 1024  # an approve+open envelope is ~400 bytes; refuse anything huge
_DECIMAL = re.compile(r"^(0|[1-9][0-9]{0,38})$")


@dataclass(frozen=True, slots=True)
class OpenPayload:
    """``action: "open"``: the signed open transaction plus the initial voucher."""

    channel_id: str
    transaction: bytes
    voucher: Voucher
    authorized_signer: str | None = None


@dataclass(frozen=True, slots=True)
class TopUpPayload:
    """``action: "topUp"``: the signed top-up transaction and the amount it adds."""

    channel_id: str
    transaction: bytes
    additional_deposit: int


@dataclass(frozen=True, slots=True)
class VoucherPayload:
    """``action: "voucher"``: a new cumulative voucher."""

    voucher: Voucher


@dataclass(frozen=True, slots=True)
class ClosePayload:
    """``action: "close"``: the payer's final voucher; the server closes on chain."""

    voucher: Voucher


SessionPayload = OpenPayload | TopUpPayload | VoucherPayload | ClosePayload


def _field(payload: Mapping[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str):
        got = "missing" if value is None else type(value).__name__
        raise MalformedCredentialProblem(f"session payload field {name!r} must be a string ({got})")
    return value


def _amount(payload: Mapping[str, Any], name: str) -> int:
    text = _field(payload, name)
    if not _DECIMAL.match(text) or int(text) > MAX_AMOUNT:
        raise MalformedCredentialProblem(f"session payload {name!r} must be a decimal string of base "
                                         f"units <= 2^128-1, got {text[:50]!r}")
    return int(text)


def _hex(payload: Mapping[str, Any], name: str, *, lengths: tuple[int, ...] | None = None,
         max_len: int | None = None) -> bytes:
    text = _field(payload, name)
    if text[:2] not in ("0x", "0X"):
        raise MalformedCredentialProblem(f"session payload {name!r} must be 0x-prefixed hex")
    try:
        raw = bytes.fromhex(text[2:])
    except ValueError:
        raise MalformedCredentialProblem(f"session payload {name!r} is not valid hex") from None
    if lengths is not None and len(raw) not in lengths:
        raise MalformedCredentialProblem(f"session payload {name!r} must be {' or '.join(map(str, lengths))} "
                                         f"bytes, got {len(raw)}")
    if max_len is not None and not 0 < len(raw) <= max_len:
        raise MalformedCredentialProblem(f"session payload {name!r} must be 1..{max_len} bytes, "
                                         f"got {len(raw)}")
    return raw


def _channel_id(payload: Mapping[str, Any]) -> str:
    return "0x" + _hex(payload, "channelId", lengths=(32,)).hex()


def _voucher(payload: Mapping[str, Any]) -> Voucher:
    return Voucher(_channel_id(payload), _amount(payload, "cumulativeAmount"),
                   _hex(payload, "signature", lengths=(65, 64)))


def _transaction(payload: Mapping[str, Any]) -> bytes:
    if payload.get("type") != "transaction":
        raise MalformedCredentialProblem("session payload 'type' must be \"transaction\"")
    return _hex(payload, "transaction", max_len=MAX_TRANSACTION_BYTES)


def parse_session_payload(payload: Any) -> SessionPayload:
    """Validate a session credential's ``payload`` object.

    Returns:
        The typed payload for its ``action``.
    Raises:
        MalformedCredentialProblem: not an object, unknown ``action``, a missing or
            malformed field.
    """
    if not isinstance(payload, Mapping):
        raise MalformedCredentialProblem("session payload must be a JSON object")
    action = payload.get("action")
    if action == "voucher":
        return VoucherPayload(_voucher(payload))
    if action == "close":
        return ClosePayload(_voucher(payload))
    if action == "open":
        signer = payload.get("authorizedSigner")
        if signer is not None:
            try:
                signer = normalize_address(signer) if isinstance(signer, str) else None
            except ValueError:
                signer = None
            if signer is None:
                raise MalformedCredentialProblem("session payload 'authorizedSigner' must be a hex address")
        return OpenPayload(_channel_id(payload), _transaction(payload), _voucher(payload), signer)
    if action == "topUp":
        amount = _amount(payload, "additionalDeposit")
        return TopUpPayload(_channel_id(payload), _transaction(payload), amount)
    raise MalformedCredentialProblem(f"unknown session payload action {str(action)[:30]!r}")


# --- building (client side) ----------------------------------------------------------------------


def open_payload(raw_transaction: bytes, voucher: Voucher, *, authorized_signer: str | None = None
                 ) -> dict[str, str]:
    """The ``open`` payload: signed ``0x76`` envelope + initial voucher (usually for 0)."""
    out = {"action": "open", "type": "transaction", "transaction": "0x" + raw_transaction.hex(),
           **voucher.to_payload()}
    if authorized_signer is not None:
        out["authorizedSigner"] = normalize_address(authorized_signer)
    return out


def top_up_payload(channel_id: str | bytes, raw_transaction: bytes, additional_deposit: int
                   ) -> dict[str, str]:
    """The ``topUp`` payload."""
    return {"action": "topUp", "type": "transaction", "channelId": normalize_channel_id(channel_id),
            "transaction": "0x" + raw_transaction.hex(), "additionalDeposit": str(additional_deposit)}


def voucher_payload(voucher: Voucher) -> dict[str, str]:
    """The ``voucher`` payload."""
    return {"action": "voucher", **voucher.to_payload()}


def close_payload(voucher: Voucher) -> dict[str, str]:
    """The ``close`` payload (the voucher should cover everything spent)."""
    return {"action": "close", **voucher.to_payload()}


# --- server output ---------------------------------------------------------------------------------


def need_voucher_event(account: ChannelAccount, *, required_cumulative: int, deposit: int) -> dict[str, str]:
    """``data`` of the SSE ``event: payment-need-voucher`` (draft "Insufficient Balance During
    Streaming"): when ``requiredCumulative`` exceeds ``deposit`` the client must top up first."""
    return {"channelId": account.channel_id, "requiredCumulative": str(required_cumulative),
            "acceptedCumulative": str(account.accepted_cumulative), "deposit": str(deposit)}


def session_receipt_fields(account: ChannelAccount, *, challenge_id: str, units: int | None = None,
                           tx_hash: str | None = None) -> dict[str, Any]:
    """The session receipt's fields besides ``status``/``timestamp`` (draft "Receipt Generation"):
    ``method``, ``intent``, ``reference`` (= channelId), ``challengeId``, ``channelId``,
    ``acceptedCumulative``, ``spent``, optional ``units`` (this request) and ``txHash``."""
    out: dict[str, Any] = {"method": "tempo", "intent": "session", "reference": account.channel_id,
                           "challengeId": challenge_id, "channelId": account.channel_id,
                           "acceptedCumulative": str(account.accepted_cumulative),
                           "spent": str(account.spent)}
    if units is not None:
        out["units"] = units
    if tx_hash is not None:
        out["txHash"] = tx_hash
    return out


# --- client input ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NeedVoucher:
    """A server's ``payment-need-voucher`` event (amounts in base units)."""

    channel_id: str
    required_cumulative: int
    accepted_cumulative: int
    deposit: int


def parse_need_voucher_event(data: str | bytes | Mapping[str, Any]) -> NeedVoucher:
    """Parse the ``data`` of an SSE ``event: payment-need-voucher`` (JSON text or object).

    Raises:
        ParseError: not a JSON object, or a field missing or malformed.
    """
    obj: Any = data
    if isinstance(data, (str, bytes)):
        try:
            obj = json.loads(data)
        except ValueError:
            raise ParseError("payment-need-voucher data is not JSON") from None
    if not isinstance(obj, Mapping):
        raise ParseError("payment-need-voucher data must be a JSON object")
    try:
        return NeedVoucher(_channel_id(obj), _amount(obj, "requiredCumulative"),
                           _amount(obj, "acceptedCumulative"), _amount(obj, "deposit"))
    except MalformedCredentialProblem as exc:
        raise ParseError(f"payment-need-voucher: {exc.detail.removeprefix('session payload ')}") from None
