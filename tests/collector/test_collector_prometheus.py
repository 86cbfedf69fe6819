"""A real Prometheus scrapes /metrics (it negotiates OpenMetrics) and keeps the exemplars."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from collector_support import RunningCollector, emit_run, http_sender, wait_until

from tests.listening import logged_port


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Start Prometheus for one scrape target; yields ``start(target) -> base URL``."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (scripts/setup.sh test)")
    processes: list[subprocess.Popen[bytes]] = []

    def start(target: str) -> str:
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: llmspans\n    static_configs: [{{targets: ['{target}']}}]\n"
        )
        log_path = tmp_path / "prometheus.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'data'}",
                    # Port 0: Prometheus binds a free port itself and logs it.
                    "--web.listen-address=127.0.0.1:0",
                    "--enable-feature=exemplar-storage",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        processes.append(process)
        return f"http://127.0.0.1:{logged_port(process, log_path)}"

    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _api(base: str, path: str, **query: str) -> Any:
    url = f"{base}/api/v1/{path}?{urllib.parse.urlencode(query)}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())["data"]
    except OSError:
        return None


@pytest.mark.slow
def test_prometheus_scrapes_metrics_and_exemplars(
    start_collector: Callable[..., RunningCollector], prometheus: Callable[[str], str]
) -> None:
    collector = start_collector()
    sender = http_sender(collector.http_url)
    trace_id = emit_run(sender.tracer, pipeline="scraped", retrieval_error=True)
    sender.close()
    wait_until(lambda: collector.metric("llmspans_stage_failures_total") == 1)
    base = prometheus(collector.metrics_url.removeprefix("http://"))

    def failures() -> list[Any]:
        data = _api(base, "query", query="llmspans_stage_failures_total")
        return list(data["result"]) if data else []

    wait_until(lambda: bool(failures()), what="the series in Prometheus")
    (series,) = failures()
    assert series["metric"]["pipeline"] == "scraped"
    assert series["metric"]["stage"] == "retrieval"
    assert series["metric"]["reason"] == "error"
    assert series["value"][1] == "1"
    targets = _api(base, "targets")
    assert targets["activeTargets"][0]["lastError"] == ""
    exemplars = _api(
        base, "query_exemplars", query="llmspans_stage_failures_total", start="0", end="1e10"
    )
    assert exemplars[0]["exemplars"][0]["labels"] == {"trace_id": trace_id.hex()}
