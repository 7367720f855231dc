"""The ``WWW-Authenticate: Payment`` challenge (draft-httpauth-payment §5.1; digest §1.2-1.5).

A :class:`Challenge` is validated when it is built, so code holding one can trust it: the
five required parameters are present, ``method`` and ``intent`` follow the grammar,
``request`` is base64url of a JSON object (kept exactly as received, because the
credential must echo it byte for byte and the HMAC id covers those bytes) and ``expires``
is an RFC 3339 date-time.

The challenge id binding (§1.4) is the stateless HMAC every SDK uses::

    slots = [realm, method, intent, request_b64url, expires or "", digest or ""]
    if header and header.lower() != "authorization": slots.append(header)
    slots.append(opaque or "")
    id = base64url(HMAC-SHA256(secret, "|".join(slots)))

``description`` is not bound (it is display text).  Time and secrets are arguments.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from mpp_claude.errors import EncodingError, FormatError, MalformedChallenge, WeakSecretError
from mpp_claude.protocol import _authparams
from mpp_claude.protocol._rfc3339 import format_rfc3339, parse_kept
from mpp_claude.protocol.encoding import b64url_encode, canonical_json, decode_b64_json, encode_b64_json

__all__ = [
    "DEFAULT_CREDENTIAL_HEADER",
    "MIN_SECRET_BYTES",
    "SCHEME",
    "Challenge",
    "challenge_id",
    "format_challenge",
    "is_expired",
    "new_challenge",
    "parse_challenge",
    "parse_challenges",
    "verify_challenge_id",
]

SCHEME = "Payment"
DEFAULT_CREDENTIAL_HEADER = "Authorization"
MIN_SECRET_BYTES = 32

_METHOD = re.compile(r"[a-z]+")  # 1*LOWERALPHA
_INTENT = re.compile(r"[A-Za-z0-9-]+")  # 1*( ALPHA / DIGIT / "-" )
_REQUIRED = ("id", "realm", "method", "intent", "request")
_OPTIONAL = ("expires", "digest", "description", "opaque", "header")
_KNOWN = frozenset(_REQUIRED + _OPTIONAL)
_FIELDS = _REQUIRED + _OPTIONAL


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge:
    """One ``Payment`` challenge, as on the wire.

    Attributes:
        id: the challenge id (non-empty; an HMAC over the other fields for our server).
        realm: the protection space (non-empty).
        method: payment method, ``1*LOWERALPHA`` (``tempo``); not checked against a registry.
        intent: ``1*(ALPHA / DIGIT / "-")`` (``charge``, ``session`` ...).
        request: base64url (no padding) of the JSON request object, exactly as received;
            :attr:`request_data` is the decoded object.
        expires: RFC 3339 expiry or ``None``; :attr:`expires_at` is the parsed instant.
        digest: RFC 9530 content digest of the request body the payment is bound to.
        description: display text only, never to be relied on, not HMAC-bound.
        opaque: server data to echo unchanged (base64url of a JSON string map by spec).
        header: the request header that must carry the credential when it is not
            ``Authorization`` (an extension seen in the Rust SDK and the vectors).

    Raises:
        MalformedChallenge: on construction, when any field is invalid (the message names it).
    """

    id: str
    realm: str
    method: str
    intent: str
    request: str
    expires: str | None = None
    digest: str | None = None
    description: str | None = None
    opaque: str | None = None
    header: str | None = None
    _request_data: dict[str, Any] = field(init=False, repr=False, compare=False)
    _expires_at: datetime | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in _REQUIRED:
            if not isinstance(getattr(self, name), str):
                raise MalformedChallenge(f"challenge {name!r} must be a string, "
                                         f"got {type(getattr(self, name)).__name__}")
        for name in _OPTIONAL:
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise MalformedChallenge(f"challenge {name!r} must be a string or absent, "
                                         f"got {type(value).__name__}")
        if not self.id:
            raise MalformedChallenge("challenge 'id' is empty")
        if not self.realm:
            raise MalformedChallenge("challenge 'realm' is empty")
        if _METHOD.fullmatch(self.method) is None:
            raise MalformedChallenge(f"challenge 'method' must be lower-case letters, got {self.method!r}")
        if _INTENT.fullmatch(self.intent) is None:
            raise MalformedChallenge(f"challenge 'intent' must be letters, digits or '-', "
                                     f"got {self.intent!r}")
        data = _decoded_request(self.request)
        expires_at = None
        if self.expires is not None:
            try:
                expires_at = parse_kept(self.expires)
            except ValueError as exc:
                raise MalformedChallenge(f"challenge 'expires': {exc}") from exc
        object.__setattr__(self, "_request_data", data)
        object.__setattr__(self, "_expires_at", expires_at)

    @property
    def request_data(self) -> dict[str, Any]:
        """The decoded ``request`` object (a fresh copy on each access)."""
        return copy.deepcopy(self._request_data)

    @property
    def request_view(self) -> Mapping[str, Any]:
        """The decoded ``request`` object without a copy, read-only at the top level.  Nested
        objects are shared with this challenge: read them, never change them (``request_data``
        gives a private copy)."""
        return MappingProxyType(self._request_data)

    @property
    def request_jcs(self) -> bytes:
        """The canonical JSON (JCS) of the decoded ``request`` (computed once per request text).

        Raises:
            EncodingError: the decoded object has a value JCS cannot carry.
        """
        return _canonical_request(self.request)

    @property
    def expires_at(self) -> datetime | None:
        """``expires`` as an aware UTC ``datetime`` (``None`` when absent)."""
        return self._expires_at

    @property
    def credential_header(self) -> str:
        """Name of the request header that must carry the credential."""
        return self.header or DEFAULT_CREDENTIAL_HEADER

    def to_dict(self) -> dict[str, Any]:
        """The conformance canonical form: ``request`` decoded, absent fields omitted."""
        out: dict[str, Any] = {"id": self.id, "realm": self.realm, "method": self.method,
                               "intent": self.intent, "request": self.request_data}
        for name in _OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def to_echo(self) -> dict[str, str]:
        """The credential's ``challenge`` echo: every present field, ``request`` as received."""
        out = {"id": self.id, "realm": self.realm, "method": self.method, "intent": self.intent,
               "request": self.request}
        for name in _OPTIONAL:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Challenge:
        """Build from a canonical dict or an echo (``request`` as an object or a base64url string).

        Unknown keys are ignored (draft §5.1: unknown parameters MUST be ignored).

        Raises:
            MalformedChallenge: not a mapping, a required field missing, or any invalid field.
        """
        if not isinstance(data, Mapping):
            raise MalformedChallenge(f"challenge must be a JSON object, got {type(data).__name__}")
        missing = [name for name in _REQUIRED if name not in data]
        if missing:
            raise MalformedChallenge(f"challenge is missing {', '.join(missing)}")
        request = data["request"]
        if isinstance(request, Mapping):
            try:
                request = encode_b64_json(request)
            except EncodingError as exc:
                raise MalformedChallenge(f"challenge 'request' cannot be encoded: {exc}") from exc
        kwargs = {name: data[name] for name in _OPTIONAL if data.get(name) is not None}
        return cls(id=data["id"], realm=data["realm"], method=data["method"], intent=data["intent"],
                   request=request, **kwargs)


@lru_cache(maxsize=256)  # a client meets the same price again and again: decode each text once
def _decoded_request(text: str) -> dict[str, Any]:
    """The ``request`` object of a challenge, shared by every challenge carrying the same text
    (challenges never change it: ``request_view`` is read-only, ``request_data`` a copy).

    Raises:
        MalformedChallenge: not base64url of a JSON object (not cached).
    """
    try:
        data = decode_b64_json(text)
    except EncodingError as exc:
        raise MalformedChallenge(f"challenge 'request' is not base64url JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise MalformedChallenge(f"challenge 'request' must decode to a JSON object, "
                                 f"got {type(data).__name__}")
    return data


@lru_cache(maxsize=256)
def _canonical_request(text: str) -> bytes:
    """JCS of the object ``text`` carries (``_decoded_request`` already accepted ``text``)."""
    return canonical_json(_decoded_request(text))




def is_expired(challenge: Challenge, now: datetime) -> bool:
    """Whether ``challenge`` has expired at ``now`` (a challenge without ``expires`` never does).

    Args:
        challenge: the challenge.
        now: the current time, an aware ``datetime``.
    Returns:
        ``True`` when ``now >= expires``.
    Raises:
        ValueError: ``now`` is naive.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("is_expired: 'now' must be an aware datetime")
    return challenge.expires_at is not None and now >= challenge.expires_at


# --- header text ---------------------------------------------------------------------------------


def _from_raw(raw: _authparams.RawChallenge) -> Challenge:
    if raw.token68 is not None:
        raise MalformedChallenge("Payment challenge carries a token68 instead of auth-params")
    if not raw.params:
        raise MalformedChallenge("Payment challenge has no parameters")
    values: dict[str, str] = {}
    for param in raw.params:
        if param.name in values:
            raise MalformedChallenge(f"duplicate challenge parameter {param.name!r}")
        if not param.complete:
            if param.name in _KNOWN:
                raise MalformedChallenge(f"challenge parameter {param.name!r}: unterminated quoted-string")
            values[param.name] = ""  # unknown and malformed: ignored, but still counts for duplicates
            continue
        values[param.name] = param.value
    missing = [name for name in _REQUIRED if name not in values]
    if missing:
        raise MalformedChallenge(f"Payment challenge is missing {', '.join(missing)}")
    kwargs = {name: values[name] for name in _OPTIONAL if name in values}
    return Challenge(id=values["id"], realm=values["realm"], method=values["method"],
                     intent=values["intent"], request=values["request"], **kwargs)


def parse_challenges(values: str | Sequence[str]) -> list[Challenge]:
    """Parse every ``Payment`` challenge out of one or more ``WWW-Authenticate`` values.

    Several challenges may share one value (comma-joined) or come as separate header
    lines; challenges of other schemes (``Bearer`` ...) are skipped.  The scheme name is
    case-insensitive and unknown parameters are ignored.

    Args:
        values: one header value, or all values of the ``WWW-Authenticate`` field.
    Returns:
        The ``Payment`` challenges, in order (at least one).
    Raises:
        MalformedChallenge: a value is not valid ``WWW-Authenticate`` syntax, any
            ``Payment`` challenge is invalid (missing/duplicate/empty parameter, bad
            ``request``), or there is no ``Payment`` challenge at all.
    """
    if isinstance(values, str):
        values = [values]
    found: list[Challenge] = []
    for value in values:
        if not isinstance(value, str):
            raise MalformedChallenge(f"header value must be text, got {type(value).__name__}")
        try:
            raws = _authparams.scan_challenges(value)
        except _authparams.AuthParamError as exc:
            raise MalformedChallenge(f"WWW-Authenticate: {exc}") from exc
        found.extend(_from_raw(raw) for raw in raws if raw.scheme.lower() == "payment")
    if not found:
        raise MalformedChallenge("no Payment challenge in WWW-Authenticate")
    return found


def parse_challenge(value: str | Sequence[str]) -> Challenge:
    """Parse exactly one ``Payment`` challenge.

    Raises:
        MalformedChallenge: as :func:`parse_challenges`, or more than one ``Payment`` challenge.
    """
    found = parse_challenges(value)
    if len(found) != 1:
        raise MalformedChallenge(f"expected one Payment challenge, found {len(found)}")
    return found[0]


def format_challenge(challenge: Challenge) -> str:
    """Write ``challenge`` as a ``WWW-Authenticate`` value: ``Payment id="…", realm="…", …``.

    Every value is a quoted-string (``"`` and ``\\`` escaped).

    Raises:
        FormatError: a value holds CR, LF or another control character (header injection).
    """
    fields = [(name, value) for name in _FIELDS if (value := getattr(challenge, name)) is not None]
    if _authparams.is_verbatim("".join([value for _, value in fields])):  # nothing to escape anywhere
        return f"{SCHEME} " + ", ".join([f'{name}="{value}"' for name, value in fields])
    parts = []
    for name, value in fields:
        try:
            parts.append(f"{name}={_authparams.quote(value)}")
        except ValueError as exc:
            raise FormatError(f"challenge {name!r}: {exc}") from exc
    return f"{SCHEME} " + ", ".join(parts)


# --- id binding (HMAC) ----------------------------------------------------------------------------


def _secret_bytes(secret: str | bytes, minimum: int) -> bytes:
    if isinstance(secret, str):
        key = secret.encode("utf-8")
    elif isinstance(secret, (bytes, bytearray)):
        key = bytes(secret)
    else:
        raise TypeError(f"secret must be str or bytes, got {type(secret).__name__}")
    if len(key) < minimum:
        raise WeakSecretError(f"challenge secret is {len(key)} bytes; at least {minimum} are required")
    return key


def _compute_id(key: bytes, *, realm: str, method: str, intent: str, request: str | Mapping[str, Any],
                expires: str | None, digest: str | None, opaque: str | None, header: str | None) -> str:
    request_b64 = request if isinstance(request, str) else encode_b64_json(request)
    slots = [realm, method, intent, request_b64, expires or "", digest or ""]
    if header and header.lower() != DEFAULT_CREDENTIAL_HEADER.lower():
        slots.append(header)
    slots.append(opaque or "")
    mac = _keyed(key).copy()
    mac.update("|".join(slots).encode("utf-8"))
    return b64url_encode(mac.digest())


@lru_cache(maxsize=8)
def _keyed(key: bytes) -> hmac.HMAC:
    """HMAC-SHA256 keyed with ``key``, fed nothing yet: each id copies it (OpenSSL 3 sets up a MAC
    afresh for every one-shot ``hmac.digest``/``hmac.new``; a copy skips that)."""
    return hmac.new(key, digestmod=hashlib.sha256)


def challenge_id(secret: str | bytes, *, realm: str, method: str, intent: str,
                 request: str | Mapping[str, Any], expires: str | None = None, digest: str | None = None,
                 opaque: str | None = None, header: str | None = None) -> str:
    """Compute the HMAC-SHA256 challenge id (mpp-protocol §1.4).

    Args:
        secret: the server's secret (``str`` is UTF-8 encoded); at least 32 bytes.  Never log it.
        realm, method, intent: the challenge's values.
        request: the base64url string that goes on the wire, or the request object
            (then encoded as base64url of its JCS form).
        expires, digest, opaque: the wire strings, ``None`` when absent.
        header: the credential header; ``Authorization`` (any case) is the default and
            is not bound.
    Returns:
        The id: unpadded base64url of the 32-byte MAC.
    Raises:
        WeakSecretError: ``secret`` is shorter than 32 bytes.
        EncodingError: ``request`` is an object JSON cannot carry.
        TypeError: ``secret`` is neither ``str`` nor ``bytes``.
    """
    return _compute_id(_secret_bytes(secret, MIN_SECRET_BYTES), realm=realm, method=method, intent=intent,
                       request=request, expires=expires, digest=digest, opaque=opaque, header=header)


def verify_challenge_id(secret: str | bytes, challenge: Challenge) -> bool:
    """Whether ``challenge.id`` is our HMAC over its other fields (constant-time compare).

    Raises:
        WeakSecretError: ``secret`` is shorter than 32 bytes.
    """
    return _id_matches(_secret_bytes(secret, MIN_SECRET_BYTES), challenge)


def _id_matches(key: bytes, challenge: Challenge) -> bool:
    expected = _compute_id(key, realm=challenge.realm, method=challenge.method, intent=challenge.intent,
                           request=challenge.request, expires=challenge.expires, digest=challenge.digest,
                           opaque=challenge.opaque, header=challenge.header)
    return hmac.compare_digest(expected.encode("ascii"), challenge.id.encode("utf-8"))


def new_challenge(secret: str | bytes, *, realm: str, method: str, intent: str,
                  request: Mapping[str, Any] | str, expires: datetime | str | None = None,
                  digest: str | None = None, description: str | None = None,
                  opaque: Mapping[str, str] | str | None = None, header: str | None = None) -> Challenge:
    """Build a challenge whose id is the HMAC binding of its fields.

    Args:
        secret: server secret, at least 32 bytes.
        realm, method, intent: the challenge's values.
        request: the request object (sent as base64url of its JCS form), or that base64url
            string already computed (``encode_b64_json(request)``), sent as is.
        expires: an aware ``datetime`` (formatted ``…Z``) or an RFC 3339 string.
        digest: RFC 9530 digest of the body the payment is for (see :mod:`.digest`).
        description: display text (not bound).
        opaque: a string map (sent as base64url JCS) or an already-encoded string.
        header: non-default credential header name.
    Returns:
        The validated :class:`Challenge`.
    Raises:
        WeakSecretError: short secret.
        MalformedChallenge: a field is invalid (e.g. ``method`` not lower-case letters).
        EncodingError: ``request``/``opaque`` cannot be encoded as JSON.
        ValueError: ``expires`` is a naive ``datetime``.
    """
    key = _secret_bytes(secret, MIN_SECRET_BYTES)
    request_b64 = request if isinstance(request, str) else encode_b64_json(request)
    expires_s = format_rfc3339(expires) if isinstance(expires, datetime) else expires
    opaque_s = opaque if opaque is None or isinstance(opaque, str) else encode_b64_json(opaque)
    ch_id = _compute_id(key, realm=realm, method=method, intent=intent, request=request_b64,
                        expires=expires_s, digest=digest, opaque=opaque_s, header=header)
    return Challenge(id=ch_id, realm=realm, method=method, intent=intent, request=request_b64,
                     expires=expires_s, digest=digest, description=description, opaque=opaque_s,
                     header=header)
