"""Every exception mpp_claude raises, in one tree.

This module is a leaf: every other module may import it, it imports nothing
from the package.  The tree (a name in parentheses is a builtin we also
subclass, so ``except ValueError`` keeps working for parse errors)::

    MppError
    ├── ProtocolError (ValueError)        the peer sent bytes that are not MPP
    │   ├── ParseError                    parse_error: header/credential text malformed
    │   │   ├── MalformedChallenge
    │   │   ├── MalformedCredential
    │   │   └── MalformedReceipt
    │   ├── FormatError                   format_error: value cannot be written to the wire
    │   ├── EncodingError                 encoding_error: base64url / UTF-8 / JSON
    │   └── WeakSecretError               HMAC secret shorter than 32 bytes
    ├── ClientPaymentError (openai.OpenAIError when openai is importable)
    │   ├── PaymentDeclined               we chose not to pay
    │   │   ├── PolicyDenied
    │   │   │   ├── OriginNotAllowed
    │   │   │   └── ApprovalDenied
    │   │   ├── PaymentQuoted             dry-run: the price, nothing signed
    │   │   └── BudgetExceeded
    │   ├── InsufficientFunds             the wallet cannot cover the amount
    │   ├── PaymentRejected               the server answered 402 to our credential
    │   ├── PaymentFailed                 our broadcast payment was refused/reverted (not moved)
    │   ├── PaymentOutcomeUnknown         money may have moved: never retry blindly
    │   └── ChannelCloseError             a forced close the escrow would refuse (nothing sent)
    │       ├── GracePeriodNotOver        withdraw too early (``ends_at``)
    │       └── ChannelAlreadyFinalized   closed or withdrawn already
    ├── VerificationError                 server side: the credential is refused
    │   ├── PaymentRequired               no credential sent (402 payment-required)
    │   ├── InvalidChallenge              unknown, expired, used or mismatched id
    │   ├── PaymentExpired
    │   ├── PaymentInsufficient
    │   ├── VerificationFailed
    │   │   └── MalformedTransaction (ValueError)  payer's tx bytes are not a Tempo tx
    │   ├── CredentialReplayed
    │   └── SessionError                  session intent (payment channel) refusals
    │       ├── InvalidVoucherSignature   session/invalid-signature (402)
    │       ├── SignerMismatch            session/signer-mismatch (402)
    │       ├── AmountExceedsDeposit      session/amount-exceeds-deposit (402)
    │       ├── DeltaTooSmall             session/delta-too-small (402)
    │       ├── StaleVoucher              below the accepted cumulative (402)
    │       ├── ChannelClosing            a forced close is pending (402)
    │       ├── ChannelMismatch           payee/token/escrow differ from the offer (402)
    │       ├── InsufficientBalance       session/insufficient-balance (402, requiredTopUp)
    │       ├── ChallengeNotFound         session/challenge-not-found (402)
    │       ├── ChannelNotFound           session/channel-not-found (410)
    │       └── ChannelFinalized          session/channel-finalized (410)
    ├── ChainError                        talking to the Tempo chain failed
    │   ├── RpcError                      the node answered with a JSON-RPC error
    │   ├── RpcUnavailable                transport failure / timeout
    │   └── ReceiptTimeout                no receipt before the deadline (tx may be dropped)
    ├── ConversionError                   OpenAI <-> Anthropic request cannot be mapped
    │   └── BadRequest                    server refuses a request before payment (4xx)
    ├── UpstreamError                     the LLM upstream is unreachable or sent garbage
    ├── ConfigError (ValueError)          invalid configuration
    └── DevnetError                       the local anvil devnet could not be found/started

Client-side errors subclass ``openai.OpenAIError`` when the openai package is
importable, because the openai SDK retries any other exception a transport
raises; a payment decision must never be retried behind the caller's back.
"""

from __future__ import annotations

from typing import Any

try:  # the openai SDK re-raises OpenAIError untouched instead of retrying it
    from openai import OpenAIError as _ClientBase
except ImportError:  # pragma: no cover - openai is a runtime dependency
    _ClientBase = Exception  # type: ignore[assignment,misc]

PROBLEM_BASE = "https://paymentauth.org/problems/"


class MppError(Exception):
    """Base class of every mpp_claude exception."""


# --- protocol: the wire format --------------------------------------------------------------------


class ProtocolError(MppError, ValueError):
    """Bytes from a peer are not valid MPP.  ``kind`` is the conformance error kind."""

    kind = "protocol_error"


class ParseError(ProtocolError):
    kind = "parse_error"


class MalformedChallenge(ParseError):
    """A ``WWW-Authenticate: Payment`` value could not be parsed."""


class MalformedCredential(ParseError):
    """An ``Authorization: Payment`` value could not be parsed."""


class MalformedReceipt(ParseError):
    """A ``Payment-Receipt`` value could not be parsed."""


class FormatError(ProtocolError):
    kind = "format_error"


class EncodingError(ProtocolError):
    kind = "encoding_error"


class WeakSecretError(ProtocolError):
    """A challenge HMAC secret is shorter than 32 bytes (conformance kind ``generation_error``)."""

    kind = "generation_error"


# --- client: deciding to pay -------------------------------------------------------------------------


class ClientPaymentError(MppError, _ClientBase):
    """Base of the errors the paying client raises (an ``openai.OpenAIError`` too)."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message


class PaymentDeclined(ClientPaymentError):
    """The client decided not to pay (policy, budget, approval)."""


class PolicyDenied(PaymentDeclined):
    """The payment policy forbids this payment; ``rule`` names the rule."""

    def __init__(self, message: str, *, rule: str = "policy", **details: Any) -> None:
        super().__init__(message, rule=rule, **details)
        self.rule = rule


class OriginNotAllowed(PolicyDenied):
    """The origin asking for money is not in the allowlist."""

    def __init__(self, message: str, *, origin: str = "", **details: Any) -> None:
        super().__init__(message, rule="allowed_origins", origin=origin, **details)
        self.origin = origin


class ApprovalDenied(PolicyDenied):
    """The approval callback vetoed the payment."""


class PaymentQuoted(PaymentDeclined):
    """Dry-run (quote) mode: the price is known and nothing was signed; ``quote`` holds it."""

    def __init__(self, message: str, *, quote: Any = None, **details: Any) -> None:
        super().__init__(message, quote=quote, **details)
        self.quote = quote


class BudgetExceeded(PaymentDeclined):
    """A spending limit would be exceeded.  Names the limit, its value and the amount asked."""

    def __init__(self, message: str, *, limit: str = "", limit_value: int = 0, requested: int = 0,
                 **details: Any) -> None:
        super().__init__(message, limit=limit, limit_value=limit_value, requested=requested, **details)
        self.limit = limit
        self.limit_value = limit_value
        self.requested = requested


class InsufficientFunds(ClientPaymentError):
    """The wallet's balance of ``token`` is below ``needed`` (``available`` units held)."""

    def __init__(self, message: str, *, token: str = "", needed: int = 0, available: int = 0,
                 **details: Any) -> None:
        super().__init__(message, token=token, needed=needed, available=available, **details)
        self.token = token
        self.needed = needed
        self.available = available


class PaymentRejected(ClientPaymentError):
    """The server answered 402 to a credential we sent; ``problem`` holds its problem details."""

    def __init__(self, message: str, *, problem: dict[str, Any] | None = None, **details: Any) -> None:
        super().__init__(message, problem=problem, **details)
        self.problem = problem or {}


class PaymentFailed(ClientPaymentError):
    """Our own broadcast payment was refused by the chain or reverted: the amount did not move."""


class PaymentOutcomeUnknown(ClientPaymentError):
    """A payment was submitted but whether it settled is unknown: never pay again blindly."""


class ChannelCloseError(ClientPaymentError):
    """A payer's forced close (``requestClose`` / ``withdraw``) cannot be sent: the escrow would
    refuse it (unknown channel, another payer's channel, no close requested).  Nothing was sent."""

    def __init__(self, message: str, *, channel_id: str = "", **details: Any) -> None:
        super().__init__(message, channel_id=channel_id, **details)
        self.channel_id = channel_id


class GracePeriodNotOver(ChannelCloseError):
    """``withdraw`` is not allowed yet; ``ends_at`` is the chain time (Unix seconds) it becomes allowed."""

    def __init__(self, message: str, *, channel_id: str = "", ends_at: int = 0, **details: Any) -> None:
        super().__init__(message, channel_id=channel_id, ends_at=ends_at, **details)
        self.ends_at = ends_at


class ChannelAlreadyFinalized(ChannelCloseError):
    """The channel is already closed or withdrawn on chain: there is nothing left to reclaim."""


# --- server: verifying a credential -------------------------------------------------------------------


class VerificationError(MppError):
    """The server refuses a credential.  Carries the RFC 9457 problem type and HTTP status."""

    problem = "verification-failed"
    status = 402
    title = "Payment Verification Failed"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    @property
    def problem_type(self) -> str:
        return PROBLEM_BASE + self.problem


class InvalidChallenge(VerificationError):
    problem = "invalid-challenge"
    title = "Invalid Challenge"


class PaymentExpired(VerificationError):
    problem = "payment-expired"
    title = "Payment Expired"


class PaymentInsufficient(VerificationError):
    problem = "payment-insufficient"
    title = "Payment Insufficient"


class VerificationFailed(VerificationError):
    problem = "verification-failed"


class MalformedTransaction(VerificationFailed, ValueError):
    """Transaction bytes from a payer are not a well-formed Tempo transaction."""


class CredentialReplayed(InvalidChallenge):
    """A challenge id or transaction hash was already used."""


class PaymentRequired(VerificationError):
    """No ``Authorization: Payment`` credential was sent (server side; 402 + challenges)."""

    problem = "payment-required"
    title = "Payment Required"


class MalformedCredentialProblem(VerificationError):
    problem = "malformed-credential"
    title = "Malformed Credential"


class MethodUnsupported(VerificationError):
    problem = "method-unsupported"
    title = "Method Unsupported"
    status = 400


# Session intent (draft-tempo-session-00, "Rejection and Error Responses"): problem types under
# session/; 410 for a missing or finalized channel.  ``extra`` carries wire-named fields such as
# ``channelId``, ``acceptedCumulative`` or ``requiredTopUp`` for the problem body.


class SessionError(VerificationError):
    """A session (payment channel) credential is refused."""


class InvalidVoucherSignature(SessionError):
    """Malformed, high-s or unrecoverable voucher signature."""

    problem = "session/invalid-signature"
    title = "Invalid Signature"


class SignerMismatch(SessionError):
    """The voucher recovers to someone other than the channel's authorized signer (or payer)."""

    problem = "session/signer-mismatch"
    title = "Signer Mismatch"


class AmountExceedsDeposit(SessionError):
    """The voucher's cumulative amount is above the channel's on-chain deposit."""

    problem = "session/amount-exceeds-deposit"
    title = "Amount Exceeds Deposit"


class DeltaTooSmall(SessionError):
    """The voucher advances the accepted cumulative amount by less than ``minVoucherDelta``."""

    problem = "session/delta-too-small"
    title = "Delta Too Small"


class StaleVoucher(SessionError):
    """The voucher is below the highest accepted cumulative amount: it pays nothing new.

    The draft's idempotency rule lets a server answer such a voucher with 200 and the current
    state instead; it must never credit it.
    """

    title = "Stale Voucher"


class ChannelClosing(SessionError):
    """The payer requested a forced close: no new vouchers (they might not be settleable)."""

    title = "Channel Close Pending"


class ChannelMismatch(SessionError):
    """The on-chain channel does not match the offer (payee, token, escrow or signer)."""

    title = "Channel Mismatch"


class InsufficientBalance(SessionError):
    """Accepted vouchers do not cover the cost; ``extra['requiredTopUp']`` says how much more."""

    problem = "session/insufficient-balance"
    title = "Insufficient Balance"


class ChallengeNotFound(SessionError):
    """A topUp/close credential names a challenge id that is unknown or expired."""

    problem = "session/challenge-not-found"
    title = "Challenge Not Found"


class ChannelNotFound(SessionError):
    """No channel with this id exists on the escrow."""

    problem = "session/channel-not-found"
    title = "Channel Not Found"
    status = 410


class ChannelFinalized(SessionError):
    """The channel was closed (cooperatively or by withdraw) and accepts nothing more."""

    problem = "session/channel-finalized"
    title = "Channel Finalized"
    status = 410


# --- chain ----------------------------------------------------------------------------------------------


class ChainError(MppError):
    """Talking to the Tempo chain failed."""


class RpcError(ChainError):
    """The node answered a JSON-RPC error object."""

    def __init__(self, method: str, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{method}: RPC error {code}: {message}")
        self.method = method
        self.code = code
        self.rpc_message = message
        self.data = data


class RpcUnavailable(ChainError):
    """The RPC endpoint could not be reached or timed out."""


class ReceiptTimeout(ChainError):
    """No receipt before the deadline.  anvil drops invalid Tempo transactions silently."""

    def __init__(self, tx_hash: str, seconds: float) -> None:
        super().__init__(f"no receipt for {tx_hash} after {seconds:.1f}s (dropped or still pending)")
        self.tx_hash = tx_hash
        self.seconds = seconds


# --- other ----------------------------------------------------------------------------------------------


class ConversionError(MppError):
    """An OpenAI request/response cannot be mapped; carries its OpenAI error shape."""

    def __init__(self, message: str, *, status: int = 400, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None
                 ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI error body: ``{"error": {"message", "type", "param", "code"}}``."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}


class BadRequest(ConversionError):
    """The server refuses a request before any payment (size, JSON, headers, idempotency).

    Rendered in the route's own error shape (OpenAI or Anthropic) with ``status``.
    """


class UpstreamError(MppError):
    """The LLM upstream could not be reached, timed out, or answered something unusable.

    ``code`` names the case (``upstream_connection_error``, ``upstream_timeout``,
    ``upstream_invalid_response``, ``upstream_stream_interrupted``) and ``status`` is the
    HTTP status the server should answer with (502 or 504).  Raised only when no usable
    upstream status exists; an upstream 4xx/5xx JSON error is a normal response, not this.
    """

    def __init__(self, message: str, *, code: str = "upstream_connection_error", status: int = 502
                 ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


class ConfigError(MppError, ValueError):
    """Invalid configuration; ``problems`` lists one line per problem."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class DevnetError(MppError):
    """The local anvil devnet could not be found, installed or started."""
