"""The PromQL of docs/metrics.md, run by a real Prometheus over the embedded mode's metrics.

The embedded processor serves its metrics over HTTP (a real Prometheus exporter);
a real Prometheus scrapes it; the ECE and cost-per-success queries taken from the
docs must give the numbers ``llmspans analyze`` computes offline for the same runs.
Skipped when no ``prometheus`` binary is installed (see scripts/setup.sh).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmspans.analyze import analyze_lines
from llmspans.core.model import Thresholds
from llmspans.embedded import EmbeddedProcessor
from tests.listening import logged_port

from .pipelines import run_workload
from .test_embedded import write_otlp_json_lines

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed"),
]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _doc_queries() -> list[str]:
    text = DOCS.read_text(encoding="utf-8")
    return [block.strip() for block in re.findall(r"```promql\n(.*?)```", text, re.S)]


def _whole_history(expression: str) -> str:
    """The docs query over the whole history instead of a window: a rate or an increase
    of a counter becomes the counter itself (same structure, no extrapolation)."""
    return re.sub(r"(?:rate|increase)\((\w+(?:\{[^}]*\})?)\[\w+\]\)", r"\1", expression)


@pytest.fixture
def served_metrics() -> Iterator[tuple[int, TracerProvider, InMemorySpanExporter]]:
    # Port 0: the server binds a free port itself (nothing can take it meanwhile).
    processor = EmbeddedProcessor(metrics_port=0)
    assert processor.metrics_port is not None
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield processor.metrics_port, provider, exporter
    provider.shutdown()


@pytest.fixture
def prometheus(
    tmp_path: Path, served_metrics: tuple[int, TracerProvider, InMemorySpanExporter]
) -> Iterator[str]:
    target_port = served_metrics[0]
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: embedded\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n",
        encoding="utf-8",
    )
    log_path = tmp_path / "prometheus.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            "--web.listen-address=127.0.0.1:0",  # a free port, bound and logged by Prometheus
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{logged_port(process, log_path)}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert process.poll() is None, "prometheus exited"
            assert time.monotonic() < deadline, "prometheus not ready"
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _query(url: str, expression: str) -> dict[str, float]:
    answer = _get(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": expression}))
    assert answer["status"] == "success", answer
    return {
        item["metric"].get("pipeline", ""): float(item["value"][1])
        for item in answer["data"]["result"]
    }


def test_doc_queries_give_the_offline_numbers(
    served_metrics: tuple[int, TracerProvider, InMemorySpanExporter],
    prometheus: str,
    tmp_path: Path,
) -> None:
    _, provider, exporter = served_metrics
    run_workload(provider.get_tracer("t"), runs=120, seed=11)
    path = tmp_path / "traces.jsonl"
    write_otlp_json_lines(exporter.get_finished_spans(), path, per_line=20)
    with path.open(encoding="utf-8") as lines:
        offline = analyze_lines(lines, Thresholds())

    # wait until Prometheus holds a scrape taken after the workload
    deadline = time.monotonic() + 60
    while _query(prometheus, "sum(llmspans_task_outcomes_total)").get("") != 120:
        assert time.monotonic() < deadline, "the workload never reached Prometheus"
        time.sleep(0.3)

    queries = _doc_queries()
    cost_query, ece_query, ece_filled_query = queries[0], queries[1], queries[2]
    assert "llmspans_task_cost_usd_total" in cost_query
    assert "llmspans_calibration_confidence_total" in ece_query and " or" in ece_filled_query

    cost = _query(prometheus, _whole_history(cost_query))
    ece_simple = _query(prometheus, _whole_history(ece_query))
    ece_filled = _query(prometheus, _whole_history(ece_filled_query))
    gauge = _query(prometheus, "llmspans_calibration_ece")
    compared = 0
    for name, pipeline in offline.pipelines.items():
        if pipeline.cost_per_success is not None:
            assert cost[name] == pytest.approx(pipeline.cost_per_success, rel=1e-6)
            compared += 1
        if pipeline.ece is not None:
            assert ece_filled[name] == pytest.approx(pipeline.ece, abs=1e-9)
            assert gauge[name] == pytest.approx(pipeline.ece, abs=1e-9)
            # the short form skips bins without a correct run: never above the full ECE
            assert ece_simple[name] <= pipeline.ece + 1e-9
            compared += 1
    assert compared >= 6

    failures = _query(prometheus, "sum(llmspans_stage_failures_total)")[""]
    failed = _query(prometheus, 'sum(llmspans_task_outcomes_total{outcome="failure"})')[""]
    assert failures == failed == sum(p.failures for p in offline.pipelines.values())
