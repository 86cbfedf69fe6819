"""Embedded mode: real SDK providers, the same numbers as ``llmspans analyze``."""

from __future__ import annotations

import argparse
import base64
import json
import logging
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from llmspans import _attributes as A
from llmspans import analyze
from llmspans.core.catalogue import CATALOGUE
from llmspans.core.metrics import HISTOGRAM_BOUNDARIES, HistogramData
from llmspans.core.model import Thresholds
from llmspans.embedded import EmbeddedProcessor

from .pipelines import run_workload

Series = dict[tuple[tuple[str, str], ...], Any]


@dataclass(frozen=True)
class Point:
    """A counter or gauge value as the store holds it."""

    value: float


class Harness:
    """A TracerProvider with the embedded processor and an in-memory span exporter."""

    def __init__(self, **options: Any) -> None:
        self.processor = EmbeddedProcessor(**options)
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(self.processor)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer: Tracer = self.provider.get_tracer("test")

    def metrics(self) -> dict[str, Series]:
        """Every series of the processor's store by instrument name and sorted label set:
        a :class:`Point` for counters and the ECE gauge, ``HistogramData`` for histograms."""
        found: dict[str, Series] = {}
        store = self.processor.store
        with self.processor._lock:
            for (name, labels), value in store.aggregates.counters.items():
                found.setdefault(name, {})[tuple(sorted(labels))] = Point(value)
            for (name, labels), data in store.aggregates.histograms.items():
                found.setdefault(name, {})[tuple(sorted(labels))] = data
            for pipeline, value in store.ece().items():
                found.setdefault(A.METRIC_CALIBRATION_ECE, {})[(("pipeline", pipeline),)] = Point(
                    value
                )
        return found

    def close(self) -> None:
        self.provider.shutdown()


@pytest.fixture
def harness() -> Iterator[Harness]:
    made = Harness()
    yield made
    made.close()


def _total(series: Series, **labels: str) -> float:
    total = 0.0
    for key, point in series.items():
        present = dict(key)
        if all(present.get(name) == value for name, value in labels.items()):
            assert isinstance(point, Point)
            total += point.value
    return total


def write_otlp_json_lines(spans: tuple[ReadableSpan, ...], path: Path, per_line: int) -> None:
    """OTLP JSON lines as the file exporters write them: hex ids, one request per line."""

    def hexify(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                key: base64.b64decode(item).hex()
                if key in ("traceId", "spanId", "parentSpanId") and item
                else hexify(item)
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [hexify(item) for item in value]
        return value

    with path.open("w", encoding="utf-8") as out:
        for start in range(0, len(spans), per_line):
            request = encode_spans(spans[start : start + per_line])
            out.write(json.dumps(hexify(json_format.MessageToDict(request))) + "\n")


def _analyze_json(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    analyze.add_arguments(parser)
    assert analyze.run(parser.parse_args([str(path), "--json", *extra])) == 0
    output: dict[str, Any] = json.loads(capsys.readouterr().out)
    return output


def test_embedded_and_analyze_give_the_same_numbers(
    harness: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_workload(harness.tracer, runs=150)
    spans = harness.exporter.get_finished_spans()
    path = tmp_path / "traces.jsonl"
    write_otlp_json_lines(spans, path, per_line=7)  # traces split across lines on purpose
    report = _analyze_json(path, capsys)
    metrics = harness.metrics()

    outcomes = metrics[A.METRIC_TASK_OUTCOMES]
    failures = metrics[A.METRIC_STAGE_FAILURES]
    calls = metrics[A.METRIC_STAGE_CALLS]
    assert set(report["pipelines"]) == {"support", "search", "agent", "unknown"}
    total_runs = 0
    for name, pipeline in report["pipelines"].items():
        total_runs += pipeline["runs"]
        for outcome, count in pipeline["outcomes"].items():
            assert _total(outcomes, pipeline=name, outcome=outcome) == count, (name, outcome)
        assert _total(failures, pipeline=name) == pipeline["failures"]
        for stage, numbers in pipeline["stages"].items():
            for reason, count in numbers["failures_by_reason"].items():
                assert _total(failures, pipeline=name, stage=stage, reason=reason) == count
            assert _total(calls, pipeline=name, stage=stage) == numbers["calls"]
            assert _total(calls, pipeline=name, stage=stage, status="error") == numbers["errors"]
            if numbers["calls"]:
                point = metrics[A.METRIC_STAGE_DURATION][(("pipeline", name), ("stage", stage))]
                assert isinstance(point, HistogramData)
                assert point.count == numbers["calls"]
        cost = _total(metrics.get(A.METRIC_TASK_COST, {}), pipeline=name)
        assert cost == pytest.approx(pipeline["cost_usd"], abs=1e-9)
        for instrument, key in [
            (A.METRIC_CONTEXT_PRECISION, "context_precision"),
            (A.METRIC_CONTEXT_RECALL, "context_recall"),
            (A.METRIC_CITATION_PRECISION, "citation_precision"),
        ]:
            run_labels = (("pipeline", name), ("segment", "none"), ("source", "production"))
            if instrument != A.METRIC_CITATION_PRECISION:
                run_labels = (("basis", "labels"), *run_labels)
            point = metrics.get(instrument, {}).get(run_labels)
            count = pipeline[key].get("runs", pipeline[key].get("generations"))
            if count:
                assert isinstance(point, HistogramData)
                assert point.count == count
                assert point.sum / point.count == pytest.approx(pipeline[key]["mean"], abs=1e-6)
            else:
                assert point is None
        calibration = pipeline["calibration"]
        if calibration["runs"]:
            runs = metrics[A.METRIC_CALIBRATION_RUNS]
            confidence = metrics[A.METRIC_CALIBRATION_CONFIDENCE]
            error = sum(
                abs(
                    _total(runs, pipeline=name, bin=str(b), correct="true")
                    - _total(confidence, pipeline=name, bin=str(b))
                )
                for b in range(10)
            ) / _total(runs, pipeline=name)
            assert error == pytest.approx(calibration["ece"], abs=1e-6)
            gauge = metrics[A.METRIC_CALIBRATION_ECE][(("pipeline", name),)]
            assert gauge.value == pytest.approx(calibration["ece"], abs=1e-6)
        for kind, count in pipeline["feedback"].items():
            assert _total(metrics[A.METRIC_FEEDBACK], pipeline=name, kind=kind) == count
    assert total_runs == 150
    assert _total(outcomes) == 150
    # the workload is broken in many ways: the comparison covers real failures
    assert sum(p["failures"] for p in report["pipelines"].values()) >= 30
    reasons = {
        reason
        for p in report["pipelines"].values()
        for stage in p["stages"].values()
        for reason in stage["failures_by_reason"]
    }
    assert len(reasons) >= 6


def test_histograms_use_the_explicit_boundaries(harness: Harness) -> None:
    run_workload(harness.tracer, runs=5)
    metrics = harness.metrics()
    for instrument, boundaries in HISTOGRAM_BOUNDARIES.items():
        for point in metrics.get(instrument, {}).values():
            assert point.boundaries == boundaries


def test_prometheus_names_are_exactly_the_spec() -> None:
    processor = EmbeddedProcessor()
    provider = TracerProvider()
    provider.add_span_processor(processor)
    try:
        run_workload(provider.get_tracer("t"), runs=60, seed=3)
        text = processor.render()
    finally:
        provider.shutdown()
    names = {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line.startswith("llmspans_")
    }
    assert names == {
        "llmspans_stage_calls_total",
        "llmspans_stage_duration_seconds_bucket",
        "llmspans_stage_duration_seconds_count",
        "llmspans_stage_duration_seconds_sum",
        "llmspans_task_outcomes_total",
        "llmspans_task_duration_seconds_bucket",
        "llmspans_task_duration_seconds_count",
        "llmspans_task_duration_seconds_sum",
        "llmspans_stage_failures_total",
        "llmspans_task_cost_usd_total",
        "llmspans_feedback_total",
        "llmspans_calibration_runs_total",
        "llmspans_calibration_confidence_total",
        "llmspans_calibration_ece",
        *(
            f"llmspans_{name}_{suffix}"
            for name in (
                "retrieval_context_precision",
                "retrieval_context_recall",
                "generation_citation_precision",
            )
            for suffix in ("bucket", "count", "sum")
        ),
    }
    assert "llmspans_stage_failures_total{" in text
    failure_line = next(
        line for line in text.splitlines() if line.startswith("llmspans_stage_failures_total{")
    )
    for label in ("pipeline=", "stage=", "reason="):
        assert label in failure_line
    assert 'le="0.005"' in text and 'le="120.0"' in text


def _open_run(tracer: Tracer, pipeline: str = "hung") -> Any:
    """A pipeline span that never ends, with one ended retrieval under it."""
    from opentelemetry import trace

    root = tracer.start_span(
        A.span_name(A.STAGE_PIPELINE, pipeline),
        attributes={A.STAGE: A.STAGE_PIPELINE, A.PIPELINE: pipeline},
    )
    with tracer.start_as_current_span(
        "retrieval faq",
        context=trace.set_span_in_context(root),
        attributes={
            A.STAGE: A.STAGE_RETRIEVAL,
            A.PIPELINE: pipeline,
            A.RETRIEVAL_DOCUMENT_IDS: ["d"],
        },
    ):
        pass
    return root


def _wait_for(condition: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_every_series_carries_exactly_its_catalogue_labels() -> None:
    """The embedded mode renders with the collector's code: the label names of every
    series are its catalogue row's (no ``otel_scope_*``, no ``target_info``)."""
    processor = EmbeddedProcessor()
    provider = TracerProvider()
    provider.add_span_processor(processor)
    try:
        run_workload(provider.get_tracer("t"), runs=60, seed=3)
        text = processor.render()
    finally:
        provider.shutdown()
    rows = {row.prometheus_name: row for row in CATALOGUE}
    seen: set[str] = set()
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name, _, rest = line.partition("{")
        family = next(
            n
            for n in (
                name.removesuffix(suffix) for suffix in ("_total", "_bucket", "_count", "_sum", "")
            )
            if n in rows
        )
        labels = [part.split("=")[0] for part in rest.split("}")[0].split(",") if part]
        expected = list(rows[family].labels) + (["le"] if name.endswith("_bucket") else [])
        assert labels == expected, line
        seen.add(family)
    assert "target_info" not in text and "otel_scope" not in text
    assert seen == set(rows)


def test_unfinished_run_is_finalised_after_the_timeout() -> None:
    timeout_s = 0.5
    harness = Harness(trace_timeout_s=timeout_s)
    try:
        opened = time.monotonic()
        _open_run(harness.tracer)
        # Polled from the moment the run opened: finalised by the sweeper, and not
        # before its timeout (a check right after opening would race the sweeper).
        _wait_for(lambda: A.METRIC_STAGE_CALLS in harness.metrics())
        assert time.monotonic() - opened >= timeout_s
        calls = harness.metrics()[A.METRIC_STAGE_CALLS]
        assert _total(calls, pipeline="hung", stage="retrieval") == 1
        assert A.METRIC_TASK_OUTCOMES not in harness.metrics()  # the run never ended
    finally:
        harness.close()


def test_inflight_traces_are_bounded() -> None:
    harness = Harness(max_inflight_traces=2, trace_timeout_s=3600)
    try:
        for index in range(5):
            _open_run(harness.tracer, pipeline=f"p{index}")
        calls = harness.metrics()[A.METRIC_STAGE_CALLS]
        # the three oldest were finalised early to keep two in flight
        assert {dict(key)["pipeline"] for key in calls} == {"p0", "p1", "p2"}
        harness.processor.shutdown()  # finalises the rest
        calls = harness.metrics()[A.METRIC_STAGE_CALLS]
        assert _total(calls) == 5
    finally:
        harness.close()


def test_late_span_counts_once_and_never_changes_the_run(harness: Harness) -> None:
    from opentelemetry import trace

    root = harness.tracer.start_span(
        "invoke_workflow rag", attributes={A.STAGE: A.STAGE_PIPELINE, A.PIPELINE: "rag"}
    )
    late = harness.tracer.start_span(
        "execute_tool x",
        context=trace.set_span_in_context(root),
        attributes={A.STAGE: A.STAGE_ACTION, A.PIPELINE: "rag", A.ACTION_VERIFIED: False},
    )
    root.end()  # the run is final: no stage failed, nothing verified
    late.end()
    metrics = harness.metrics()
    assert _total(metrics[A.METRIC_TASK_OUTCOMES], outcome="unverified") == 1
    assert A.METRIC_STAGE_FAILURES not in metrics
    assert _total(metrics[A.METRIC_STAGE_CALLS], stage="action") == 1


def test_concurrent_pipelines_are_counted_exactly(harness: Harness) -> None:
    def worker(seed: int) -> None:
        run_workload(harness.tracer, runs=25, seed=seed)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert _total(harness.metrics()[A.METRIC_TASK_OUTCOMES]) == 100
    spans = harness.exporter.get_finished_spans()
    stage_spans = sum(
        1 for span in spans if span.attributes and span.attributes.get(A.STAGE) in A.PIPELINE_ORDER
    )
    assert _total(harness.metrics()[A.METRIC_STAGE_CALLS]) == stage_spans


def test_pipeline_label_is_bounded() -> None:
    harness = Harness(max_pipelines=2)
    try:
        for name in ["a", "b", "c", "d"]:
            with harness.tracer.start_as_current_span(
                "invoke_workflow", attributes={A.STAGE: A.STAGE_PIPELINE, A.PIPELINE: name}
            ):
                pass
        outcomes = harness.metrics()[A.METRIC_TASK_OUTCOMES]
        assert {dict(key)["pipeline"]: point.value for key, point in outcomes.items()} == {
            "a": 1,
            "b": 1,
            "other": 2,
        }
    finally:
        harness.close()


def test_errors_inside_the_processor_never_reach_the_app(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        @property
        def context(self) -> Any:
            raise RuntimeError("broken span")

    with caplog.at_level(logging.WARNING, logger="llmspans"):
        for _ in range(3):
            harness.processor.on_end(Broken())  # type: ignore[arg-type]
    logged = [r for r in caplog.records if "embedded.on_end" in r.getMessage()]
    assert len(logged) <= 1  # once per kind (and not at all if already logged in this process)
    with harness.tracer.start_as_current_span(
        "invoke_workflow ok", attributes={A.STAGE: A.STAGE_PIPELINE, A.TASK_COMPLETED: True}
    ):
        pass
    assert _total(harness.metrics()[A.METRIC_TASK_OUTCOMES], outcome="success") == 1


def test_thresholds_apply(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    harness = Harness(thresholds=Thresholds(min_score=0.99))
    try:
        tracer = harness.tracer
        root_attributes = {A.STAGE: A.STAGE_PIPELINE, A.PIPELINE: "t"}
        retrieval_attributes: dict[str, Any] = {
            A.STAGE: A.STAGE_RETRIEVAL,
            A.RETRIEVAL_DOCUMENT_IDS: ["a"],
            A.RETRIEVAL_SCORES: [0.5],
        }
        with (
            tracer.start_as_current_span("invoke_workflow t", attributes=root_attributes),
            tracer.start_as_current_span("retrieval x", attributes=retrieval_attributes),
        ):
            pass
        failures = harness.metrics()[A.METRIC_STAGE_FAILURES]
        assert _total(failures, stage="retrieval", reason="low_relevance") == 1
        path = tmp_path / "t.jsonl"
        write_otlp_json_lines(harness.exporter.get_finished_spans(), path, per_line=10)
        strict = _analyze_json(path, capsys, "--min-score", "0.99")
        assert strict["pipelines"]["t"]["stages"]["retrieval"]["failures_by_reason"] == {
            "low_relevance": 1
        }
        lenient = _analyze_json(path, capsys)
        assert lenient["pipelines"]["t"]["failures"] == 0
        assert math.isclose(lenient["pipelines"]["t"]["completion_rate"], 0.0)
    finally:
        harness.close()


def test_two_local_roots_in_one_distributed_trace_are_two_runs(harness: Harness) -> None:
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    remote = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0x00F067AA0BA902B7,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    incoming = trace.set_span_in_context(NonRecordingSpan(remote))
    tracer = harness.tracer
    for documents in (["d1"], []):  # two requests of the same trace reach this process
        with (
            tracer.start_as_current_span(
                "invoke_workflow rag",
                context=incoming,
                attributes={A.STAGE: A.STAGE_PIPELINE, A.PIPELINE: "rag"},
            ),
            tracer.start_as_current_span(
                "retrieval faq",
                attributes={A.STAGE: A.STAGE_RETRIEVAL, A.RETRIEVAL_DOCUMENT_IDS: documents},
            ),
        ):
            pass
    metrics = harness.metrics()
    assert _total(metrics[A.METRIC_TASK_OUTCOMES]) == 2
    assert _total(metrics[A.METRIC_STAGE_FAILURES], stage="retrieval", reason="empty") == 1
    assert _total(metrics[A.METRIC_STAGE_CALLS], pipeline="rag", stage="retrieval") == 2
