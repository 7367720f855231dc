"""The MPP wire format ("Payment" HTTP authentication scheme), pure: no I/O, no clock.

Everything here turns header text into validated values and back.  Time, secrets and
bodies are arguments, so each conformance vector is a deterministic call.  A ``parse_*``
function returns a value or raises a :class:`~mpp_claude.errors.ProtocolError` subclass;
anything else escaping it is a bug.

* :mod:`.challenge` ``WWW-Authenticate: Payment`` and the HMAC challenge id
* :mod:`.credential` ``Authorization: Payment <base64url>``
* :mod:`.receipt` ``Payment-Receipt``
* :mod:`.problem` RFC 9457 problem details (paymentauth types)
* :mod:`.accept` ``Accept-Payment`` preferences
* :mod:`.digest` RFC 9530 body digests
* :mod:`.verify` server-side checks of a credential's challenge echo
* :mod:`.encoding` base64url and canonical JSON (JCS)
"""

from __future__ import annotations

from mpp_claude.protocol.accept import (
    AcceptRange,
    format_accept_payment,
    parse_accept_payment,
    select_challenges,
)
from mpp_claude.protocol.challenge import (
    DEFAULT_CREDENTIAL_HEADER,
    MIN_SECRET_BYTES,
    SCHEME,
    Challenge,
    challenge_id,
    format_challenge,
    is_expired,
    new_challenge,
    parse_challenge,
    parse_challenges,
    verify_challenge_id,
)
from mpp_claude.protocol.credential import (
    MAX_CREDENTIAL_LENGTH,
    Credential,
    format_credential,
    parse_credential,
)
from mpp_claude.protocol.digest import content_digest, digest_matches
from mpp_claude.protocol.encoding import (
    b64url_decode,
    b64url_decode_text,
    b64url_encode,
    b64url_encode_text,
    canonical_json,
    decode_b64_json,
    decode_json,
    encode_b64_json,
    loads_bounded,
)
from mpp_claude.protocol.problem import (
    PROBLEM_BASE,
    PROBLEM_CONTENT_TYPE,
    PROBLEM_TYPES,
    Problem,
    problem_type,
)
from mpp_claude.protocol.receipt import Receipt, format_receipt, parse_receipt
from mpp_claude.protocol.verify import verify_echo

__all__ = [
    "DEFAULT_CREDENTIAL_HEADER",
    "MAX_CREDENTIAL_LENGTH",
    "MIN_SECRET_BYTES",
    "PROBLEM_BASE",
    "PROBLEM_CONTENT_TYPE",
    "PROBLEM_TYPES",
    "SCHEME",
    "AcceptRange",
    "Challenge",
    "Credential",
    "Problem",
    "Receipt",
    "b64url_decode",
    "b64url_decode_text",
    "b64url_encode",
    "b64url_encode_text",
    "canonical_json",
    "challenge_id",
    "content_digest",
    "decode_b64_json",
    "decode_json",
    "digest_matches",
    "encode_b64_json",
    "format_accept_payment",
    "format_challenge",
    "format_credential",
    "format_receipt",
    "is_expired",
    "loads_bounded",
    "new_challenge",
    "parse_accept_payment",
    "parse_challenge",
    "parse_challenges",
    "parse_credential",
    "parse_receipt",
    "problem_type",
    "select_challenges",
    "verify_challenge_id",
    "verify_echo",
]
