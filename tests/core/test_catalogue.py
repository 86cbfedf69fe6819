"""The metric catalogue is the one description of every metric: the docs' table, the
label sets the core records and the families every endpoint renders follow it."""

from __future__ import annotations

import random
import re
from pathlib import Path

from llmspans import _attributes as A
from llmspans.core import exposition
from llmspans.core.catalogue import (
    CATALOGUE,
    COLLECTOR_HEALTH,
    EVALUATION,
    by_otel_name,
    markdown_table,
)
from llmspans.core.evaluate import evaluate_trace
from llmspans.core.metrics import HISTOGRAM_BOUNDARIES, observations
from llmspans.core.model import Thresholds
from llmspans.core.store import MetricStore

from .builders import pipeline_root, record

METRICS_DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def test_the_docs_metric_table_is_the_catalogue() -> None:
    text = METRICS_DOC.read_text(encoding="utf-8")
    start = text.index("| Prometheus name | OTel instrument |")
    end = text.index("\n\n", start)
    assert text[start:end] + "\n" == markdown_table(), (
        "docs/metrics.md's metric table differs from llmspans/core/catalogue.py: paste "
        "`python -c 'from llmspans.core.catalogue import markdown_table; "
        "print(markdown_table())'` into it"
    )


def _varied_traces(count: int) -> list[list[object]]:
    """Runs that fire every kind of measurement: failures, labels, citations,
    confidences, costs, feedback and standalone stage spans."""
    rng = random.Random(5)
    traces: list[list[object]] = []
    for index in range(count):
        root = pipeline_root(f"p{index % 3}", task_correct=rng.random() < 0.5)
        documents = tuple(f"d{k}" for k in range(rng.randint(0, 4)))
        traces.append(
            [
                root,
                record(
                    A.STAGE_RETRIEVAL,
                    parent=root,
                    start=1,
                    document_ids=documents,
                    relevant_ids=("d1",),
                ),
                record(A.STAGE_CONTEXT_SELECTION, parent=root, start=2, selected_ids=documents[:2]),
                record(
                    A.STAGE_GENERATION,
                    parent=root,
                    start=3,
                    citations=("d1", "d9"),
                    confidence=rng.random(),
                    cost_usd=0.01,
                    refused=rng.random() < 0.2,
                ),
                record(A.STAGE_ACTION, parent=root, start=4, verified=rng.random() < 0.8),
            ]
        )
    traces.append([record(A.STAGE_RETRIEVAL, document_ids=("x",))])
    traces.append([record(A.STAGE_FEEDBACK, feedback_kind="edit")])
    return traces


def test_every_measurement_carries_exactly_its_catalogue_labels() -> None:
    seen: set[str] = set()
    for trace in _varied_traces(60):
        for observation in observations(evaluate_trace(trace, Thresholds())):  # type: ignore[arg-type]
            row = by_otel_name(observation.instrument)
            assert tuple(key for key, _ in observation.labels) == row.labels, observation
            assert (observation.kind == "histogram") == (row.kind == "histogram")
            seen.add(observation.instrument)
    measured = {row.otel_name for row in CATALOGUE if row.kind != "gauge"}
    assert seen == measured
    assert {name for name, _ in HISTOGRAM_BOUNDARIES.items()} == {
        row.otel_name for row in (*CATALOGUE, *EVALUATION) if row.kind == "histogram"
    }


def test_rendered_families_and_labels_follow_the_catalogue() -> None:
    store = MetricStore()
    for index, trace in enumerate(_varied_traces(60)):
        store.record(evaluate_trace(trace, Thresholds()), index.to_bytes(16, "big"))  # type: ignore[arg-type]
    store.add_health("llmspans_collector_spans_received", 3)
    text = exposition.render(store, COLLECTOR_HEALTH)
    helps = dict(re.findall(r"^# HELP (\S+) (.*)$", text, re.M))
    for row in (*CATALOGUE, *COLLECTOR_HEALTH):
        name = row.sample_name if row.kind == "counter" else row.prometheus_name
        assert helps[name] == row.help
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name = line.split("{")[0].split(" ")[0]
        labels = re.findall(r'(\w+)="', line.split(" ")[0])
        family = re.sub(r"(_total|_bucket|_count|_sum)$", "", name)
        row = next(row for row in (*CATALOGUE, *COLLECTOR_HEALTH) if row.prometheus_name == family)
        assert labels == [*row.labels, *(["le"] if name.endswith("_bucket") else [])], line
