"""Tempo charges on the real devnet: the three payment modes settle exactly, and every bad
credential is refused with a precise error before any money moves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from eth_account import Account

from mpp_claude.devnet import Devnet
from mpp_claude.errors import (
    CredentialReplayed,
    MalformedTransaction,
    PaymentExpired,
    PaymentInsufficient,
    VerificationFailed,
)
from mpp_claude.tempo import charge, tip20
from mpp_claude.tempo import tx as txmod
from mpp_claude.tempo.pay import AsyncChargePayer, ChargePayer
from mpp_claude.tempo.request import ChargeRequest
from mpp_claude.tempo.rpc import AsyncRpcClient, hex_int
from mpp_claude.tempo.settle import AsyncChargeVerifier, ChargeVerifier, SettledPayment
from mpp_claude.tempo.signer import LocalSigner
from mpp_claude.tempo.verify import ChargeContext

pytestmark = pytest.mark.devnet

AMOUNT = 12_345
REALM = "api.test.local"


class ClaimStore:
    """The server's replay store, reduced to an in-memory set (atomic enough for one thread)."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def __call__(self, key: str) -> bool:
        if key in self.used:
            return False
        self.used.add(key)
        return True


def _request(payee: str, *, fee_payer: bool = False, amount: int = AMOUNT,
             currency: str = tip20.PATH_USD, chain_id: int = 31337) -> dict[str, Any]:
    details: dict[str, Any] = {"chainId": chain_id}
    if fee_payer:
        details["feePayer"] = True
    return {"amount": str(amount), "currency": currency, "recipient": payee, "methodDetails": details}


def _ctx(challenge_id: str, request: dict[str, Any], expires: int | None = None) -> ChargeContext:
    return ChargeContext.from_values(challenge_id, REALM, request, expires or int(time.time()) + 300)


def _fee(devnet: Devnet, tx_hash: str, payer: str) -> int:
    receipt = devnet.rpc.receipt(tx_hash)
    assert receipt is not None
    fees = [f.amount for f in tip20.fees_paid(receipt) if f.sender == payer.lower()]
    assert len(fees) == 1, receipt["logs"]
    # the fee is ceil(gasUsed * effectiveGasPrice / 1e12) base units, charged in the fee token
    expected = -(-hex_int(receipt["gasUsed"]) * hex_int(receipt["effectiveGasPrice"]) // 10**12)
    assert fees[0] == expected
    return fees[0]


@pytest.fixture
def payee() -> str:
    return str(Account.create().address)


@pytest.fixture
def payer(funded_account: Any) -> LocalSigner:
    return LocalSigner.from_account(funded_account)


@pytest.fixture
def verifier(devnet: Devnet) -> ChargeVerifier:
    sponsor = devnet.new_funded_account()
    return ChargeVerifier(devnet.rpc, fee_payer=LocalSigner.from_account(sponsor))


def _balances(devnet: Devnet, *addresses: str) -> list[int]:
    return [devnet.balance(a) for a in addresses]


def test_transaction_mode_moves_exactly_the_amount(devnet: Devnet, payer: LocalSigner, payee: str,
                                                   verifier: ChargeVerifier) -> None:
    """Pull: the server broadcasts the payer's 0x76; payee +amount, payer -(amount + fee)."""
    request = _request(payee)
    before = _balances(devnet, payer.address, payee)
    cred = ChargePayer(devnet.rpc, payer).credential(request, challenge_id="ch-tx", realm=REALM,
                                                     expires=int(time.time()) + 300)
    assert cred.payload["type"] == "transaction" and cred.payload["signature"].startswith("0x76")
    claims = ClaimStore()
    settled = verifier.verify(cred.payload, _ctx("ch-tx", request), claim=claims, source=cred.source)
    assert isinstance(settled, SettledPayment)
    assert (settled.payer, settled.amount, settled.tx_hash) == (payer.address, AMOUNT, cred.tx_hash)
    assert settled.tx_hash in claims.used and settled.block_number
    fee = _fee(devnet, settled.tx_hash, payer.address)
    after = _balances(devnet, payer.address, payee)
    assert after[1] - before[1] == AMOUNT
    assert before[0] - after[0] == AMOUNT + fee  # fee token == payment token: both from pathUSD


def test_hash_mode_moves_exactly_the_amount(devnet: Devnet, payer: LocalSigner, payee: str,
                                            verifier: ChargeVerifier) -> None:
    """Push: the payer broadcasts and waits; the server checks the receipt and the source."""
    request = _request(payee)
    before = _balances(devnet, payer.address, payee)
    cred = ChargePayer(devnet.rpc, payer).credential(request, challenge_id="ch-hash", realm=REALM,
                                                     expires=int(time.time()) + 300, mode="hash")
    assert cred.payload == {"type": "hash", "hash": cred.tx_hash}
    settled = verifier.verify(cred.payload, _ctx("ch-hash", request), claim=ClaimStore(), source=cred.source)
    assert settled.payer == payer.address and settled.reference == cred.tx_hash
    fee = _fee(devnet, cred.tx_hash or "", payer.address)
    after = _balances(devnet, payer.address, payee)
    assert after[1] - before[1] == AMOUNT
    assert before[0] - after[0] == AMOUNT + fee


def test_sponsored_mode_payer_pays_only_the_amount(devnet: Devnet, payer: LocalSigner, payee: str,
                                                   verifier: ChargeVerifier) -> None:
    """Sponsored pull: a 0x78 envelope; the server co-signs; its fee payer alone pays the fee."""
    assert verifier.fee_payer is not None
    sponsor = verifier.fee_payer.address
    request = _request(payee, fee_payer=True)
    before = _balances(devnet, payer.address, payee, sponsor)
    cred = ChargePayer(devnet.rpc, payer).credential(request, challenge_id="ch-sp", realm=REALM,
                                                     expires=int(time.time()) + 300)
    assert cred.payload["signature"].startswith("0x78") and cred.tx_hash is None
    settled = verifier.verify(cred.payload, _ctx("ch-sp", request), claim=ClaimStore())
    assert settled.payer == payer.address and settled.fee_payer == sponsor
    fee = _fee(devnet, settled.tx_hash or "", sponsor)
    after = _balances(devnet, payer.address, payee, sponsor)
    assert after[1] - before[1] == AMOUNT
    assert before[0] - after[0] == AMOUNT
    assert before[2] - after[2] == fee


def test_async_transaction_mode(devnet: Devnet, payer: LocalSigner, payee: str) -> None:
    """The async payer and verifier twins settle a pull payment the same way."""
    request = _request(payee)

    async def run() -> SettledPayment:
        async with AsyncRpcClient(devnet.rpc_url) as rpc:
            payer_ = AsyncChargePayer(rpc, payer)
            cred = await payer_.credential(request, challenge_id="ch-async", realm=REALM,
                                           expires=int(time.time()) + 300)

            async def claim(key: str) -> bool:
                return True

            return await AsyncChargeVerifier(rpc).verify(cred.payload, _ctx("ch-async", request), claim=claim)

    before = devnet.balance(payee)
    settled = asyncio.run(run())
    assert settled.payer == payer.address
    assert devnet.balance(payee) - before == AMOUNT


# --- refusals: a precise error, and nothing moves --------------------------------------------------


def _signed(payer: LocalSigner, request: dict[str, Any], *, challenge_id: str = "ch-bad",
            now: int | None = None, mutate: Callable[[txmod.TempoTransaction], txmod.TempoTransaction]
            = lambda t: t) -> str:
    t = int(time.time()) if now is None else now
    tx = charge.build_charge_transaction(ChargeRequest.from_request(request), challenge_id=challenge_id,
                                         realm=REALM, now=t, expires=t + 300, max_fee_per_gas=10**11)
    return "0x" + charge.sign_charge(mutate(tx), payer).raw.hex()


def _plain_transfer(payee: str) -> Callable[[txmod.TempoTransaction], txmod.TempoTransaction]:
    def mutate(tx: txmod.TempoTransaction) -> txmod.TempoTransaction:
        call = txmod.Call(txmod.address_bytes(tip20.PATH_USD), tip20.encode_transfer(payee, AMOUNT))
        return replace(tx, calls=(call,))
    return mutate


def _extra_call(tx: txmod.TempoTransaction) -> txmod.TempoTransaction:
    thief = Account.create().address
    extra = txmod.Call(txmod.address_bytes(tip20.PATH_USD), tip20.encode_transfer(thief, 1))
    return replace(tx, calls=(*tx.calls, extra))


REFUSALS: list[tuple[str, type[Exception], str]] = [
    ("malformed", MalformedTransaction, "malformed Tempo transaction"),
    ("wrong_chain", VerificationFailed, "chain id 4217, the challenge requires 31337"),
    ("foreign_memo", VerificationFailed, "made for another challenge"),
    ("plain_transfer", VerificationFailed, "plain transfer without memo"),
    ("extra_call", VerificationFailed, "unauthorized extra calls"),
    ("underpayment", PaymentInsufficient, f"pays {AMOUNT - 1} base units, the challenge asks {AMOUNT}"),
    ("wrong_token", VerificationFailed, f"in token {tip20.ALPHA_USD}"),
    ("expired", PaymentExpired, "validBefore"),
]


@pytest.mark.parametrize(("case", "error", "message"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_bad_transaction_is_refused_and_nothing_moves(devnet: Devnet, payer: LocalSigner, payee: str,
                                                      verifier: ChargeVerifier, case: str,
                                                      error: type[Exception], message: str) -> None:
    """Each broken pull credential raises its precise error; no claim, no broadcast, no transfer."""
    request = _request(payee)
    makers: dict[str, Callable[[], str]] = {
        "malformed": lambda: "0x76c0ffee",
        "wrong_chain": lambda: _signed(payer, _request(payee, chain_id=4217)),
        "foreign_memo": lambda: _signed(payer, request, challenge_id="another-challenge"),
        "plain_transfer": lambda: _signed(payer, request, mutate=_plain_transfer(payee)),
        "extra_call": lambda: _signed(payer, request, mutate=_extra_call),
        "underpayment": lambda: _signed(payer, _request(payee, amount=AMOUNT - 1)),
        "wrong_token": lambda: _signed(payer, _request(payee, currency=tip20.ALPHA_USD)),
        "expired": lambda: _signed(payer, request, now=int(time.time()) - 100),
    }
    signature = makers[case]()
    before = _balances(devnet, payer.address, payee)
    claims = ClaimStore()
    with pytest.raises(error, match=message):
        verifier.verify({"type": "transaction", "signature": signature}, _ctx("ch-bad", request),
                        claim=claims)
    assert claims.used == set()
    devnet.mine()
    assert _balances(devnet, payer.address, payee) == before


def test_replayed_transaction_is_refused(devnet: Devnet, payer: LocalSigner, payee: str,
                                         verifier: ChargeVerifier) -> None:
    """The same pull credential twice: the second hits the claim and is never broadcast."""
    request = _request(payee)
    cred = ChargePayer(devnet.rpc, payer).credential(request, challenge_id="ch-re", realm=REALM,
                                                     expires=int(time.time()) + 300)
    claims = ClaimStore()
    verifier.verify(cred.payload, _ctx("ch-re", request), claim=claims)
    before = _balances(devnet, payer.address, payee)
    with pytest.raises(CredentialReplayed, match=f"transaction {cred.tx_hash} was already used"):
        verifier.verify(cred.payload, _ctx("ch-re", request), claim=claims)
    devnet.mine()
    assert _balances(devnet, payer.address, payee) == before


def test_replayed_hash_is_refused(devnet: Devnet, payer: LocalSigner, payee: str,
                                  verifier: ChargeVerifier) -> None:
    """A hash credential accepted once is refused the second time (upper-case hex too)."""
    request = _request(payee)
    cred = ChargePayer(devnet.rpc, payer).credential(request, challenge_id="ch-rh", realm=REALM,
                                                     expires=int(time.time()) + 300, mode="hash")
    claims = ClaimStore()
    verifier.verify(cred.payload, _ctx("ch-rh", request), claim=claims, source=cred.source)
    shouted = {"type": "hash", "hash": "0x" + (cred.tx_hash or "")[2:].upper()}
    with pytest.raises(CredentialReplayed):
        verifier.verify(shouted, _ctx("ch-rh", request), claim=claims, source=cred.source)


def test_hash_of_unknown_transaction_is_a_clean_refusal(devnet: Devnet, payee: str,
                                                        verifier: ChargeVerifier) -> None:
    """A hash the chain never saw is VerificationFailed, not a server error."""
    payer = Account.create()
    source = charge.did_pkh(31337, payer.address)
    with pytest.raises(VerificationFailed, match="does not exist on chain 31337"):
        verifier.verify({"type": "hash", "hash": "0x" + "ab" * 32}, _ctx("ch-none", _request(payee)),
                        claim=ClaimStore(), source=source)


def test_hash_from_another_payer_is_refused(devnet: Devnet, payer: LocalSigner, payee: str,
                                            verifier: ChargeVerifier) -> None:
    """A real payment presented with someone else's source does not match the log sender."""
    request = _request(payee)
    cred = ChargePayer(devnet.rpc, payer).credential(request, challenge_id="ch-src", realm=REALM,
                                                     expires=int(time.time()) + 300, mode="hash")
    other = charge.did_pkh(31337, Account.create().address)
    claims = ClaimStore()
    with pytest.raises(VerificationFailed, match="but the credential source is"):
        verifier.verify(cred.payload, _ctx("ch-src", request), claim=claims, source=other)
    assert claims.used == set()
