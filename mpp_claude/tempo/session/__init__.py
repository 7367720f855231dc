"""Tempo session intent (pay-per-use over a payment channel): the pure core and thin chain helpers.

* ``voucher``: EIP-712 voucher domain, digest, signing, signature parsing and recovery.
* ``channel``: channel ids, escrow calldata, ``getChannel`` state and escrow events.
* ``accounting``: the server's voucher acceptance, charging and close rules.
* ``transactions``: escrow calls as signed Tempo ``0x76`` transactions.
* ``payloads``: credential payloads (parse/build), SSE need-voucher data, receipt fields.
* ``payer``: the payer's next step (voucher, top-up first) within its deposit cap.
* ``verify``: server checks of a payer's ``open`` / ``topUp`` transaction before broadcasting.
* ``onchain``: read a channel, simulate and send escrow transactions through an ``RpcClient``.

Spec: draft-tempo-session-00 (shared/docs/mpp-protocol.md §4), protocol ``v1`` (contract
escrow).  The escrow contract itself is ``mpp_claude.tempo.escrow``.
"""

from __future__ import annotations

from ._abi import normalize_address, normalize_channel_id
from .accounting import (
    Acceptance,
    ChannelAccount,
    VoucherOutcome,
    accept_voucher,
    charge,
    check_channel_live,
    check_channel_terms,
    check_close_voucher,
    record_settlement,
    required_cumulative,
    verify_voucher_signer,
)
from .channel import (
    CLOSE_GRACE_PERIOD,
    ZERO_ADDRESS,
    ChannelState,
    EscrowEvent,
    OpenCall,
    compute_channel_id,
    decode_channel_state,
    decode_escrow_log,
    decode_open,
    decode_top_up,
    escrow_events,
)
from .payer import PayerChannel, PaymentStep, after_top_up, after_voucher, plan_payment
from .payloads import (
    ClosePayload,
    NeedVoucher,
    OpenPayload,
    SessionPayload,
    TopUpPayload,
    VoucherPayload,
    close_payload,
    need_voucher_event,
    open_payload,
    parse_need_voucher_event,
    parse_session_payload,
    session_receipt_fields,
    top_up_payload,
    voucher_payload,
)
from .verify import OpenedChannel, check_open_transaction, check_top_up_transaction
from .voucher import (
    Voucher,
    VoucherDomain,
    parse_voucher_signature,
    recover_voucher_signer,
    sign_voucher,
    to_bytes65,
    to_compact,
)

__all__ = [
    "CLOSE_GRACE_PERIOD",
    "ZERO_ADDRESS",
    "Acceptance",
    "ChannelAccount",
    "ChannelState",
    "ClosePayload",
    "EscrowEvent",
    "NeedVoucher",
    "OpenCall",
    "OpenPayload",
    "OpenedChannel",
    "PayerChannel",
    "PaymentStep",
    "SessionPayload",
    "TopUpPayload",
    "Voucher",
    "VoucherDomain",
    "VoucherOutcome",
    "VoucherPayload",
    "accept_voucher",
    "after_top_up",
    "after_voucher",
    "charge",
    "check_channel_live",
    "check_channel_terms",
    "check_close_voucher",
    "check_open_transaction",
    "check_top_up_transaction",
    "close_payload",
    "compute_channel_id",
    "decode_channel_state",
    "decode_escrow_log",
    "decode_open",
    "decode_top_up",
    "escrow_events",
    "need_voucher_event",
    "normalize_address",
    "normalize_channel_id",
    "open_payload",
    "parse_need_voucher_event",
    "parse_session_payload",
    "parse_voucher_signature",
    "plan_payment",
    "record_settlement",
    "recover_voucher_signer",
    "required_cumulative",
    "session_receipt_fields",
    "sign_voucher",
    "to_bytes65",
    "to_compact",
    "top_up_payload",
    "verify_voucher_signer",
    "voucher_payload",
]
