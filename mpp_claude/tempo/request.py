"""The Tempo ``charge`` request (draft-tempo-charge-00 §Request), typed and validated, pure.

A challenge's ``request`` decodes to JSON such as::

    {"amount": "1000000", "currency": "0x20c0…", "recipient": "0x742d…",
     "methodDetails": {"chainId": 4217, "feePayer": true, "memo": "0x…",
                       "splits": [{"amount": "100", "recipient": "0x…", "memo": "0x…"}],
                       "supportedModes": ["pull", "push"]}}

``ChargeRequest.from_request`` turns that into integers of base units and
lower-case addresses, or raises ``MalformedChallenge`` naming the field.
Unknown fields are ignored (MPP versioning rule, mpp-protocol.md §1.13).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..errors import MalformedChallenge

DEFAULT_CHAIN_ID = 42431  # the charge draft's default (Moderato testnet)
MAX_SPLITS = 10
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_BYTES32 = re.compile(r"^0x[0-9a-fA-F]{64}$")
_AMOUNT = re.compile(r"^(0|[1-9][0-9]{0,76})$")


@dataclass(frozen=True, slots=True)
class Split:
    """An extra recipient of a charge: ``amount`` base units to ``recipient`` (optional memo)."""

    recipient: str
    amount: int
    memo: bytes | None = None


class Transfer(NamedTuple):
    """One TIP-20 transfer a charge requires: to, amount and the exact memo (``None`` = plain)."""

    to: str
    amount: int
    memo: bytes | None


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    """A validated Tempo charge request.  Amounts are base units; addresses lower-case ``0x`` hex."""

    amount: int
    currency: str
    recipient: str
    chain_id: int = DEFAULT_CHAIN_ID
    fee_payer: bool = False
    memo: bytes | None = None
    splits: tuple[Split, ...] = ()
    supported_modes: frozenset[str] = frozenset({"pull", "push"})

    @property
    def primary_amount(self) -> int:
        """What the primary recipient receives: ``amount`` minus the splits."""
        return self.amount - sum(s.amount for s in self.splits)

    def allows(self, mode: str) -> bool:
        """Whether a credential mode (``"pull"`` = transaction, ``"push"`` = hash) is accepted."""
        if mode == "push" and self.fee_payer:
            return False  # a sponsored charge can only be pulled (the server pays the fee)
        return mode in self.supported_modes

    def transfers(self, primary_memo: bytes | None) -> list[Transfer]:
        """The transfers that pay this charge, primary first.

        Args:
            primary_memo: the memo of the primary transfer: ``self.memo`` when the server
                fixed one, otherwise the challenge's attribution memo (``memo.attribution_memo``).
        """
        out = [Transfer(self.recipient, self.primary_amount, primary_memo)]
        out.extend(Transfer(s.recipient, s.amount, s.memo) for s in self.splits)
        return out

    @classmethod
    def from_request(cls, request: Mapping[str, Any]) -> ChargeRequest:
        """Validate a decoded charge ``request``.

        Raises:
            MalformedChallenge: a missing or malformed field (named in the message).
        """
        if not isinstance(request, Mapping):
            raise MalformedChallenge("charge request must be a JSON object")
        details = request.get("methodDetails")
        if details is None:
            details = {}
        if not isinstance(details, Mapping):
            raise MalformedChallenge("methodDetails must be a JSON object")
        chain_id = details.get("chainId", DEFAULT_CHAIN_ID)
        if isinstance(chain_id, bool) or not isinstance(chain_id, int) or not 0 < chain_id < 2**64:
            raise MalformedChallenge(f"methodDetails.chainId must be a positive integer, got {chain_id!r}")
        fee_payer = details.get("feePayer", False)
        if not isinstance(fee_payer, bool):
            raise MalformedChallenge(f"methodDetails.feePayer must be a boolean, got {fee_payer!r}")
        memo = _opt_bytes32(details.get("memo"), "methodDetails.memo")
        splits = _splits(details.get("splits"))
        modes = _modes(details.get("supportedModes"))
        req = cls(amount=_amount(request.get("amount"), "amount"),
                  currency=_address(request.get("currency"), "currency"),
                  recipient=_address(request.get("recipient"), "recipient"),
                  chain_id=chain_id, fee_payer=fee_payer, memo=memo, splits=splits, supported_modes=modes)
        if splits and req.primary_amount <= 0:
            raise MalformedChallenge("methodDetails.splits add up to the whole amount or more")
        return req


def _amount(value: Any, name: str) -> int:
    if not isinstance(value, str) or not _AMOUNT.match(value):
        raise MalformedChallenge(f"{name} must be a string of base units (digits), got {value!r}")
    return int(value)


def _address(value: Any, name: str) -> str:
    if not isinstance(value, str) or not _ADDRESS.match(value):
        raise MalformedChallenge(f"{name} must be a 0x-prefixed 20-byte hex address, got {value!r}")
    return value.lower()


def _opt_bytes32(value: Any, name: str) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _BYTES32.match(value):
        raise MalformedChallenge(f"{name} must be 0x-prefixed 32-byte hex, got {value!r}")
    return bytes.fromhex(value[2:])


def _splits(value: Any) -> tuple[Split, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_SPLITS:
        raise MalformedChallenge(f"methodDetails.splits must be a list of 1..{MAX_SPLITS} entries")
    out = []
    for i, entry in enumerate(value):
        name = f"methodDetails.splits[{i}]"
        if not isinstance(entry, Mapping):
            raise MalformedChallenge(f"{name} must be a JSON object")
        amount = _amount(entry.get("amount"), f"{name}.amount")
        if amount <= 0:
            raise MalformedChallenge(f"{name}.amount must be positive")
        out.append(Split(_address(entry.get("recipient"), f"{name}.recipient"), amount,
                         _opt_bytes32(entry.get("memo"), f"{name}.memo")))
    return tuple(out)


def _modes(value: Any) -> frozenset[str]:
    if value is None:
        return frozenset({"pull", "push"})
    if (not isinstance(value, list) or not value
            or not all(isinstance(m, str) and m in ("pull", "push") for m in value)):
        raise MalformedChallenge("methodDetails.supportedModes must list 'pull' and/or 'push', "
                                 f"got {value!r}")
    return frozenset(value)
