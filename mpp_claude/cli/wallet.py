"""``mpp-claude wallet new|show|balance|fund``: the paying key and its balances.

``new`` writes an encrypted keystore (scrypt, mode 0600, never overwritten); ``show`` prints the
address only; ``balance`` reads the known USD stablecoins of the RPC node's chain; ``fund`` sends
pathUSD from the dev faucet on a local devnet and explains where funds come from elsewhere.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import ConfigError
from ._codes import EXIT_ERROR, EXIT_OK
from ._keys import add_key_arguments, default_keystore, read_password, resolve_address
from ._net import add_rpc_argument, rpc_url
from ._term import Progress, err, note, out

MAINNET, TESTNET = 4217, 42431


def register(sub: Any) -> None:
    """Add ``wallet`` and its four subcommands to ``sub`` (an argparse subparsers object)."""
    wallet = sub.add_parser("wallet", help="create a wallet, show its address, balances, fund it",
                            description="Manage the paying wallet.  Keys are never printed.")
    cmds = wallet.add_subparsers(dest="wallet_command", metavar="WALLET_COMMAND")
    wallet.set_defaults(handler=lambda args: _usage(wallet))

    new = cmds.add_parser("new", help="create a new key in an encrypted keystore file",
                          description="Create a random key and save it encrypted (scrypt) at --keystore "
                                      "(default: $MPP_KEYSTORE or the user data dir's wallet.json), mode "
                                      "0600.  An existing file is never overwritten.  Prints the address.")
    add_key_arguments(new)
    new.add_argument("--scrypt-n", type=int, metavar="N",
                     help="scrypt work factor (default 262144; lower only for throwaway test wallets)")
    new.set_defaults(handler=run_new)

    for name, text in (("show", "print the wallet's address (never the key)"),
                       ("balance", "print the wallet's token balances"),
                       ("fund", "fund the wallet (devnet faucet) or explain how to get funds")):
        cmd = cmds.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".  The address "
                              "comes from --address, $MPP_PRIVATE_KEY or the keystore file (no password).")
        add_key_arguments(cmd, password=False)
        cmd.add_argument("--address", metavar="0x…", help="use this address instead of the wallet's")
        if name != "show":
            add_rpc_argument(cmd)
        if name == "fund":
            cmd.add_argument("--amount", default="100", help="pathUSD to send on a devnet (default 100)")
        cmd.add_argument("--json", action="store_true", help="machine-readable output")
        cmd.set_defaults(handler={"show": run_show, "balance": run_balance, "fund": run_fund}[name])


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_new(args: argparse.Namespace) -> int:
    """Create the keystore; print the address on stdout."""
    from ..client.wallet import Wallet

    path = args.keystore or default_keystore()
    if path.exists():
        raise ConfigError(f"keystore {path} already exists; refusing to overwrite a key "
                          "(pass --keystore NEW_PATH for another wallet)")
    password = read_password(args, confirm=True)
    with Progress("encrypting the new key (scrypt)", enabled=not args.quiet):
        wallet = Wallet.create(path, password, iterations=args.scrypt_n)
    out(wallet.address)
    note(f"keystore written to {path} (mode 0600); fund it with `mpp-claude wallet fund`")
    return EXIT_OK


def run_show(args: argparse.Namespace) -> int:
    """Print the address (and with ``--json`` its source)."""
    address, source = resolve_address(args)
    out(json.dumps({"address": address, "source": source}) if args.json else address)
    return EXIT_OK


def run_balance(args: argparse.Namespace) -> int:
    """Print the balance of each known token of the node's chain (pathUSD on unknown chains)."""
    from ..client.receipts import display
    from ..tempo import tip20
    from ..tempo.rpc import RpcClient

    address, _ = resolve_address(args)
    with RpcClient(rpc_url(args)) as rpc, Progress("reading balances", enabled=not args.quiet):
        chain_id = rpc.chain_id()
        tokens = tip20.KNOWN_TOKENS.get(chain_id) or (tip20.Token("pathUSD", tip20.PATH_USD, chain_id),)
        balances = [(tok, rpc.balance_of(tok.address, address)) for tok in tokens]
    if args.json:
        out(json.dumps({"address": address, "chain_id": chain_id, "balances": [
            {"symbol": t.symbol, "token": t.address, "amount": amount, "decimals": t.decimals}
            for t, amount in balances]}))
        return EXIT_OK
    out(f"{address} on chain {chain_id}")
    width = max(len(t.symbol) for t, _ in balances)
    for tok, amount in balances:
        out(f"  {tok.symbol.ljust(width)}  {display(amount, tok.decimals)}")
    return EXIT_OK


def _how_to_fund(chain_id: int, address: str) -> str:
    if chain_id == TESTNET:
        return (f"chain {chain_id} is the Tempo Moderato testnet: get test stablecoins from its faucet:\n"
                f"  curl -X POST https://tempo.xyz/developers/api/faucet -H 'content-type: application/json' "
                f"-d '{{\"address\": \"{address}\"}}'\n"
                f"  or the RPC method tempo_fundAddress [\"{address}\"] on https://rpc.moderato.tempo.xyz")
    if chain_id == MAINNET:
        return (f"chain {chain_id} is Tempo mainnet: there is no faucet.  Send USDC.e or pathUSD to "
                f"{address}: bridge USDC to Tempo, or buy stablecoins and withdraw them to this address.  "
                "Keep only what an agent may spend in this wallet.")
    return (f"chain {chain_id} is not a local devnet, the Tempo testnet (42431) or mainnet (4217); "
            f"send a USD stablecoin to {address} from a funded account")


def run_fund(args: argparse.Namespace) -> int:
    """Devnet: send ``--amount`` pathUSD from the faucet (exit 0).  Elsewhere: explain (exit 1)."""
    from ..client.receipts import display
    from ..devnet import fund_from_faucet, is_devnet
    from ..tempo import tip20
    from ..tempo.rpc import RpcClient

    address, _ = resolve_address(args)
    try:
        amount = tip20.from_display(args.amount)
    except (ValueError, ArithmeticError):
        raise ConfigError(f"--amount {args.amount!r} is not a decimal pathUSD amount") from None
    if amount <= 0:
        raise ConfigError(f"--amount must be positive, got {args.amount}")
    with RpcClient(rpc_url(args)) as rpc:
        if not is_devnet(rpc):
            err(_how_to_fund(rpc.chain_id(), address))
            return EXIT_ERROR
        with Progress("sending pathUSD from the devnet faucet", enabled=not args.quiet):
            tx_hash = fund_from_faucet(rpc, address, amount)
            balance = rpc.balance_of(tip20.PATH_USD, address)
    if args.json:
        out(json.dumps({"address": address, "amount": amount, "tx_hash": tx_hash, "balance": balance}))
    else:
        out(f"funded {address} with {args.amount} pathUSD (tx {tx_hash}); balance "
            f"{display(balance)} pathUSD")
    return EXIT_OK
