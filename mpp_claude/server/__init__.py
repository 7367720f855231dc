"""The reference MPP server: a paid, OpenAI-compatible proxy to Anthropic (Starlette).

Public surface::

    create_app(config, *, store=None, upstream=None, rpc=None, clock=time.time) -> Starlette
    ServerConfig, build_config(...), load_config(...)      configuration (flags, env, TOML)
    PriceTable, quote(...), usage_cost(...)                pure pricing

Run it with ``mpp-claude serve`` (see ``mpp_claude.server.cli``) or any ASGI server.  The
modules, top to bottom: ``app`` (routes and handlers in one place), ``routes`` (thin
endpoints), ``payments`` (challenges, verification, claims), ``idempotency`` (whom an
Idempotency-Key belongs to, proven before a replay), ``binding`` (what a challenge binds),
``serving`` (upstream call, streaming, usage and credit records), ``early`` (the upstream call
started while the payment settles), ``pricing``, ``discovery``, ``rendering``,
``observability``, ``chain``, ``config``, ``cli``, plus ``stores/`` and ``upstreams/``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .config import ServerConfig, build_config, load_config
    from .pricing import PriceTable, quote, usage_cost

__all__ = ["PriceTable", "ServerConfig", "build_config", "create_app", "load_config", "quote", "usage_cost"]

_WHERE = {"create_app": "app", "ServerConfig": "config", "build_config": "config", "load_config": "config",
          "PriceTable": "pricing", "quote": "pricing", "usage_cost": "pricing"}


def __getattr__(name: str) -> Any:
    # Lazy, so ``import mpp_claude.server.stores`` does not pull in Starlette and the app.
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
