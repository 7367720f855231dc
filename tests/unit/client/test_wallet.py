"""Wallet: key sources, and the key never showing up in repr, errors or pickles."""

from __future__ import annotations

import os
import pickle

import pytest

from mpp_claude.client.wallet import Wallet
from mpp_claude.errors import ConfigError

KEY = "0x" + "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
ADDRESS = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"


def test_from_private_key_hex_and_bytes() -> None:
    assert Wallet.from_private_key(KEY).address == ADDRESS
    assert Wallet.from_private_key(bytes.fromhex(KEY[2:])).address == ADDRESS


def test_key_never_in_repr_or_pickle() -> None:
    w = Wallet.from_private_key(KEY)
    assert KEY[2:] not in repr(w) and KEY[2:] not in str(w) and ADDRESS in repr(w)
    with pytest.raises(TypeError):
        pickle.dumps(w)


@pytest.mark.parametrize("bad", ["0x1234", "zz" * 32, "0x" + "00" * 32, "0x" + "ff" * 32, b"\x01" * 31])
def test_bad_keys_are_config_errors_without_the_key(bad: str | bytes) -> None:
    with pytest.raises(ConfigError) as info:
        Wallet.from_private_key(bad)
    text = bad if isinstance(bad, str) else bad.hex()
    assert text.removeprefix("0x") not in str(info.value) or len(text) < 8


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPP_PRIVATE_KEY", KEY)
    assert Wallet.from_env().address == ADDRESS
    assert "MPP_PRIVATE_KEY" in os.environ
    assert Wallet.from_env(remove=True).address == ADDRESS
    assert "MPP_PRIVATE_KEY" not in os.environ
    with pytest.raises(ConfigError, match="not set"):
        Wallet.from_env()


def test_create_and_reload_keystore(tmp_path: os.PathLike[str]) -> None:
    """create() writes 0600, never overwrites, and from_keystore() reads it back."""
    path = os.path.join(tmp_path, "sub", "key.json")
    w = Wallet.create(path, "pw", iterations=2)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert Wallet.from_keystore(path, "pw").address == w.address
    with pytest.raises(ConfigError, match="already exists"):
        Wallet.create(path, "pw", iterations=2)
    with pytest.raises(ConfigError, match="wrong password"):
        Wallet.from_keystore(path, "nope")


def test_keystore_checks(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "key.json")
    with pytest.raises(ConfigError, match="does not exist"):
        Wallet.from_keystore(path, "pw")
    Wallet.create(path, "pw", iterations=2)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        Wallet.from_keystore(path, "pw")
    os.chmod(path, 0o600)
    with open(path, "w") as fh:
        fh.write("{}")
    with pytest.raises(ConfigError):
        Wallet.from_keystore(path, "pw")
    with pytest.raises(ConfigError, match="empty password"):
        Wallet.create(os.path.join(tmp_path, "k2.json"), "")
