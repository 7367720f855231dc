"""``python -m mpp_claude.conformance``: one harness request on stdin, one response on stdout."""

from __future__ import annotations

import json
import sys
from typing import Any

from mpp_claude.conformance.registry import handle_request, load_operations


def manifest() -> dict[str, Any]:
    """The upstream runner's ``adapter.json`` for this adapter, capabilities from the registry."""
    return {
        "$schema": "../../schemas/adapter-manifest.schema.json",
        "schema": 1,
        "name": "mpp_claude",
        "language": "python",
        "command": [sys.executable, "-m", "mpp_claude.conformance"],
        "cwd": ".",
        "capabilities": sorted(load_operations()),
    }


def main(argv: list[str]) -> int:
    """Entry point; returns the exit status."""
    if argv[1:] == ["--manifest"]:
        print(json.dumps(manifest(), indent=2))
        return 0
    if argv[1:] == ["--list"]:
        print("\n".join(sorted(load_operations())))
        return 0
    if argv[1:]:
        print("usage: python -m mpp_claude.conformance [--manifest | --list] < request.json", file=sys.stderr)
        return 2
    raw = sys.stdin.buffer.read()
    try:
        request = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        response: dict[str, Any] = {"ok": False, "error": {"type": "unknown_error",
                                                          "message": f"request is not JSON: {exc}"}}
    else:
        response = handle_request(request)
    sys.stdout.write(json.dumps(response, ensure_ascii=False) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
