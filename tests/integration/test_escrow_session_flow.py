"""A metered session end to end on the devnet, without HTTP: the pieces the client and server plug in.

Client: builds the open transaction and payloads, answers need-voucher events with
``plan_payment`` (topping up when the deposit runs out), closes with a voucher for what
it spent.  Server: parses payloads, verifies and broadcasts the transactions, accepts
vouchers, charges per token, emits need-voucher data, closes on chain.  At the end the
payee holds exactly what was spent and the payer the rest.
"""

from __future__ import annotations

import json
import os

import pytest

from mpp_claude.devnet import Devnet
from mpp_claude.errors import InsufficientBalance
from mpp_claude.tempo import tip20
from mpp_claude.tempo import tx as txmod
from mpp_claude.tempo.session import (
    ChannelAccount,
    ClosePayload,
    OpenPayload,
    PayerChannel,
    TopUpPayload,
    VoucherDomain,
    VoucherPayload,
    accept_voucher,
    after_top_up,
    after_voucher,
    charge,
    check_channel_terms,
    check_close_voucher,
    check_open_transaction,
    check_top_up_transaction,
    close_payload,
    compute_channel_id,
    need_voucher_event,
    open_payload,
    parse_need_voucher_event,
    parse_session_payload,
    plan_payment,
    required_cumulative,
    sign_voucher,
    top_up_payload,
    voucher_payload,
)
from mpp_claude.tempo.session.onchain import read_channel, send_calls
from mpp_claude.tempo.session.transactions import (
    GAS_CLOSE,
    GAS_OPEN,
    GAS_TOP_UP,
    build_tx,
    close_call,
    open_calls,
    sign_and_encode,
    top_up_calls,
)
from mpp_claude.tempo.signer import LocalSigner
from mpp_claude.tempo.tx import Call

pytestmark = pytest.mark.devnet

UNIT = tip20.UNIT
TOKEN = tip20.PATH_USD
FEE = tip20.ALPHA_USD
PRICE = 2_500  # base units per token: 0.0025 USD
TOKENS = 1_000  # 2.5 USD in total, more than the first deposit


def test_metered_stream_with_top_up_and_close(devnet: Devnet) -> None:
    """1,000 tokens at 2,500 each over a 1 USD deposit: vouchers, one top-up, close; exact balances."""
    net, rpc, escrow = devnet, devnet.rpc, devnet.escrow_address
    domain = VoucherDomain(net.chain_id, escrow)
    payer, server = LocalSigner(os.urandom(32)), LocalSigner(os.urandom(32))
    net.fund(payer.address, 5 * UNIT, native=False)
    for who in (payer, server):
        net.fund(who.address, 5 * UNIT, token=FEE, native=False)
    payer_start = net.balance(payer.address)

    def payer_tx(calls: tuple[Call, ...], gas: int) -> bytes:
        tx = build_tx(calls, chain_id=net.chain_id, nonce=rpc.nonce(payer.address), gas_limit=gas,
                      max_fee_per_gas=2 * rpc.base_fee() + 1, fee_token=FEE)
        return sign_and_encode(tx, payer)

    def broadcast(raw: bytes) -> None:
        receipt = rpc.wait_for_receipt(rpc.send_raw(raw))
        assert int(receipt["status"], 16) == 1

    # --- client opens (1 USD) --------------------------------------------------------------------
    salt = os.urandom(32)
    cid = compute_channel_id(payer=payer.address, payee=server.address, token=TOKEN, salt=salt,
                             authorized_signer="0x" + "00" * 20, escrow=escrow, chain_id=net.chain_id)
    calls = open_calls(escrow, payee=server.address, token=TOKEN, deposit=UNIT, salt=salt)
    raw_open = payer_tx(calls, GAS_OPEN)
    wire = json.loads(json.dumps(open_payload(raw_open, sign_voucher(payer, domain, cid, 0))))
    client = PayerChannel(cid, escrow, net.chain_id, server.address, TOKEN, deposit=UNIT)

    # --- server: open ----------------------------------------------------------------------------
    opened = parse_session_payload(wire)
    assert isinstance(opened, OpenPayload)
    check_open_transaction(txmod.decode(opened.transaction).tx, escrow=escrow, chain_id=net.chain_id,
                           payee=server.address, token=TOKEN, channel_id=opened.channel_id, min_deposit=PRICE)
    broadcast(opened.transaction)
    state = read_channel(rpc, escrow, opened.channel_id)
    check_channel_terms(state, opened.channel_id, payee=server.address, token=TOKEN)
    account = accept_voucher(ChannelAccount(opened.channel_id), opened.voucher, state, domain).account

    # --- stream: the server meters each token; the client answers need-voucher events ------------
    vouchers = top_ups = 0
    for _ in range(TOKENS):
        try:
            account = charge(account, PRICE)
            continue
        except InsufficientBalance:
            pass
        required = required_cumulative(account, PRICE)
        event = json.dumps(need_voucher_event(account, required_cumulative=required, deposit=state.deposit))
        need = parse_need_voucher_event(event)  # client side from here
        step = plan_payment(client, need.required_cumulative, max_deposit=3 * UNIT, headroom=40 * PRICE,
                            min_top_up=UNIT)
        if step.needs_top_up:
            raw = payer_tx(top_up_calls(escrow, token=TOKEN, channel_id=cid, amount=step.top_up), GAS_TOP_UP)
            top = parse_session_payload(top_up_payload(cid, raw, step.top_up))  # server side
            assert isinstance(top, TopUpPayload)
            sender = check_top_up_transaction(txmod.decode(top.transaction).tx, escrow=escrow,
                                              chain_id=net.chain_id, token=TOKEN, channel_id=top.channel_id,
                                              additional_deposit=top.additional_deposit)
            assert sender == state.payer
            broadcast(top.transaction)
            state = read_channel(rpc, escrow, cid)
            client = after_top_up(client, step.top_up)
            top_ups += 1
        client = after_voucher(client, step.cumulative)
        sent = parse_session_payload(voucher_payload(sign_voucher(payer, domain, cid, step.cumulative)))
        assert isinstance(sent, VoucherPayload)
        account = charge(accept_voucher(account, sent.voucher, state, domain).account, PRICE)
        vouchers += 1

    assert account.spent == TOKENS * PRICE
    assert top_ups == 2 and 0 < vouchers <= TOKENS // 40 + 2  # headroom: far fewer vouchers than tokens

    # --- close: the client signs exactly what it was charged; the server closes on chain ----------
    final = parse_session_payload(close_payload(sign_voucher(payer, domain, cid, account.spent)))
    assert isinstance(final, ClosePayload)
    amount = check_close_voucher(account, final.voucher, state, domain)
    call = close_call(escrow, cid, amount, final.voucher.signature)
    closed = send_calls(rpc, server, (call,), escrow=escrow, gas_limit=GAS_CLOSE, fee_token=FEE)
    assert closed.events[-1].values == {"settledToPayee": TOKENS * PRICE,
                                        "refundedToPayer": state.deposit - TOKENS * PRICE}
    assert net.balance(server.address) == TOKENS * PRICE
    assert net.balance(payer.address) == payer_start - TOKENS * PRICE
