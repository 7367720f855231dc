"""The session escrow on a real devnet: open, 50 cumulative vouchers, settle, top up, close.

Money checks use pathUSD for the channel and AlphaUSD for every fee (``fee_token``), so a
pathUSD balance changes only by what the channel moves.  Refusals are checked twice: by
the pure verifier (``accept_voucher``) and by the contract (``simulate`` = ``eth_call``,
plus mined transactions where it matters).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import pytest

from mpp_claude.devnet import Devnet
from mpp_claude.errors import (
    AmountExceedsDeposit,
    ChannelFinalized,
    InvalidVoucherSignature,
    SignerMismatch,
    StaleVoucher,
)
from mpp_claude.tempo import tip20
from mpp_claude.tempo.escrow import artifact
from mpp_claude.tempo.rpc import hex_int
from mpp_claude.tempo.session import (
    ChannelAccount,
    ChannelState,
    Voucher,
    VoucherDomain,
    VoucherOutcome,
    accept_voucher,
    check_channel_terms,
    compute_channel_id,
    sign_voucher,
    to_compact,
)
from mpp_claude.tempo.session.onchain import EscrowReverted, Sent, read_channel, send_calls, simulate
from mpp_claude.tempo.session.transactions import (
    GAS_CLOSE,
    GAS_OPEN,
    GAS_SETTLE,
    GAS_TOP_UP,
    close_call,
    open_calls,
    settle_call,
    top_up_calls,
)
from mpp_claude.tempo.signer import SECP256K1_N, LocalSigner
from mpp_claude.tempo.tx import Call

pytestmark = pytest.mark.devnet

UNIT = tip20.UNIT
TOKEN = tip20.PATH_USD
FEE = tip20.ALPHA_USD


@dataclass
class Party:
    signer: LocalSigner

    @property
    def address(self) -> str:
        return self.signer.address


def _party(net: Devnet, path_usd: int) -> Party:
    signer = LocalSigner(os.urandom(32))
    if path_usd:
        net.fund(signer.address, path_usd, native=False)
    net.fund(signer.address, 5 * UNIT, token=FEE, native=False)  # fees are paid in AlphaUSD
    return Party(signer)


def _send(net: Devnet, who: Party, calls: tuple[Call, ...], gas: int) -> Sent:
    return send_calls(net.rpc, who.signer, calls, escrow=net.escrow_address, gas_limit=gas, fee_token=FEE)


def _open(net: Devnet, payer: Party, payee: Party, deposit: int) -> tuple[str, Sent]:
    salt = os.urandom(32)
    sent = _send(net, payer, open_calls(net.escrow_address, payee=payee.address, token=TOKEN, deposit=deposit,
                                        salt=salt), GAS_OPEN)
    cid = compute_channel_id(payer=payer.address, payee=payee.address, token=TOKEN, salt=salt,
                             authorized_signer="0x" + "00" * 20, escrow=net.escrow_address,
                             chain_id=net.chain_id)
    return cid, sent


def _settle(net: Devnet, payee: Party, cid: str, voucher: Voucher) -> Sent:
    call = settle_call(net.escrow_address, cid, voucher.cumulative_amount, voucher.signature)
    return _send(net, payee, (call,), GAS_SETTLE)


def _revert_name(net: Devnet, sender: Party, call: Call) -> str | None:
    with pytest.raises(EscrowReverted) as info:
        simulate(net.rpc, sender.address, call)
    return info.value.error


@pytest.fixture(scope="module")
def domain(devnet: Devnet) -> VoucherDomain:
    return VoucherDomain(devnet.chain_id, devnet.escrow_address)


def test_escrow_code_on_chain_is_the_committed_artifact(devnet: Devnet) -> None:
    """The deployed runtime code equals Escrow.json's deployedBytecode byte for byte."""
    code = devnet.rpc.call("eth_getCode", [devnet.escrow_address, "latest"])
    assert code == artifact()["deployedBytecode"]


def test_full_channel_lifecycle_with_50_vouchers(devnet: Devnet, domain: VoucherDomain) -> None:
    """Open 10, accept 50 vouchers, settle at 10 and 25, top up 2, close at 40: payee gets exactly 4."""
    net, escrow = devnet, devnet.escrow_address
    payer, payee = _party(net, 20 * UNIT), _party(net, 0)
    payer_start = net.balance(payer.address)
    cid, opened = _open(net, payer, payee, 10 * UNIT)

    # the id computed locally is the one the contract emitted and computes
    assert [e.name for e in opened.events] == ["ChannelOpened"]
    assert opened.events[0].channel_id == cid
    assert opened.events[0].values["deposit"] == 10 * UNIT
    assert net.balance(payer.address) == payer_start - 10 * UNIT
    state = read_channel(net.rpc, escrow, cid)
    assert (state.payer, state.payee, state.token, state.deposit, state.settled) == (
        payer.address, payee.address, TOKEN, 10 * UNIT, 0)
    check_channel_terms(state, cid, payee=payee.address, token=TOKEN)

    # 50 cumulative vouchers through the pure verifier
    account = ChannelAccount(cid)
    vouchers = [sign_voucher(payer.signer, domain, cid, i * 100_000) for i in range(1, 51)]
    for v in vouchers:
        acc = accept_voucher(account, v, state, domain)
        assert acc.outcome is VoucherOutcome.ACCEPTED
        account = acc.account
    assert account.accepted_cumulative == 5 * UNIT

    # settle at voucher 10 (1.0) and 25 (2.5)
    s1 = _settle(net, payee, cid, vouchers[9])
    assert [(e.name, e.values["deltaPaid"]) for e in s1.events] == [("Settled", UNIT)]
    s2 = _settle(net, payee, cid, vouchers[24])
    assert s2.events[0].values == {"cumulativeAmount": 2_500_000, "deltaPaid": 1_500_000,
                                   "newSettled": 2_500_000}
    assert net.balance(payee.address) == 2_500_000

    # a top-up raises the deposit
    t = _send(net, payer, top_up_calls(escrow, token=TOKEN, channel_id=cid, amount=2 * UNIT), GAS_TOP_UP)
    assert [(e.name, e.values["newDeposit"]) for e in t.events] == [("TopUp", 12 * UNIT)]

    # close with the payer's final voucher (4.0): payee +1.5 more, payer refunded 8.0
    final = vouchers[39]
    c = _send(net, payee, (close_call(escrow, cid, final.cumulative_amount, final.signature),), GAS_CLOSE)
    assert [e.name for e in c.events] == ["Settled", "ChannelClosed"]
    assert c.events[1].values == {"settledToPayee": 4 * UNIT, "refundedToPayer": 8 * UNIT}
    assert net.balance(payee.address) == 4 * UNIT
    assert net.balance(payer.address) == payer_start - 4 * UNIT
    end = read_channel(net.rpc, escrow, cid)
    assert end.finalized and end.settled == 4 * UNIT and end.deposit == 12 * UNIT

    # a closed channel refuses everything, off chain (410) and on chain
    with pytest.raises(ChannelFinalized) as info:
        accept_voucher(account, vouchers[49], end, domain)
    assert info.value.status == 410
    assert _revert_name(net, payee, settle_call(escrow, cid, vouchers[49].cumulative_amount,
                                                vouchers[49].signature)) == "ChannelFinalized"
    assert _revert_name(net, payee, close_call(escrow, cid, final.cumulative_amount, final.signature)
                        ) == "ChannelFinalized"


def _high_s(v: Voucher) -> Voucher:
    r, s, parity = v.signature[:32], int.from_bytes(v.signature[32:64], "big"), v.signature[64] - 27
    twin = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes((27 + (parity ^ 1),))
    return replace(v, signature=twin)


def test_refusals_off_chain_and_on_chain(devnet: Devnet, domain: VoucherDomain) -> None:
    """Another signer, lower, replayed, above deposit, other channel, high-s, wrong caller: all refused."""
    net, escrow = devnet, devnet.escrow_address
    payer, payee = _party(net, 12 * UNIT), _party(net, 0)
    cid, _ = _open(net, payer, payee, 5 * UNIT)
    other_cid, _ = _open(net, payer, payee, 5 * UNIT)
    state = read_channel(net.rpc, escrow, cid)

    v1 = sign_voucher(payer.signer, domain, cid, UNIT)
    account = accept_voucher(ChannelAccount(cid), v1, state, domain).account
    _send(net, payee, (settle_call(escrow, cid, v1.cumulative_amount, v1.signature),), GAS_SETTLE)
    state = read_channel(net.rpc, escrow, cid)
    assert state.settled == UNIT

    stranger = LocalSigner(os.urandom(32))
    cases: list[tuple[str, Voucher, type[Exception], str]] = [
        ("another signer", sign_voucher(stranger, domain, cid, 2 * UNIT), SignerMismatch, "InvalidSignature"),
        ("lower cumulative", sign_voucher(payer.signer, domain, cid, UNIT // 2), StaleVoucher,
         "AmountNotIncreasing"),
        ("above deposit", sign_voucher(payer.signer, domain, cid, 5 * UNIT + 1), AmountExceedsDeposit,
         "AmountExceedsDeposit"),
        ("for another channel",
         replace(sign_voucher(payer.signer, domain, other_cid, 2 * UNIT), channel_id=cid),
         SignerMismatch, "InvalidSignature"),
        ("high-s twin", _high_s(sign_voucher(payer.signer, domain, cid, 2 * UNIT)), InvalidVoucherSignature,
         "InvalidSignature"),
    ]
    for label, voucher, pure_error, chain_error in cases:
        with pytest.raises(pure_error):
            accept_voucher(account, voucher, state, domain)
        call = settle_call(escrow, cid, voucher.cumulative_amount, voucher.signature)
        assert _revert_name(net, payee, call) == chain_error, label

    # replayed: off chain it is an idempotent no-op (never credited twice), on chain it reverts
    replay = accept_voucher(account, v1, state, domain)
    assert replay.outcome is VoucherOutcome.DUPLICATE and replay.account == account
    replay_call = settle_call(escrow, cid, v1.cumulative_amount, v1.signature)
    assert _revert_name(net, payee, replay_call) == "AmountNotIncreasing"
    before = net.balance(payee.address)
    with pytest.raises(EscrowReverted):  # mined, status 0, nothing paid
        _send(net, payee, (replay_call,), GAS_SETTLE)
    assert net.balance(payee.address) == before

    # only the payee may settle or close
    v2 = sign_voucher(payer.signer, domain, cid, 2 * UNIT)
    amount, sig = v2.cumulative_amount, v2.signature
    assert _revert_name(net, payer, settle_call(escrow, cid, amount, sig)) == "NotPayee"
    assert _revert_name(net, payer, close_call(escrow, cid, amount, sig)) == "NotPayee"
    # the compact (EIP-2098) form of a valid voucher is accepted by both
    compact = replace(v2, signature=to_compact(v2.signature))
    assert accept_voucher(account, compact, state, domain).outcome is VoucherOutcome.ACCEPTED
    s = _settle(net, payee, cid, compact)
    assert s.events[0].values["deltaPaid"] == UNIT


def test_contract_digest_and_channel_id_match_ours(devnet: Devnet, domain: VoucherDomain) -> None:
    """getVoucherDigest, domainSeparator and computeChannelId agree with the Python core."""
    from eth_hash.auto import keccak

    def call(sig: str, args: bytes) -> bytes:
        data = "0x" + (keccak(sig.encode())[:4] + args).hex()
        return bytes.fromhex(devnet.rpc.call("eth_call", [{"to": devnet.escrow_address, "data": data},
                                                          "latest"])[2:])

    cid = "0x" + os.urandom(32).hex()
    amount = 123_456_789
    assert call("domainSeparator()", b"") == domain.separator
    got = call("getVoucherDigest(bytes32,uint128)", bytes.fromhex(cid[2:]) + amount.to_bytes(32, "big"))
    assert got == domain.digest(cid, amount)
    payer, payee, signer = (LocalSigner(os.urandom(32)).address for _ in range(3))
    salt = os.urandom(32)
    words = b"".join(bytes.fromhex(a[2:]).rjust(32, b"\0") for a in (payer, payee, TOKEN)) + salt
    words += bytes.fromhex(signer[2:]).rjust(32, b"\0")
    got_id = call("computeChannelId(address,address,address,bytes32,address)", words)
    assert "0x" + got_id.hex() == compute_channel_id(payer=payer, payee=payee, token=TOKEN, salt=salt,
                                                     authorized_signer=signer, escrow=devnet.escrow_address,
                                                     chain_id=devnet.chain_id)


def test_delegated_signer(devnet: Devnet, domain: VoucherDomain) -> None:
    """With an authorizedSigner, only that key's vouchers settle; the payer's own are refused."""
    net, escrow = devnet, devnet.escrow_address
    payer, payee = _party(net, 6 * UNIT), _party(net, 0)
    hot = LocalSigner(os.urandom(32))
    salt = os.urandom(32)
    sent = _send(net, payer, open_calls(escrow, payee=payee.address, token=TOKEN, deposit=3 * UNIT, salt=salt,
                                        authorized_signer=hot.address), GAS_OPEN + 250_000)
    cid = sent.events[0].channel_id
    state = read_channel(net.rpc, escrow, cid)
    assert state.authorized_signer == hot.address and state.expected_signer == hot.address
    by_payer = sign_voucher(payer.signer, domain, cid, UNIT)
    with pytest.raises(SignerMismatch):
        accept_voucher(ChannelAccount(cid), by_payer, state, domain)
    assert _revert_name(net, payee, settle_call(escrow, cid, UNIT, by_payer.signature)) == "InvalidSignature"
    by_hot = sign_voucher(hot, domain, cid, UNIT)
    assert accept_voucher(ChannelAccount(cid), by_hot, state, domain).outcome is VoucherOutcome.ACCEPTED
    _send(net, payee, (settle_call(escrow, cid, UNIT, by_hot.signature),), GAS_SETTLE)
    assert net.balance(payee.address) == UNIT


def _state(net: Devnet, cid: str) -> ChannelState:
    return read_channel(net.rpc, net.escrow_address, cid)


def test_gas_used_by_escrow_transactions(devnet: Devnet, domain: VoucherDomain) -> None:
    """Each escrow transaction stays under its gas constant (they are limits, not estimates)."""
    net, escrow = devnet, devnet.escrow_address
    payer, payee = _party(net, 6 * UNIT), _party(net, 0)
    cid, opened = _open(net, payer, payee, 2 * UNIT)
    v = sign_voucher(payer.signer, domain, cid, UNIT)
    settled = _send(net, payee, (settle_call(escrow, cid, UNIT, v.signature),), GAS_SETTLE)
    topped = _send(net, payer, top_up_calls(escrow, token=TOKEN, channel_id=cid, amount=UNIT), GAS_TOP_UP)
    v2 = sign_voucher(payer.signer, domain, cid, UNIT + 1)
    closed = _send(net, payee, (close_call(escrow, cid, UNIT + 1, v2.signature),), GAS_CLOSE)
    for sent, limit in ((opened, GAS_OPEN), (settled, GAS_SETTLE), (topped, GAS_TOP_UP), (closed, GAS_CLOSE)):
        assert 0 < sent.gas_used < limit
    assert hex_int(closed.receipt["status"]) == 1
    assert _state(net, cid).finalized


def test_server_open_flow_from_raw_transaction(devnet: Devnet, domain: VoucherDomain) -> None:
    """Payer signs approve+open; server decodes, verifies, broadcasts, checks state and the 0 voucher."""
    from mpp_claude.tempo import tx as txmod
    from mpp_claude.tempo.session.transactions import build_tx, sign_and_encode
    from mpp_claude.tempo.session.verify import check_open_transaction

    net, escrow, rpc = devnet, devnet.escrow_address, devnet.rpc
    payer, payee = _party(net, 3 * UNIT), _party(net, 0)
    salt = os.urandom(32)
    unsigned = build_tx(open_calls(escrow, payee=payee.address, token=TOKEN, deposit=2 * UNIT, salt=salt),
                        chain_id=net.chain_id, nonce=rpc.nonce(payer.address), gas_limit=GAS_OPEN,
                        max_fee_per_gas=2 * rpc.base_fee() + 1, fee_token=FEE)
    raw = sign_and_encode(unsigned, payer.signer)
    claimed = compute_channel_id(payer=payer.address, payee=payee.address, token=TOKEN, salt=salt,
                                 authorized_signer="0x" + "00" * 20, escrow=escrow, chain_id=net.chain_id)
    initial = sign_voucher(payer.signer, domain, claimed, 0)

    # server side
    opened = check_open_transaction(txmod.decode(raw).tx, escrow=escrow, chain_id=net.chain_id,
                                    payee=payee.address, token=TOKEN, channel_id=claimed, min_deposit=UNIT)
    receipt = rpc.wait_for_receipt(rpc.send_raw(raw))
    assert hex_int(receipt["status"]) == 1
    state = read_channel(rpc, escrow, opened.channel_id)
    check_channel_terms(state, opened.channel_id, payee=payee.address, token=TOKEN)
    acc = accept_voucher(ChannelAccount(opened.channel_id), initial, state, domain)
    assert acc.outcome is VoucherOutcome.ACCEPTED and acc.signer == opened.payer == payer.address
    assert state.deposit == 2 * UNIT


def test_deploy_with_a_signed_tempo_create(devnet: Devnet) -> None:
    """deploy_escrow with a funded key sends a 0x76 CREATE and checks the code that landed."""
    from mpp_claude.tempo.escrow.deploy import deploy_escrow

    deployer = _party(devnet, 0)
    address = deploy_escrow(devnet.rpc, deployer=deployer.signer, fee_token=FEE)
    assert address != devnet.escrow_address
    assert devnet.rpc.call("eth_getCode", [address, "latest"]) == artifact()["deployedBytecode"]


def test_open_and_top_up_refusals_on_chain(devnet: Devnet, domain: VoucherDomain) -> None:
    """The contract refuses zero/oversized deposits, a zero payee, a reused id, strangers, unknown ids."""
    from eth_abi.abi import encode as abi_encode
    from eth_hash.auto import keccak

    from mpp_claude.tempo.session.channel import SEL_OPEN, SEL_TOP_UP

    net, escrow = devnet, devnet.escrow_address
    payer, payee = _party(net, 3 * UNIT), _party(net, 0)
    to = bytes.fromhex(escrow[2:])
    salt = os.urandom(32)

    def open_raw(payee_addr: str, deposit: int, salt_: bytes = salt) -> Call:
        args = abi_encode(["address", "address", "uint128", "bytes32", "address"],
                          [payee_addr, TOKEN, deposit, salt_, "0x" + "00" * 20])
        return Call(to, SEL_OPEN + args)

    assert _revert_name(net, payer, open_raw(payee.address, 0)) == "ZeroDeposit"
    assert _revert_name(net, payer, open_raw("0x" + "00" * 20, 5)) == "InvalidPayee"
    assert _revert_name(net, payer, open_raw(payee.address, 2**96)) == "DepositOverflow"
    opened = _send(net, payer, open_calls(escrow, payee=payee.address, token=TOKEN, deposit=UNIT, salt=salt),
                   GAS_OPEN)
    cid = opened.events[0].channel_id
    reuse = open_calls(escrow, payee=payee.address, token=TOKEN, deposit=UNIT, salt=os.urandom(32))[1]
    assert _revert_name(net, payer, reuse) == "TransferFailed"  # no allowance left: nothing is pulled

    def top_up_raw(channel: str, amount: int) -> Call:
        return Call(to, SEL_TOP_UP + bytes.fromhex(channel[2:]) + amount.to_bytes(32, "big"))

    assert _revert_name(net, payer, top_up_raw(cid, 0)) == "ZeroDeposit"
    assert _revert_name(net, payer, top_up_raw(cid, 2**96)) == "DepositOverflow"
    assert _revert_name(net, payer, top_up_raw(cid, 2**256 - 1)) == "DepositOverflow"
    assert _revert_name(net, payee, top_up_raw(cid, 1)) == "NotPayer"
    unknown = "0x" + keccak(b"no such channel").hex()
    assert _revert_name(net, payer, top_up_raw(unknown, 1)) == "ChannelNotFound"
    v = sign_voucher(payer.signer, domain, unknown, 1)
    assert _revert_name(net, payee, settle_call(escrow, unknown, 1, v.signature)) == "ChannelNotFound"
    assert not read_channel(net.rpc, escrow, unknown).exists

    # the same parameters again (same payer, payee, token, salt, signer) give the same id: refused
    approve_and_open = open_calls(escrow, payee=payee.address, token=TOKEN, deposit=UNIT, salt=salt)
    _send(net, payer, approve_and_open[:1], GAS_OPEN)  # approve only, so the pull would succeed
    assert _revert_name(net, payer, approve_and_open[1]) == "ChannelAlreadyExists"


def test_sponsored_open_server_pays_the_fee(devnet: Devnet, domain: VoucherDomain) -> None:
    """feePayer: the payer signs approve+open with an expiring nonce, the payee co-signs and pays."""
    from mpp_claude.tempo import tx as txmod
    from mpp_claude.tempo.session.transactions import build_tx, sign_and_encode
    from mpp_claude.tempo.session.verify import check_open_transaction
    from mpp_claude.tempo.verify import SponsorPolicy, check_sponsor_policy

    net, escrow, rpc = devnet, devnet.escrow_address, devnet.rpc
    payer = LocalSigner(os.urandom(32))
    net.fund(payer.address, 2 * UNIT, native=False)  # pathUSD for the deposit only: no fee token at all
    payee = _party(net, 0)
    net.mine()  # a fresh block timestamp (the devnet only mines on demand)
    now = hex_int(rpc.call("eth_getBlockByNumber", ["latest", False])["timestamp"])
    salt = os.urandom(32)
    unsigned = build_tx(open_calls(escrow, payee=payee.address, token=TOKEN, deposit=2 * UNIT, salt=salt),
                        chain_id=net.chain_id, nonce=0, nonce_key=2**256 - 1, valid_before=now + 25,
                        gas_limit=GAS_OPEN, max_fee_per_gas=2 * rpc.base_fee() + 1, sponsored=True)
    raw = sign_and_encode(unsigned, payer)
    claimed = compute_channel_id(payer=payer.address, payee=payee.address, token=TOKEN, salt=salt,
                                 authorized_signer="0x" + "00" * 20, escrow=escrow, chain_id=net.chain_id)

    # server: policy, open checks, co-sign with its own key and fee token, broadcast
    decoded = txmod.decode(raw).tx
    check_sponsor_policy(decoded, SponsorPolicy(), now=now)
    opened = check_open_transaction(decoded, escrow=escrow, chain_id=net.chain_id, payee=payee.address,
                                    token=TOKEN, channel_id=claimed)
    fee_before = net.balance(payee.address, FEE)
    cosigned = txmod.cosign(decoded, payee.signer, fee_token=FEE, sender=opened.payer)
    receipt = rpc.wait_for_receipt(rpc.send_raw(txmod.encode(cosigned)))
    assert hex_int(receipt["status"]) == 1
    assert net.balance(payer.address) == 0  # exactly the deposit left the payer, no fee
    assert net.balance(payee.address, FEE) < fee_before  # the server paid the fee
    state = read_channel(rpc, escrow, claimed)
    assert state.payer == payer.address and state.deposit == 2 * UNIT


def test_async_twins(devnet: Devnet, domain: VoucherDomain) -> None:
    """read_channel_async, simulate_async and send_calls_async behave like the sync helpers."""
    import asyncio

    from mpp_claude.tempo.rpc import AsyncRpcClient
    from mpp_claude.tempo.session.onchain import read_channel_async, send_calls_async, simulate_async

    net, escrow = devnet, devnet.escrow_address
    payer, payee = _party(net, 2 * UNIT), _party(net, 0)
    cid, _ = _open(net, payer, payee, UNIT)
    v = sign_voucher(payer.signer, domain, cid, 300_000)

    async def run() -> tuple[ChannelState, Sent, str | None]:
        async with AsyncRpcClient(net.rpc_url) as rpc:
            state = await read_channel_async(rpc, escrow, cid)
            call = settle_call(escrow, cid, 300_000, v.signature)
            sent = await send_calls_async(rpc, payee.signer, (call,), escrow=escrow, gas_limit=GAS_SETTLE,
                                          fee_token=FEE)
            try:
                await simulate_async(rpc, payee.address, settle_call(escrow, cid, 300_000, v.signature))
            except EscrowReverted as exc:
                return state, sent, exc.error
            return state, sent, None

    state, sent, error = asyncio.run(run())
    assert state.deposit == UNIT and state.settled == 0
    assert sent.events[0].values["deltaPaid"] == 300_000
    assert error == "AmountNotIncreasing"


def test_channel_views_agree(devnet: Devnet) -> None:
    """channels(id), getChannel(id) and getChannelsBatch([id]) return the same state."""
    from eth_abi.abi import encode as abi_encode
    from eth_hash.auto import keccak

    net, escrow = devnet, devnet.escrow_address
    payer, payee = _party(net, 2 * UNIT), _party(net, 0)
    cid, _ = _open(net, payer, payee, UNIT)

    def call(sig: str, args: bytes) -> bytes:
        data = "0x" + (keccak(sig.encode())[:4] + args).hex()
        return bytes.fromhex(net.rpc.call("eth_call", [{"to": escrow, "data": data}, "latest"])[2:])

    raw_id = bytes.fromhex(cid[2:])
    flat = call("channels(bytes32)", raw_id)
    assert flat == call("getChannel(bytes32)", raw_id)
    batch = call("getChannelsBatch(bytes32[])", abi_encode(["bytes32[]"], [[raw_id, bytes(32)]]))
    assert batch[64:64 + 256] == flat and batch[64 + 256:] == bytes(256)
    assert read_channel(net.rpc, escrow, cid).deposit == UNIT
