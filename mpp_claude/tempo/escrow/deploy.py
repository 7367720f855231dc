"""Deploy ``Escrow.json`` (the compiled ``Escrow.sol``) and check the code that landed.

Measured on anvil 1.7.1 Tempo T4: a deployment uses **17,138,284 gas** (6,504 bytes of
runtime code), the same whether it is a plain EIP-1559 CREATE from a dev account or a
Tempo ``0x76`` transaction whose single call is a CREATE (``to`` empty): TIP-1000 prices
contract code and new state far above Ethereum (about 2,600 gas per code byte).  The block
gas limit is 30M, so it fits in one block; at the T1 base fee of 2e10 attodollars/gas that
is ~0.34 USD on a real chain.

Two ways to pay for it:

* ``deploy_escrow(devnet)``: from the unlocked anvil dev account ``DEPLOYER_INDEX``
  (pays fees in pathUSD; not the faucet account, whose nonces ``Devnet.fund`` owns).
* ``deploy_escrow(rpc, deployer=signer)``: a ``0x76`` CREATE signed by ``deployer``,
  for any Tempo chain where that key holds a USD fee token.
"""

from __future__ import annotations

from typing import Any

from ...errors import ChainError
from ..rpc import RpcClient, hex_int
from ..signer import Signer
from . import artifact

DEPLOYER_INDEX = 8
GAS_MARGIN = 1.1


def _rpc_of(target: Any) -> RpcClient:
    rpc = getattr(target, "rpc", target)
    if not hasattr(rpc, "call"):
        raise TypeError(f"deploy_escrow needs a Devnet or an RpcClient, got {type(target).__name__}")
    return rpc  # type: ignore[no-any-return]


def _check_code(rpc: RpcClient, address: str, tx_hash: str) -> str:
    code = str(rpc.call("eth_getCode", [address, "latest"]))
    if code.lower() != artifact()["deployedBytecode"].lower():
        raise ChainError(f"escrow deployment {tx_hash}: code at {address} differs from Escrow.json")
    return address.lower()


def _receipt_address(rpc: RpcClient, tx_hash: str, timeout: float) -> str:
    receipt = rpc.wait_for_receipt(tx_hash, timeout=timeout)
    if hex_int(receipt.get("status", "0x0")) != 1:
        raise ChainError(f"escrow deployment {tx_hash} reverted (gas used {receipt.get('gasUsed')})")
    address = receipt.get("contractAddress")
    if not isinstance(address, str) or int(address, 16) == 0:
        raise ChainError(f"escrow deployment {tx_hash}: receipt has no contract address")
    return address


def deploy_escrow(target: Any, *, deployer: Signer | None = None, gas_limit: int | None = None,
                  fee_token: str | None = None, timeout: float = 30.0) -> str:
    """Deploy the committed ``Escrow.sol`` build and return its lower-case address.

    Args:
        target: a ``Devnet`` or an ``RpcClient`` (anything with ``.rpc`` or ``.call``).
        deployer: signs a Tempo ``0x76`` CREATE; ``None`` uses anvil dev account
            ``DEPLOYER_INDEX`` through ``eth_sendTransaction`` (devnet only).
        gas_limit: defaults to ``eth_estimateGas`` plus 10 %.
        fee_token: the ``0x76`` fee token (deployer path); ``None`` = the account's default.
        timeout: seconds to wait for the receipt (anvil drops invalid Tempo txs silently).
    Returns:
        The contract address, after checking its runtime code equals ``deployedBytecode``.
    Raises:
        ChainError: the deployment reverted, was dropped (``ReceiptTimeout``) or left other code.
        RpcError / RpcUnavailable: the node refused the transaction or is unreachable.
    """
    rpc = _rpc_of(target)
    code = artifact()["bytecode"]
    sender = str(rpc.call("eth_accounts")[DEPLOYER_INDEX]) if deployer is None else deployer.address
    if gas_limit is None:
        estimate = hex_int(rpc.call("eth_estimateGas", [{"from": sender, "data": code}]))
        gas_limit = int(estimate * GAS_MARGIN)
    if deployer is None:
        request = {"from": sender, "data": code, "gas": hex(gas_limit)}
        tx_hash = str(rpc.call("eth_sendTransaction", [request]))
    else:
        from ..session.transactions import build_tx, create_call, sign_and_encode

        tx = build_tx((create_call(bytes.fromhex(code[2:])),), chain_id=rpc.chain_id(),
                      nonce=rpc.nonce(sender), gas_limit=gas_limit, max_fee_per_gas=2 * rpc.base_fee() + 1,
                      fee_token=fee_token)
        tx_hash = rpc.send_raw(sign_and_encode(tx, deployer))
    return _check_code(rpc, _receipt_address(rpc, tx_hash, timeout), tx_hash)
