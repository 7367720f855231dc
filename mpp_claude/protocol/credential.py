"""The ``Authorization: Payment <token>`` credential (draft-httpauth-payment §5.2; digest §1.7).

``token`` is unpadded base64url of a JSON object::

    {"challenge": {<echo of every challenge field, request as the base64url string>},
     "payload": {<method-specific proof>},
     "source": "did:pkh:eip155:<chainId>:<address>"}        # optional

The echo is a :class:`~mpp_claude.protocol.challenge.Challenge`, so the server can
recompute the HMAC id from exactly the bytes it issued.  Credentials are bearer secrets:
never log one.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mpp_claude.errors import EncodingError, FormatError, MalformedChallenge, MalformedCredential
from mpp_claude.protocol.challenge import SCHEME, Challenge
from mpp_claude.protocol.encoding import b64url_encode, decode_b64_json, encode_b64_json, is_b64url

__all__ = ["MAX_CREDENTIAL_LENGTH", "Credential", "format_credential", "parse_credential"]

#: Longest ``Authorization`` value parsed (servers MUST accept at least 4 KB; pympp also
#: stops at 64 KiB).  Bounds the JSON work an unauthenticated request can cause.
MAX_CREDENTIAL_LENGTH = 64 * 1024

# "Payment" 1*SP token; surrounding OWS tolerated.  One character class per piece: linear.
# ``_split_authorization`` matches it with the regular expression for the short head only.
_AUTHORIZATION = re.compile(r"[ \t]*([!#$%&'*+\-.^_`|~0-9A-Za-z]+) +([A-Za-z0-9_-]+)[ \t]*")
_HEAD = re.compile(r"[ \t]*([!#$%&'*+\-.^_`|~0-9A-Za-z]+) +")


@dataclass(frozen=True, slots=True, kw_only=True)
class Credential:
    """A payment credential.

    Attributes:
        challenge: the echoed challenge (validated like any challenge).
        payload: the method-specific proof object (e.g. ``{"type": "transaction", "signature": "0x…"}``).
        source: payer identifier, RECOMMENDED a DID; ``None`` when absent.  The
            conformance schema also allows an object.

    Raises:
        MalformedCredential: on construction, if ``challenge`` is not a :class:`Challenge`,
            ``payload`` is not a JSON object or ``source`` is neither text, object nor ``None``.
    """

    challenge: Challenge
    payload: dict[str, Any] = field(hash=False)
    source: str | dict[str, Any] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.challenge, Challenge):
            raise MalformedCredential(f"credential 'challenge' must be a Challenge, "
                                      f"got {type(self.challenge).__name__}")
        if not isinstance(self.payload, Mapping):
            raise MalformedCredential(f"credential 'payload' must be a JSON object, "
                                      f"got {type(self.payload).__name__}")
        if self.source is not None and not isinstance(self.source, (str, Mapping)):
            raise MalformedCredential(f"credential 'source' must be a string or object, "
                                      f"got {type(self.source).__name__}")
        # Own private copies, so a caller mutating its dict cannot change a frozen credential
        # (a payload of strings, every Tempo payload, is copied whole by a shallow copy).
        payload = dict(self.payload)
        if not all(type(v) is str for v in payload.values()):
            payload = copy.deepcopy(payload)
        object.__setattr__(self, "payload", payload)
        if isinstance(self.source, Mapping):
            object.__setattr__(self, "source", copy.deepcopy(dict(self.source)))

    def to_wire_dict(self) -> dict[str, Any]:
        """The JSON object that is base64url-encoded on the wire (``request`` as a string)."""
        return _wire(self, copy.deepcopy)

    def to_dict(self) -> dict[str, Any]:
        """The conformance canonical form (challenge ``request`` decoded, ``source`` omitted if absent)."""
        out = self.to_wire_dict()
        out["challenge"] = self.challenge.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Credential:
        """Build from the wire object or the canonical form (``request`` string or object).

        Unknown top-level keys are ignored.

        Raises:
            MalformedCredential: not an object, ``challenge`` or ``payload`` missing or
                invalid, or an invalid echoed challenge (the message says which field).
        """
        if not isinstance(data, Mapping):
            raise MalformedCredential(f"credential must be a JSON object, got {type(data).__name__}")
        if "challenge" not in data:
            raise MalformedCredential("credential is missing 'challenge'")
        if "payload" not in data:
            raise MalformedCredential("credential is missing 'payload'")
        echo = data["challenge"]
        if not isinstance(echo, Mapping):
            raise MalformedCredential(f"credential 'challenge' must be a JSON object, "
                                      f"got {type(echo).__name__}")
        try:
            challenge = Challenge.from_dict(echo)
        except MalformedChallenge as exc:
            raise MalformedCredential(f"credential challenge echo: {exc}") from exc
        return cls(challenge=challenge, payload=data["payload"], source=data.get("source"))


def _split_authorization(value: str) -> tuple[str, str] | None:
    """``(scheme, token)`` when ``_AUTHORIZATION`` fully matches ``value``, else ``None``.

    The same match, found faster: the head (OWS, scheme, spaces) by the expression, the token
    (``value`` minus the head and trailing OWS; the alphabet excludes space and tab, so the
    split is the expression's only one) by ``is_b64url``.
    """
    head = _HEAD.match(value)
    if head is None:
        return None
    token = value[head.end():].rstrip(" \t")
    if not token or not is_b64url(token):
        return None
    return head.group(1), token


def parse_credential(value: str) -> Credential:
    """Parse an ``Authorization`` value ``Payment <base64url JSON>``.

    The echoed ``request`` must be the base64url string (as the wire requires).

    Args:
        value: the header value (scheme name case-insensitive).
    Returns:
        The credential.
    Raises:
        MalformedCredential: another scheme, not one base64url token, undecodable JSON,
            not an object, a missing/invalid ``challenge`` or ``payload``, or longer than
            :data:`MAX_CREDENTIAL_LENGTH`.
    """
    if not isinstance(value, str):
        raise MalformedCredential(f"Authorization value must be text, got {type(value).__name__}")
    if len(value) > MAX_CREDENTIAL_LENGTH:
        raise MalformedCredential(f"Authorization value is {len(value)} characters; "
                                  f"at most {MAX_CREDENTIAL_LENGTH} are accepted")
    parts = _split_authorization(value)
    if parts is None or parts[0].lower() != SCHEME.lower():
        scheme = value.strip().split(" ", 1)[0][:20]
        if scheme.lower() != SCHEME.lower():
            raise MalformedCredential(f"Authorization scheme is not Payment (got {scheme!r})")
        raise MalformedCredential("Authorization: expected 'Payment <base64url>'")
    try:
        data = decode_b64_json(parts[1])
    except EncodingError as exc:
        raise MalformedCredential(f"credential token: {exc}") from exc
    if isinstance(data, Mapping) and isinstance(data.get("challenge"), Mapping) \
            and not isinstance(data["challenge"].get("request"), str) and "request" in data["challenge"]:
        raise MalformedCredential("credential challenge echo: 'request' must be the base64url string")
    return Credential.from_dict(data)


def _same(value: Any) -> Any:
    return value


def _wire(credential: Credential, copier: Callable[[Any], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"challenge": credential.challenge.to_echo(), "payload": copier(credential.payload)}
    if credential.source is not None:
        out["source"] = copier(credential.source)
    return out


def format_credential(credential: Credential) -> str:
    """Write ``credential`` as an ``Authorization`` value: ``Payment <base64url(JCS(json))>``.

    Raises:
        FormatError: the payload or source holds a value JSON cannot carry.
    """
    try:
        token = encode_b64_json(_wire(credential, _same))  # only read while encoding: no copies
    except EncodingError as exc:
        raise FormatError(f"credential cannot be encoded: {exc}") from exc
    return f"{SCHEME} {token}"


def format_payment(challenge: Challenge, payload: Mapping[str, str], source: str | None) -> str:
    """``format_credential(Credential(challenge=challenge, payload=payload, source=source))`` for
    a payload of strings (every Tempo payload), without the copies a ``Credential`` makes: the
    payer's hot path.  Same bytes.

    Raises:
        FormatError: as :func:`format_credential` (a value JSON cannot carry).
    """
    if not (all(type(k) is str and k.isascii() and type(v) is str for k, v in payload.items())
            and (source is None or type(source) is str)):
        return format_credential(Credential(challenge=challenge, payload=dict(payload), source=source))
    wire: dict[str, Any] = {"challenge": challenge.to_echo(), "payload": payload}
    if source is not None:
        wire["source"] = source
    try:  # strings only (a challenge's fields are validated strings): JCS is this one C call
        text = json.dumps(wire, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise FormatError("credential cannot be encoded: a string holds a lone surrogate") from exc
    return f"{SCHEME} {b64url_encode(text)}"
