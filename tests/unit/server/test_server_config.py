"""Server configuration: sources, precedence, validation (every problem, one line each), dev secret."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mpp_claude.errors import ConfigError
from mpp_claude.server.config import (
    PATH_USD,
    build_config,
    ensure_dev_secret,
    env_source,
    load_config,
)

GOOD = {"secret_key": "s" * 32, "recipient": "0x" + "ab" * 20, "rpc_url": "http://127.0.0.1:8545",
        "chain_id": 31337}


def test_minimal_config_has_safe_defaults() -> None:
    """A config needs only secret, recipient, RPC URL and chain id; defaults are pathUSD, local, SQLite."""
    cfg = build_config(flags=GOOD)
    assert cfg.currencies == (PATH_USD,)
    assert cfg.upstream == "local"
    assert cfg.store.startswith("sqlite:///")
    assert cfg.challenge_ttl == 300
    assert not cfg.fee_payer
    assert "s" * 32 not in repr(cfg)


def test_every_problem_is_reported_on_its_own_line() -> None:
    """Several invalid settings produce one ConfigError listing each, naming the setting."""
    with pytest.raises(ConfigError) as info:
        build_config(flags={"secret_key": "short", "recipient": "0x12", "rpc_url": "ftp://x",
                            "chain_id": "abc", "store": "mongo://x", "upstream": "openai",
                            "currencies": "0xnothex"})
    problems = info.value.problems
    for name in ("secret_key", "recipient", "rpc_url", "chain_id", "store", "upstream", "currencies"):
        assert any(p.startswith(name + ":") for p in problems), (name, problems)
    assert str(info.value).count("\n") == len(problems) - 1


def test_anthropic_upstream_needs_a_key() -> None:
    """upstream=anthropic without ANTHROPIC_API_KEY is refused at start."""
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        build_config(flags={**GOOD, "upstream": "anthropic"})
    cfg = build_config(flags={**GOOD, "upstream": "anthropic"}, env={"anthropic_api_key": "sk-test"})
    assert cfg.anthropic_api_key == "sk-test"
    assert "sk-test" not in repr(cfg)


def test_flags_beat_environment_beat_file() -> None:
    """Precedence is flags > environment > TOML file."""
    cfg = build_config(flags={**GOOD, "realm": "flag"}, env={"realm": "env", "port": "9000"},
                       file={"realm": "file", "port": 1, "workers": 3})
    assert (cfg.realm, cfg.port, cfg.workers) == ("flag", 9000, 3)


def test_env_source_reads_prefixed_variables() -> None:
    """MPP_* variables (and ANTHROPIC_API_KEY) map to settings; empty values are ignored."""
    env = env_source({"MPP_REALM": "api.example", "MPP_CURRENCIES": "", "ANTHROPIC_API_KEY": "k",
                      "UNRELATED": "x"})
    assert env == {"realm": "api.example", "anthropic_api_key": "k"}


def test_unknown_file_keys_and_bad_prices_are_refused() -> None:
    """A typo in the TOML file or a malformed price is a start-up error, not silently ignored."""
    with pytest.raises(ConfigError) as info:
        build_config(flags=GOOD, file={"realms": "x", "prices": {"claude-haiku-4-5": {"input": "cheap"}}})
    text = str(info.value)
    assert "unknown keys ['realms']" in text
    assert "prices.claude-haiku-4-5.input" in text


def test_memory_store_cannot_serve_several_workers() -> None:
    """memory:// is per process, so workers > 1 with it is refused."""
    with pytest.raises(ConfigError, match="memory://"):
        build_config(flags={**GOOD, "store": "memory://", "workers": 2})


def test_fee_payer_key_is_validated_but_never_shown() -> None:
    """A malformed sponsor key is refused without echoing it."""
    with pytest.raises(ConfigError) as info:
        build_config(flags={**GOOD, "fee_payer_key": "0xdeadbeef"})
    assert "deadbeef" not in str(info.value)
    cfg = build_config(flags={**GOOD, "fee_payer_key": "0x" + "11" * 32})
    assert cfg.fee_payer and "11" * 32 not in repr(cfg)


def test_dev_secret_is_created_once_with_0600(tmp_path: Path) -> None:
    """The development secret is generated on first use, persisted 0600, and reused afterwards."""
    path = tmp_path / "state" / "secret"
    first = ensure_dev_secret(path)
    assert len(first) >= 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_dev_secret(path) == first


def test_dev_secret_readable_by_others_is_refused(tmp_path: Path) -> None:
    """A secret file other users can read is a configuration error."""
    path = tmp_path / "secret"
    path.write_text("x" * 64)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        ensure_dev_secret(path)


def test_load_config_reads_toml_and_generates_the_secret(tmp_path: Path) -> None:
    """load_config merges a TOML file and the environment, creating the dev secret when none is set."""
    toml = tmp_path / "server.toml"
    secret = tmp_path / "secret"
    toml.write_text(f'recipient = "{GOOD["recipient"]}"\nrpc_url = "http://localhost:1"\n'
                    f'secret_file = "{secret}"\n[prices.claude-haiku-4-5]\noutput = "4"\n')
    cfg = load_config(environ={"MPP_CHAIN_ID": "31337"}, config_path=toml)
    assert cfg.chain_id == 31337
    assert cfg.secret == secret.read_text().strip().encode()
    assert cfg.prices["claude-haiku-4-5"].output == "4"


def test_invalid_toml_is_one_clear_line(tmp_path: Path) -> None:
    """A syntax error in the TOML file names the file."""
    toml = tmp_path / "bad.toml"
    toml.write_text("realm = \n")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load_config(environ={}, config_path=toml)


def test_upstream_during_settlement_is_on_by_default_and_switched_off_from_each_source() -> None:
    """On unless a flag (``--upstream-after-settlement``), MPP_UPSTREAM_DURING_SETTLEMENT or the
    TOML key turns it off; flags beat the environment beat the file; a non-boolean is a problem."""
    import argparse

    from mpp_claude.server.cli import _flags, add_arguments

    assert build_config(flags=GOOD).upstream_during_settlement is True
    assert build_config(flags=GOOD, env=env_source({"MPP_UPSTREAM_DURING_SETTLEMENT": "false"})
                        ).upstream_during_settlement is False
    toml = {"upstream_during_settlement": False}
    assert build_config(flags=GOOD, file=toml).upstream_during_settlement is False
    assert build_config(flags=GOOD, env=env_source({"MPP_UPSTREAM_DURING_SETTLEMENT": "1"}),
                        file=toml).upstream_during_settlement is True
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    flags = _flags(parser.parse_args(["--upstream-after-settlement"]))
    assert flags == {"upstream_during_settlement": False}
    assert build_config(flags={**GOOD, **flags}, env={"upstream_during_settlement": "true"}
                        ).upstream_during_settlement is False
    assert "upstream_during_settlement" not in _flags(parser.parse_args([]))
    with pytest.raises(ConfigError, match="upstream_during_settlement: expected true/false"):
        build_config(flags=GOOD, env={"upstream_during_settlement": "sometimes"})
