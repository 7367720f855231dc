"""PaymentGate scopes an ``Idempotency-Key`` by the credential's claimed ``source`` without
secp256k1 work, and proves the claim before it matters: a replay recovers the signer, a self-paid
payment is compared with the sender the chain reports, a sponsored one before broadcast.

The real ``AsyncChargeVerifier`` runs against ``ScriptedChain``, an RPC stand-in that "mines"
whatever is broadcast (its receipt carries the transfer logs of the transaction's calls, from the
sender it recovers, as a node does); ``tx.recover_sender`` is patched to count the server's own
recoveries."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from mpp_claude.errors import ChainError, CredentialReplayed, MalformedTransaction, VerificationFailed
from mpp_claude.protocol.credential import Credential, format_credential, parse_credential
from mpp_claude.server.config import build_config
from mpp_claude.server.payments import Paid, PaymentGate, Replayed
from mpp_claude.server.pricing import AtomicAmount, Quote
from mpp_claude.server.stores import MemoryStore
from mpp_claude.server.stores.base import IdemState, StoredResponse, request_fingerprint
from mpp_claude.tempo import tip20
from mpp_claude.tempo import tx as txmod
from mpp_claude.tempo.charge import build_charge_transaction, did_pkh, sign_charge
from mpp_claude.tempo.request import ChargeRequest
from mpp_claude.tempo.settle import AsyncChargeVerifier
from mpp_claude.tempo.signer import LocalSigner

ROUTE = "POST /v1/chat/completions"
QUOTE = Quote(model="claude-haiku-4-5", amount=AtomicAmount(1234), prompt_tokens=10, max_tokens=64)
NOW = 1_900_000_000
CHAIN = 31337
BODY = b'{"model":"claude-haiku-4-5"}'
ALICE = LocalSigner("0x" + "a1" * 32)
BOB = LocalSigner("0x" + "b0" * 32)
SPONSOR_KEY = "0x" + "22" * 32
ANSWER = StoredResponse(200, (("content-type", "application/json"),), b'{"answer":"alice\'s"}')
_NODE_RECOVERS = txmod.recover_sender  # the chain's own recovery, untouched by the patch below


def _word(address: str) -> str:
    return "0x" + "00" * 12 + address[2:].lower()


class ScriptedChain:
    """Async RPC stand-in: records every call; ``send_raw`` mines the transaction at once."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.receipts: dict[str, dict[str, Any]] = {}

    async def chain_id(self) -> int:
        self.calls.append("chain_id")
        return CHAIN

    async def send_raw(self, raw: bytes) -> str:
        self.calls.append("send_raw")
        tx = txmod.decode(raw).tx
        sender = _NODE_RECOVERS(tx)
        logs = []
        for call in tx.calls:
            transfer = tip20.decode_transfer_call(call.data)
            assert transfer is not None and transfer.memo is not None
            amount = "0x" + transfer.amount.to_bytes(32, "big").hex()
            logs.append({"address": "0x" + call.to.hex(), "data": amount,
                         "topics": [tip20.TOPIC_TRANSFER_WITH_MEMO, _word(sender), _word(transfer.to),
                                    "0x" + transfer.memo.hex()]})
        tx_hash = txmod.tx_hash(raw)
        self.receipts[tx_hash] = {"transactionHash": tx_hash, "status": "0x1", "blockNumber": "0x7",
                                  "from": sender, "logs": logs}
        return tx_hash

    async def wait_for_receipt(self, tx_hash: str, *, timeout: float) -> dict[str, Any]:
        self.calls.append("wait_for_receipt")
        return self.receipts[tx_hash]

    async def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        self.calls.append("receipt")
        return self.receipts.get(tx_hash)

    async def transaction(self, tx_hash: str) -> dict[str, Any] | None:
        self.calls.append("transaction")
        return None


class Recoveries:
    """Counts the server's calls of ``tx.recover_sender``; ``forbid`` makes any call fail the test."""

    def __init__(self) -> None:
        self.count = 0
        self.forbid = False

    def __call__(self, tx: txmod.TempoTransaction) -> str:
        assert not self.forbid, "recover_sender called on a path that must not recover"
        self.count += 1
        return _NODE_RECOVERS(tx)


@pytest.fixture
def recoveries(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recoveries]:
    counter = Recoveries()
    monkeypatch.setattr(txmod, "recover_sender", counter)
    yield counter


class Shop:
    """A gate on a memory store and a scripted chain, with a clock the test moves."""

    def __init__(self, *, sponsored: bool = False) -> None:
        flags: dict[str, Any] = {"secret_key": "k" * 40, "recipient": "0x" + "cd" * 20, "rpc_url": "http://x",
                                 "chain_id": CHAIN, "store": "memory://", "realm": "unit.test"}
        if sponsored:
            flags.update(fee_payer_key=SPONSOR_KEY, modes=["transaction"])
        self.now = [float(NOW)]
        self.store, self.chain = MemoryStore(), ScriptedChain()
        verifier = AsyncChargeVerifier(self.chain, fee_payer=LocalSigner(SPONSOR_KEY) if sponsored  # type: ignore[arg-type]
                                       else None, clock=lambda: self.now[0])
        self.gate = PaymentGate(build_config(flags=flags), self.store, verifier, clock=lambda: self.now[0],
                                nonce=lambda: f"n{len(self.chain.calls)}-{self.now[0]}")
        self.terms = self.gate.terms(ROUTE, BODY, QUOTE)

    def credential(self, signer: LocalSigner, *, source: str | None = "own") -> str:
        """An ``Authorization`` value for a fresh challenge, signed by ``signer``; ``source`` is
        the signer's own DID (``"own"``), ``None`` (absent) or any string."""
        (challenge,) = self.gate.challenges(self.terms)
        request = ChargeRequest.from_request(challenge.request_data)
        expires = int(challenge.expires_at.timestamp()) if challenge.expires_at else None
        tx = build_charge_transaction(request, challenge_id=challenge.id, realm=challenge.realm, now=NOW,
                                      expires=expires, max_fee_per_gas=10**10)
        signed = sign_charge(tx, signer)
        claimed = did_pkh(CHAIN, signer.address) if source == "own" else source
        return format_credential(Credential(challenge=challenge, payload=signed.payload(), source=claimed))

    def pay(self, auth: str, key: str | None) -> Paid | Replayed:
        return asyncio.run(self.gate.authorize(self.terms, BODY, [auth], key))

    def idem_state(self, scoped_key: str) -> IdemState:
        """What a new request would find under ``scoped_key`` (a free key is reserved, then freed)."""
        async def look() -> IdemState:
            found = await self.store.idem_begin(scoped_key, request_fingerprint(ROUTE, BODY))
            if found.state is IdemState.NEW:
                await self.store.idem_abort(scoped_key)
            return found.state

        return asyncio.run(look())


def _addr(signer: LocalSigner) -> str:
    return signer.address.lower()


def test_fresh_request_with_its_source_recovers_nothing_and_its_retry_is_proven(
        recoveries: Recoveries) -> None:
    """The key is scoped by the claimed source and settled without one local recovery; the retry
    of the same credential and key recovers the signer once, finds the claim true, replays."""
    shop = Shop()
    auth = shop.credential(ALICE)
    recoveries.forbid = True
    paid = shop.pay(auth, "K")
    assert isinstance(paid, Paid) and paid.payer == _addr(ALICE)
    assert paid.idempotency_key == f"{_addr(ALICE)}:K"
    asyncio.run(shop.gate.finish(paid, ANSWER))
    assert shop.chain.calls.count("send_raw") == 1
    recoveries.forbid = False
    again = shop.pay(auth, "K")
    assert isinstance(again, Replayed) and again.response == ANSWER and again.payer == _addr(ALICE)
    assert recoveries.count == 1 and shop.chain.calls.count("send_raw") == 1


def test_lying_source_on_a_self_paid_pull_is_served_but_nothing_is_kept(
        recoveries: Recoveries, caplog: pytest.LogCaptureFixture) -> None:
    """Bob signs and claims to be Alice: the chain says Bob paid, so Bob is served, nothing is
    stored under Alice's or Bob's key, a warning names both addresses (never the key); the same
    credential again is no replay (its challenge is used)."""
    shop = Shop()
    auth = shop.credential(BOB, source=did_pkh(CHAIN, ALICE.address))
    recoveries.forbid = True
    with caplog.at_level(logging.WARNING, logger="mpp_claude.server.payments"):
        paid = shop.pay(auth, "secret-key-1")
    assert isinstance(paid, Paid) and paid.payer == _addr(BOB) and paid.idempotency_key is None
    asyncio.run(shop.gate.finish(paid, ANSWER))  # what the route does: a no-op without a key
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert _addr(BOB) in warning.getMessage() and _addr(ALICE) in warning.getMessage()
    assert "secret-key-1" not in caplog.text
    assert shop.idem_state(f"{_addr(ALICE)}:secret-key-1") is IdemState.NEW
    assert shop.idem_state(f"{_addr(BOB)}:secret-key-1") is IdemState.NEW
    with pytest.raises(CredentialReplayed):
        shop.pay(auth, "secret-key-1")
    assert shop.chain.calls.count("send_raw") == 1
    assert shop.idem_state(f"{_addr(ALICE)}:secret-key-1") is IdemState.NEW


def test_another_signer_claiming_a_payer_never_gets_its_stored_answer(recoveries: Recoveries) -> None:
    """Alice's answer is stored under (Alice, K).  Bob's credential claiming Alice with K is
    refused (verification-failed) before anything moves; Alice's entry is intact and her own
    retry still replays.  The same holds once both credentials expired."""
    shop = Shop()
    alice = shop.credential(ALICE)
    paid = shop.pay(alice, "K")
    assert isinstance(paid, Paid)
    asyncio.run(shop.gate.finish(paid, ANSWER))
    bob = shop.credential(BOB, source=did_pkh(CHAIN, ALICE.address))
    sent, before = shop.chain.calls.count("send_raw"), recoveries.count
    with pytest.raises(VerificationFailed, match=f"source names {_addr(ALICE)}, but the transaction "
                                                 f"is signed by {_addr(BOB)}") as refused:
        shop.pay(bob, "K")
    assert refused.value.problem == "verification-failed"
    assert recoveries.count == before + 1 and shop.chain.calls.count("send_raw") == sent
    assert shop.idem_state(f"{_addr(ALICE)}:K") is IdemState.COMPLETED
    replay = shop.pay(alice, "K")
    assert isinstance(replay, Replayed) and replay.response == ANSWER
    # an hour later both challenges expired: only Alice's own credential fetches the answer
    shop.now[0] += 3600
    with pytest.raises(VerificationFailed, match="signed by"):
        shop.pay(bob, "K")
    late = shop.pay(alice, "K")
    assert isinstance(late, Replayed) and late.response == ANSWER
    assert shop.chain.calls.count("send_raw") == sent
    # Bob's credential was never claimed: it still pays for itself under his own name
    shop.now[0] -= 3600
    own = shop.pay(bob, None)
    assert isinstance(own, Paid) and own.payer == _addr(BOB)


def test_a_replay_whose_transaction_has_no_valid_signature_is_refused(recoveries: Recoveries) -> None:
    """A stored answer under (Alice, K); a credential claiming Alice whose signature recovers to
    nobody: refused with a verification-failed subclass, never a 500."""
    shop = Shop()
    paid = shop.pay(shop.credential(ALICE), "K")
    assert isinstance(paid, Paid)
    asyncio.run(shop.gate.finish(paid, ANSWER))
    forged = parse_credential(shop.credential(ALICE))
    raw = bytearray(bytes.fromhex(forged.payload["signature"][2:]))
    raw[-65:-33] = bytes(32)  # r = 0: the sender signature recovers to nobody
    bad = format_credential(Credential(challenge=forged.challenge, source=forged.source,
                                       payload={"type": "transaction", "signature": "0x" + raw.hex()}))
    with pytest.raises(MalformedTransaction, match="sender signature is invalid") as refused:
        shop.pay(bad, "K")
    assert refused.value.problem == "verification-failed"
    assert shop.idem_state(f"{_addr(ALICE)}:K") is IdemState.COMPLETED
    assert shop.chain.calls.count("send_raw") == 1


def test_sponsored_pull_with_a_lying_source_is_refused_before_broadcast(recoveries: Recoveries) -> None:
    """A sponsored pull recovers its sender to co-sign: Bob claiming Alice is refused there, before
    the claims, the gas draw and the broadcast; the reservation is released.  Alice's own
    sponsored payment with the same key then goes through and is kept."""
    shop = Shop(sponsored=True)
    assert shop.terms.requests[0]["methodDetails"]["feePayer"] is True
    bob = shop.credential(BOB, source=did_pkh(CHAIN, ALICE.address))
    with pytest.raises(VerificationFailed, match="signed by"):
        shop.pay(bob, "K")
    assert shop.chain.calls == ["chain_id"]  # nothing broadcast, no receipt asked for
    challenge_id = parse_credential(bob).challenge.id
    assert asyncio.run(shop.store.claim(f"challenge:{challenge_id}", 60))  # never claimed
    assert shop.idem_state(f"{_addr(ALICE)}:K") is IdemState.NEW
    paid = shop.pay(shop.credential(ALICE), "K")
    assert isinstance(paid, Paid) and paid.payer == _addr(ALICE)
    assert paid.idempotency_key == f"{_addr(ALICE)}:K" and shop.chain.calls.count("send_raw") == 1


@pytest.mark.parametrize("source", [None, "did:pkh:eip155:4217:" + "0x" + "a1" * 20, "alice", {"did": "x"}])
def test_without_a_usable_source_the_key_is_scoped_by_the_recovered_sender(
        recoveries: Recoveries, source: Any) -> None:
    """No source, one on another chain, or not a DID: today's path, the sender is recovered up
    front (once) and is the scope; the retry replays."""
    shop = Shop()
    auth = shop.credential(BOB, source=source)
    paid = shop.pay(auth, "K")
    assert isinstance(paid, Paid) and paid.idempotency_key == f"{_addr(BOB)}:K"
    assert recoveries.count == 1
    asyncio.run(shop.gate.finish(paid, ANSWER))
    again = shop.pay(auth, "K")
    assert isinstance(again, Replayed) and again.payer == _addr(BOB)
    assert recoveries.count == 2 and shop.chain.calls.count("send_raw") == 1


def test_with_and_without_source_the_same_payer_shares_its_keys(recoveries: Recoveries) -> None:
    """Both scopes are the lower-case payer address: an answer stored by a credential with its
    source is replayed to the same payer's credential without one, and the other way round."""
    shop = Shop()
    paid = shop.pay(shop.credential(ALICE), "K1")
    assert isinstance(paid, Paid)
    asyncio.run(shop.gate.finish(paid, ANSWER))
    assert isinstance(shop.pay(shop.credential(ALICE, source=None), "K1"), Replayed)
    plain = shop.pay(shop.credential(ALICE, source=None), "K2")
    assert isinstance(plain, Paid)
    asyncio.run(shop.gate.finish(plain, ANSWER))
    assert isinstance(shop.pay(shop.credential(ALICE), "K2"), Replayed)


def test_hash_credentials_are_scoped_by_their_source_as_before(recoveries: Recoveries) -> None:
    """A push credential is scoped by its source DID (settlement checks it against the log's
    sender); nothing is recovered, the retry replays."""
    shop = Shop()
    pull = parse_credential(shop.credential(ALICE))
    raw = bytes.fromhex(pull.payload["signature"][2:])
    tx_hash = asyncio.run(shop.chain.send_raw(raw))  # Alice broadcast it herself
    auth = format_credential(Credential(challenge=pull.challenge, source=pull.source,
                                        payload={"type": "hash", "hash": tx_hash}))
    recoveries.forbid = True
    paid = shop.pay(auth, "K")
    assert isinstance(paid, Paid) and paid.idempotency_key == f"{_addr(ALICE)}:K"
    asyncio.run(shop.gate.finish(paid, ANSWER))
    again = shop.pay(auth, "K")
    assert isinstance(again, Replayed) and again.payer == _addr(ALICE)


class DownChain(ScriptedChain):
    """A chain whose ``receipt`` does not answer (once ``down`` is set)."""

    down = False

    async def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        if self.down:
            self.calls.append("receipt (down)")
            raise ChainError("connection refused")
        return await super().receipt(tx_hash)


def _pushed(shop: Shop, signer: LocalSigner, *, source: str | None = "own",
            tx_hash: str | None = None) -> str:
    """A hash credential for a fresh challenge: ``signer`` broadcast its payment itself (or, with
    ``tx_hash``, the credential names that already mined transaction instead)."""
    pull = parse_credential(shop.credential(signer, source=source))
    if tx_hash is None:
        tx_hash = asyncio.run(shop.chain.send_raw(bytes.fromhex(pull.payload["signature"][2:])))
    return format_credential(Credential(challenge=pull.challenge, source=pull.source,
                                        payload={"type": "hash", "hash": tx_hash}))


def _alice_pushed_and_stored(shop: Shop) -> str:
    """Alice pays with a hash credential under key K and her answer is stored; returns it."""
    auth = _pushed(shop, ALICE)
    paid = shop.pay(auth, "K")
    assert isinstance(paid, Paid) and paid.idempotency_key == f"{_addr(ALICE)}:K"
    asyncio.run(shop.gate.finish(paid, ANSWER))
    return auth


def test_a_hash_replay_is_proven_by_its_receipt(recoveries: Recoveries) -> None:
    """Alice's retry of her own hash credential with K fetches its receipt once (it pays that
    challenge, from her) and replays; nothing is recovered, claimed or broadcast."""
    shop = Shop()
    auth = _alice_pushed_and_stored(shop)
    recoveries.forbid = True
    before = list(shop.chain.calls)
    again = shop.pay(auth, "K")
    assert isinstance(again, Replayed) and again.response == ANSWER and again.payer == _addr(ALICE)
    assert shop.chain.calls[len(before):] == ["receipt"]
    shop.now[0] += 3600  # expired: still replayed, still proven
    late = shop.pay(auth, "K")
    assert isinstance(late, Replayed) and late.response == ANSWER
    assert shop.chain.calls[len(before):] == ["receipt", "receipt"]


def test_a_hash_credential_claiming_another_payer_never_gets_its_stored_answer(
        recoveries: Recoveries) -> None:
    """Bob pushes his own payment of a fresh challenge but claims Alice's source with her key:
    refused (verification-failed), nothing claimed, Alice's entry intact and her retry replays;
    Bob's payment still pays for itself under his own name."""
    shop = Shop()
    alice = _alice_pushed_and_stored(shop)
    bob = _pushed(shop, BOB, source=did_pkh(CHAIN, ALICE.address))
    with pytest.raises(VerificationFailed, match=f"comes from {_addr(BOB)}, but the credential source "
                                                 f"is {_addr(ALICE)}") as refused:
        shop.pay(bob, "K")
    assert refused.value.problem == "verification-failed" and refused.value.status == 402
    assert shop.idem_state(f"{_addr(ALICE)}:K") is IdemState.COMPLETED
    shop.now[0] += 3600  # the same once Bob's challenge expired
    with pytest.raises(VerificationFailed, match="comes from"):
        shop.pay(bob, "K")
    replay = shop.pay(alice, "K")
    assert isinstance(replay, Replayed) and replay.response == ANSWER
    shop.now[0] -= 3600
    sent = parse_credential(bob)  # under Bob's own DID: his transaction was never claimed
    own = shop.pay(format_credential(Credential(challenge=sent.challenge, source=did_pkh(CHAIN, BOB.address),
                                                payload=sent.payload)), None)
    assert isinstance(own, Paid) and own.payer == _addr(BOB)


def test_a_hash_replay_naming_a_payment_of_another_challenge_is_refused(recoveries: Recoveries) -> None:
    """Anyone can see Alice's mined transaction: a fresh challenge, Alice's source, her key and
    her old hash is refused, since that receipt's memo binds her old challenge; so is a hash
    the chain does not know."""
    shop = Shop()
    alice = _alice_pushed_and_stored(shop)
    old_hash = parse_credential(alice).payload["hash"]
    stolen = _pushed(shop, BOB, source=did_pkh(CHAIN, ALICE.address), tx_hash=old_hash)
    with pytest.raises(VerificationFailed, match="challenge") as refused:
        shop.pay(stolen, "K")
    assert refused.value.problem == "verification-failed"
    unknown = _pushed(shop, BOB, source=did_pkh(CHAIN, ALICE.address), tx_hash="0x" + "ee" * 32)
    with pytest.raises(VerificationFailed, match="does not exist"):
        shop.pay(unknown, "K")
    assert shop.idem_state(f"{_addr(ALICE)}:K") is IdemState.COMPLETED
    assert isinstance(shop.pay(alice, "K"), Replayed)


def test_a_hash_replay_while_the_chain_is_down_is_refused_not_a_server_error(
        recoveries: Recoveries) -> None:
    """The receipt cannot be fetched: 402 verification-failed, the entry is left as it is, and
    the retry once the chain answers replays."""
    shop = Shop()
    shop.chain = DownChain()
    shop.gate._verifier.rpc = shop.chain  # type: ignore[assignment]
    alice = _alice_pushed_and_stored(shop)
    shop.chain.down = True
    with pytest.raises(VerificationFailed, match="could not be reached") as refused:
        shop.pay(alice, "K")
    assert refused.value.problem == "verification-failed" and refused.value.status == 402
    assert shop.chain.calls[-1] == "receipt (down)"
    assert shop.idem_state(f"{_addr(ALICE)}:K") is IdemState.COMPLETED
    shop.chain.down = False
    assert isinstance(shop.pay(alice, "K"), Replayed)
