"""The traffic generator: each injected fault is attributed to its stage and reason, traces
are sharded whole, and the command runs against a real collector endpoint."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from llmspans import _attributes as A
from llmspans.collector.traffic.pipeline import FAULT_MODES, FaultMix, SupportPipeline
from llmspans.collector.traffic.shard import TraceShardingExporter
from llmspans.core.evaluate import evaluate_trace
from llmspans.core.model import Thresholds
from llmspans.embedded import record_from_readable_span
from llmspans.testing import SeededIdGenerator, capture_spans

#: the (stage, reason) SPEC section 5 gives each fault mode of the generator
EXPECTED_REASON = {
    ("retrieval", "error"): "error",
    ("retrieval", "empty"): "empty",
    ("retrieval", "missed_relevant"): "missed_relevant",
    ("context_selection", "error"): "error",
    ("context_selection", "empty"): "empty",
    ("context_selection", "dropped_relevant"): "dropped_relevant",
    ("generation", "error"): "error",
    ("generation", "refused"): "refused",
    ("generation", "unsupported_citation"): "unsupported_citation",
    ("generation", "invalid_output"): "invalid_output",
    ("action", "error"): "error",
    ("action", "verification_failed"): "verification_failed",
}


def verdict_of(fault: tuple[str, str] | None, seed: int = 1) -> tuple[str, str | None, str | None]:
    with capture_spans(seed) as captured:
        SupportPipeline(latency_scale=0).run("T-1", fault, random.Random(seed))
    records = [record_from_readable_span(span) for span in captured.spans]
    result = evaluate_trace(records, Thresholds())
    assert len(result.runs) == 1
    _, verdict = result.runs[0]
    return verdict.outcome, verdict.failure_stage, verdict.failure_reason


def test_every_fault_mode_is_covered() -> None:
    assert set(EXPECTED_REASON) == {(s, m) for s, modes in FAULT_MODES.items() for m in modes}


@pytest.mark.parametrize("fault", sorted(EXPECTED_REASON), ids=lambda f: f"{f[0]}:{f[1]}")
def test_each_injected_fault_is_attributed_to_its_stage(fault: tuple[str, str]) -> None:
    for seed in (1, 2, 3):
        assert verdict_of(fault, seed) == ("failure", fault[0], EXPECTED_REASON[fault])


def test_a_clean_run_is_a_verified_success() -> None:
    for seed in range(5):
        assert verdict_of(None, seed) == ("success", None, None)


def test_fault_mix_draws_its_shares_and_rejects_nonsense() -> None:
    mix = FaultMix.parse(["retrieval:error=0.25", "action:verification_failed=0.25"])
    rng = random.Random(3)
    drawn = Counter(mix.draw(rng) for _ in range(20000))
    assert abs(drawn[("retrieval", "error")] / 20000 - 0.25) < 0.02
    assert abs(drawn[None] / 20000 - 0.5) < 0.02
    with pytest.raises(ValueError, match="unknown fault"):
        FaultMix.parse(["retrieval:refused=0.1"])
    with pytest.raises(ValueError, match="more than 1"):
        FaultMix.parse(["retrieval:error=0.6", "generation:error=0.6"])
    with pytest.raises(ValueError, match="stage:mode=share"):
        FaultMix.parse(["retrieval:error"])


class Recording(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def test_sharding_keeps_every_trace_whole_on_one_exporter() -> None:
    shards = [Recording(), Recording(), Recording()]
    # seeded ids: the split is the same on every run, so "a fair part" is not left to chance
    provider = TracerProvider(id_generator=SeededIdGenerator(7))
    provider.add_span_processor(SimpleSpanProcessor(TraceShardingExporter(shards)))
    tracer = provider.get_tracer("test")
    for _ in range(300):
        with tracer.start_as_current_span("root"), tracer.start_as_current_span("child"):
            pass
    owners: dict[int, set[int]] = {}
    for index, shard in enumerate(shards):
        for span in shard.spans:
            assert span.context is not None
            owners.setdefault(span.context.trace_id, set()).add(index)
    assert len(owners) == 300
    assert all(len(found) == 1 for found in owners.values())
    assert all(trace_id % 3 == next(iter(found)) for trace_id, found in owners.items())
    assert all(150 <= len(shard.spans) <= 250 for shard in shards)  # each shard got a fair part
    assert sum(len(s.spans) for s in shards) == 600


def test_generated_runs_carry_the_quality_facts() -> None:
    with capture_spans(4) as captured:
        SupportPipeline(latency_scale=0).run("T-9", None, random.Random(4))
    retrieval = captured.by_stage(A.STAGE_RETRIEVAL)[0].attributes or {}
    generation = captured.by_stage(A.STAGE_GENERATION)[0].attributes or {}
    assert retrieval[A.RETRIEVAL_RELEVANT_IDS]
    assert len(retrieval[A.RETRIEVAL_DOCUMENT_IDS]) == 5
    assert 0 < float(generation[A.GENERATION_CONFIDENCE]) <= 1
    assert float(generation[A.COST_USD]) > 0
    assert generation[A.GENERATION_CITATIONS]
    root = captured.by_stage(A.STAGE_PIPELINE)[0].attributes or {}
    assert root[A.TASK_CORRECT] is True
