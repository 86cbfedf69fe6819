"""``llmspans.configure(embedded=True)`` end to end: decorated stages, a scraped /metrics
endpoint, and ``llmspans analyze`` over the same spans, agreeing."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

import llmspans
from llmspans.analyze import analyze_lines
from llmspans.core.model import Thresholds

from .test_embedded import write_otlp_json_lines

CORPUS = {"refunds": "Refunds take 5 days.", "shipping": "Ships in 2 days.", "misc": "Other."}


@pytest.fixture
def configured() -> Iterator[tuple[llmspans.Configuration, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    config = llmspans.configure(
        "core-embedded-test",
        embedded=True,
        metrics_port=0,  # bound by the server itself: config.metrics_port is the port
        span_exporter=exporter,
        set_global=False,
    )
    yield config, exporter
    config.shutdown()


@llmspans.retrieval(data_source="faq")
def search(query: str, relevant: list[str]) -> list[str]:
    found = [doc for doc in CORPUS if doc in query]
    llmspans.record_retrieval(document_ids=found, scores=[0.9] * len(found), relevant_ids=relevant)
    return found


@llmspans.context_selection
def select(documents: list[str], keep: int) -> list[str]:
    chosen = documents[:keep]
    llmspans.record_context(input_ids=documents, selected_ids=chosen)
    return chosen


@llmspans.generation(model="test-model")
def answer(context: list[str], cite: list[str], confidence: float) -> str:
    llmspans.record_generation(citations=cite, confidence=confidence, cost_usd=0.01)
    return " ".join(CORPUS[doc] for doc in context)


@llmspans.action
def send(text: str, delivered: bool) -> None:
    llmspans.record_action(verified=delivered, tool_name="send")


@llmspans.pipeline("qa")
def qa(query: str, *, relevant: list[str], keep: int, cite: list[str], delivered: bool) -> str:
    documents = search(query, relevant)
    context = select(documents, keep)
    text = answer(context, cite, 0.8)
    send(text, delivered)
    return text


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body: bytes = response.read()
        return body.decode()


def _value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_decorated_pipeline_metrics_match_analyze(
    configured: tuple[llmspans.Configuration, InMemorySpanExporter], tmp_path: Path
) -> None:
    config, exporter = configured
    assert config.metrics_port is not None
    runs = [
        # healthy and verified: success
        ("refunds please", ["refunds"], 1, ["refunds"], True),
        # retrieval finds nothing: retrieval/empty
        ("hello", ["refunds"], 1, [], True),
        # relevant "shipping" retrieved but selection keeps only "refunds"
        ("refunds and shipping", ["shipping"], 1, ["refunds"], True),
        # cites a document it was not shown: generation/unsupported_citation
        ("refunds please", ["refunds"], 1, ["misc"], True),
        # delivery check fails: action/verification_failed
        ("shipping", ["shipping"], 1, ["shipping"], False),
    ]
    for query, relevant, keep, cite, delivered in runs:
        qa(query, relevant=relevant, keep=keep, cite=cite, delivered=delivered)

    text = _scrape(config.metrics_port)
    failures = {
        reason: _value(text, "llmspans_stage_failures_total", pipeline="qa", reason=reason)
        for reason in ("empty", "dropped_relevant", "unsupported_citation", "verification_failed")
    }
    assert failures == {
        "empty": 1,
        "dropped_relevant": 1,
        "unsupported_citation": 1,
        "verification_failed": 1,
    }, text
    outcomes = "llmspans_task_outcomes_total"
    assert _value(text, outcomes, pipeline="qa", outcome="success") == 1
    assert _value(text, outcomes, pipeline="qa", outcome="failure") == 4
    assert _value(text, "llmspans_stage_failures_total") == 4

    assert config.force_flush()  # the span exporter sits behind a batch processor
    path = tmp_path / "traces.jsonl"
    write_otlp_json_lines(exporter.get_finished_spans(), path, per_line=4)
    with path.open(encoding="utf-8") as lines:
        offline = analyze_lines(lines, Thresholds())
    pipeline = offline.pipelines["qa"]
    assert pipeline.outcomes == {"success": 1, "failure": 4}
    by_reason = {
        reason: count
        for stage in pipeline.stages.values()
        for reason, count in stage.failures.items()
    }
    assert by_reason == failures
    assert _value(text, "llmspans_task_cost_usd_total") == pytest.approx(pipeline.cost_usd)
    assert pipeline.cost_usd == pytest.approx(0.05)
