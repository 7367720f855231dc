"""pympp 0.16's Tempo client as a peer: its credentials settle through our verifier on the devnet.

pympp builds its own 0x76 (self-paid) and 0x78 (sponsored hand-off) transactions with
pytempo; accepting them byte for byte shows our decoder, memo check and co-signing speak
the same wire format.  pympp signs ``valid_before = now + 60``, beyond the chain's 30 s
expiring-nonce window up to T10 (pympp.md, "Using pympp as a peer"), so the module constant
is lowered to 25 s for these tests, as the doc prescribes.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import Any

import pytest
from eth_account import Account

from mpp_claude.devnet import Devnet
from mpp_claude.tempo import tip20
from mpp_claude.tempo.settle import ChargeVerifier
from mpp_claude.tempo.signer import LocalSigner
from mpp_claude.tempo.verify import ChargeContext

pympp_client = pytest.importorskip("mpp.methods.tempo.client")
from mpp import Challenge  # noqa: E402
from mpp.methods.tempo import TempoAccount  # noqa: E402

pytestmark = pytest.mark.devnet
AMOUNT = 7_777


@pytest.fixture
def pympp_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pympp_client, "EXPIRING_NONCE_VALID_BEFORE_SECS", 25)


def _pay_with_pympp(devnet: Devnet, key: bytes, request: dict[str, Any], challenge_id: str) -> Any:
    expires = datetime.fromtimestamp(time.time() + 300, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    challenge = Challenge(id=challenge_id, method="tempo", intent="charge", request=request,
                          realm="api.peer.test", expires=expires)
    method = pympp_client._tempo_method(account=TempoAccount.from_key("0x" + key.hex()), chain_id=31337,
                                        rpc_url=devnet.rpc_url, currency=tip20.PATH_USD)
    return asyncio.run(method.create_credential(challenge))


@pytest.mark.parametrize("sponsored", [False, True], ids=["self-paid-0x76", "sponsored-0x78"])
def test_pympp_credential_settles_through_our_verifier(devnet: Devnet, funded_account: Any,
                                                       pympp_window: None, sponsored: bool) -> None:
    """A pympp-signed charge is decoded, checked, (co-signed,) broadcast and paid exactly."""
    payee = Account.create().address
    details: dict[str, Any] = {"chainId": 31337, **({"feePayer": True} if sponsored else {})}
    request = {"amount": str(AMOUNT), "currency": tip20.PATH_USD, "recipient": payee,
               "methodDetails": details}
    credential = _pay_with_pympp(devnet, bytes(funded_account.key), request, "peer-challenge")
    assert credential.payload["signature"][:4] == ("0x78" if sponsored else "0x76")
    sponsor = LocalSigner.from_account(devnet.new_funded_account())
    verifier = ChargeVerifier(devnet.rpc, fee_payer=sponsor)
    before = devnet.balance(funded_account.address), devnet.balance(payee)
    ctx = ChargeContext.from_values("peer-challenge", "api.peer.test", request, int(time.time()) + 300)
    settled = verifier.verify(credential.payload, ctx, claim=lambda key: True, source=credential.source)
    assert settled.payer == funded_account.address.lower()
    assert devnet.balance(payee) - before[1] == AMOUNT
    receipt = devnet.rpc.receipt(settled.tx_hash or "")
    assert receipt is not None
    payer_fee = sum(f.amount for f in tip20.fees_paid(receipt) if f.sender == settled.payer)
    assert (payer_fee == 0) if sponsored else (payer_fee > 0)
    assert before[0] - devnet.balance(funded_account.address) == AMOUNT + payer_fee
