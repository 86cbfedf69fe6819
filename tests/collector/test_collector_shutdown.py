"""SIGTERM: stop accepting, finalise every in-flight trace, flush, exit 0, lose nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from collector_support import Sink, emit_run, grpc_sender, http_sender

from llmspans import _attributes as A
from llmspans._tracefiles import iter_otlp_json_file
from tests.listening import collector_ports

ROOT = Path(__file__).resolve().parents[2]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _metric_points(sink: Sink, name: str) -> list[Any]:
    points: list[Any] = []
    for request in sink.metric_requests[-1:]:
        for resource_metrics in request.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name == name:
                        points.extend(metric.sum.data_points)
    return points


def test_sigterm_finalises_and_flushes_everything(tmp_path: Path, sink: Sink) -> None:
    traces_file = tmp_path / "traces.jsonl"
    config = {
        # Port 0 everywhere: the collector binds free ports itself (no race with other
        # processes for a port chosen in advance) and logs which ones.
        "receivers": {
            "grpc": {"endpoint": "127.0.0.1:0"},
            "http": {"endpoint": "127.0.0.1:0"},
        },
        "metrics": {
            "prometheus": {"endpoint": "127.0.0.1:0"},
            "otlp": {
                "endpoint": f"http://127.0.0.1:{sink.port}/v1/metrics",
                "interval_s": 3600,
            },
            "service_instance_id": "replica-7",
        },
        # Nothing goes idle before the signal: every trace is in flight at SIGTERM.
        "assembly": {"trace_idle_s": 60, "trace_timeout_s": 120},
        "exporters": [
            {"protocol": "http", "endpoint": sink.url},
            {"protocol": "file", "path": str(traces_file)},
        ],
    }
    config_path = tmp_path / "collector.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = tmp_path / "collector.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "llmspans.collector", "--config", str(config_path)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        ports = collector_ports(process, log_path)
        assert _healthy(f"http://127.0.0.1:{ports['metrics']}/healthz")
        http = http_sender(f"http://127.0.0.1:{ports['http']}/v1/traces")
        grpc = grpc_sender(f"127.0.0.1:{ports['grpc']}")
        traces = [emit_run(http.tracer, pipeline="shutdown") for _ in range(6)]
        traces += [emit_run(grpc.tracer, pipeline="shutdown", verified=False) for _ in range(4)]
        http.close()
        grpc.close()
        time.sleep(0.3)
        assert not sink.requests or all(
            not span.name.startswith("invoke_workflow") for span in sink.spans()
        ), "no root may leave before its trace is final"

        process.send_signal(signal.SIGTERM)
        # Bounded, not timed: a collector that hung on shutdown would not exit at all.
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()

    # Everything reached the HTTP backend, every root with its verdict.
    spans = sink.spans()
    assert len(spans) == 50
    roots = {span.trace_id: span for span in spans if not span.parent_span_id}
    assert set(roots) == set(traces)
    outcomes = sorted(
        next(kv.value.string_value for kv in span.attributes if kv.key == A.OUTCOME)
        for span in roots.values()
    )
    assert outcomes == ["failure"] * 4 + ["success"] * 6

    # ... and to the file, as OTLP JSON lines that the offline reader understands.
    records = list(iter_otlp_json_file(traces_file))
    assert len(records) == 50
    assert {record.trace_id for record in records if record.is_root} == set(traces)

    # The last metrics push went out after the final verdicts, from this replica.
    resource = {
        kv.key: kv.value.string_value
        for kv in sink.metric_requests[-1].resource_metrics[0].resource.attributes
    }
    assert resource["service.instance.id"] == "replica-7"
    by_outcome = {
        {kv.key: kv.value.string_value for kv in point.attributes}["outcome"]: point.as_double
        for point in _metric_points(sink, A.METRIC_TASK_OUTCOMES)
    }
    assert by_outcome == {"success": 6.0, "failure": 4.0}
    finalized = _metric_points(sink, "llmspans.collector.traces_finalized")
    assert sum(point.as_double for point in finalized) == 10
