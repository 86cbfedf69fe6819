"""The demo's pure parts: reading /metrics, matching injected faults with verdicts, agreement."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from llmspans._demo.scrape import CONTEXT_RECALL, histogram_quantile, parse_metrics
from llmspans._demo.summary import LedgerEntry, agreement, compare, judged
from llmspans._demo.traces import JudgedRun, RootVerdict
from llmspans._demo.users import simulated_feedback
from llmspans.core.report import PipelineReport, Report, StageReport

METRICS = """\
# TYPE llmspans_task_outcomes_total counter
llmspans_task_outcomes_total{pipeline="rag",outcome="success"} 3.0
llmspans_task_outcomes_total{pipeline="rag",outcome="failure"} 2.0
# TYPE llmspans_stage_failures_total counter
llmspans_stage_failures_total{pipeline="rag",stage="retrieval",reason="empty"} 1.0
llmspans_stage_failures_total{pipeline="rag",stage="action",reason="error"} 1.0
# TYPE llmspans_task_cost_usd_total counter
llmspans_task_cost_usd_total{pipeline="rag",outcome="success"} 0.25
llmspans_task_cost_usd_total{pipeline="rag",outcome="failure"} 0.05
# TYPE llmspans_calibration_runs_total counter
llmspans_calibration_runs_total{pipeline="rag",bin="8",correct="true"} 2.0
llmspans_calibration_runs_total{pipeline="rag",bin="8",correct="false"} 2.0
llmspans_calibration_runs_total{pipeline="rag",basis="judge",bin="8",correct="true"} 9.0
# TYPE llmspans_calibration_confidence_total counter
llmspans_calibration_confidence_total{pipeline="rag",bin="8"} 3.4
llmspans_calibration_confidence_total{pipeline="rag",basis="judge",bin="8"} 7.2
# TYPE llmspans_retrieval_context_recall histogram
llmspans_retrieval_context_recall_bucket{pipeline="rag",basis="labels",le="0.5"} 1.0
llmspans_retrieval_context_recall_bucket{pipeline="rag",basis="labels",le="+Inf"} 4.0
llmspans_retrieval_context_recall_sum{pipeline="rag",basis="labels"} 3.0
llmspans_retrieval_context_recall_count{pipeline="rag",basis="labels"} 4.0
llmspans_retrieval_context_recall_bucket{pipeline="rag",basis="judge",le="+Inf"} 2.0
llmspans_retrieval_context_recall_sum{pipeline="rag",basis="judge"} 1.0
llmspans_retrieval_context_recall_count{pipeline="rag",basis="judge"} 2.0
# TYPE llmspans_judged_failures_total counter
llmspans_judged_failures_total{pipeline="rag",stage="retrieval",reason="missed_relevant"} 1.0
# TYPE llmspans_evaluations_total counter
llmspans_evaluations_total{pipeline="rag",evaluator="j",verdict="incorrect"} 1.0
llmspans_evaluations_total{pipeline="rag",evaluator="j",verdict="correct"} 1.0
llmspans_evaluations_total{pipeline="rag",evaluator="j",verdict="error"} 1.0
# TYPE llmspans_stage_duration_seconds histogram
llmspans_stage_duration_seconds_bucket{pipeline="rag",stage="generation",le="0.1"} 50.0
llmspans_stage_duration_seconds_bucket{pipeline="rag",stage="generation",le="0.2"} 100.0
llmspans_stage_duration_seconds_bucket{pipeline="rag",stage="generation",le="+Inf"} 100.0
llmspans_stage_duration_seconds_sum{pipeline="rag",stage="generation"} 12.0
llmspans_stage_duration_seconds_count{pipeline="rag",stage="generation"} 100.0
"""


def test_parse_metrics_reads_the_series_of_the_report() -> None:
    m = parse_metrics(METRICS)
    assert m.runs() == 5
    assert m.outcomes[("rag", "failure")] == 2
    assert m.failures == {("rag", "retrieval", "empty"): 1, ("rag", "action", "error"): 1}
    assert m.cost_usd["rag"] == pytest.approx(0.30)
    assert m.mean(CONTEXT_RECALL, "rag") == 0.75
    assert m.mean(CONTEXT_RECALL, "rag", "judge") == 0.5
    assert m.mean(CONTEXT_RECALL, "other") is None
    assert m.judged_failures == {("rag", "retrieval", "missed_relevant"): 1}
    assert m.judged_runs("rag") == 2  # an evaluator error judged nothing
    # ECE = |correct - confidence sum| / runs = |2 - 3.4| / 4
    assert m.ece("rag") == pytest.approx(0.35)
    assert m.stage_p95("rag", "generation") == pytest.approx(0.19)


def test_histogram_quantile_interpolates_like_prometheus() -> None:
    buckets = [(1.0, 10.0), (2.0, 20.0), (float("inf"), 20.0)]
    assert histogram_quantile(0.5, buckets) == 1.0
    assert histogram_quantile(0.75, buckets) == 1.5
    assert histogram_quantile(0.5, [(1.0, 0.0), (float("inf"), 4.0)]) == 1.0
    assert histogram_quantile(0.5, []) is None


def _verdict(trace: str, outcome: str, stage: str | None, reason: str | None) -> RootVerdict:
    return RootVerdict(trace, "rag", outcome, stage, reason, None)


def test_compare_counts_matches_mismatches_natural_failures_and_missing_verdicts() -> None:
    ledger = [
        LedgerEntry(0, "rag", 0, "retrieval:empty", "t0"),
        LedgerEntry(1, "rag", 1, "generation:refused", "t1"),
        LedgerEntry(2, "rag", 2, None, "t2"),
        LedgerEntry(3, "rag", 3, "action:error", "t3"),
        LedgerEntry(4, "rag", 4, None, "t4"),
    ]
    verdicts = {
        "t0": _verdict("t0", "failure", "retrieval", "empty"),
        "t1": _verdict("t1", "failure", "retrieval", "missed_relevant"),
        "t2": _verdict("t2", "failure", "retrieval", "missed_relevant"),
        "t4": _verdict("t4", "success", None, None),
    }
    stages = {"rag": ("retrieval", "context_selection", "generation", "action")}
    rates = {"retrieval": 0.5, "context_selection": 0.0, "generation": 0.5, "action": 0.5}
    result = compare(ledger, verdicts, stages, rates)
    assert not result.exact
    assert result.missing_verdicts == [3]
    assert [(m.seq, m.failure_stage) for m in result.mismatches] == [(1, "retrieval")]
    retrieval = result.stages["retrieval"]
    assert (retrieval.injected, retrieval.matched, retrieval.attributed, retrieval.natural) == (
        1,
        1,
        3,
        1,
    )
    assert retrieval.reasons == {"empty": 1, "missed_relevant": 2}
    assert result.stages["generation"].matched == 0
    assert retrieval.eligible_runs == 5
    assert retrieval.expected_rate == 0.5
    assert result.stages["generation"].expected_rate == 0.25


def test_agreement_reports_every_difference_between_the_sources() -> None:
    metrics = parse_metrics(METRICS)
    roots = [
        _verdict("a", "success", None, None),
        _verdict("b", "success", None, None),
        _verdict("c", "success", None, None),
        _verdict("d", "failure", "retrieval", "empty"),
        _verdict("e", "failure", "action", "error"),
    ]
    offline = Report(
        pipelines={
            "rag": PipelineReport(
                "rag",
                outcomes={"success": 3, "failure": 2},
                stages={
                    "retrieval": StageReport(failures={"empty": 1}),
                    "action": StageReport(failures={"error": 1}),
                },
                cost_usd=0.30,
                calibration={8: [4.0, 2.0, 3.4]},
            )
        }
    )
    assert agreement(metrics, roots, offline).differences == []
    roots[-1] = _verdict("e", "failure", "generation", "refused")
    offline.pipelines["rag"].cost_usd = 0.31
    differences = agreement(metrics, roots, offline).differences
    assert len(differences) == 2
    assert differences[0].startswith("failures: /metrics vs root spans")
    assert differences[1].startswith("cost of rag")


def test_simulated_users_accept_most_served_replies_and_bypass_unserved_ones() -> None:
    rng = random.Random(0)
    served = Counter(simulated_feedback(rng, True)[0] for _ in range(2000))
    unserved = Counter(simulated_feedback(rng, False)[0] for _ in range(2000))
    assert set(served) == {"accept", "edit", "reject"}
    assert served["accept"] > served["edit"] > served["reject"]
    assert set(unserved) == {"bypass", "reject"} and unserved["bypass"] > unserved["reject"]
    kind, ratio = simulated_feedback(random.Random(1), True)
    assert (ratio is not None) == (kind == "edit")
    a, b = random.Random(4), random.Random(4)
    simulated_feedback(a, True)
    simulated_feedback(b, False)
    assert a.random() == b.random()


def test_judged_joins_each_judgment_with_the_verdict_of_its_run() -> None:
    m = parse_metrics(METRICS)
    verdicts = {
        "t1": RootVerdict("t1", "rag", "success", None, None, None),
        "t2": RootVerdict("t2", "rag", "failure", "retrieval", "empty", "retrieval:empty"),
        "t3": RootVerdict("t3", "rag", "success", None, None, None),
    }
    runs = [
        JudgedRun("t1", "rag", "billing", "incorrect", "retrieval", "missed_relevant"),
        JudgedRun("t2", "rag", "billing", "incorrect", "retrieval", "empty"),
        JudgedRun("t3", "rag", "billing", "correct", None, None),
        JudgedRun("unknown", "rag", None, "incorrect", "retrieval", "missed_relevant"),
    ]
    found = judged(m, runs, verdicts, sample_rate=0.5, segment_rates={"billing": 1.0}, sampled=3)
    looked = found["looked_successful_judged_wrong"]
    # Only t1: t2 failed by the app's own rules, t3 was judged right, "unknown" has no run.
    assert looked == {"runs": 1, "reasons": {"rag:retrieval/missed_relevant": 1}, "traces": ["t1"]}
    rag = found["pipelines"]["rag"]
    assert rag["judged_runs"] == 2
    assert rag["context_recall"] == {"labels": 0.75, "judge": 0.5}
    rows = {(r["stage"], r["reason"]): r for r in found["failures"]}
    assert rows[("retrieval", "missed_relevant")] == {
        "pipeline": "rag", "stage": "retrieval", "reason": "missed_relevant",
        "app": 0, "judged": 1, "judged_app_success": 1,
    }  # fmt: skip
    assert rows[("retrieval", "empty")]["app"] == 1
