"""Injected faults against attributed root causes, and the agreement of the three sources.

Pure: takes the demo's ledger (what was injected into which trace), the verdicts
the collector wrote on the root spans, its ``/metrics`` numbers and the offline
report over the recorded traces; returns plain data the renderer and the JSON
output share.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from llmspans import _attributes as A
from llmspans._demo.scrape import (
    BASIS_JUDGE,
    BASIS_LABELS,
    CITATION_PRECISION,
    CITATION_SUPPORT,
    CONTEXT_PRECISION,
    CONTEXT_RECALL,
    ScrapedMetrics,
)
from llmspans._demo.traces import JudgedRun, RootVerdict
from llmspans.core.report import Report
from llmspans.diverge import Row


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One request the demo sent: its pipeline, input, injected fault and trace."""

    seq: int
    pipeline: str
    index: int
    fault: str | None  # "stage:mode"
    trace_id: str
    error: str | None = None
    #: the feedback a simulated user sent on the run, if any
    feedback: str | None = None

    @property
    def fault_stage(self) -> str | None:
        return None if self.fault is None else self.fault.split(":", 1)[0]


@dataclass
class StageComparison:
    """Per stage: how many faults were injected and where attribution put them."""

    stage: str
    eligible_runs: int = 0
    expected_rate: float = 0.0
    injected: int = 0
    matched: int = 0
    #: failures attributed to this stage in runs with no fault injected
    natural: int = 0
    attributed: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def observed_rate(self) -> float | None:
        return self.injected / self.eligible_runs if self.eligible_runs else None


@dataclass
class Mismatch:
    seq: int
    pipeline: str
    trace_id: str
    injected: str | None
    outcome: str | None
    failure_stage: str | None
    failure_reason: str | None


@dataclass
class Comparison:
    stages: dict[str, StageComparison]
    mismatches: list[Mismatch]
    missing_verdicts: list[int]
    unattributed: int
    runs: int

    @property
    def injected(self) -> int:
        return sum(s.injected for s in self.stages.values())

    @property
    def exact(self) -> bool:
        """Every injected fault blamed on its stage, every verdict present."""
        return not self.mismatches and not self.missing_verdicts


def expected_stage_rate(stage: str, stages: Sequence[str], rates: Mapping[str, float]) -> float:
    """Probability that a run of a pipeline with ``stages`` gets its fault in ``stage``.

    The earliest drawn stage wins, so a later stage is injected only when every
    earlier stage of that pipeline was not drawn.
    """
    if stage not in stages:
        return 0.0
    p = rates.get(stage, 0.0)
    for earlier in A.PIPELINE_ORDER[: A.PIPELINE_ORDER.index(stage)]:
        if earlier in stages:
            p *= 1.0 - rates.get(earlier, 0.0)
    return p


def compare(
    ledger: Sequence[LedgerEntry],
    verdicts: Mapping[str, RootVerdict],
    pipeline_stages: Mapping[str, Sequence[str]],
    rates: Mapping[str, float],
) -> Comparison:
    """Match each request's injected fault with the collector's verdict on its trace."""
    stages = {s: StageComparison(s) for s in A.PIPELINE_ORDER}
    expected_runs: dict[str, float] = dict.fromkeys(A.PIPELINE_ORDER, 0.0)
    mismatches: list[Mismatch] = []
    missing: list[int] = []
    unattributed = 0
    for entry in ledger:
        shape = pipeline_stages.get(entry.pipeline, ())
        for s in A.PIPELINE_ORDER:
            if s in shape:
                stages[s].eligible_runs += 1
                expected_runs[s] += expected_stage_rate(s, shape, rates)
        verdict = verdicts.get(entry.trace_id)
        if verdict is None:
            missing.append(entry.seq)
            continue
        injected_stage = entry.fault_stage
        got = verdict.failure_stage if verdict.outcome == A.OUTCOME_FAILURE else None
        if got == A.STAGE_UNATTRIBUTED:
            unattributed += 1
        if got in stages:
            target = stages[got]
            target.attributed += 1
            reason = verdict.failure_reason or "?"
            target.reasons[reason] = target.reasons.get(reason, 0) + 1
            if injected_stage is None:
                target.natural += 1
        if injected_stage is not None:
            stages[injected_stage].injected += 1
            if got == injected_stage:
                stages[injected_stage].matched += 1
        if injected_stage is not None and got != injected_stage:
            mismatches.append(
                Mismatch(
                    entry.seq,
                    entry.pipeline,
                    entry.trace_id,
                    entry.fault,
                    verdict.outcome,
                    verdict.failure_stage,
                    verdict.failure_reason,
                )
            )
    for s, comparison in stages.items():
        if comparison.eligible_runs:
            comparison.expected_rate = expected_runs[s] / comparison.eligible_runs
    return Comparison(stages, mismatches, missing, unattributed, len(ledger))


@dataclass
class Agreement:
    """Whether ``/metrics``, the root-span verdicts and the offline report tell the same story."""

    ok: bool
    differences: list[str]


def _close(a: float | None, b: float | None, tol: float = 1e-6) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def agreement(
    metrics: ScrapedMetrics, verdicts: Sequence[RootVerdict], offline: Report
) -> Agreement:
    """Compare run outcomes, root causes, feedback, cost and ECE across the three sources."""
    diffs: list[str] = []
    from_roots_outcomes: Counter[tuple[str, str]] = Counter(
        (v.pipeline, v.outcome or "?") for v in verdicts
    )
    from_roots_failures: Counter[tuple[str, str, str]] = Counter(
        (v.pipeline, v.failure_stage or "?", v.failure_reason or "?")
        for v in verdicts
        if v.outcome == A.OUTCOME_FAILURE
    )
    offline_outcomes: Counter[tuple[str, str]] = Counter()
    offline_failures: Counter[tuple[str, str, str]] = Counter()
    for name, pipeline in offline.pipelines.items():
        for outcome, n in pipeline.outcomes.items():
            offline_outcomes[(name, outcome)] += n
        for stage_name, stage in pipeline.stages.items():
            for reason, n in stage.failures.items():
                offline_failures[(name, stage_name, reason)] += n
    scraped_outcomes = Counter({k: round(v) for k, v in metrics.outcomes.items() if v})
    scraped_failures = Counter({k: round(v) for k, v in metrics.failures.items() if v})
    for label, a, b in (
        ("outcomes: /metrics vs root spans", scraped_outcomes, from_roots_outcomes),
        ("outcomes: /metrics vs llmspans analyze", scraped_outcomes, offline_outcomes),
    ):
        if a != b:
            diffs.append(f"{label}: {dict(a)} != {dict(b)}")
    for label, fa, fb in (
        ("failures: /metrics vs root spans", scraped_failures, from_roots_failures),
        ("failures: /metrics vs llmspans analyze", scraped_failures, offline_failures),
    ):
        if fa != fb:
            diffs.append(f"{label}: {dict(fa)} != {dict(fb)}")
    scraped_feedback = Counter({k: round(v) for k, v in metrics.feedback.items() if v})
    offline_feedback: Counter[tuple[str, str]] = Counter()
    for name, pipeline in offline.pipelines.items():
        for kind, n in pipeline.feedback.items():
            offline_feedback[(name, kind)] += n
    if scraped_feedback != offline_feedback:
        diffs.append(
            f"feedback: /metrics vs llmspans analyze: {dict(scraped_feedback)} "
            f"!= {dict(offline_feedback)}"
        )
    for name, pipeline in offline.pipelines.items():
        if not _close(metrics.cost_usd.get(name, 0.0), pipeline.cost_usd, 1e-9):
            diffs.append(f"cost of {name}: {metrics.cost_usd.get(name)} != {pipeline.cost_usd}")
        if not _close(metrics.ece(name), pipeline.ece):
            diffs.append(f"ECE of {name}: {metrics.ece(name)} != {pipeline.ece}")
    return Agreement(not diffs, diffs)


def to_json(
    comparison: Comparison,
    agreement_: Agreement,
    *,
    ledger: Sequence[LedgerEntry],
    verdicts: Mapping[str, RootVerdict],
    offline: Report,
    settings: Mapping[str, Any],
) -> dict[str, Any]:
    """The demo's machine-readable result (``DIR/demo.json``)."""
    return {
        "settings": dict(settings),
        "runs": comparison.runs,
        "injected": comparison.injected,
        "exact": comparison.exact,
        "agreement": {"ok": agreement_.ok, "differences": agreement_.differences},
        "stages": {
            s: {**asdict(c), "observed_rate": c.observed_rate} for s, c in comparison.stages.items()
        },
        "unattributed": comparison.unattributed,
        "mismatches": [asdict(m) for m in comparison.mismatches],
        "missing_verdicts": comparison.missing_verdicts,
        "ledger": [
            {
                **asdict(e),
                "outcome": v.outcome if v else None,
                "failure_stage": v.failure_stage if v else None,
                "failure_reason": v.failure_reason if v else None,
            }
            for e in ledger
            for v in (verdicts.get(e.trace_id),)
        ],
        "report": offline.to_json(),
    }


#: runs listed by trace id in the judged section of demo.json
MAX_LISTED_TRACES = 20


def judged(
    metrics: ScrapedMetrics,
    judged_runs: Sequence[JudgedRun],
    verdicts: Mapping[str, RootVerdict],
    *,
    sample_rate: float,
    segment_rates: Mapping[str, float],
    sampled: int,
) -> dict[str, Any]:
    """The judged figures next to the app-labelled ones, from ``/metrics``, and the runs
    the app saw succeed that the judge found wrong, from the recorded evaluation spans
    joined with the verdicts on their runs' roots."""
    pipelines: dict[str, Any] = {}
    for pipeline in sorted({p for p, _ in metrics.evaluations}):
        pipelines[pipeline] = {
            "evaluations": {
                v: round(n) for (p, v), n in metrics.evaluations.items() if p == pipeline
            },
            "judged_runs": round(metrics.judged_runs(pipeline)),
            "context_precision": {
                basis: metrics.mean(CONTEXT_PRECISION, pipeline, basis)
                for basis in (BASIS_LABELS, BASIS_JUDGE)
            },
            "context_recall": {
                basis: metrics.mean(CONTEXT_RECALL, pipeline, basis)
                for basis in (BASIS_LABELS, BASIS_JUDGE)
            },
            "citation_precision": metrics.mean(CITATION_PRECISION, pipeline),
            "citation_support": metrics.mean(CITATION_SUPPORT, pipeline),
        }
    failures = []
    keys = {k for k, v in metrics.judged_failures.items() if v} | {
        k for k, v in metrics.failures.items() if v and k[0] in pipelines
    }
    looked: Counter[tuple[str, str, str]] = Counter()
    traces: list[str] = []
    for run in judged_runs:
        verdict = verdicts.get(run.trace_id)
        if run.failure_stage is None or verdict is None:
            continue
        if verdict.outcome == A.OUTCOME_SUCCESS:
            looked[(run.pipeline, run.failure_stage, run.failure_reason or "?")] += 1
            if len(traces) < MAX_LISTED_TRACES:
                traces.append(run.trace_id)
    order = {s: i for i, s in enumerate((*A.PIPELINE_ORDER, A.STAGE_UNATTRIBUTED))}
    for pipeline, stage, reason in sorted(
        keys, key=lambda k: (k[0], order.get(k[1], len(order)), k[2])
    ):
        failures.append(
            {
                "pipeline": pipeline,
                "stage": stage,
                "reason": reason,
                "app": round(metrics.failures.get((pipeline, stage, reason), 0.0)),
                "judged": round(metrics.judged_failures.get((pipeline, stage, reason), 0.0)),
                "judged_app_success": looked.get((pipeline, stage, reason), 0),
            }
        )
    return {
        "sample_rate": sample_rate,
        "segment_rates": dict(segment_rates),
        "sampled_runs": sampled,
        "dropped": {k: round(v) for k, v in metrics.evaluation_dropped.items() if v},
        "pipelines": pipelines,
        "failures": failures,
        "looked_successful_judged_wrong": {
            "runs": sum(looked.values()),
            "reasons": {f"{p}:{s}/{r}": n for (p, s, r), n in sorted(looked.items())},
            "traces": traces,
        },
    }


def divergence(
    rows: Sequence[Row], coverage_rows: Sequence[Row], *, min_runs: int
) -> dict[str, Any]:
    """``llmspans diverge`` rows of the offline set against production: the significant
    ones, how many were compared, and the segment coverage (uncovered first)."""
    return {
        "min_runs": min_runs,
        "compared": len(rows),
        "significant": [r.to_json() for r in rows if r.significant],
        "too_few_runs": sorted({r.segment for r in rows if r.verdict == "too few runs"}),
        "coverage": [r.to_json() for r in coverage_rows],
        "uncovered": [r.segment for r in coverage_rows if r.uncovered],
    }
