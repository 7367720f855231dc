"""Tempo payments core: the money path of both the client and the server.

Modules (pure unless marked I/O):

* ``tx``        Tempo transactions 0x76 and the fee-payer domain 0x78: layout, RLP, signing
  hashes, signing, co-signing, sender recovery (``_rlp`` is the strict RLP codec).
* ``signer``    ``Signer`` protocol and ``LocalSigner``; the only module that sees key bytes.
* ``tip20``     TIP-20 calldata, logs, token table; amounts are integers of base units.
* ``memo``      the challenge-bound MPP attribution memo.
* ``request``   the Tempo charge request, validated (``ChargeRequest``).
* ``charge``    client: build and sign the payment for a challenge.
* ``proof``     zero-amount EIP-712 proofs (v3 signed, v3/v2 accepted).
* ``verify``    server: checks of calls, limits, sponsor policy and receipts.
* ``pay``       client orchestrator, sync + async (I/O through ``rpc``).
* ``settle``    server orchestrator, sync + async (I/O through ``rpc``).
* ``rpc``       pooled JSON-RPC client, sync + async: the only network I/O.
"""

from __future__ import annotations

from .charge import SignedCharge, build_charge_transaction, did_pkh, sign_charge
from .memo import attribution_memo, memo_matches
from .pay import AsyncChargePayer, ChargeCredential, ChargePayer
from .request import ChargeRequest
from .settle import AsyncChargeVerifier, ChargeVerifier, PreparedPull, SettledPayment, prepare_pull
from .signer import LocalSigner, Signature, Signer, recover_address
from .tx import EXPIRING_NONCE_KEY, Call, TempoTransaction
from .verify import ChargeContext, SponsorPolicy

__all__ = [
    "EXPIRING_NONCE_KEY",
    "AsyncChargePayer",
    "AsyncChargeVerifier",
    "Call",
    "ChargeContext",
    "ChargeCredential",
    "ChargePayer",
    "ChargeRequest",
    "ChargeVerifier",
    "LocalSigner",
    "PreparedPull",
    "SettledPayment",
    "Signature",
    "SignedCharge",
    "Signer",
    "SponsorPolicy",
    "TempoTransaction",
    "attribution_memo",
    "build_charge_transaction",
    "did_pkh",
    "memo_matches",
    "prepare_pull",
    "recover_address",
    "sign_charge",
]
