"""A minimal paying httpx2 transport for server tests (test-only; the real client is ``mpp_claude.client``).

On a 402 it takes the first ``Payment`` challenge, builds and signs the Tempo charge with the
tempo core's credential builder, and resends the same request once with the credential.  It
records every credential and receipt so tests can replay them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx2

from mpp_claude.protocol.challenge import Challenge, parse_challenges
from mpp_claude.protocol.credential import Credential, format_credential
from mpp_claude.protocol.receipt import Receipt, parse_receipt
from mpp_claude.tempo.charge import build_charge_transaction, sign_charge
from mpp_claude.tempo.request import ChargeRequest
from mpp_claude.tempo.rpc import RpcClient
from mpp_claude.tempo.signer import LocalSigner


@dataclass
class Payment:
    """One payment the transport made: the challenge, the credential header, the receipt."""

    challenge: Challenge
    authorization: str
    tx_hash: str | None
    receipt: Receipt | None = None


def pay_challenge(challenge: Challenge, signer: LocalSigner, rpc: RpcClient, *, mode: str = "transaction",
                  now: int | None = None) -> tuple[str, str | None]:
    """The ``Authorization`` value that pays ``challenge`` (``hash`` mode broadcasts first)."""
    request = ChargeRequest.from_request(challenge.request_data)
    expires = int(challenge.expires_at.timestamp()) if challenge.expires_at else None
    tx = build_charge_transaction(request, challenge_id=challenge.id, realm=challenge.realm,
                                  now=int(time.time()) if now is None else now, expires=expires,
                                  max_fee_per_gas=max(2 * rpc.base_fee(), 1))
    signed = sign_charge(tx, signer)
    if mode == "hash":
        rpc.send_raw(signed.raw)
        assert signed.tx_hash is not None
        rpc.wait_for_receipt(signed.tx_hash, timeout=10)
    credential = Credential(challenge=challenge, payload=signed.payload(mode),  # type: ignore[arg-type]
                            source=signed.source)
    return format_credential(credential), signed.tx_hash


@dataclass
class PayingTransport(httpx2.BaseTransport):
    """Pays 402 answers with ``account`` (an eth_account LocalAccount) on the chain behind ``rpc_url``."""

    account: Any
    rpc_url: str
    mode: str = "transaction"
    inner: httpx2.BaseTransport = field(default_factory=httpx2.HTTPTransport)
    payments: list[Payment] = field(default_factory=list)
    extra_headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._signer = LocalSigner.from_account(self.account)
        self._rpc = RpcClient(self.rpc_url)

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        body = request.read()
        for k, v in self.extra_headers.items():
            request.headers[k] = v
        response = self.inner.handle_request(request)
        if response.status_code != 402:
            return response
        response.read()
        response.close()
        challenge = parse_challenges(response.headers.get_list("www-authenticate"))[0]
        authorization, tx_hash = pay_challenge(challenge, self._signer, self._rpc, mode=self.mode)
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() != "authorization"]
        headers.append(("authorization", authorization))
        retry = httpx2.Request(request.method, request.url, headers=headers, content=body,
                               extensions=request.extensions)
        paid = self.inner.handle_request(retry)
        payment = Payment(challenge, authorization, tx_hash)
        if "payment-receipt" in paid.headers:
            payment.receipt = parse_receipt(paid.headers["payment-receipt"])
        self.payments.append(payment)
        return paid

    def close(self) -> None:
        self.inner.close()
        self._rpc.close()
