"""RFC 9457 problem details with the paymentauth problem types (digest §1.9).

A 402 SHOULD carry ``application/problem+json``; the error detail goes in the body, never
in ``WWW-Authenticate``.  Types are ``https://paymentauth.org/problems/<suffix>``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mpp_claude.errors import PROBLEM_BASE, EncodingError, FormatError, ParseError, VerificationError
from mpp_claude.protocol.encoding import canonical_json, decode_json

__all__ = ["PROBLEM_BASE", "PROBLEM_CONTENT_TYPE", "PROBLEM_TYPES", "Problem", "problem_type"]

PROBLEM_CONTENT_TYPE = "application/problem+json"

#: suffix -> (HTTP status, title) for every problem type the drafts define.
PROBLEM_TYPES: Mapping[str, tuple[int, str]] = {
    "payment-required": (402, "Payment Required"),
    "payment-insufficient": (402, "Payment Insufficient"),
    "payment-expired": (402, "Payment Expired"),
    "verification-failed": (402, "Payment Verification Failed"),
    "malformed-credential": (402, "Malformed Credential"),
    "invalid-challenge": (402, "Invalid Challenge"),
    "method-unsupported": (400, "Method Unsupported"),
    "session/invalid-signature": (402, "Invalid Signature"),
    "session/signer-mismatch": (402, "Signer Mismatch"),
    "session/amount-exceeds-deposit": (402, "Amount Exceeds Deposit"),
    "session/delta-too-small": (402, "Delta Too Small"),
    "session/challenge-not-found": (402, "Challenge Not Found"),
    "session/insufficient-balance": (402, "Insufficient Balance"),
    "session/channel-not-found": (410, "Channel Not Found"),
    "session/channel-finalized": (410, "Channel Finalized"),
}

_MEMBERS = ("type", "title", "status", "detail", "instance")


def problem_type(suffix: str) -> str:
    """The full type URI of a paymentauth problem (``invalid-challenge`` → ``https://…/invalid-challenge``).

    Raises:
        ValueError: ``suffix`` is not a defined paymentauth problem.
    """
    if suffix not in PROBLEM_TYPES:
        raise ValueError(f"unknown paymentauth problem type {suffix!r}")
    return PROBLEM_BASE + suffix


def _private(extensions: Mapping[str, Any]) -> dict[str, Any]:
    """A copy nobody else can change: one shallow copy when every value is a string, number,
    bool or None (the usual ``challengeId``), a deep copy otherwise."""
    out = dict(extensions)
    if all(type(v) in _SCALARS or v is None for v in out.values()):
        return out
    return copy.deepcopy(out)


_SCALARS = (str, int, float, bool)


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """An RFC 9457 problem details object.

    Attributes:
        type: type URI (``about:blank`` when absent on the wire, RFC 9457 §3.1.1).
        title: short summary of the type.
        status: the HTTP status code, or ``None``.
        detail: explanation of this occurrence (never secrets or credentials).
        instance: URI of this occurrence, or ``None``.
        extensions: other members (``challengeId``, ``channelId``, ``requiredTopUp`` …).
    """

    type: str = "about:blank"
    title: str | None = None
    status: int | None = None
    detail: str | None = None
    instance: str | None = None
    extensions: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for name in ("type", "title", "detail", "instance"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"problem {name!r} must be a string, got {type(value).__name__}")
        if self.status is not None and (not isinstance(self.status, int) or isinstance(self.status, bool)
                                        or not 100 <= self.status <= 599):
            raise ValueError(f"problem 'status' must be an HTTP status code, got {self.status!r}")
        clash = sorted(set(self.extensions) & set(_MEMBERS))
        if clash:
            raise ValueError(f"problem extensions repeat standard member(s) {', '.join(clash)}")
        object.__setattr__(self, "extensions", _private(self.extensions))

    @classmethod
    def of(cls, suffix: str, detail: str | None = None, **extensions: Any) -> Problem:
        """A paymentauth problem with its standard status and title.

        Raises:
            ValueError: ``suffix`` is not a defined paymentauth problem.
        """
        type_uri = problem_type(suffix)
        status, title = PROBLEM_TYPES[suffix]
        return cls(type=type_uri, title=title, status=status, detail=detail, extensions=extensions)

    @classmethod
    def from_error(cls, error: VerificationError) -> Problem:
        """The problem a server sends for a :class:`~mpp_claude.errors.VerificationError`."""
        return cls(type=error.problem_type, title=error.title, status=error.status, detail=error.detail,
                   extensions=dict(error.extra))

    @property
    def suffix(self) -> str | None:
        """The paymentauth suffix (``invalid-challenge``) or ``None`` for another type."""
        return self.type[len(PROBLEM_BASE):] if self.type.startswith(PROBLEM_BASE) else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (absent members omitted)."""
        out: dict[str, Any] = _private(self.extensions)
        for name in _MEMBERS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def to_json(self) -> bytes:
        """The ``application/problem+json`` body (canonical JSON bytes).

        Raises:
            FormatError: an extension value JSON cannot carry.
        """
        try:
            return canonical_json(self.to_dict())
        except EncodingError as exc:
            raise FormatError(f"problem cannot be encoded: {exc}") from exc

    @classmethod
    def from_dict(cls, data: Any) -> Problem:
        """Read a problem object leniently: members of the wrong type are dropped (RFC 9457 §3.1).

        Raises:
            ParseError: ``data`` is not a JSON object.
        """
        if not isinstance(data, Mapping):
            raise ParseError(f"problem details must be a JSON object, got {type(data).__name__}")
        kwargs: dict[str, Any] = {}
        for name in ("type", "title", "detail", "instance"):
            if isinstance(data.get(name), str):
                kwargs[name] = data[name]
        status = data.get("status")
        if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
            kwargs["status"] = status
        extensions = {k: v for k, v in data.items() if k not in _MEMBERS}
        return cls(extensions=extensions, **kwargs)

    @classmethod
    def from_json(cls, body: bytes | str) -> Problem:
        """Parse an ``application/problem+json`` body.

        Raises:
            ParseError: invalid JSON or not an object.
        """
        try:
            data = decode_json(body)
        except EncodingError as exc:
            raise ParseError(f"problem details: {exc}") from exc
        return cls.from_dict(data)
