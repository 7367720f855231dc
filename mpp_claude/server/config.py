"""Server configuration: one frozen ``ServerConfig`` built from flags, environment and a TOML file.

Precedence, highest first: command-line flags, environment variables, the TOML file
(``--config`` / ``MPP_CONFIG``), built-in defaults.  ``build_config`` is pure: it receives
the three sources as mappings and either returns a complete config or raises one
``ConfigError`` listing *every* problem, one line each, so an operator fixes them in one go.

The only I/O lives in ``load_config`` (reads the TOML file and the secret file) and
``ensure_dev_secret`` (creates the development secret once, mode 0600).  The challenge secret
is never part of ``repr`` and never logged.

Environment variables (all optional; the TOML keys have the same names in lower case,
without the prefix)::

    MPP_REALM  MPP_SECRET_KEY  MPP_SECRET_FILE  MPP_RECIPIENT  MPP_RPC_URL  MPP_CHAIN_ID
    MPP_CURRENCIES (comma separated)  MPP_STORE  MPP_UPSTREAM  MPP_ANTHROPIC_BASE_URL
    ANTHROPIC_API_KEY  MPP_FEE_PAYER_KEY  MPP_SPONSOR_BUDGET  MPP_SPONSOR_MAX_GAS
    MPP_DEFAULT_MAX_TOKENS  MPP_MAX_BODY_BYTES  MPP_CHALLENGE_TTL  MPP_METRICS  MPP_MODES
    MPP_UPSTREAM_DURING_SETTLEMENT (default true)
    MPP_SESSIONS  MPP_SESSION_PAYEE_KEY  MPP_SESSION_*  (server.sessions.settings.SESSION_ENV)
"""

from __future__ import annotations

import os
import re
import secrets as _secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError
from .sessions.settings import SESSION_ENV, SessionSettings, session_settings

PATH_USD = "0x20c0000000000000000000000000000000000000"
MIN_SECRET_BYTES = 32
DEFAULT_CHALLENGE_TTL = 300  # seconds; mpp-protocol.md §1.5 (pympp/mppx default 5 minutes)
DEFAULT_MAX_TOKENS = 4096  # output ceiling quoted when a request omits max_tokens
DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_IDEMPOTENCY_TTL = 24 * 3600
DEFAULT_SPONSOR_MAX_GAS = 2_000_000  # tempo-fee-payer-cosign.json policy
DEFAULT_STORE = "sqlite:///mpp-claude-server.sqlite3"

Upstream = Literal["anthropic", "local"]
Mode = Literal["transaction", "hash"]

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
_REALM = re.compile(r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$")  # printable ASCII, no CR/LF


@dataclass(frozen=True, slots=True)
class PriceOverride:
    """USD per million tokens for one model; ``None`` keeps the built-in value."""

    input: str | None = None
    output: str | None = None
    cache_read: str | None = None
    cache_write: str | None = None


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server needs, validated.  Build it with ``build_config``/``load_config``.

    Money amounts are integers of token base units (6 decimals); prices stay decimal strings
    (USD per million tokens) until ``pricing.py`` turns them into exact fractions.
    """

    realm: str
    secret: bytes = field(repr=False)
    recipient: str
    rpc_url: str
    chain_id: int
    currencies: tuple[str, ...] = (PATH_USD,)
    modes: tuple[Mode, ...] = ("transaction", "hash")
    prices: Mapping[str, PriceOverride] = field(default_factory=dict)
    default_max_tokens: int = DEFAULT_MAX_TOKENS
    upstream: Upstream = "local"
    anthropic_api_key: str | None = field(default=None, repr=False)
    anthropic_base_url: str = "https://api.anthropic.com"
    store: str = DEFAULT_STORE
    fee_payer_key: str | None = field(default=None, repr=False)
    sponsor_budget: int = 0  # gas (sum of gas limits) co-signed per UTC day by all workers; 0 = no limit
    sponsor_max_gas: int = DEFAULT_SPONSOR_MAX_GAS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    challenge_ttl: int = DEFAULT_CHALLENGE_TTL
    idempotency_ttl: int = DEFAULT_IDEMPOTENCY_TTL
    metrics: bool = False
    host: str = "127.0.0.1"
    port: int = 8402
    workers: int = 1
    sessions: SessionSettings | None = None  # the session intent, opt-in (``sessions = true``)
    # Start the upstream call once a credential's claims are made, while its transaction is
    # broadcast and mined (``early.py``); False keeps the strict order: settle, then call.
    upstream_during_settlement: bool = True

    @property
    def fee_payer(self) -> bool:
        """True when the server sponsors transaction fees (``methodDetails.feePayer``)."""
        return self.fee_payer_key is not None


# --- sources ------------------------------------------------------------------------------------

_ENV = {
    "realm": "MPP_REALM", "secret_key": "MPP_SECRET_KEY", "secret_file": "MPP_SECRET_FILE",
    "recipient": "MPP_RECIPIENT", "rpc_url": "MPP_RPC_URL", "chain_id": "MPP_CHAIN_ID",
    "currencies": "MPP_CURRENCIES", "store": "MPP_STORE", "upstream": "MPP_UPSTREAM",
    "anthropic_base_url": "MPP_ANTHROPIC_BASE_URL", "anthropic_api_key": "ANTHROPIC_API_KEY",
    "fee_payer_key": "MPP_FEE_PAYER_KEY", "sponsor_budget": "MPP_SPONSOR_BUDGET",
    "sponsor_max_gas": "MPP_SPONSOR_MAX_GAS", "default_max_tokens": "MPP_DEFAULT_MAX_TOKENS",
    "max_body_bytes": "MPP_MAX_BODY_BYTES", "challenge_ttl": "MPP_CHALLENGE_TTL",
    "metrics": "MPP_METRICS", "modes": "MPP_MODES", "host": "MPP_HOST", "port": "MPP_PORT",
    "workers": "MPP_WORKERS", "upstream_during_settlement": "MPP_UPSTREAM_DURING_SETTLEMENT",
}
_ENV.update(SESSION_ENV)
KNOWN_KEYS = frozenset(_ENV) | {"prices"}


def env_source(environ: Mapping[str, str]) -> dict[str, Any]:
    """Pick the settings present in ``environ`` (empty values count as absent)."""
    return {key: environ[name] for key, name in _ENV.items() if environ.get(name)}


def _merged(flags: Mapping[str, Any], env: Mapping[str, Any], file: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for source in (file, env, flags):
        out.update({k: v for k, v in source.items() if v is not None})
    return out


# --- validation helpers (each appends to ``problems`` instead of raising) ------------------------


def _int(raw: dict[str, Any], key: str, default: int, problems: list[str], *, minimum: int = 0) -> int:
    value = raw.get(key, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        problems.append(f"{key}: expected an integer, got {value!r}")
        return default
    if isinstance(value, bool) or number < minimum:
        problems.append(f"{key}: expected an integer >= {minimum}, got {value!r}")
    return number


def _bool(raw: dict[str, Any], key: str, problems: list[str], default: bool = False) -> bool:
    value = raw.get(key, default)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    problems.append(f"{key}: expected true/false, got {value!r}")
    return default


def _list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, (list, tuple)):
        return [str(part).strip() for part in value]
    return [str(value)]


def _prices(value: Any, problems: list[str]) -> dict[str, PriceOverride]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append("prices: expected a table of model = {input, output, cache_read, cache_write}")
        return {}
    out: dict[str, PriceOverride] = {}
    for model, entry in value.items():
        if not isinstance(entry, Mapping):
            problems.append(f"prices.{model}: expected a table, got {entry!r}")
            continue
        unknown = set(entry) - {"input", "output", "cache_read", "cache_write"}
        if unknown:
            problems.append(f"prices.{model}: unknown keys {sorted(unknown)}")
        fields: dict[str, str] = {}
        for name in ("input", "output", "cache_read", "cache_write"):
            if name in entry:
                text = str(entry[name])
                if not re.fullmatch(r"\d+(\.\d+)?", text):
                    problems.append(f"prices.{model}.{name}: expected USD per million tokens "
                                    f"like 3 or 0.25, got {entry[name]!r}")
                    continue
                fields[name] = text
        out[str(model)] = PriceOverride(**fields)
    return out


def _secret(raw: dict[str, Any], problems: list[str]) -> bytes:
    value = raw.get("secret_key")
    if value is None:
        problems.append("secret_key: missing (set MPP_SECRET_KEY, secret_file, or use the generated "
                        "development secret)")
        return b""
    secret = value.encode() if isinstance(value, str) else bytes(value)
    if len(secret) < MIN_SECRET_BYTES:
        problems.append(f"secret_key: must be at least {MIN_SECRET_BYTES} bytes, got {len(secret)}")
    return secret


def build_config(*, flags: Mapping[str, Any] | None = None, env: Mapping[str, Any] | None = None,
                 file: Mapping[str, Any] | None = None) -> ServerConfig:
    """Validate and merge the three sources into a ``ServerConfig`` (pure, no I/O).

    Args:
        flags: settings from the command line (``None`` values are ignored).
        env: settings from the environment, as returned by ``env_source``.
        file: the parsed TOML file (keys as in ``KNOWN_KEYS``).  ``secret_key`` must already be
            resolved (``load_config`` reads ``secret_file`` for you).

    Returns:
        The validated configuration.

    Raises:
        ConfigError: one line per problem found (all of them, not just the first).
    """
    raw = _merged(flags or {}, env or {}, file or {})
    problems: list[str] = []
    unknown = sorted(set(file or {}) - KNOWN_KEYS)
    if unknown:
        problems.append(f"config file: unknown keys {unknown}")

    realm = str(raw.get("realm", "localhost"))
    if not _REALM.match(realm):
        problems.append(f"realm: expected printable ASCII without line breaks, got {realm!r}")
    secret = _secret(raw, problems)

    recipient = str(raw.get("recipient", ""))
    if not recipient:
        problems.append("recipient: missing (the 0x address that receives payments; MPP_RECIPIENT)")
    elif not _ADDRESS.match(recipient):
        problems.append(f"recipient: expected a 0x-prefixed 20-byte hex address, got {recipient!r}")

    rpc_url = str(raw.get("rpc_url", ""))
    if not rpc_url:
        problems.append("rpc_url: missing (the Tempo JSON-RPC endpoint; MPP_RPC_URL)")
    elif not re.match(r"^https?://", rpc_url):
        problems.append(f"rpc_url: expected an http(s) URL, got {rpc_url!r}")
    chain_id = _int(raw, "chain_id", 0, problems, minimum=1) if "chain_id" in raw else 0
    if "chain_id" not in raw:
        problems.append("chain_id: missing (4217 mainnet, 42431 Moderato, 31337 devnet; MPP_CHAIN_ID)")

    currencies = tuple(_list(raw.get("currencies", [PATH_USD])))
    if not currencies:
        problems.append("currencies: at least one TIP-20 token address is required")
    for cur in currencies:
        if not _ADDRESS.match(cur):
            problems.append(f"currencies: expected 0x-prefixed 20-byte hex addresses, got {cur!r}")
    if len({c.lower() for c in currencies}) != len(currencies):
        problems.append("currencies: duplicate token address")

    modes = tuple(_list(raw.get("modes", ["transaction", "hash"])))
    if not modes or any(m not in ("transaction", "hash") for m in modes):
        problems.append(f"modes: expected a non-empty subset of transaction, hash; got {list(modes)!r}")

    upstream = str(raw.get("upstream", "local"))
    api_key = raw.get("anthropic_api_key")
    if upstream not in ("anthropic", "local"):
        problems.append(f"upstream: expected 'anthropic' or 'local', got {upstream!r}")
    elif upstream == "anthropic" and not api_key:
        problems.append("upstream: 'anthropic' needs ANTHROPIC_API_KEY")

    store = str(raw.get("store", DEFAULT_STORE))
    if not re.match(r"^(sqlite://|redis://|rediss://|memory://)", store):
        problems.append(f"store: expected sqlite:///path, redis://host:port/db or memory://, got {store!r}")

    fee_payer_key = raw.get("fee_payer_key")
    if fee_payer_key is not None and not _KEY.match(str(fee_payer_key)):
        problems.append("fee_payer_key: expected a 32-byte hex private key (value not shown)")

    port = _int(raw, "port", 8402, problems, minimum=0)
    if port > 65535:
        problems.append(f"port: expected 0..65535, got {port}")
    config_args: dict[str, Any] = dict(
        default_max_tokens=_int(raw, "default_max_tokens", DEFAULT_MAX_TOKENS, problems, minimum=1),
        max_body_bytes=_int(raw, "max_body_bytes", DEFAULT_MAX_BODY_BYTES, problems, minimum=1024),
        challenge_ttl=_int(raw, "challenge_ttl", DEFAULT_CHALLENGE_TTL, problems, minimum=10),
        sponsor_budget=_int(raw, "sponsor_budget", 0, problems),
        sponsor_max_gas=_int(raw, "sponsor_max_gas", DEFAULT_SPONSOR_MAX_GAS, problems, minimum=21_000),
        workers=_int(raw, "workers", 1, problems, minimum=1),
        metrics=_bool(raw, "metrics", problems),
        upstream_during_settlement=_bool(raw, "upstream_during_settlement", problems, default=True),
        prices=_prices(raw.get("prices"), problems),
    )
    config_args["sessions"] = session_settings(raw, problems) if _bool(raw, "sessions", problems) else None
    if config_args["workers"] > 1 and store.startswith("memory://"):
        problems.append("store: memory:// cannot be shared by several workers; use sqlite or redis")
    if problems:
        raise ConfigError(problems)
    return ServerConfig(
        realm=realm, secret=secret, recipient=recipient, rpc_url=rpc_url, chain_id=chain_id,
        currencies=currencies, modes=modes,  # type: ignore[arg-type]
        upstream=upstream,  # type: ignore[arg-type]
        anthropic_api_key=str(api_key) if api_key else None,
        anthropic_base_url=str(raw.get("anthropic_base_url", "https://api.anthropic.com")),
        store=store, fee_payer_key=str(fee_payer_key) if fee_payer_key else None,
        host=str(raw.get("host", "127.0.0.1")), port=port, **config_args)


# --- I/O at the edge -----------------------------------------------------------------------------


def default_secret_path() -> Path:
    """Where the development secret lives unless ``secret_file`` says otherwise."""
    from platformdirs import user_state_dir

    return Path(user_state_dir("mpp-claude")) / "server-secret"


def ensure_dev_secret(path: Path, *, token: str | None = None) -> str:
    """Return the secret stored at ``path``, creating it once (mode 0600) if absent.

    Args:
        path: the secret file.
        token: the value to write when creating (default: 32 random bytes as 64 hex digits).

    Raises:
        ConfigError: the file exists but is readable by group/others, or cannot be created.
    """
    try:
        if path.exists():
            mode = path.stat().st_mode & 0o077
            if mode:
                raise ConfigError(f"secret_file: {path} is readable by others (chmod 600 it)")
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        value = token or _secrets.token_hex(MIN_SECRET_BYTES)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(value + "\n")
        return value
    except OSError as exc:
        raise ConfigError(f"secret_file: cannot read or create {path}: {exc.strerror}") from exc


def read_toml(path: Path) -> dict[str, Any]:
    """Parse the TOML config file.  Raises ``ConfigError`` (one line) when unreadable/invalid."""
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        raise ConfigError("config file: TOML needs Python 3.11+") from None
    try:
        with path.open("rb") as fh:
            return dict(tomllib.load(fh))
    except OSError as exc:
        raise ConfigError(f"config file: cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file: {path} is not valid TOML: {exc}") from exc


def load_config(*, flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None,
                config_path: Path | None = None) -> ServerConfig:
    """Read the TOML file and the secret, then ``build_config``.

    When no ``secret_key`` is given anywhere, a development secret is generated once and
    persisted (0600) at ``secret_file`` or ``default_secret_path()``.

    Raises:
        ConfigError: one line per problem.
    """
    environ = os.environ if environ is None else environ
    flags = dict(flags or {})
    env = env_source(environ)
    path = config_path or (Path(environ["MPP_CONFIG"]) if environ.get("MPP_CONFIG") else None)
    file = read_toml(path) if path else {}
    merged = _merged(flags, env, file)
    if "secret_key" not in merged:
        secret_path = Path(str(merged.get("secret_file") or default_secret_path()))
        flags["secret_key"] = ensure_dev_secret(secret_path)
    return build_config(flags=flags, env=env, file=file)
