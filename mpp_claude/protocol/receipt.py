"""The ``Payment-Receipt`` header (draft-httpauth-payment §5.3; digest §1.8).

The value is unpadded base64url of a JSON object (no scheme prefix)::

    {"status": "success", "method": "tempo", "timestamp": "2026-01-29T12:00:00Z",
     "reference": "0x<tx hash>", "externalId": "…", <method extras>}

Method extras (a session's ``channelId``, ``acceptedCumulative`` …) are kept in
:attr:`Receipt.extra` and written back flat, so unknown fields survive a round trip.
Receipts are only sent on 2xx responses, with ``Cache-Control: private``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mpp_claude.errors import EncodingError, FormatError, MalformedReceipt
from mpp_claude.protocol._rfc3339 import parse_kept, parse_rfc3339
from mpp_claude.protocol.encoding import decode_b64_json, encode_b64_json

__all__ = ["Receipt", "format_receipt", "parse_receipt"]

_FIELDS = ("status", "method", "timestamp", "reference", "externalId")


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    """A payment receipt.

    Attributes:
        status: ``"success"`` for every receipt the spec defines (any non-empty text is kept).
        timestamp: RFC 3339 settlement time.
        reference: what was paid: tx hash, channel id, invoice id … (non-empty).
        method: payment method (``tempo``) or ``None``.
        external_id: the ``externalId`` echoed from the request, or ``None``.
        extra: every other field of the JSON object (method extras), written back flat.

    Raises:
        MalformedReceipt: on construction, if a field has the wrong type, ``status`` or
            ``reference`` is empty, ``timestamp`` is not RFC 3339, or ``extra`` repeats a
            named field.
    """

    status: str
    timestamp: str
    reference: str
    method: str | None = None
    external_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for name in ("status", "timestamp", "reference"):
            if not isinstance(getattr(self, name), str):
                raise MalformedReceipt(f"receipt {name!r} must be a string, "
                                       f"got {type(getattr(self, name)).__name__}")
        for name, wire in (("method", "method"), ("external_id", "externalId")):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise MalformedReceipt(f"receipt {wire!r} must be a string, got {type(value).__name__}")
        if not self.status:
            raise MalformedReceipt("receipt 'status' is empty")
        if not self.reference:
            raise MalformedReceipt("receipt 'reference' is empty")
        try:
            parse_kept(self.timestamp)
        except ValueError as exc:
            raise MalformedReceipt(f"receipt 'timestamp': {exc}") from exc
        if not isinstance(self.extra, Mapping):
            raise MalformedReceipt(f"receipt 'extra' must be an object, got {type(self.extra).__name__}")
        if not self.extra:  # the usual charge receipt: nothing to check or copy
            object.__setattr__(self, "extra", {})
            return
        clash = sorted(set(self.extra) & set(_FIELDS))
        if clash:
            raise MalformedReceipt(f"receipt 'extra' repeats named field(s) {', '.join(clash)}")
        object.__setattr__(self, "extra", copy.deepcopy(dict(self.extra)))

    @property
    def timestamp_at(self) -> datetime:
        """``timestamp`` as an aware UTC ``datetime``."""
        return parse_rfc3339(self.timestamp)

    def to_wire_dict(self) -> dict[str, Any]:
        """The flat JSON object sent on the wire."""
        out: dict[str, Any] = copy.deepcopy(self.extra) if self.extra else {}
        out.update(status=self.status, timestamp=self.timestamp, reference=self.reference)
        if self.method is not None:
            out["method"] = self.method
        if self.external_id is not None:
            out["externalId"] = self.external_id
        return out

    def to_dict(self) -> dict[str, Any]:
        """The conformance canonical form ``{status, method?, timestamp, reference, externalId?, extra?}``."""
        out: dict[str, Any] = {"status": self.status, "timestamp": self.timestamp,
                               "reference": self.reference}
        if self.method is not None:
            out["method"] = self.method
        if self.external_id is not None:
            out["externalId"] = self.external_id
        if self.extra:
            out["extra"] = copy.deepcopy(self.extra)
        return out

    @classmethod
    def from_wire_dict(cls, data: Any) -> Receipt:
        """Build from the flat wire object (unknown fields go to ``extra``).

        Raises:
            MalformedReceipt: not an object, a required field missing, or an invalid field.
        """
        if not isinstance(data, Mapping):
            raise MalformedReceipt(f"receipt must be a JSON object, got {type(data).__name__}")
        missing = [name for name in ("status", "timestamp", "reference") if name not in data]
        if missing:
            raise MalformedReceipt(f"receipt is missing {', '.join(missing)}")
        extra = {k: v for k, v in data.items() if k not in _FIELDS}
        return cls(status=data["status"], timestamp=data["timestamp"], reference=data["reference"],
                   method=data.get("method"), external_id=data.get("externalId"), extra=extra)

    @classmethod
    def from_dict(cls, data: Any) -> Receipt:
        """Build from the conformance canonical form (extras nested under ``extra``).

        Raises:
            MalformedReceipt: as :meth:`from_wire_dict`, or an unknown top-level key.
        """
        if not isinstance(data, Mapping):
            raise MalformedReceipt(f"receipt must be a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_FIELDS) - {"extra"})
        if unknown:
            raise MalformedReceipt(f"receipt has unknown field(s) {', '.join(unknown)}; put them in 'extra'")
        flat = {k: v for k, v in data.items() if k != "extra"}
        receipt = cls.from_wire_dict(flat)
        extra = data.get("extra", {})
        if not isinstance(extra, Mapping):
            raise MalformedReceipt(f"receipt 'extra' must be an object, got {type(extra).__name__}")
        return cls(status=receipt.status, timestamp=receipt.timestamp, reference=receipt.reference,
                   method=receipt.method, external_id=receipt.external_id, extra=dict(extra))


def parse_receipt(value: str) -> Receipt:
    """Parse a ``Payment-Receipt`` value (base64url JSON, surrounding whitespace tolerated).

    Raises:
        MalformedReceipt: invalid base64url/JSON, not an object, or a missing/invalid field.
    """
    if not isinstance(value, str):
        raise MalformedReceipt(f"Payment-Receipt value must be text, got {type(value).__name__}")
    try:
        data = decode_b64_json(value.strip(" \t"))
    except EncodingError as exc:
        raise MalformedReceipt(f"Payment-Receipt: {exc}") from exc
    return Receipt.from_wire_dict(data)


def format_receipt(receipt: Receipt) -> str:
    """Write ``receipt`` as a ``Payment-Receipt`` value (base64url of its JCS JSON).

    Raises:
        FormatError: ``extra`` holds a value JSON cannot carry.
    """
    try:
        return encode_b64_json(receipt.to_wire_dict())
    except EncodingError as exc:
        raise FormatError(f"receipt cannot be encoded: {exc}") from exc
