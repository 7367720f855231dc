"""Tempo transactions for the escrow's functions (pure): calls, gas limits, building, signing.

The single seam to the transaction layer: everything that turns escrow calldata into
a signed ``0x76`` transaction goes through ``build_tx`` and ``sign_and_encode``, which
use ``mpp_claude.tempo.tx``.

Payer transactions batch the TIP-20 ``approve`` with the escrow call, so a channel
opens (or tops up) in one transaction and the allowance is spent in the same block::

    open:  [pathUSD.approve(escrow, deposit), escrow.open(payee, token, deposit, salt, signer)]
    topUp: [token.approve(escrow, amount),     escrow.topUp(channelId, amount)]

Gas limits: measured on anvil 1.7.1 Tempo T4 (TIP-1000: +250k per new storage slot and
for an account's first transaction), then given headroom.  Fees are charged on gas *used*;
the limit only has to be covered by the fee-token balance up front (limit x max fee).

    transaction                                   gas used     limit
    approve+open, payer's first transaction       1,322,497    GAS_OPEN 2,000,000
    approve+open, delegated signer, first tx      1,574,997
    approve+open, later transaction                 858,478
    settle, payee's first tx (new balance slot)     575,600    GAS_SETTLE 900,000
    settle, later                                    78,368
    approve+topUp                                   259,455    GAS_TOP_UP 1,000,000
    close                                            99,751    GAS_CLOSE 1,000,000
    requestClose                                     32,028    GAS_REQUEST_CLOSE 600,000
    withdraw                                         64,684    GAS_WITHDRAW 900,000

The limits cover the worst case of each row (a first transaction, a new recipient slot);
``GAS_OPEN`` equals the default sponsor policy cap (``tempo.verify.DEFAULT_MAX_GAS``).
"""

from __future__ import annotations

from ..signer import Signer
from ..tx import Call, TempoTransaction, encode, sign
from ._abi import address_word, channel_id_bytes
from .channel import (
    ZERO_ADDRESS,
    encode_approve,
    encode_close,
    encode_open,
    encode_request_close,
    encode_settle,
    encode_top_up,
    encode_withdraw,
)

#: gas limits per escrow transaction (see the module docstring for the measurements)
GAS_OPEN = 2_000_000
GAS_TOP_UP = 1_000_000
GAS_SETTLE = 900_000
GAS_CLOSE = 1_000_000
GAS_REQUEST_CLOSE = 600_000
GAS_WITHDRAW = 900_000


def _to(address: str) -> bytes:
    return address_word(address)[12:]


def open_calls(escrow: str, *, payee: str, token: str, deposit: int, salt: bytes,
               authorized_signer: str = ZERO_ADDRESS) -> tuple[Call, Call]:
    """``approve`` + ``open``: the two calls of a channel-opening transaction."""
    return (Call(_to(token), encode_approve(escrow, deposit)),
            Call(_to(escrow), encode_open(payee=payee, token=token, deposit=deposit, salt=salt,
                                          authorized_signer=authorized_signer)))


def top_up_calls(escrow: str, *, token: str, channel_id: str | bytes, amount: int) -> tuple[Call, Call]:
    """``approve`` + ``topUp``: the two calls of a top-up transaction."""
    channel_id_bytes(channel_id)
    return (Call(_to(token), encode_approve(escrow, amount)),
            Call(_to(escrow), encode_top_up(channel_id, amount)))


def settle_call(escrow: str, channel_id: str | bytes, cumulative_amount: int, signature: bytes) -> Call:
    """``settle`` (sent by the payee)."""
    return Call(_to(escrow), encode_settle(channel_id, cumulative_amount, signature))


def close_call(escrow: str, channel_id: str | bytes, cumulative_amount: int, signature: bytes) -> Call:
    """``close`` (sent by the payee)."""
    return Call(_to(escrow), encode_close(channel_id, cumulative_amount, signature))


def request_close_call(escrow: str, channel_id: str | bytes) -> Call:
    """``requestClose`` (sent by the payer)."""
    return Call(_to(escrow), encode_request_close(channel_id))


def withdraw_call(escrow: str, channel_id: str | bytes) -> Call:
    """``withdraw`` (sent by the payer after the grace period)."""
    return Call(_to(escrow), encode_withdraw(channel_id))


def create_call(init_code: bytes) -> Call:
    """A contract creation (only the first call of a Tempo transaction may CREATE)."""
    return Call(b"", init_code)


def build_tx(calls: tuple[Call, ...], *, chain_id: int, nonce: int, gas_limit: int, max_fee_per_gas: int,
             max_priority_fee_per_gas: int = 0, fee_token: str | None = None, nonce_key: int = 0,
             valid_before: int | None = None, sponsored: bool = False) -> TempoTransaction:
    """An unsigned ``0x76`` transaction carrying ``calls``.

    Args:
        fee_token: TIP-20 paying the fee (``None``: the account default, else pathUSD);
            ignored by the signer when ``sponsored`` (the fee payer picks it).
        nonce_key, valid_before: ``2**256 - 1`` and a deadline <= now+30 s for an expiring
            nonce (TIP-1009); the default is the account's protocol nonce.
        sponsored: the server will co-sign as fee payer (``methodDetails.feePayer``).
    """
    return TempoTransaction(chain_id=chain_id, max_priority_fee_per_gas=max_priority_fee_per_gas,
                            max_fee_per_gas=max_fee_per_gas, gas_limit=gas_limit, calls=calls,
                            nonce_key=nonce_key, nonce=nonce, valid_before=valid_before,
                            fee_token=_to(fee_token) if fee_token and not sponsored else None,
                            sponsored=sponsored)


def sign_and_encode(tx: TempoTransaction, signer: Signer) -> bytes:
    """Sign ``tx`` as its sender and return the raw ``0x76`` envelope for ``eth_sendRawTransaction``
    (or for a credential's ``transaction`` field)."""
    return encode(sign(tx, signer))
