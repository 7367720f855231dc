"""Access-log lines and Prometheus counters."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from mpp_claude.cli import main
from mpp_claude.server.observability import Metrics, RequestLog
from mpp_claude.server.pricing import AtomicAmount


def test_log_line_is_compact_json_without_empty_fields() -> None:
    """None fields are left out; the line is one JSON object."""
    line = RequestLog(method="POST", route="/v1/chat/completions", status=200, outcome="paid",
                      payer="0xabc", amount=42, model="m", input_tokens=3, output_tokens=5).line()
    data = json.loads(line)
    assert data == {"method": "POST", "route": "/v1/chat/completions", "status": 200, "outcome": "paid",
                    "payer": "0xabc", "amount": 42, "model": "m", "input_tokens": 3, "output_tokens": 5,
                    "latency_ms": 0.0, "stream": False}
    assert "\n" not in line


@pytest.mark.parametrize("entry", [
    RequestLog(method="POST", route="/v1/chat/completions"),
    RequestLog(method="POST", route="/v1/messages", status=402, outcome="rejected", amount=AtomicAmount(613),
               model="claude-haiku-4-5", problem="invalid-challenge", latency_ms=0.25, stream=True),
    RequestLog(method="GET", route="other", status=200, outcome="free", payer="0x\u00e9", reference="0x12",
               cost=0, input_tokens=0, output_tokens=7),
    RequestLog(method="POST", route="/v1/messages", extra={"channel": {"id": "0x1", "n": [1, None]}}),
], ids=["defaults", "402", "zeros-and-unicode", "extra"])
def test_log_line_is_the_asdict_line(entry: RequestLog) -> None:
    """The line is exactly what the dataclass's ``asdict`` minus None/empty fields gives, key-sorted."""
    expected = {k: v for k, v in dataclasses.asdict(entry).items() if v is not None and v != {}}
    assert entry.line() == json.dumps(expected, separators=(",", ":"), sort_keys=True)


def test_metrics_count_requests_charges_tokens_and_credits() -> None:
    """Counters by route/outcome/status, charged amount, tokens per model and credits."""
    metrics = Metrics()
    metrics.observe(RequestLog("POST", "/v1/messages", 200, "paid", amount=10, model="m", input_tokens=1,
                               output_tokens=2))
    metrics.observe(RequestLog("POST", "/v1/messages", 502, "upstream_error", amount=7, model="m"))
    metrics.observe(RequestLog("POST", "/v1/messages", 402, "payment_required", amount=99, model="m"))
    text = metrics.render()
    assert 'mpp_requests_total{route="/v1/messages",outcome="paid",status="200"} 1' in text
    assert 'mpp_charged_base_units_total{route="/v1/messages"} 17' in text  # 402 quotes are not charges
    assert 'mpp_tokens_total{model="m",kind="output"} 2' in text
    assert "mpp_credits_total 1" in text


def test_serve_reports_each_config_problem_and_exits_1(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """`mpp-claude serve` with a bad config prints every problem and exits 1 without serving."""
    code = main(["serve", "--recipient", "0x12", "--store", "mongo://x",
                 "--secret-file", str(tmp_path / "secret")])
    err = capsys.readouterr().err
    assert code == 1
    for name in ("recipient:", "rpc_url:", "chain_id:", "store:"):
        assert name in err
    assert (tmp_path / "secret").exists()  # the development secret was created (0600)


def test_server_package_exports() -> None:
    """mpp_claude.server's __all__ names resolve (lazily)."""
    import mpp_claude.server as server

    for name in server.__all__:
        assert getattr(server, name) is not None
    with pytest.raises(AttributeError):
        _ = server.nope
