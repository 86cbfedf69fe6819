"""Live: ``llmspans diverge --prometheus`` against a real collector scraped by a real Prometheus.

The planted runs of tests/core/test_diverge.py (context recall 0.95 offline and
0.50 in production in segment ``billing``, equal in ``small_talk``, five runs on
each side in ``tiny``, ``refunds`` in production only) go over OTLP/HTTP to an
``llmspans-collector``; Prometheus scrapes it every second. Every series is
created by the runs themselves, the way an evaluation batch creates its
``source="offline"`` series, so a Prometheus ``increase()`` alone would miss
what the collector counted before the series' first scrape.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmspans import _attributes as A
from tests.listening import collector_ports, logged_port

from .conftest import ROOT, Processes, binary, get_json, http_get, venv_binary, wait_for

pytestmark = pytest.mark.slow

#: (source, segment, runs, share of runs that retrieve both relevant documents; the
#: others retrieve one of two, recall 0.5), as tests/core/test_diverge.py plants them
PLAN = [
    ("offline", "billing", 300, 0.9),  # recall 0.95
    ("offline", "small_talk", 300, 0.5),  # recall 0.75
    ("offline", "tiny", 5, 1.0),  # recall 1.0
    ("production", "billing", 300, 0.0),  # recall 0.50
    ("production", "small_talk", 300, 0.5),  # recall 0.75
    ("production", "tiny", 5, 0.0),  # recall 0.50
    ("production", "refunds", 200, 0.5),  # no offline runs at all
]
RUNS = sum(count for _, _, count, _ in PLAN)


def _record(tracer: trace.Tracer) -> None:
    now = time.time_ns()
    for source, segment, count, full in PLAN:
        for index in range(count):
            found = ["r1", "r2"] if index < round(count * full) else ["r1", "x"]
            root = {
                A.STAGE: A.STAGE_PIPELINE,
                A.PIPELINE: "rag",
                A.SEGMENT: segment,
                A.RUN_SOURCE: source,
                A.TASK_COMPLETED: True,
            }
            # equal durations on both sides: only the planted differences can diverge
            pipeline_span = tracer.start_span(
                "invoke_workflow rag", attributes=root, start_time=now
            )
            retrieval = tracer.start_span(
                "retrieval faq",
                context=trace.set_span_in_context(pipeline_span),
                attributes={
                    A.STAGE: A.STAGE_RETRIEVAL,
                    A.RETRIEVAL_DOCUMENT_IDS: found,
                    A.RETRIEVAL_RELEVANT_IDS: ["r1", "r2"],
                },
                start_time=now,
            )
            retrieval.end(end_time=now + 10_000_000)
            pipeline_span.end(end_time=now + 20_000_000)


def _requests(spans: tuple[ReadableSpan, ...], traces_per_request: int) -> Iterator[bytes]:
    by_trace: dict[int, list[ReadableSpan]] = {}
    for span in spans:
        assert span.context is not None
        by_trace.setdefault(span.context.trace_id, []).append(span)
    traces = list(by_trace.values())
    for start in range(0, len(traces), traces_per_request):
        batch = [
            span for spans_of in traces[start : start + traces_per_request] for span in spans_of
        ]
        yield encode_spans(batch).SerializeToString()


def _post(url: str, body: bytes) -> int:
    request = urllib.request.Request(
        f"{url}/v1/traces",
        data=body,
        headers={"Content-Type": "application/x-protobuf"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


def _instant(prometheus: str, expr: str) -> list[dict[str, Any]]:
    answer = get_json(f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


@pytest.fixture
def stack(tmp_path: Path, processes: Processes) -> tuple[str, str]:
    """A collector and a Prometheus scraping it; (collector OTLP URL, Prometheus URL)."""
    config = tmp_path / "collector.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "receivers": {"grpc": None, "http": {"endpoint": "127.0.0.1:0"}},
                "metrics": {"prometheus": {"endpoint": "127.0.0.1:0"}},
                "assembly": {"trace_idle_s": 0.5, "trace_timeout_s": 3.0},
            }
        )
    )
    collector = processes.start(
        "collector", [venv_binary("llmspans-collector"), "--config", str(config)]
    )
    ports = collector_ports(collector, processes.logs / "collector.log", timeout=90)
    assert ports["http"] is not None and ports["metrics"] is not None
    prometheus_config = tmp_path / "prometheus.yml"
    prometheus_config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "llmspans-collector",
                        "static_configs": [{"targets": [f"127.0.0.1:{ports['metrics']}"]}],
                    }
                ],
            }
        )
    )
    (tmp_path / "prom-data").mkdir()
    prometheus = processes.start(
        "prometheus",
        [
            binary("prometheus"),
            f"--config.file={prometheus_config}",
            f"--storage.tsdb.path={tmp_path / 'prom-data'}",
            "--web.listen-address=127.0.0.1:0",
        ],
    )
    url = f"http://127.0.0.1:{logged_port(prometheus, processes.logs / 'prometheus.log')}"
    wait_for(lambda: http_get(f"{url}/-/ready"), 60, what="prometheus")
    wait_for(
        lambda: all(
            t["health"] == "up" for t in get_json(f"{url}/api/v1/targets")["data"]["activeTargets"]
        ),
        60,
        what="the collector scraped",
    )
    return f"http://127.0.0.1:{ports['http']}", url


def _diverge(prometheus: str) -> tuple[int, list[dict[str, Any]], str]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "llmspans.cli",
            "diverge",
            "--prometheus",
            prometheus,
            "--window",
            "10m",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    return (
        result.returncode,
        [json.loads(line) for line in result.stdout.splitlines()],
        result.stderr,
    )


def _row(rows: list[dict[str, Any]], segment: str, metric: str) -> dict[str, Any]:
    return next(r for r in rows if r["segment"] == segment and r["metric"] == metric)


def test_diverge_over_prometheus_flags_the_planted_segment(stack: tuple[str, str]) -> None:
    otlp, prometheus = stack
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _record(provider.get_tracer("planted"))
    provider.shutdown()
    # a few seconds of sending, so that series appear between scrapes
    for body in _requests(exporter.get_finished_spans(), traces_per_request=40):
        assert _post(otlp, body) == 200
        time.sleep(0.1)
    wait_for(
        lambda: [
            r
            for r in _instant(prometheus, "sum(llmspans_task_outcomes_total)")
            if float(r["value"][1]) == RUNS
        ],
        60,
        what=f"Prometheus to have scraped all {RUNS} runs",
    )
    time.sleep(2.0)  # a few more scrapes after the last change

    status, rows, stderr = _diverge(prometheus)
    assert status == 1, (stderr, [r for r in rows if r["metric"] in ("coverage", "context_recall")])
    assert rows, stderr
    for row in rows:
        assert row["pipeline"] == "rag"
        assert {"segment", "metric", "offline", "production", "difference", "significant"} <= set(
            row
        )

    # the planted difference: flagged, from the whole of both sides
    billing = _row(rows, "billing", "context_recall")
    assert (billing["offline_runs"], billing["production_runs"]) == (300, 300), billing
    # means from bucket midpoints (approximate): 1.0 is in (0.9, 1] and 0.5 in (0.4, 0.5]
    assert billing["offline"] == pytest.approx(0.9 * 0.95 + 0.1 * 0.45)
    assert billing["production"] == pytest.approx(0.45)
    assert billing["significant"] is True and billing["verdict"] == "diverges"
    completion = _row(rows, "billing", "task_completion")
    assert (completion["offline_runs"], completion["production_runs"]) == (300, 300)
    assert completion["significant"] is False

    # the equal segment and the tiny one are never flagged
    small_talk = _row(rows, "small_talk", "context_recall")
    assert small_talk["offline"] == pytest.approx(small_talk["production"])
    assert small_talk["significant"] is False
    tiny = _row(rows, "tiny", "context_recall")
    assert (tiny["offline_runs"], tiny["production_runs"]) == (5, 5)
    assert tiny["significant"] is False and tiny["verdict"] == "too few runs"
    # apart from coverage (production also serves "refunds", so the other segments'
    # shares differ too), only the planted difference is significant
    significant = {
        (r["segment"], r["metric"]) for r in rows if r["significant"] and r["metric"] != "coverage"
    }
    assert significant == {("billing", "context_recall")}, significant

    # coverage: the uncovered production segment first, then the shares of both sides
    coverage = [r for r in rows if r["metric"] == "coverage"]
    assert coverage[0]["segment"] == "refunds" and coverage[0]["uncovered"] is True
    assert coverage[0]["production"] == pytest.approx(200 / 805)
    assert coverage[0]["offline"] == 0.0
    shares = {r["segment"]: (r["offline"], r["production"]) for r in coverage}
    assert shares["billing"] == pytest.approx((300 / 605, 300 / 805))
    assert shares["small_talk"] == pytest.approx((300 / 605, 300 / 805))
    assert shares["tiny"] == pytest.approx((5 / 605, 5 / 805))
    assert set(shares) == {"billing", "small_talk", "tiny", "refunds"}
    assert [r["segment"] for r in coverage if r["uncovered"]] == ["refunds"]
    assert coverage[0]["significant"] is True
