"""The paying wallet: where the key comes from, and the promise that it never leaks.

A :class:`Wallet` holds one secp256k1 key behind a signer object.  The key is never part
of ``repr``, ``str``, log lines or exception messages; errors about a bad key say what is
wrong with it without quoting it (agent-payments-ux.md §3.1 item 7, §4.6).

Sources, in the order we recommend them: an encrypted keystore file
(:meth:`Wallet.from_keystore`, created with :meth:`Wallet.create`), then a raw key from an
environment variable (:meth:`Wallet.from_env`), then a raw key passed in code
(:meth:`Wallet.from_private_key`).
"""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

from eth_utils.address import to_checksum_address

from ..errors import ConfigError
from ..tempo.signer import LocalSigner, Signer

log = logging.getLogger("mpp_claude.client")

ENV_VAR = "MPP_PRIVATE_KEY"


def _signer_from_key(key: str | bytes) -> LocalSigner:
    """A signer for ``key``; ``ConfigError`` that never quotes the key."""
    if isinstance(key, str):
        text = key.strip().removeprefix("0x").removeprefix("0X")
        if len(text) != 64 or any(c not in "0123456789abcdefABCDEF" for c in text):
            raise ConfigError("private key must be 32 bytes written as 64 hex digits "
                              f"(got {len(text)} characters; the value is not shown)")
        raw = bytes.fromhex(text)
    else:
        raw = bytes(key)
        if len(raw) != 32:
            raise ConfigError(f"private key must be 32 bytes (got {len(raw)}; the value is not shown)")
    try:
        return LocalSigner(raw)
    except ValueError:
        raise ConfigError("private key is not a valid secp256k1 key (the value is not shown)") from None


class Wallet:
    """A key that can sign Tempo payments.  Build one with a ``from_*`` constructor.

    Attributes:
        address: the checksummed account address (safe to print and log).

    Warning:
        Whoever holds this object can spend the account's tokens.  Prefer a low-balance
        key (or a Tempo access key with an on-chain spending limit) for agents.
    """

    __slots__ = ("_signer", "address")

    def __init__(self, signer: Signer) -> None:
        """Wrap a signer (``tempo.signer.LocalSigner`` or any ``Signer``: hardware, remote)."""
        self._signer = signer
        self.address: str = to_checksum_address(signer.address)

    # -- constructors ----------------------------------------------------------------------------

    @classmethod
    def from_private_key(cls, key: str | bytes) -> Wallet:
        """A wallet from a raw private key (hex string with or without ``0x``, or 32 bytes).

        Raises:
            ConfigError: the key is not 32 bytes or not on the curve (the key is not quoted).
        """
        return cls(_signer_from_key(key))

    @classmethod
    def from_env(cls, var: str = ENV_VAR, *, remove: bool = False) -> Wallet:
        """A wallet from the private key in environment variable ``var`` (default ``MPP_PRIVATE_KEY``).

        Args:
            var: the variable name.
            remove: delete the variable from ``os.environ`` after reading it, so child
                processes (agent shells) do not inherit the key.
        Raises:
            ConfigError: the variable is unset or empty, or holds a malformed key.
        """
        value = os.environ.get(var, "")
        if not value.strip():
            raise ConfigError(f"environment variable {var} is not set (expected a hex private key)")
        wallet = cls.from_private_key(value)
        if remove:
            del os.environ[var]
        log.info("wallet %s loaded from environment variable %s", wallet.address, var)
        return wallet

    @classmethod
    def from_keystore(cls, path: str | os.PathLike[str], password: str) -> Wallet:
        """A wallet from an eth-account (Web3 Secret Storage v3) encrypted keystore file.

        Raises:
            ConfigError: the file is missing, readable by group/others, not a keystore, or
                the password is wrong.
        """
        p = Path(path)
        try:
            st = p.stat()
        except FileNotFoundError:
            raise ConfigError(f"keystore {p} does not exist") from None
        if os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"keystore {p} is accessible by group or others "
                              f"(mode {stat.S_IMODE(st.st_mode):o}); run: chmod 600 {p}")
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"keystore {p} is not readable JSON: {type(exc).__name__}") from None
        from eth_account import Account

        try:
            key = Account.decrypt(data, password)
        except ValueError:
            raise ConfigError(f"keystore {p}: wrong password or corrupted file") from None
        except (KeyError, TypeError):
            raise ConfigError(f"keystore {p} is not an eth-account keystore") from None
        return cls.from_private_key(bytes(key))

    @classmethod
    def create(cls, path: str | os.PathLike[str], password: str, *, iterations: int | None = None
               ) -> Wallet:
        """Create a new random key and save it encrypted at ``path`` (mode 0600, never overwritten).

        Args:
            path: the keystore file to create; its parent directories are created (0700).
            password: encrypts the key (scrypt).  An empty password is refused.
            iterations: scrypt work factor ``n`` (default eth-account's 262144; tests lower it).
        Raises:
            ConfigError: the file already exists or the password is empty.
        """
        if not password:
            raise ConfigError("refusing to create a keystore with an empty password")
        from eth_account import Account

        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        account = Account.create()
        blob = json.dumps(Account.encrypt(account.key, password, kdf="scrypt", iterations=iterations))
        try:  # O_EXCL: never clobber an existing key; 0600 from the first byte (no chmod race)
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise ConfigError(f"keystore {p} already exists; refusing to overwrite a key") from None
        with os.fdopen(fd, "w") as fh:
            fh.write(blob)
        log.info("created wallet %s in keystore %s", account.address, p)
        return cls(LocalSigner.from_account(account))

    # -- use ---------------------------------------------------------------------------------------

    @property
    def signer(self) -> Signer:
        """The signer payments are signed with (holds the key: never log or print it)."""
        return self._signer

    def __repr__(self) -> str:
        return f"Wallet(address={self.address!r})"

    __str__ = __repr__

    def __reduce__(self) -> Any:  # pickling would copy the key into another process's memory
        raise TypeError("a Wallet cannot be pickled (it holds a private key)")
