"""The MPP conformance-suite adapter for mpp_claude (tempoxyz/mpp-tools ``conformance/``).

Run ``python -m mpp_claude.conformance``: it reads one harness request
``{"schema": 1, "op", "input", "context"?}`` on stdin and writes one response
``{"ok": true, "value"}`` / ``{"ok": false, "error": {"type", "message"}}`` on stdout
(exit status 0).  ``--manifest`` prints an ``adapter.json`` for the upstream runner
(``conformance/adapters/mpp_claude/adapter.json``); ``--list`` prints the operations.

Operations live in a registry (:mod:`.registry`); :mod:`.core_ops` holds the wire-format
and ``server.verify`` operations, ``tempo_ops`` (optional) the Tempo ones.  See the
registry's docstring for how to add operations from a new module.
"""
