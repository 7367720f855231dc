"""``mpp-claude channels list|close``: the session payment channels in the client's channel store.

``list`` prints every channel the store knows (id, origin, payee, deposit, accepted cumulative,
spent, state) without unlocking a wallet.  ``close ID`` asks the channel's server to close it
cooperatively (the server is paid what it reported spent, the escrow refunds the rest);
``close ID --force`` does not need the server: it sends ``requestClose`` and, once the
escrow's grace period is over (run it again, or pass ``--wait``), ``withdraw``, which refunds
the deposit minus what the payee settled.  Every step prints what happened and when the next
one is possible (UTC, chain time).
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timezone
from typing import Any

from ..errors import ChannelCloseError, ClientPaymentError, ConfigError
from ._codes import EXIT_ERROR, EXIT_OK
from ._keys import add_key_arguments, load_wallet
from ._net import add_rpc_argument, rpc_url
from ._request import CommandFailed
from ._term import Progress, note, out

_HEADER = ("channel", "origin", "payee", "deposit", "accepted", "spent", "state")
#: longest single sleep of ``--wait`` (chain time is re-read after each)
_WAIT_STEP = 30.0


def register(sub: Any) -> None:
    """Add the ``channels`` subcommand (``list``, ``close``) to ``sub``."""
    channels = sub.add_parser(
        "channels", help="list or close the session payment channels of this client",
        description="The session (payment channel) side of the client: the channels in the channel store "
                    "(next to the spend ledger), and closing them cooperatively or, without the server, "
                    "by force (requestClose, then withdraw after the escrow's grace period).")
    actions = channels.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the channels in the store",
                                 description="Every channel in the channel store, newest first.  Amounts in "
                                             "USD (--json: base units).")
    listing.add_argument("--ledger", metavar="PATH", help="ledger / channel store file (default: the user "
                                                          "data dir's)")
    listing.add_argument("--wallet", metavar="ADDRESS", help="only this wallet's channels")
    listing.add_argument("--json", action="store_true", help="one JSON array, amounts in base units")
    listing.set_defaults(handler=run_list)

    close = actions.add_parser(
        "close", help="close a channel (through its server, or --force without it)",
        description="Close one channel.  Without --force: the channel's server closes it on chain, paying "
                    "itself what it reported spent; the rest of the deposit returns.  With --force (server "
                    "gone or refusing): requestClose now; after the escrow's grace period (15 min) the same "
                    "command withdraws the deposit minus what the payee settled.  Exit 0 when the step was "
                    "done or is scheduled, 1 on an error (nothing sent).")
    close.add_argument("channel_id", metavar="ID", type=channel_id,
                       help="the channel id (0x + 64 hex digits)")
    close.add_argument("--force", action="store_true",
                       help="close without the server: requestClose, then withdraw once the grace period "
                            "is over")
    close.add_argument("--wait", action="store_true",
                       help="force-close, wait for the grace period to end, withdraw (implies --force)")
    close.add_argument("--ledger", metavar="PATH", help="ledger / channel store file (default: the user "
                                                        "data dir's)")
    close.add_argument("--fee-token", metavar="ADDRESS", help="TIP-20 paying the transaction fees (default: "
                                                              "the account's fee token)")
    close.add_argument("--json", action="store_true", help="the outcome as JSON on stdout")
    add_rpc_argument(close)
    add_key_arguments(close)
    close.set_defaults(handler=run_close)


def channel_id(text: str) -> str:
    """argparse type: a channel id, normalised to lower-case ``0x`` hex."""
    from ..tempo.session import normalize_channel_id

    try:
        return normalize_channel_id(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a channel id (0x + 64 hex digits)") from None


def _store(args: argparse.Namespace, *, create: bool = True) -> Any:
    """The channel store at ``--ledger`` (default: the ledger's file); ``None`` when it does not
    exist and ``create`` is false."""
    from pathlib import Path

    from ..client.channels import ChannelStore
    from ..client.ledger import default_path

    path = Path(args.ledger) if args.ledger else default_path()
    return ChannelStore(path) if create or path.exists() else None


def _usd(amount: int | None) -> str:
    from ..client.receipts import display

    return "-" if amount is None else display(amount)


def utc(ts: int) -> str:
    """Unix seconds as ``2026-11-25 18:02:11 UTC``."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _state(stored: Any) -> str:
    if stored.status == "closing" and stored.withdrawable_at:
        return f"closing (withdraw after {utc(stored.withdrawable_at)})"
    if stored.status in ("withdrawn", "closed") and stored.refunded is not None:
        return f"{stored.status} ({_usd(stored.refunded)} refunded)"
    return str(stored.status)


def _as_dict(stored: Any) -> dict[str, Any]:
    c = stored.channel
    return {"channel_id": c.channel_id, "wallet": stored.wallet, "origin": stored.origin,
            "path": stored.path, "payee": c.payee, "token": c.token, "escrow": c.escrow,
            "chain_id": c.chain_id, "deposit": c.deposit, "signed": c.signed_cumulative,
            "accepted": stored.accepted, "spent": stored.spent, "status": stored.status,
            "close_requested_at": stored.close_requested_at or None,
            "withdrawable_at": stored.withdrawable_at or None, "refunded": stored.refunded}


def table(rows: list[Any]) -> str:
    """The channels as an aligned text table (amounts in USD)."""
    lines = [_HEADER] + [(s.channel_id, s.origin, s.channel.payee, _usd(s.channel.deposit), _usd(s.accepted),
                          _usd(s.spent), _state(s)) for s in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(_HEADER))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)


def run_list(args: argparse.Namespace) -> int:
    """Print the channel store."""
    store = _store(args, create=False)
    try:
        rows = [] if store is None else store.channels(args.wallet)
    finally:
        if store is not None:
            store.close()
    if args.json:
        out(json.dumps([_as_dict(s) for s in rows]))
    elif rows:
        out(table(rows))
    else:
        note("no channels in the store")
    return EXIT_OK


def _client(args: argparse.Namespace, stored: Any) -> Any:
    from ..client import MppClient, SessionPolicy
    from ..client.ledger import Ledger

    wallet, _ = load_wallet(args)
    if wallet.address.lower() != stored.wallet:
        raise ConfigError(f"channel {stored.channel_id} belongs to wallet {stored.wallet}, not to "
                          f"{wallet.address}; use that wallet's keystore")
    c = stored.channel
    # the escrow is the one this wallet opened the channel on; nothing new is deposited or signed
    # here beyond a close voucher for what the server reports spent (at most what was signed)
    policy = SessionPolicy(max_deposit=c.deposit, fee_token=args.fee_token, escrows={c.chain_id: c.escrow},
                           channels=_store(args))
    return MppClient(wallet, rpc_url=rpc_url(args), allowed_origins=[stored.origin],
                     ledger=Ledger(args.ledger) if args.ledger else "default", session=policy)


def _cooperative(args: argparse.Namespace, client: Any, stored: Any) -> dict[str, Any]:
    import httpx2

    if stored.status != "open":
        raise CommandFailed(f"channel {stored.channel_id} is {_state(stored)}: only an open channel can be "
                            f"closed through its server; use --force")
    try:
        receipt = client._session_shell().close_channel(stored.channel_id)
    except httpx2.HTTPError as exc:
        raise CommandFailed(f"the server at {stored.origin} cannot be reached ({type(exc).__name__}); close "
                            f"without it: mpp-claude channels close {stored.channel_id} --force") from None
    except ClientPaymentError as exc:
        raise CommandFailed(f"{exc}; close without the server: mpp-claude channels close "
                            f"{stored.channel_id} --force") from None
    after = client.session.store.get(stored.channel_id)
    if receipt is None:
        raise CommandFailed(f"the server at {stored.origin} did not close channel {stored.channel_id} (no "
                            f"session offered, or the channel is unknown to it: {_state(after)}); close "
                            f"without it: mpp-claude channels close {stored.channel_id} --force")
    message = (f"closed by the server (tx {receipt.tx_hash}): {_usd(receipt.spent)} USD paid to the payee, "
               f"{_usd(after.refunded)} USD refunded to {after.wallet}")
    return {"channel_id": stored.channel_id, "status": after.status, "tx_hash": receipt.tx_hash,
            "settled": receipt.spent, "refunded": after.refunded, "message": message}


def _describe(status: Any, wallet: str) -> str:
    if status.status == "withdrawn":
        return (f"withdrawn (tx {status.tx_hash}): {_usd(status.refunded)} USD refunded to {wallet}, "
                f"{_usd(status.settled)} USD went to the payee")
    if status.status == "closed":
        return (f"the payee closed the channel meanwhile: {_usd(status.refunded)} USD refunded to {wallet}, "
                f"{_usd(status.settled)} USD went to the payee")
    wait = max(status.withdrawable_at - status.chain_now, 0)
    head = (f"close requested on chain at {utc(status.close_requested_at)} (tx {status.tx_hash})"
            if status.tx_hash else f"close requested at {utc(status.close_requested_at)}")
    left = status.deposit - status.settled
    return (f"{head}; withdraw possible after {utc(status.withdrawable_at)} (in {wait // 60} min "
            f"{wait % 60} s), refunding the deposit minus what the payee settled (now {_usd(left)} USD): "
            "run this command again then, or add --wait")


def _forced(args: argparse.Namespace, client: Any, stored: Any) -> dict[str, Any]:
    quiet = bool(getattr(args, "quiet", False))
    with Progress("reading the channel on chain", enabled=not quiet):
        (status,) = client.reclaim(stored.channel_id)
    while args.wait and status.status == "closing" and not status.withdrawable:
        if not quiet:
            note(_describe(status, stored.wallet))
        time.sleep(min(max(status.withdrawable_at - status.chain_now, 1), _WAIT_STEP))
        (status,) = client.reclaim(stored.channel_id)
    return {"channel_id": status.channel_id, "status": status.status, "tx_hash": status.tx_hash,
            "close_requested_at": status.close_requested_at or None,
            "withdrawable_at": status.withdrawable_at or None, "deposit": status.deposit,
            "settled": status.settled, "refunded": status.refunded,
            "message": _describe(status, stored.wallet)}


def run_close(args: argparse.Namespace) -> int:
    """Close one channel cooperatively, or by force."""
    cid = args.channel_id
    args.force = args.force or args.wait
    store = _store(args, create=False)
    try:
        stored = None if store is None else store.get(cid)
    finally:
        if store is not None:
            store.close()
    if stored is None:
        raise ChannelCloseError(f"channel {cid} is not in the channel store {args.ledger or '(default)'}",
                                channel_id=cid)
    client = _client(args, stored)
    try:
        result = _forced(args, client, stored) if args.force else _cooperative(args, client, stored)
    finally:
        client.close()
    if args.json:
        out(json.dumps(result))
    else:
        out(result["message"])
    return EXIT_OK if result["status"] in ("closing", "withdrawn", "closed") else EXIT_ERROR
