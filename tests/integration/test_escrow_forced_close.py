"""Forced close on a real devnet: requestClose, the 15-minute grace period, withdraw.

Runs on its own devnet because ``evm_increaseTime`` moves that chain's clock 15 minutes
ahead of wall time, which would invalidate expiring-nonce transactions of other tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from mpp_claude.devnet import Devnet
from mpp_claude.errors import ChannelClosing
from mpp_claude.tempo import tip20
from mpp_claude.tempo.session import (
    CLOSE_GRACE_PERIOD,
    ChannelAccount,
    VoucherDomain,
    accept_voucher,
    compute_channel_id,
    sign_voucher,
)
from mpp_claude.tempo.session.onchain import EscrowReverted, Sent, read_channel, send_calls, simulate
from mpp_claude.tempo.session.transactions import (
    GAS_OPEN,
    GAS_REQUEST_CLOSE,
    GAS_SETTLE,
    GAS_TOP_UP,
    GAS_WITHDRAW,
    open_calls,
    request_close_call,
    settle_call,
    top_up_calls,
    withdraw_call,
)
from mpp_claude.tempo.signer import LocalSigner
from mpp_claude.tempo.tx import Call

pytestmark = pytest.mark.devnet

UNIT = tip20.UNIT
TOKEN = tip20.PATH_USD
FEE = tip20.ALPHA_USD


@pytest.fixture(scope="module")
def net() -> Iterator[Devnet]:
    with Devnet.start() as own:
        yield own


def _party(net: Devnet, path_usd: int) -> LocalSigner:
    signer = LocalSigner(os.urandom(32))
    if path_usd:
        net.fund(signer.address, path_usd, native=False)
    net.fund(signer.address, 5 * UNIT, token=FEE, native=False)
    return signer


def _send(net: Devnet, who: LocalSigner, calls: tuple[Call, ...], gas: int) -> Sent:
    return send_calls(net.rpc, who, calls, escrow=net.escrow_address, gas_limit=gas, fee_token=FEE)


def _open(net: Devnet, payer: LocalSigner, payee: LocalSigner, deposit: int) -> str:
    salt = os.urandom(32)
    _send(net, payer, open_calls(net.escrow_address, payee=payee.address, token=TOKEN, deposit=deposit,
                                 salt=salt), GAS_OPEN)
    return compute_channel_id(payer=payer.address, payee=payee.address, token=TOKEN, salt=salt,
                              authorized_signer="0x" + "00" * 20, escrow=net.escrow_address,
                              chain_id=net.chain_id)


def _revert(net: Devnet, sender: str, call: Call) -> str | None:
    with pytest.raises(EscrowReverted) as info:
        simulate(net.rpc, sender, call)
    return info.value.error


def test_request_close_then_withdraw_after_grace(net: Devnet) -> None:
    """Payer requests close; withdraw fails before 15 min and refunds deposit - settled after."""
    escrow = net.escrow_address
    domain = VoucherDomain(net.chain_id, escrow)
    payer, payee = _party(net, 10 * UNIT), _party(net, 0)
    start = net.balance(payer.address)
    cid = _open(net, payer, payee, 6 * UNIT)
    v = sign_voucher(payer, domain, cid, 2 * UNIT)
    _send(net, payee, (settle_call(escrow, cid, v.cumulative_amount, v.signature),), GAS_SETTLE)

    requested = _send(net, payer, (request_close_call(escrow, cid),), GAS_REQUEST_CLOSE)
    assert [e.name for e in requested.events] == ["CloseRequested"]
    state = read_channel(net.rpc, escrow, cid)
    assert state.close_requested_at > 0
    assert requested.events[0].values["closeGraceEnd"] == state.close_requested_at + CLOSE_GRACE_PERIOD

    # no new vouchers while a forced close is pending (off chain); the payee may still settle on chain
    later = sign_voucher(payer, domain, cid, 3 * UNIT)
    with pytest.raises(ChannelClosing):
        accept_voucher(ChannelAccount(cid, accepted_cumulative=2 * UNIT, voucher_signature=v.signature),
                       later, state, domain)
    assert _revert(net, payer.address, withdraw_call(escrow, cid)) == "CloseNotReady"
    assert _revert(net, payee.address, withdraw_call(escrow, cid)) == "NotPayer"

    net.rpc.call("evm_increaseTime", [CLOSE_GRACE_PERIOD - 60])
    net.mine()
    assert _revert(net, payer.address, withdraw_call(escrow, cid)) == "CloseNotReady"
    net.rpc.call("evm_increaseTime", [61])
    net.mine()
    done = _send(net, payer, (withdraw_call(escrow, cid),), GAS_WITHDRAW)
    assert [e.name for e in done.events] == ["ChannelClosed"]
    assert done.events[0].values == {"settledToPayee": 2 * UNIT, "refundedToPayer": 4 * UNIT}
    assert net.balance(payer.address) == start - 2 * UNIT
    assert net.balance(payee.address) == 2 * UNIT
    assert read_channel(net.rpc, escrow, cid).finalized
    assert _revert(net, payer.address, withdraw_call(escrow, cid)) == "ChannelFinalized"


def test_top_up_cancels_a_close_request(net: Devnet) -> None:
    """A topUp after requestClose emits CloseRequestCancelled and clears closeRequestedAt."""
    escrow = net.escrow_address
    payer, payee = _party(net, 5 * UNIT), _party(net, 0)
    cid = _open(net, payer, payee, 2 * UNIT)
    _send(net, payer, (request_close_call(escrow, cid),), GAS_REQUEST_CLOSE)
    assert read_channel(net.rpc, escrow, cid).close_requested_at > 0
    topped = _send(net, payer, top_up_calls(escrow, token=TOKEN, channel_id=cid, amount=UNIT), GAS_TOP_UP)
    assert [e.name for e in topped.events] == ["CloseRequestCancelled", "TopUp"]
    state = read_channel(net.rpc, escrow, cid)
    assert state.close_requested_at == 0 and state.deposit == 3 * UNIT
    assert _revert(net, payer.address, withdraw_call(escrow, cid)) == "CloseNotReady"
