"""One structured log line per request, and simple Prometheus counters.

The log line is JSON on the ``mpp_claude.server.access`` logger at INFO: route, status,
outcome, payer, amount (base units), model, tokens, latency.  Credentials, secrets, keys and
prompts are never fields of it (there is no place to put them: ``RequestLog`` has a fixed
set of fields).

``Metrics`` keeps per-process counters; ``render()`` returns the Prometheus text exposition
format (``text/plain; version=0.0.4``).  With several workers each process counts its own
requests (scrape each, or sum in the dashboard).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from typing import Any

ACCESS_LOG = logging.getLogger("mpp_claude.server.access")
_line_json = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode  # one encoder, not one per line


@dataclass
class RequestLog:
    """The fields of one access-log line; the endpoint fills them in as it learns them.

    ``outcome`` is one of: ``free``, ``payment_required``, ``rejected`` (credential refused),
    ``bad_request``, ``paid`` (served after payment), ``replayed`` (idempotent replay, no
    charge), ``upstream_error`` (paid, upstream failed, credit recorded), ``error``.
    """

    method: str
    route: str
    status: int = 0
    outcome: str = "error"
    payer: str | None = None
    amount: int | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost: int | None = None
    reference: str | None = None
    problem: str | None = None
    latency_ms: float = 0.0
    stream: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        """The JSON text of the line (``None`` fields are left out)."""
        if self.extra:  # ``asdict`` copies nested values (and turns dataclasses in them into dicts)
            data = {k: v for k, v in asdict(self).items() if v is not None and v != {}}
        else:  # the scalar fields as they are: ``asdict`` costs ~20 us for the same dict
            values = self.__dict__
            data = {k: v for k in _SCALAR_FIELDS if (v := values[k]) is not None}
        return _line_json(data)


_SCALAR_FIELDS = tuple(f.name for f in fields(RequestLog) if f.name != "extra")


class Metrics:
    """Thread-safe counters: requests by route/outcome, amounts charged and tokens served."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str, int]] = Counter()
        self._charged: Counter[str] = Counter()
        self._tokens: Counter[tuple[str, str]] = Counter()
        self._credits = 0
        self._abandoned = 0

    def observe(self, log: RequestLog) -> None:
        """Count one finished request."""
        with self._lock:
            self._requests[(log.route, log.outcome, log.status)] += 1
            if log.outcome in ("paid", "upstream_error") and log.amount:
                self._charged[log.route] += log.amount
            if log.model:
                self._tokens[(log.model, "input")] += log.input_tokens or 0
                self._tokens[(log.model, "output")] += log.output_tokens or 0
            if log.outcome == "upstream_error":
                self._credits += 1

    def upstream_abandoned(self) -> None:
        """Count an upstream call started during settlement and dropped because the payment failed."""
        with self._lock:
            self._abandoned += 1

    def render(self) -> str:
        """Prometheus text format."""
        out = ["# HELP mpp_requests_total Requests by route, outcome and status.",
               "# TYPE mpp_requests_total counter"]
        with self._lock:
            for (route, outcome, status), n in sorted(self._requests.items()):
                out.append(f'mpp_requests_total{{route="{route}",outcome="{outcome}",status="{status}"}} {n}')
            out += ["# HELP mpp_charged_base_units_total Amount charged (token base units).",
                    "# TYPE mpp_charged_base_units_total counter"]
            for route, n in sorted(self._charged.items()):
                out.append(f'mpp_charged_base_units_total{{route="{route}"}} {n}')
            out += ["# HELP mpp_tokens_total Tokens reported by the upstream.",
                    "# TYPE mpp_tokens_total counter"]
            for (model, kind), n in sorted(self._tokens.items()):
                out.append(f'mpp_tokens_total{{model="{model}",kind="{kind}"}} {n}')
            out += ["# HELP mpp_credits_total Paid requests the upstream failed (credit recorded).",
                    "# TYPE mpp_credits_total counter", f"mpp_credits_total {self._credits}",
                    "# HELP mpp_upstream_abandoned_total Upstream calls started while the payment settled "
                    "and dropped because it failed.",
                    "# TYPE mpp_upstream_abandoned_total counter",
                    f"mpp_upstream_abandoned_total {self._abandoned}"]
        return "\n".join(out) + "\n"


def emit(log: RequestLog, metrics: Metrics | None) -> None:
    """Write the access-log line and count it."""
    if metrics is not None:
        metrics.observe(log)
    if ACCESS_LOG.isEnabledFor(logging.INFO):
        ACCESS_LOG.info(log.line())
