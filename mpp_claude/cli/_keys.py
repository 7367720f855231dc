"""Where the CLI's wallet comes from: keystore file, password, ``MPP_PRIVATE_KEY``.

Resolution order for commands that sign (``chat``): ``--keystore PATH``; else the raw key in
``MPP_PRIVATE_KEY`` (read, then removed from this process's environment); else the keystore
at ``MPP_KEYSTORE`` or the default path in the user data dir.  Keystore passwords come from
``--password-file``, ``MPP_WALLET_PASSWORD``, or a prompt when stdin is a terminal.
Commands that only need the address (``wallet show|balance|fund``) read it from the keystore
file without its password.  No key is ever printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..client.wallet import ENV_VAR, Wallet
from ..errors import ConfigError

KEYSTORE_ENV = "MPP_KEYSTORE"
PASSWORD_ENV = "MPP_WALLET_PASSWORD"
NO_WALLET = (f"no wallet: create one with `mpp-claude wallet new`, pass --keystore PATH, or set "
             f"{ENV_VAR} to a hex private key")


def default_keystore() -> Path:
    """``<user data dir>/mpp-claude/wallet.json`` (``MPP_KEYSTORE`` overrides)."""
    env = os.environ.get(KEYSTORE_ENV)
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_data_dir("mpp-claude", appauthor=False)) / "wallet.json"


def add_key_arguments(parser: argparse.ArgumentParser, *, password: bool = True) -> None:
    """``--keystore`` (and ``--password-file``) on a subcommand."""
    parser.add_argument("--keystore", type=Path, metavar="PATH",
                        help=f"encrypted keystore file (default: ${KEYSTORE_ENV} or the user data dir's "
                             "wallet.json)")
    if password:
        parser.add_argument("--password-file", type=Path, metavar="FILE",
                            help=f"keystore password file (else ${PASSWORD_ENV}, else a prompt)")


def read_password(args: argparse.Namespace, *, confirm: bool = False) -> str:
    """The keystore password from ``--password-file``, ``MPP_WALLET_PASSWORD`` or a TTY prompt.

    Raises:
        ConfigError: no source available (stdin is not a terminal), unreadable file, or the
            two prompted entries differ.
    """
    path: Path | None = getattr(args, "password_file", None)
    if path is not None:
        try:
            return path.read_text().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"cannot read password file {path}: {exc.strerror}") from None
    env = os.environ.get(PASSWORD_ENV)
    if env:
        return env
    if not sys.stdin.isatty():
        raise ConfigError(f"the keystore password is needed: use --password-file FILE or set {PASSWORD_ENV}")
    import getpass

    first = getpass.getpass("keystore password: ")
    if confirm and getpass.getpass("repeat password: ") != first:
        raise ConfigError("the passwords differ")
    return first


def keystore_address(path: Path) -> str:
    """The address recorded in a keystore file (no password needed; the key stays encrypted).

    Raises:
        ConfigError: missing file, not JSON, or no ``address`` field.
    """
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"keystore {path} does not exist; {NO_WALLET}") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"keystore {path} is not readable JSON: {type(exc).__name__}") from None
    address = data.get("address") if isinstance(data, dict) else None
    if not isinstance(address, str) or len(address.removeprefix("0x")) != 40:
        raise ConfigError(f"keystore {path} records no address")
    from eth_utils.address import to_checksum_address

    return to_checksum_address("0x" + address.removeprefix("0x"))


def _source(args: argparse.Namespace) -> tuple[str, Path | None]:
    """(``"keystore"``, path) or (``"env"``, None), in the documented order."""
    explicit: Path | None = getattr(args, "keystore", None)
    if explicit is not None:
        return "keystore", explicit
    if os.environ.get(ENV_VAR, "").strip():
        return "env", None
    path = default_keystore()
    if path.exists():
        return "keystore", path
    raise ConfigError(NO_WALLET)


def load_wallet(args: argparse.Namespace) -> tuple[Wallet, str]:
    """The signing wallet and a description of its source (``keystore /path`` or ``$MPP_PRIVATE_KEY``).

    Raises:
        ConfigError: no wallet configured, bad key, wrong password, unsafe file mode.
    """
    kind, path = _source(args)
    if kind == "env":
        return Wallet.from_env(remove=True), f"${ENV_VAR}"
    assert path is not None
    password = read_password(args)
    from ._term import Progress

    with Progress(f"unlocking keystore {path}", enabled=not getattr(args, "quiet", False)):
        return Wallet.from_keystore(path, password), f"keystore {path}"


def resolve_address(args: argparse.Namespace) -> tuple[str, str]:
    """The wallet address without unlocking anything: ``--address``, else as :func:`load_wallet`.

    Returns:
        (checksummed address, description of its source).
    Raises:
        ConfigError: no wallet configured or a malformed address/keystore.
    """
    given: str | None = getattr(args, "address", None)
    if given:
        from eth_utils.address import is_hex_address, to_checksum_address

        if not is_hex_address(given):
            raise ConfigError(f"--address {given!r} is not a 0x-prefixed 20-byte hex address")
        return to_checksum_address(given), "--address"
    kind, path = _source(args)
    if kind == "env":
        return Wallet.from_env().address, f"${ENV_VAR}"
    assert path is not None
    return keystore_address(path), f"keystore {path}"
