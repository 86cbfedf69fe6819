"""configure(embedded=True, evaluators=...): sampled runs judged in process, and the
judgments that return while the app shuts down still exported with its spans."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmspans
from llmspans import _attributes as A
from llmspans.evaluation import Judgment, Run


def _slow_judge(run: Run) -> Judgment:
    import time

    time.sleep(0.2)  # still running when shutdown() begins
    return Judgment(relevant_ids=[d.id for d in run.documents][:1], correct=True)


def test_configure_judges_sampled_runs_and_exports_the_judgments_at_shutdown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    exporter = InMemorySpanExporter()
    configuration = llmspans.configure(
        service_name="judged",
        span_exporter=exporter,
        embedded=True,
        evaluators=[_slow_judge],
        evaluation_sample_rate=1.0,
        set_global=False,
    )

    @llmspans.retrieval()
    def search(query: str) -> list[dict[str, object]]:
        return [{"id": "d1", "text": "refunds take 5 days", "score": 0.9}]

    @llmspans.generation(model="m", provider="p")
    def answer(query: str, documents: list[dict[str, object]]) -> str:
        return "5 days"

    @llmspans.pipeline("support")
    def run(query: str) -> str:
        return answer(query, search(query))

    try:
        for _ in range(3):
            run("how long do refunds take?")
        processor = configuration.embedded_processor
        assert processor is not None
    finally:
        configuration.shutdown()
    spans = exporter.get_finished_spans()
    evaluations = [s for s in spans if s.name == "evaluate support"]
    assert len(evaluations) == 3
    assert all(dict(s.attributes or {})[A.STAGE] == A.STAGE_EVALUATION for s in evaluations)
    assert processor.store.counter(A.METRIC_EVALUATIONS) == 3


def test_evaluators_without_the_embedded_mode_are_refused() -> None:
    with pytest.raises(ValueError, match="embedded=True"):
        llmspans.configure(evaluators=["tests.evaluation.judges:judge"], set_global=False)
