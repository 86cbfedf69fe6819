"""Fault parsing, the seeded draw (earliest stage wins), the run plan, and every fault mode
of every example attributed by the core to the stage it was injected into."""

from __future__ import annotations

import random
from collections import Counter
from types import ModuleType
from typing import Any

import pytest

from llmspans import _attributes as A
from llmspans._demo.faults import Fault, draw_fault, parse_faults
from llmspans._demo.plan import PipelineShape, make_plan
from llmspans._demo.summary import expected_stage_rate
from llmspans.core.evaluate import evaluate_trace
from llmspans.core.model import Thresholds
from llmspans.embedded import record_from_readable_span
from llmspans.testing import CapturedSpans, capture_spans

ALL_STAGES = ("retrieval", "context_selection", "generation", "action")
MODES = {s: (f"{s}-a", f"{s}-b") for s in ALL_STAGES}


def test_parse_faults_accepts_aliases_and_defaults_missing_stages_to_zero() -> None:
    rates = parse_faults("retrieval=0.1, selection=0.05,action=1")
    assert rates == {
        "retrieval": 0.1,
        "context_selection": 0.05,
        "generation": 0.0,
        "action": 1.0,
    }
    assert parse_faults("context_selection=0.2")["context_selection"] == 0.2
    assert set(parse_faults("none").values()) == {0.0}
    assert set(parse_faults("").values()) == {0.0}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("retreival=0.1", "bad fault 'retreival=0.1'"),
        ("retrieval", "expected STAGE=RATE"),
        ("retrieval=lots", "not a number"),
        ("action=1.5", "between 0 and 1"),
        ("generation=-0.1", "between 0 and 1"),
    ],
)
def test_parse_faults_rejects_bad_items_with_the_item_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_faults(text)


def test_the_earliest_drawn_stage_wins() -> None:
    certain = dict.fromkeys(ALL_STAGES, 1.0)
    rng = random.Random(1)
    assert draw_fault(rng, certain, ALL_STAGES, MODES) is not None
    for _ in range(20):
        fault = draw_fault(rng, certain, ALL_STAGES, MODES)
        assert fault is not None and fault.stage == "retrieval"
        booking = draw_fault(rng, certain, ("generation", "action"), MODES)
        assert booking is not None and booking.stage == "generation"
    only_action = {**dict.fromkeys(ALL_STAGES, 0.0), "action": 1.0}
    fault = draw_fault(rng, only_action, ALL_STAGES, MODES)
    assert fault is not None and fault.stage == "action" and fault.mode in MODES["action"]


def test_a_draw_consumes_the_same_randomness_whatever_the_outcome() -> None:
    a, b = random.Random(5), random.Random(5)
    draw_fault(a, dict.fromkeys(ALL_STAGES, 1.0), ALL_STAGES, MODES)
    draw_fault(b, dict.fromkeys(ALL_STAGES, 0.0), ("generation",), MODES)
    assert a.random() == b.random()


def test_modes_are_drawn_evenly() -> None:
    rng = random.Random(3)
    rates = {**dict.fromkeys(ALL_STAGES, 0.0), "generation": 1.0}
    modes = Counter(
        fault.mode
        for fault in (draw_fault(rng, rates, ALL_STAGES, MODES) for _ in range(2000))
        if fault is not None
    )
    assert set(modes) == set(MODES["generation"])
    assert abs(modes["generation-a"] - 1000) < 150


def _shapes() -> list[PipelineShape]:
    return [
        PipelineShape("four", 10, ALL_STAGES, MODES, 2.0),
        PipelineShape("two", 5, ("generation", "action"), MODES, 1.0),
    ]


def test_the_plan_is_a_function_of_the_seed() -> None:
    rates = parse_faults("retrieval=0.2,selection=0.1,generation=0.1,action=0.1")
    first = make_plan(_shapes(), 200, rates, seed=9)
    assert first == make_plan(_shapes(), 200, rates, seed=9)
    assert first != make_plan(_shapes(), 200, rates, seed=10)
    assert [r.seq for r in first] == list(range(200))
    for run in first:
        if run.pipeline == "two":
            assert run.index < 5
            assert run.fault is None or run.fault.stage in ("generation", "action")


def test_injected_rates_follow_the_precedence_formula() -> None:
    rates = parse_faults("retrieval=0.2,selection=0.1,generation=0.1,action=0.1")
    plan = make_plan(_shapes(), 20_000, rates, seed=1)
    four = [r for r in plan if r.pipeline == "four"]
    observed = Counter(r.fault.stage for r in four if r.fault)
    for stage in ALL_STAGES:
        expected = expected_stage_rate(stage, ALL_STAGES, rates)
        sigma = (expected * (1 - expected) / len(four)) ** 0.5
        assert abs(observed[stage] / len(four) - expected) < 4 * sigma, stage
    assert expected_stage_rate("action", ALL_STAGES, rates) == pytest.approx(0.1 * 0.8 * 0.9 * 0.9)
    assert expected_stage_rate("action", ("generation", "action"), rates) == pytest.approx(0.09)
    assert expected_stage_rate("retrieval", ("generation", "action"), rates) == 0.0


def test_fault_str_is_stage_and_mode() -> None:
    assert str(Fault("retrieval", "empty")) == "retrieval:empty"


def _verdicts(spans: CapturedSpans) -> list[tuple[str, str | None, str | None]]:
    records = [record_from_readable_span(s) for s in spans]
    result = evaluate_trace(records, Thresholds())
    return [(v.outcome, v.failure_stage, v.failure_reason) for _, v in result.runs]


EXPECTED_REASONS = {
    ("retrieval", "error"): {"error"},
    ("retrieval", "empty"): {"empty"},
    ("retrieval", "wrong_documents"): {"missed_relevant"},
    ("context_selection", "error"): {"error"},
    ("context_selection", "empty"): {"empty"},
    # Dropping every relevant article can leave nothing at all to select.
    ("context_selection", "dropped_relevant"): {"dropped_relevant", "empty"},
    ("generation", "error"): {"error"},
    ("generation", "refused"): {"refused"},
    ("generation", "unsupported_citation"): {"unsupported_citation"},
    ("generation", "invalid_output"): {"invalid_output"},
    ("action", "error"): {"error"},
    ("action", "no_write"): {"verification_failed"},
    ("action", "stale_replica"): {"verification_failed"},
}


@pytest.mark.parametrize("name", ["support_rag", "sql_analyst", "booking_agent"])
def test_every_fault_mode_is_attributed_to_its_stage(
    name: str, pipelines: dict[str, Any], faults: ModuleType
) -> None:
    example = pipelines[name]
    modes: dict[str, tuple[str, ...]] = example.fault_modes
    size = len(example)
    with capture_spans() as spans:
        for i in range(size):
            example.run(i)
    assert _verdicts(spans) == [(A.OUTCOME_SUCCESS, None, None)] * size
    for stage, stage_modes in modes.items():
        for mode in stage_modes:
            with capture_spans() as spans, faults.injecting((stage, mode)):
                for i in range(0, size, 3):
                    example.run(i)
            verdicts = _verdicts(spans)
            assert len(verdicts) == len(range(0, size, 3))
            for outcome, failure_stage, reason in verdicts:
                assert (outcome, failure_stage) == (A.OUTCOME_FAILURE, stage), (stage, mode)
                assert reason in EXPECTED_REASONS[(stage, mode)], (stage, mode, reason)
