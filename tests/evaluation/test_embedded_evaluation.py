"""The embedded mode judges sampled runs with the same runner and core: the same
judged figures as the collector and ``analyze``."""

from __future__ import annotations

import math

from opentelemetry.sdk.trace import TracerProvider

from llmspans import _attributes as A
from llmspans.embedded import EmbeddedProcessor

from . import judges, scenario


def test_the_embedded_mode_counts_the_judged_failures() -> None:
    processor = EmbeddedProcessor(evaluators=[judges.judge, "tests.evaluation.judges:async_judge"])
    provider = TracerProvider()
    provider.add_span_processor(processor)
    try:
        scenario.record_runs(provider.get_tracer("t"))
        assert processor.evaluation is not None
        assert processor.evaluation.drain(10.0)
        assert processor.collect_evaluations() == 2 * len(scenario.RUNS)
    finally:
        provider.shutdown()
    store = processor.store
    for evaluator in ("tests.evaluation.judges:async_judge",):
        assert store.counter(A.METRIC_EVALUATIONS, evaluator=evaluator) == len(scenario.RUNS)
    assert (
        store.counter(A.METRIC_JUDGED_FAILURES, stage="retrieval", reason="missed_relevant")
        == 2 * scenario.MISSED_RELEVANT
    )
    precision = store.aggregates.histogram(A.METRIC_CONTEXT_PRECISION, basis="judge")
    assert math.isclose(precision.sum / precision.count, scenario.JUDGED_PRECISION)
    recall = store.aggregates.histogram(A.METRIC_CONTEXT_RECALL, basis="judge")
    assert math.isclose(recall.sum / recall.count, scenario.JUDGED_RECALL)
    support = store.aggregates.histogram(A.METRIC_CITATION_SUPPORT)
    assert math.isclose(support.sum / support.count, scenario.CITATION_SUPPORT)
    assert "llmspans_judged_failures_total" in processor.render()
