"""Whom an ``Idempotency-Key`` belongs to, and proving it before a stored answer is replayed.

The payment gate (``payments.py``, step 5) scopes a key by its payer, ``"{payer}:{key}"``,
without I/O and, on the common path, without secp256k1 work: a ``transaction`` whose
``source`` DID names an address on the charge's chain is scoped by that *claimed* address; one
without a usable ``source`` by its signature-recovered sender; a ``hash`` credential by its
``source``.  A claim is proven only where it matters: before a replay (:func:`prove`), and
against the chain's answer after settlement (``payments.py``, step 9: :func:`release`).

Why scoping by an unproven ``source`` is safe:

* Nobody gets another payer's stored answer.  An answer is stored under ``A:K`` only for a
  request the chain (or a recovered signature) showed ``A`` paid, and replayed only to a
  credential that proves it is ``A``'s: a ``transaction`` whose recovered signer is ``A`` (the
  no-source scope is a recovered signer already), or a ``hash`` whose mined, successful
  transaction pays that credential's own challenge (the memo binds the challenge id) from
  ``A``.  Knowing ``A``'s key ``K`` and the body is not enough: a hash claiming ``A`` must name
  a payment ``A`` made for that very challenge, which only ``A`` can make.
* Only who knows a payer's secret ``Idempotency-Key`` can touch its entry, and only briefly.
  Claiming ``A`` with ``K`` against ``A``'s stored answer is refused; against ``A``'s request
  in flight, or with another body, it gets the 409 / 422 anyone would; none of these changes
  ``A``'s entry.  A free ``A:K`` is held in flight for the one request (``A``'s own request
  with ``K`` meanwhile gets a 409 with ``Retry-After``), then released with nothing stored.
* No payment is refused after it moved money.  The replay check runs before settlement
  (nothing is charged either way); a self-paid mismatch is found after the money moved and
  is served; the sponsored mismatch is refused before its claims and broadcast.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import anyio

from ..errors import ChainError, VerificationFailed
from ..protocol.credential import Credential
from ..tempo import tx as txmod
from ..tempo.settle import AsyncChargeVerifier, SettledPayment, decode_hex_payload
from ..tempo.verify import ChargeContext, check_claimed_sender, claimed_source, source_address
from .stores.base import Store

log = logging.getLogger("mpp_claude.server.payments")


@dataclass(frozen=True, slots=True)
class Scope:
    """Whom an ``Idempotency-Key`` is scoped to: ``payer``, and whether it is only ``claimed``
    (a ``transaction``'s ``source``, unproven); ``decoded`` is the transaction (``None``: hash)."""

    payer: str
    decoded: txmod.Decoded | None
    claimed: bool = False

    @property
    def recovered_sender(self) -> str | None:
        """The transaction's sender when it was recovered (settlement need not do it again)."""
        return self.payer if self.decoded is not None and not self.claimed else None

    @property
    def claimed_sender(self) -> str | None:
        """The unproven sender a transaction's ``source`` claims (checked where one is recovered)."""
        return self.payer if self.claimed else None


def decode_transaction(credential: Credential) -> txmod.Decoded:
    """The decoded envelope of a ``transaction`` credential (``MalformedTransaction`` otherwise)."""
    return txmod.decode(decode_hex_payload(credential.payload.get("signature"), "signature"))


def scope_of(credential: Credential, ctx: ChargeContext) -> Scope:
    """Whom the credential's ``Idempotency-Key`` belongs to, without I/O or clock: a transaction's
    claimed ``source`` (no secp256k1 work), else its recovered sender (still known after its
    validity window closed); a hash credential's ``source`` DID.  Carries the decoded
    transaction for settlement to reuse.

    Raises:
        VerificationFailed: undecodable transaction, unrecoverable signature, or a hash
            credential without a ``source`` on this chain.
    """
    if credential.payload.get("type") == "transaction":
        decoded = decode_transaction(credential)
        claimed = claimed_source(credential.source, ctx.request.chain_id)
        if claimed is not None:
            return Scope(claimed, decoded, claimed=True)
        return Scope(txmod.recover_sender(decoded.tx).lower(), decoded)
    return Scope(source_address(credential.source, ctx.request.chain_id), None)


async def prove(scope: Scope, credential: Credential, ctx: ChargeContext,
                verifier: AsyncChargeVerifier) -> None:
    """Before a replay: the credential is the scope's payer's.  A transaction's signer is
    recovered and must be a claimed payer; a hash credential's receipt must pay ``ctx`` from the
    claimed ``source`` (``AsyncChargeVerifier.prove_hash``: one RPC, nothing claimed).

    Raises:
        VerificationFailed: not proven (``MalformedTransaction``: no signer), or the chain could
            not be reached to prove it.
    """
    if scope.decoded is not None:
        if scope.claimed:
            check_claimed_sender(scope.payer, txmod.recover_sender(scope.decoded.tx).lower())
        return
    try:
        await verifier.prove_hash(credential.payload, ctx, credential.source)
    except ChainError:
        raise VerificationFailed("the chain could not be reached to verify the payment behind this "
                                 "Idempotency-Key; nothing was replayed or charged") from None


async def release(store: Store, scoped_key: str, claimed: str, settled: SettledPayment) -> None:
    """A settled payment's chain payer is not the address its key was scoped by: release the
    reservation, storing nothing.  The money moved, so a store failure here is logged, not
    raised (the reservation's lease then runs out on its own)."""
    log.warning("payment %s comes from %s, but its credential claimed source %s: served, "
                "its Idempotency-Key not kept", settled.reference, settled.payer, claimed)
    with anyio.CancelScope(shield=True):
        try:
            await store.idem_abort(scoped_key)
        except Exception as exc:  # a store backend's error (sqlite3, redis, OSError): serve anyway
            log.warning("could not release the Idempotency-Key reservation of %s: %s",
                        settled.reference, type(exc).__name__)
