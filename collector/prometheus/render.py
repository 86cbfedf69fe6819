"""Render the Prometheus recording and alert rules from a profile of windows and thresholds.

The rules file is generated so that windows and thresholds have one source,
``profiles.yaml`` next to this module: production alerts over minutes and hours,
the live end-to-end test over seconds, with the same expressions. Run::

    python -m collector.prometheus.render                      # production -> rules.yml
    python -m collector.prometheus.render --profile fast --output /tmp/rules.yml
    python -m collector.prometheus.render --check              # fail if rules.yml is stale

Recording rules follow Prometheus' ``level:metric:operations`` naming, with the
window in the name (``pipeline_stage:llmspans_stage_failures:ratio_rate5m``): all of
them at the profile's ``recording_windows``, and at every other window an alert
reads, the ones that alert reads. Every aggregation names
its labels (``sum by (pipeline, stage)``), so replicas of the collector add up and
labels the exporter adds (``instance``, ``job``, ``otel_scope_name``) drop out.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmspans.diverge import counted

HERE: Final = Path(__file__).resolve().parent
PROFILES_FILE: Final = HERE / "profiles.yaml"
RULES_FILE: Final = HERE / "rules.yml"

_DURATION_RE: Final = re.compile(r"^(\d+)(ms|s|m|h|d|w)$")
_DURATION_SECONDS: Final[dict[str, float]] = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}


def duration_seconds(value: str) -> float:
    """Seconds in a single-unit Prometheus duration such as ``5m`` or ``90s``."""
    match = _DURATION_RE.match(value)
    if match is None:
        raise ValueError(f"not a single-unit Prometheus duration: {value!r} (e.g. 30s, 5m, 1h)")
    return int(match.group(1)) * _DURATION_SECONDS[match.group(2)]


def _check_duration(value: str) -> str:
    duration_seconds(value)
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class StageFailureSpike(_Section):
    short_window: str
    baseline_window: str
    factor: float = Field(gt=1.0)
    floor: float = Field(ge=0.0, le=1.0)
    min_runs: int = Field(ge=0)
    for_: str = Field(alias="for")
    severity: str

    _durations = field_validator("short_window", "baseline_window", "for_")(_check_duration)


class BurnRate(_Section):
    long_window: str
    short_window: str
    factor: float = Field(gt=0.0)
    for_: str = Field(alias="for")
    severity: str

    _durations = field_validator("long_window", "short_window", "for_")(_check_duration)

    def windows(self) -> tuple[str, str]:
        return (self.long_window, self.short_window)


class TaskCompletionSlo(_Section):
    objective: float = Field(gt=0.0, lt=1.0)
    bad_outcomes: tuple[str, ...]
    min_runs: int = Field(ge=0)
    burn_rates: tuple[BurnRate, ...]


class StageLatency(_Section):
    window: str
    quantile: float = Field(gt=0.0, lt=1.0)
    default_seconds: float = Field(gt=0.0)
    stage_seconds: dict[str, float]
    min_calls: int = Field(ge=0)
    for_: str = Field(alias="for")
    severity: str

    _durations = field_validator("window", "for_")(_check_duration)


class CostPerSuccess(_Section):
    short_window: str
    baseline_window: str
    factor: float = Field(gt=1.0)
    min_successes: int = Field(ge=0)
    for_: str = Field(alias="for")
    severity: str

    _durations = field_validator("short_window", "baseline_window", "for_")(_check_duration)


class CollectorHealth(_Section):
    job_regex: str
    window: str
    backpressure_reasons: str
    transient_reasons: str
    backpressure_for: str
    rejected_ratio: float = Field(ge=0.0)
    rejected_requests_per_second: float = Field(ge=0.0)
    dropped_per_second: float = Field(ge=0.0)
    dropped_for: str
    evictions_per_second: float = Field(ge=0.0)
    evictions_for: str
    late_ratio: float = Field(ge=0.0)
    down_for: str
    for_: str = Field(alias="for")
    severity: str

    _durations = field_validator("window", "backpressure_for", "evictions_for", "down_for", "for_")(
        _check_duration
    )


class SegmentFailureBudget(_Section):
    budget: float = Field(gt=0.0, lt=1.0)
    #: pipeline -> segment -> budget, for the segments whose budget is not ``budget``
    overrides: dict[str, dict[str, float]] = {}
    bad_outcomes: tuple[str, ...]
    min_runs: int = Field(ge=0)
    burn_rates: tuple[BurnRate, ...]

    @field_validator("overrides")
    @classmethod
    def _check_overrides(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for pipeline, segments in value.items():
            for segment, budget in segments.items():
                if not 0.0 < budget < 1.0:
                    raise ValueError(f"budget of {pipeline}/{segment} not in (0, 1): {budget}")
        return value


class OfflineProductionDivergence(_Section):
    production_window: str
    offline_window: str
    z: float = Field(gt=0.0)
    bad_outcomes: tuple[str, ...]
    min_runs: int = Field(ge=1)
    for_: str = Field(alias="for")
    severity: str

    _durations = field_validator("production_window", "offline_window", "for_")(_check_duration)


class JudgedFailureSpike(StageFailureSpike):
    """The same knobs as the app-side spike, over judged failures."""


class EvaluationHealth(_Section):
    window: str
    #: verdicts that mean the evaluator gave no judgment
    failed_verdicts: tuple[str, ...]
    error_ratio: float = Field(gt=0.0, le=1.0)
    min_calls: int = Field(ge=0)
    drop_ratio: float = Field(gt=0.0, le=1.0)
    min_sampled: int = Field(ge=0)
    for_: str = Field(alias="for")
    severity: str

    _durations = field_validator("window", "for_")(_check_duration)


class EvaluationSpend(_Section):
    window: str
    usd_per_hour: float = Field(gt=0.0)
    for_: str = Field(alias="for")
    severity: str

    _durations = field_validator("window", "for_")(_check_duration)


class Profile(_Section):
    """Every window and threshold the rules use."""

    @field_validator("recording_windows")
    @classmethod
    def _check_windows(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for window in value:
            duration_seconds(window)
        return value

    @field_validator("interval")
    @classmethod
    def _check_interval(cls, value: str | None) -> str | None:
        return None if value is None else _check_duration(value)

    interval: str | None = None
    recording_windows: tuple[str, ...] = ()
    stage_failure_spike: StageFailureSpike
    task_completion_slo: TaskCompletionSlo
    stage_latency: StageLatency
    cost_per_success: CostPerSuccess
    collector: CollectorHealth
    segment_failure_budget: SegmentFailureBudget
    offline_production_divergence: OfflineProductionDivergence
    judged_failure_spike: JudgedFailureSpike
    evaluation_health: EvaluationHealth
    evaluation_spend: EvaluationSpend

    def segment_windows(self) -> dict[str, set[str]]:
        """Source -> the windows of the per-segment rules (budgets and divergence)."""
        production = {w for b in self.segment_failure_budget.burn_rates for w in b.windows()}
        production.add(self.offline_production_divergence.production_window)
        return {
            "production": production,
            "offline": {self.offline_production_divergence.offline_window},
        }

    def needs(self) -> dict[str, set[str]]:
        """Window -> the recorded series (keys of :func:`rule_names`) wanted there.

        Everything at each of ``recording_windows`` (dashboards and ad-hoc queries);
        at the other windows only what an alert reads, so that long windows over
        high-cardinality series are not evaluated for nothing.
        """
        every = set(rule_names(self, "1m"))
        need: dict[str, set[str]] = {w: set(every) for w in self.recording_windows}

        def add(window: str, *keys: str) -> None:
            need.setdefault(window, set()).update(keys)

        spike = self.stage_failure_spike
        add(spike.short_window, "failure_ratio", "failures_by_reason", "runs")
        add(spike.baseline_window, "failure_ratio")
        for burn in self.task_completion_slo.burn_rates:
            add(burn.long_window, "slo_errors", "runs")
            add(burn.short_window, "slo_errors")
        add(self.stage_latency.window, "latency", "calls")
        cost = self.cost_per_success
        add(cost.short_window, "cost_per_success", "runs_by_outcome")
        add(cost.baseline_window, "cost_per_success")
        add(self.collector.window, *_COLLECTOR_KEYS)
        judged = self.judged_failure_spike
        add(judged.short_window, "judged_failure_ratio", "judged_failures_by_reason", "judged_runs")
        add(judged.baseline_window, "judged_failure_ratio")
        add(self.evaluation_health.window, "evaluation_errors", "evaluation_drop_ratio")
        add(self.evaluation_spend.window, "evaluation_cost")
        for keys in need.values():
            for key, dependencies in _DEPENDS.items():
                if key in keys:
                    keys.update(dependencies)
        return need

    def windows(self) -> list[str]:
        """Every window with recording rules, shortest first."""
        return sorted(self.needs(), key=lambda w: (duration_seconds(w), w))


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_profile(name: str, path: Path = PROFILES_FILE) -> Profile:
    """The named profile of ``path``, with ``extends`` resolved."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of profile names to profiles")

    def resolve(profile: str, seen: tuple[str, ...]) -> dict[str, Any]:
        if profile in seen:
            raise ValueError(f"{path}: profiles extend each other in a loop: {seen}")
        if profile not in raw:
            raise ValueError(f"{path}: no profile {profile!r}; have {sorted(raw)}")
        body = dict(raw[profile])
        parent = body.pop("extends", None)
        if parent is None:
            return body
        return _merge(resolve(str(parent), (*seen, profile)), body)

    return Profile.model_validate(resolve(name, ()))


# --- recording rules ---------------------------------------------------------

_STAGE_CALLS: Final = "llmspans_stage_calls_total"
_STAGE_DURATION: Final = "llmspans_stage_duration_seconds_bucket"
_OUTCOMES: Final = "llmspans_task_outcomes_total"
_FAILURES: Final = "llmspans_stage_failures_total"
_COST: Final = "llmspans_task_cost_usd_total"
_FEEDBACK: Final = "llmspans_feedback_total"
_CAL_RUNS: Final = "llmspans_calibration_runs_total"
_CAL_CONFIDENCE: Final = "llmspans_calibration_confidence_total"
_APP_BASIS: Final = 'basis!="judge"'
_QUALITY_HISTOGRAMS: Final = {
    "context_precision": (
        "llmspans_retrieval_context_precision",
        "pipeline:llmspans_retrieval_context_precision",
    ),
    "context_recall": (
        "llmspans_retrieval_context_recall",
        "pipeline:llmspans_retrieval_context_recall",
    ),
    "citation_precision": (
        "llmspans_generation_citation_precision",
        "pipeline:llmspans_generation_citation_precision",
    ),
}
_EVALUATIONS: Final = "llmspans_evaluations_total"
_JUDGED_FAILURES: Final = "llmspans_judged_failures_total"
_EVALUATION_DROPPED: Final = "llmspans_evaluation_dropped_total"
_EVALUATION_COST: Final = "llmspans_evaluation_cost_usd_total"
_COLLECTOR_KEYS: Final = ("received", "rejected", "rejected_requests", "dropped", "evicted", "late")
#: recorded series computed from other recorded series of the same window
_DEPENDS: Final[dict[str, tuple[str, ...]]] = {
    "failure_ratio": ("failures", "runs"),
    "completion": ("runs",),
    "slo_errors": ("runs",),
    "edit_rate": ("feedback",),
    "bypass_rate": ("feedback",),
    "judged_failure_ratio": ("judged_failures", "judged_runs"),
    "evaluation_errors": ("evaluations",),
    "evaluation_drop_ratio": ("evaluation_dropped", "evaluations"),
}


def _quantile_name(quantile: float) -> str:
    digits = f"{quantile * 100:g}".replace(".", "_")
    return f"p{digits}"


def rule_names(profile: Profile, window: str) -> dict[str, str]:
    """The recorded series names for ``window`` (keys are used by alerts and docs)."""
    q = _quantile_name(profile.stage_latency.quantile)
    return {
        "calls_by_status": f"pipeline_stage_status:llmspans_stage_calls:rate{window}",
        "calls": f"pipeline_stage:llmspans_stage_calls:rate{window}",
        "latency": f"pipeline_stage:llmspans_stage_duration_seconds:{q}_rate{window}",
        "runs": f"pipeline:llmspans_task_outcomes:rate{window}",
        "runs_by_outcome": f"pipeline_outcome:llmspans_task_outcomes:rate{window}",
        "failures_by_reason": f"pipeline_stage_reason:llmspans_stage_failures:rate{window}",
        "failures": f"pipeline_stage:llmspans_stage_failures:rate{window}",
        "failure_ratio": f"pipeline_stage:llmspans_stage_failures:ratio_rate{window}",
        "completion": f"pipeline:llmspans_task_completion:ratio_rate{window}",
        "slo_errors": f"pipeline:llmspans_task_slo_errors:ratio_rate{window}",
        "cost_per_success": f"pipeline:llmspans_task_cost_usd_per_success:ratio_rate{window}",
        "feedback": f"pipeline:llmspans_feedback:rate{window}",
        "edit_rate": f"pipeline:llmspans_feedback_edit:ratio_rate{window}",
        "bypass_rate": f"pipeline:llmspans_feedback_bypass:ratio_rate{window}",
        "ece": f"pipeline:llmspans_calibration_ece:ratio_rate{window}",
        **{key: f"{prefix}:mean_rate{window}" for key, (_, prefix) in _QUALITY_HISTOGRAMS.items()},
        "judged_runs": f"pipeline:llmspans_evaluations_judged:rate{window}",
        "judged_failures": f"pipeline_segment_stage:llmspans_judged_failures:rate{window}",
        "judged_failures_by_reason": (
            f"pipeline_segment_stage_reason:llmspans_judged_failures:rate{window}"
        ),
        "judged_failure_ratio": (
            f"pipeline_segment_stage:llmspans_judged_failures:ratio_rate{window}"
        ),
        "evaluations": f"pipeline_evaluator:llmspans_evaluations:rate{window}",
        "evaluation_errors": f"pipeline_evaluator:llmspans_evaluation_errors:ratio_rate{window}",
        "evaluation_dropped": f"reason:llmspans_evaluation_dropped:rate{window}",
        "evaluation_drop_ratio": f"reason:llmspans_evaluation_dropped:ratio_rate{window}",
        "evaluation_cost": f"evaluator:llmspans_evaluation_cost_usd:rate{window}",
        "received": f"instance:llmspans_collector_spans_received:rate{window}",
        "rejected": f"instance_reason:llmspans_collector_spans_rejected:rate{window}",
        "rejected_requests": f"instance_reason:llmspans_collector_requests_rejected:rate{window}",
        "dropped": f"instance_exporter:llmspans_collector_spans_dropped:rate{window}",
        "evicted": f"instance:llmspans_collector_traces_evicted:rate{window}",
        "late": f"instance:llmspans_collector_late_spans:rate{window}",
    }


def _recording_rules(profile: Profile, window: str, keys: set[str]) -> list[dict[str, Any]]:
    n = rule_names(profile, window)
    wanted = {n[key] for key in keys}
    w = window
    bad = "|".join(re.escape(o) for o in profile.task_completion_slo.bad_outcomes)
    rules: list[tuple[str, str]] = [
        (n["calls_by_status"], f"sum by (pipeline, stage, status) (rate({_STAGE_CALLS}[{w}]))"),
        (n["calls"], f"sum by (pipeline, stage) (rate({_STAGE_CALLS}[{w}]))"),
        (
            n["latency"],
            f"histogram_quantile({profile.stage_latency.quantile:g}, "
            f"sum by (pipeline, stage, le) (rate({_STAGE_DURATION}[{w}])))",
        ),
        (n["runs"], f"sum by (pipeline) (rate({_OUTCOMES}[{w}]))"),
        (n["runs_by_outcome"], f"sum by (pipeline, outcome) (rate({_OUTCOMES}[{w}]))"),
        (n["failures_by_reason"], f"sum by (pipeline, stage, reason) (rate({_FAILURES}[{w}]))"),
        (n["failures"], f"sum by (pipeline, stage) (rate({_FAILURES}[{w}]))"),
        # Root-cause failures of the stage per run of its pipeline; no runs, no ratio.
        (
            n["failure_ratio"],
            f"{n['failures']}\n  / on (pipeline) group_left ()\n({n['runs']} > 0)",
        ),
        # A pipeline with runs but no success has completion 0, not no value.
        (
            n["completion"],
            f'(\n  sum by (pipeline) (rate({_OUTCOMES}{{outcome="success"}}[{w}]))\n'
            f"  or 0 * {n['runs']}\n)\n/ ({n['runs']} > 0)",
        ),
        (
            n["slo_errors"],
            f'(\n  sum by (pipeline) (rate({_OUTCOMES}{{outcome=~"{bad}"}}[{w}]))\n'
            f"  or 0 * {n['runs']}\n)\n/ ({n['runs']} > 0)",
        ),
        # All cost (failed runs cost money too) per successful outcome.
        (
            n["cost_per_success"],
            f"sum by (pipeline) (rate({_COST}[{w}]))\n"
            f'/ (sum by (pipeline) (rate({_OUTCOMES}{{outcome="success"}}[{w}])) > 0)',
        ),
        (n["feedback"], f"sum by (pipeline) (rate({_FEEDBACK}[{w}]))"),
        (
            n["edit_rate"],
            f'(\n  sum by (pipeline) (rate({_FEEDBACK}{{kind="edit"}}[{w}]))\n'
            f"  or 0 * {n['feedback']}\n)\n/ ({n['feedback']} > 0)",
        ),
        (
            n["bypass_rate"],
            f'(\n  sum by (pipeline) (rate({_FEEDBACK}{{kind="bypass"}}[{w}]))\n'
            f"  or 0 * {n['feedback']}\n)\n/ ({n['feedback']} > 0)",
        ),
        # ECE = sum over bins |correct runs - sum of confidences| / runs; rates over one
        # window scale numerator and denominator alike, so the ratio is the ECE of the
        # runs in the window. The app's own bases only (labels, outcome: one per run);
        # a judged run is counted again under basis="judge".
        (
            n["ece"],
            "sum by (pipeline) (\n  abs(\n"
            "    (\n      sum by (pipeline, bin) "
            f'(rate({_CAL_RUNS}{{{_APP_BASIS},correct="true"}}[{w}]))\n'
            f"      or 0 * sum by (pipeline, bin) (rate({_CAL_RUNS}{{{_APP_BASIS}}}[{w}]))\n"
            "    )\n"
            f"    - sum by (pipeline, bin) (rate({_CAL_CONFIDENCE}{{{_APP_BASIS}}}[{w}]))\n"
            "  )\n)\n"
            f"/ (sum by (pipeline) (rate({_CAL_RUNS}{{{_APP_BASIS}}}[{w}])) > 0)",
        ),
    ]
    for metric, prefix in _QUALITY_HISTOGRAMS.values():
        rules.append(
            (
                f"{prefix}:mean_rate{w}",
                f"sum by (pipeline) (rate({metric}_sum[{w}]))\n"
                f"/ (sum by (pipeline) (rate({metric}_count[{w}])) > 0)",
            )
        )
    failed = "|".join(re.escape(v) for v in profile.evaluation_health.failed_verdicts)
    rules += [
        # Judged runs: evaluator calls that gave a judgment, per pipeline. The judged
        # failure ratio divides a (pipeline, segment, stage)'s judged root causes by all
        # judged runs of the pipeline: the evaluation counters carry no segment.
        (
            n["judged_runs"],
            f'sum by (pipeline) (rate({_EVALUATIONS}{{verdict!~"{failed}"}}[{w}]))',
        ),
        (
            n["judged_failures"],
            f"sum by (pipeline, segment, stage) (rate({_JUDGED_FAILURES}[{w}]))",
        ),
        (
            n["judged_failures_by_reason"],
            f"sum by (pipeline, segment, stage, reason) (rate({_JUDGED_FAILURES}[{w}]))",
        ),
        (
            n["judged_failure_ratio"],
            f"{n['judged_failures']}\n  / on (pipeline) group_left ()\n({n['judged_runs']} > 0)",
        ),
        (n["evaluations"], f"sum by (pipeline, evaluator) (rate({_EVALUATIONS}[{w}]))"),
        # Calls that gave no judgment (error, timeout) / all calls; 0 when none failed.
        (
            n["evaluation_errors"],
            "(\n  sum by (pipeline, evaluator) "
            f'(rate({_EVALUATIONS}{{verdict=~"{failed}"}}[{w}]))\n'
            f"  or 0 * {n['evaluations']}\n)\n/ ({n['evaluations']} > 0)",
        ),
        (n["evaluation_dropped"], f"sum by (reason) (rate({_EVALUATION_DROPPED}[{w}]))"),
        # Sampled runs dropped for a reason / sampled runs that reached the evaluation
        # (evaluator calls plus drops; one call per run with one evaluator).
        (
            n["evaluation_drop_ratio"],
            f"{n['evaluation_dropped']}\n/ on () group_left ()\n(\n"
            f"  sum({n['evaluation_dropped']}) + (sum({n['evaluations']}) or vector(0))\n  > 0\n)",
        ),
        (n["evaluation_cost"], f"sum by (evaluator) (rate({_EVALUATION_COST}[{w}]))"),
    ]
    rules += [
        (n["received"], f"sum by (instance) (rate(llmspans_collector_spans_received_total[{w}]))"),
        (
            n["rejected"],
            f"sum by (instance, reason) (rate(llmspans_collector_spans_rejected_total[{w}]))",
        ),
        (
            n["rejected_requests"],
            f"sum by (instance, reason) (rate(llmspans_collector_requests_rejected_total[{w}]))",
        ),
        (
            n["dropped"],
            f"sum by (instance, exporter) (rate(llmspans_collector_spans_dropped_total[{w}]))",
        ),
        (n["evicted"], f"sum by (instance) (rate(llmspans_collector_traces_evicted_total[{w}]))"),
        (n["late"], f"sum by (instance) (rate(llmspans_collector_late_spans_total[{w}]))"),
    ]
    return [{"record": name, "expr": expr} for name, expr in rules if name in wanted]


def segment_rule_names(source: str, window: str) -> dict[str, str]:
    """The per-segment series of one source (``production``, ``offline``) and window."""
    return {
        "runs": f"pipeline_segment:llmspans_task_outcomes_{source}:rate{window}",
        "failures": f"pipeline_segment:llmspans_task_failures_{source}:rate{window}",
        "ratio": f"pipeline_segment:llmspans_task_failures_{source}:ratio_rate{window}",
    }


#: two-proportion z statistic of the failure ratios, production minus offline
DIVERGENCE_Z: Final = "pipeline_segment:llmspans_task_failures_production_offline:zscore"


def _segment_recording_rules(profile: Profile) -> list[dict[str, Any]]:
    """Runs, failures and failure ratio per pipeline and segment of one source.

    Only production runs count against a segment's budget; offline runs are recorded
    at the divergence alert's offline window, to compare with production.
    """
    bad = {
        "production": "|".join(profile.segment_failure_budget.bad_outcomes),
        "offline": "|".join(profile.offline_production_divergence.bad_outcomes),
    }
    rules: list[dict[str, Any]] = []
    for source, windows in profile.segment_windows().items():
        for w in sorted(windows, key=lambda w: (duration_seconds(w), w)):
            n = segment_rule_names(source, w)
            every = f'{_OUTCOMES}{{source="{source}"}}'
            bad_runs = f'{_OUTCOMES}{{source="{source}",outcome=~"{bad[source]}"}}'
            if source == "offline":
                # Evaluation sets run in batches: a batch that creates its series
                # between two scrapes is counted whole (counted()), not from the
                # series' second sample on as rate() would.
                seconds = _num(duration_seconds(w))
                runs = f"sum by (pipeline, segment) ({counted(every, w)}) / {seconds}"
                failures = f"sum by (pipeline, segment) ({counted(bad_runs, w)}) / {seconds}"
            else:
                runs = f"sum by (pipeline, segment) (rate({every}[{w}]))"
                failures = f"sum by (pipeline, segment) (rate({bad_runs}[{w}]))"
            rules += [
                {"record": n["runs"], "expr": runs},
                # A segment with runs but no failure has 0 failures, not no value.
                {"record": n["failures"], "expr": f"{failures}\n  or 0 * {n['runs']}"},
                {"record": n["ratio"], "expr": f"{n['failures']}\n/ ({n['runs']} > 0)"},
            ]
    div = profile.offline_production_divergence
    prod = segment_rule_names("production", div.production_window)
    off = segment_rule_names("offline", div.offline_window)
    s1 = _num(duration_seconds(div.production_window))
    s2 = _num(duration_seconds(div.offline_window))
    failed = f"({prod['failures']} * {s1} + {off['failures']} * {s2})"
    runs = f"({prod['runs']} * {s1} + {off['runs']} * {s2})"
    # z = (p1 - p2) / sqrt(p (1 - p) (1/n1 + 1/n2)), p the pooled failure ratio. When
    # p is 0 or 1 both sides agree and the division gives NaN, which no comparison passes.
    rules.append(
        {
            "record": DIVERGENCE_Z,
            "expr": (
                f"({prod['ratio']} - {off['ratio']})\n"
                "/ sqrt(\n"
                f"    {failed} / {runs}\n"
                f"  * (1 - {failed} / {runs})\n"
                f"  * (1 / ({prod['runs']} * {s1}) + 1 / ({off['runs']} * {s2}))\n"
                ")"
            ),
        }
    )
    return rules


# --- alerts --------------------------------------------------------------------


def _num(value: float) -> str:
    return f"{value:.10g}"


def _spike_alert(profile: Profile) -> dict[str, Any]:
    spike = profile.stage_failure_spike
    short = rule_names(profile, spike.short_window)
    base = rule_names(profile, spike.baseline_window)
    seconds = _num(duration_seconds(spike.short_window))
    # The spike condition yields one series per (pipeline, stage); the top reason
    # joins in from the reason-level rule: topk(1) by (pipeline, stage) keeps one
    # reason per pair, multiplied by 0 and added, so the value stays the ratio.
    expr = (
        "(\n"
        f"    {short['failure_ratio']}\n"
        f"  > {_num(spike.factor)} * {base['failure_ratio']}\n"
        f"  and {short['failure_ratio']} > {_num(spike.floor)}\n"
        f"  and on (pipeline) ({short['runs']} * {seconds} >= {spike.min_runs})\n"
        ")\n"
        "+ on (pipeline, stage) group_left (reason)\n"
        f"  (0 * topk by (pipeline, stage) (1, {short['failures_by_reason']}))"
    )
    return {
        "alert": "LlmspansStageFailureSpike",
        "expr": expr,
        "for": spike.for_,
        "labels": {"severity": spike.severity, "component": "pipeline"},
        "annotations": {
            "summary": (
                "{{ $labels.pipeline }}: {{ $labels.stage }} failures spiking "
                "(top reason {{ $labels.reason }})"
            ),
            "description": (
                "{{ $value | humanizePercentage }} of the runs of pipeline "
                "{{ $labels.pipeline }} failed with root cause in stage {{ $labels.stage }} "
                f"over the last {spike.short_window}: more than {_num(spike.factor)}x its "
                f"{spike.baseline_window} baseline and above {_num(spike.floor * 100)}%. "
                "Most frequent reason: {{ $labels.reason }}. Traces: search Jaeger for "
                "llmspans.failure.stage={{ $labels.stage }} "
                "llmspans.pipeline={{ $labels.pipeline }}."
            ),
            "runbook_url": "docs/alerting.md#llmspansstagefailurespike",
        },
    }


def _slo_alerts(profile: Profile) -> list[dict[str, Any]]:
    slo = profile.task_completion_slo
    budget = 1.0 - slo.objective
    alerts = []
    for burn in slo.burn_rates:
        long_ = rule_names(profile, burn.long_window)
        short = rule_names(profile, burn.short_window)
        threshold = _num(round(burn.factor * budget, 10))
        seconds = _num(duration_seconds(burn.long_window))
        expr = (
            f"{long_['slo_errors']} > {threshold}\n"
            f"and {short['slo_errors']} > {threshold}\n"
            f"and on (pipeline) ({long_['runs']} * {seconds} >= {slo.min_runs})"
        )
        alerts.append(
            {
                "alert": "LlmspansTaskCompletionBudgetBurn",
                "expr": expr,
                "for": burn.for_,
                "labels": {
                    "severity": burn.severity,
                    "component": "pipeline",
                    "long_window": burn.long_window,
                    "short_window": burn.short_window,
                    "burn_rate": _num(burn.factor),
                },
                "annotations": {
                    "summary": (
                        "{{ $labels.pipeline }}: task-completion error budget burning "
                        f"{_num(burn.factor)}x"
                    ),
                    "description": (
                        "{{ $value | humanizePercentage }} of the runs of pipeline "
                        "{{ $labels.pipeline }} ended "
                        f"{'/'.join(slo.bad_outcomes)} over {burn.long_window} and "
                        f"{burn.short_window}; the objective "
                        f"{_num(slo.objective * 100)}% allows {_num(budget * 100)}%, so the "
                        f"budget burns {_num(burn.factor)}x too fast. The stage panels show "
                        "which stage is the root cause."
                    ),
                    "runbook_url": "docs/alerting.md#llmspanstaskcompletionbudgetburn",
                },
            }
        )
    return alerts


def _latency_alert(profile: Profile) -> dict[str, Any]:
    lat = profile.stage_latency
    n = rule_names(profile, lat.window)
    parts = [
        f'{n["latency"]}{{stage="{stage}"}} > {_num(seconds)}'
        for stage, seconds in sorted(lat.stage_seconds.items())
    ]
    if lat.stage_seconds:
        others = "|".join(re.escape(s) for s in sorted(lat.stage_seconds))
        parts.append(f'{n["latency"]}{{stage!~"{others}"}} > {_num(lat.default_seconds)}')
    else:
        parts.append(f"{n['latency']} > {_num(lat.default_seconds)}")
    seconds = _num(duration_seconds(lat.window))
    expr = (
        "(\n    "
        + "\n  or ".join(parts)
        + "\n)\n"
        + f"and on (pipeline, stage) ({n['calls']} * {seconds} >= {lat.min_calls})"
    )
    thresholds = ", ".join(f"{s} {_num(v)}s" for s, v in sorted(lat.stage_seconds.items()))
    return {
        "alert": "LlmspansStageLatencyHigh",
        "expr": expr,
        "for": lat.for_,
        "labels": {"severity": lat.severity, "component": "pipeline"},
        "annotations": {
            "summary": "{{ $labels.pipeline }}: {{ $labels.stage }} p"
            + f"{_num(lat.quantile * 100)} latency high",
            "description": (
                f"p{_num(lat.quantile * 100)} duration of stage "
                "{{ $labels.stage }} in pipeline {{ $labels.pipeline }} is "
                "{{ $value | humanizeDuration }} over the last "
                f"{lat.window} (thresholds: {thresholds}; others "
                f"{_num(lat.default_seconds)}s)."
            ),
            "runbook_url": "docs/alerting.md#llmspansstagelatencyhigh",
        },
    }


def _cost_alert(profile: Profile) -> dict[str, Any]:
    cost = profile.cost_per_success
    short = rule_names(profile, cost.short_window)
    base = rule_names(profile, cost.baseline_window)
    seconds = _num(duration_seconds(cost.short_window))
    expr = (
        f"{short['cost_per_success']}\n"
        f"  > {_num(cost.factor)} * {base['cost_per_success']}\n"
        f'and on (pipeline) ({short["runs_by_outcome"]}{{outcome="success"}} * {seconds}'
        f" >= {cost.min_successes})"
    )
    return {
        "alert": "LlmspansCostPerSuccessRising",
        "expr": expr,
        "for": cost.for_,
        "labels": {"severity": cost.severity, "component": "pipeline"},
        "annotations": {
            "summary": "{{ $labels.pipeline }}: cost per successful outcome rising",
            "description": (
                'Pipeline {{ $labels.pipeline }} spends {{ $value | printf "%.4f" }} USD per '
                f"successful run over {cost.short_window}, more than {_num(cost.factor)}x its "
                f"{cost.baseline_window} baseline: a costlier model, longer prompts, retries, "
                "or fewer successes for the same spend."
            ),
            "runbook_url": "docs/alerting.md#llmspanscostpersuccessrising",
        },
    }


def _collector_alerts(profile: Profile) -> list[dict[str, Any]]:
    col = profile.collector
    n = rule_names(profile, col.window)
    labels = {"severity": col.severity, "component": "collector"}
    # Backpressure and refusals while shutting down are not bad input.
    not_input = f"{col.backpressure_reasons}|{col.transient_reasons}"
    return [
        {
            "alert": "LlmspansCollectorDown",
            "expr": f'up{{job=~"{col.job_regex}"}} == 0',
            "for": col.down_for,
            "labels": {**labels, "severity": "page"},
            "annotations": {
                "summary": "llmspans collector {{ $labels.instance }} is down",
                "description": (
                    "Prometheus cannot scrape {{ $labels.instance }}: traces routed to it are "
                    "neither assembled nor forwarded."
                ),
                "runbook_url": "docs/alerting.md#llmspanscollectordown",
            },
        },
        {
            "alert": "LlmspansCollectorBackpressure",
            "expr": f'sum by (instance) ({n["rejected"]}{{reason=~"{col.backpressure_reasons}"}})'
            " > 0",
            "for": col.backpressure_for,
            "labels": labels,
            "annotations": {
                "summary": "llmspans collector {{ $labels.instance }} is pushing back",
                "description": (
                    "{{ $value | humanize }} spans/s answered with backpressure (HTTP 429/503, "
                    "gRPC UNAVAILABLE) over the last "
                    f"{col.window}: in-flight spans are near max_inflight_spans. Senders retry, "
                    "but add a replica or raise the bound before their queues overflow."
                ),
                "runbook_url": "docs/alerting.md#llmspanscollectorbackpressure",
            },
        },
        {
            "alert": "LlmspansCollectorRejectingSpans",
            "expr": (
                "sum by (instance, reason) "
                f'({n["rejected"]}{{reason!~"{not_input}"}})\n'
                f"  / on (instance) group_left ()\n({n['received']} > 0)\n"
                f"> {_num(col.rejected_ratio)}"
            ),
            "for": col.for_,
            "labels": labels,
            "annotations": {
                "summary": "llmspans collector {{ $labels.instance }} rejects spans "
                "({{ $labels.reason }})",
                "description": (
                    "{{ $value | humanizePercentage }} of the spans sent to "
                    "{{ $labels.instance }} were rejected as {{ $labels.reason }} over the last "
                    f"{col.window}: a sender ships invalid or oversized OTLP."
                ),
                "runbook_url": "docs/alerting.md#llmspanscollectorrejectingspans",
            },
        },
        {
            "alert": "LlmspansCollectorRejectingRequests",
            "expr": (
                "sum by (instance, reason) "
                f'({n["rejected_requests"]}{{reason!~"{not_input}"}})\n'
                f"> {_num(col.rejected_requests_per_second)}"
            ),
            "for": col.for_,
            "labels": labels,
            "annotations": {
                "summary": "llmspans collector {{ $labels.instance }} refuses whole requests "
                "({{ $labels.reason }})",
                "description": (
                    "{{ $value | humanize }} export requests/s refused as {{ $labels.reason }} "
                    f"over the last {col.window} (malformed body, wrong content type, missing "
                    "token, too large): their senders lose those spans."
                ),
                "runbook_url": "docs/alerting.md#llmspanscollectorrejectingrequests",
            },
        },
        {
            "alert": "LlmspansCollectorDroppingSpans",
            "expr": f"{n['dropped']} > {_num(col.dropped_per_second)}",
            "for": col.dropped_for,
            "labels": labels,
            "annotations": {
                "summary": "llmspans collector {{ $labels.instance }} drops spans for "
                "{{ $labels.exporter }}",
                "description": (
                    "{{ $value | humanize }} spans/s given up after retries by exporter "
                    "{{ $labels.exporter }} over the last "
                    f"{col.window}: the trace backend is down or refusing data."
                ),
                "runbook_url": "docs/alerting.md#llmspanscollectordroppingspans",
            },
        },
        {
            "alert": "LlmspansCollectorEvictingTraces",
            "expr": f"{n['evicted']} > {_num(col.evictions_per_second)}",
            "for": col.evictions_for,
            "labels": labels,
            "annotations": {
                "summary": "llmspans collector {{ $labels.instance }} evicts unfinished traces",
                "description": (
                    "{{ $value | humanize }} traces/s were finalised before they were whole "
                    "(trace_timeout or the memory bound) over the last "
                    f"{col.window}: their verdicts rest on partial traces."
                ),
                "runbook_url": "docs/alerting.md#llmspanscollectorevictingtraces",
            },
        },
        {
            "alert": "LlmspansCollectorLateSpans",
            "expr": (f"{n['late']}\n  / ({n['received']} > 0)\n> {_num(col.late_ratio)}"),
            "for": col.for_,
            "labels": labels,
            "annotations": {
                "summary": "llmspans collector {{ $labels.instance }} receives late spans",
                "description": (
                    "{{ $value | humanizePercentage }} of the spans arrive after their trace "
                    "was final: raise assembly.trace_idle_s, or check that the gateway routes "
                    "by trace id."
                ),
                "runbook_url": "docs/alerting.md#llmspanscollectorlatespans",
            },
        },
    ]


def _segment_budget_alerts(profile: Profile) -> list[dict[str, Any]]:
    """One rule per burn pair and budget: each override, then the default for the rest."""
    seg = profile.segment_failure_budget
    budgets: list[tuple[str, float]] = [
        (f'{{pipeline="{p}",segment="{s}"}}', budget)
        for p, segments in sorted(seg.overrides.items())
        for s, budget in sorted(segments.items())
    ]
    alerts = []
    for burn in seg.burn_rates:
        long_ = segment_rule_names("production", burn.long_window)
        short = segment_rule_names("production", burn.short_window)
        seconds = _num(duration_seconds(burn.long_window))
        volume = f"and on (pipeline, segment) ({long_['runs']} * {seconds} >= {seg.min_runs})"
        exprs: list[tuple[str, float]] = []
        for matcher, budget in budgets:
            if burn.factor * budget >= 1.0:
                continue  # no ratio burns a budget this large this fast
            threshold = _num(round(burn.factor * budget, 10))
            exprs.append(
                (
                    f"{long_['ratio']}{matcher} > {threshold}\n"
                    f"and {short['ratio']}{matcher} > {threshold}\n{volume}",
                    budget,
                )
            )
        threshold = _num(round(burn.factor * seg.budget, 10))
        default = f"{long_['ratio']} > {threshold}\nand {short['ratio']} > {threshold}\n{volume}"
        if budgets:
            overridden = " or ".join(f"{long_['runs']}{m}" for m, _ in budgets)
            default = f"(\n{default}\n)\nunless on (pipeline, segment) ({overridden})"
        exprs.append((default, seg.budget))
        for expr, budget in exprs:
            alerts.append(
                {
                    "alert": "LlmspansSegmentBudgetBurn",
                    "expr": expr,
                    "for": burn.for_,
                    "labels": {
                        "severity": burn.severity,
                        "component": "pipeline",
                        "long_window": burn.long_window,
                        "short_window": burn.short_window,
                        "burn_rate": _num(burn.factor),
                        "budget": _num(budget),
                    },
                    "annotations": {
                        "summary": (
                            "{{ $labels.pipeline }}/{{ $labels.segment }}: segment failure "
                            f"budget burning {_num(burn.factor)}x"
                        ),
                        "description": (
                            "{{ $value | humanizePercentage }} of the production runs of "
                            "segment {{ $labels.segment }} of pipeline {{ $labels.pipeline }} "
                            f"ended {'/'.join(seg.bad_outcomes)} over {burn.long_window} and "
                            f"{burn.short_window}; its budget is {_num(budget * 100)}%, so it "
                            f"burns {_num(burn.factor)}x too fast."
                        ),
                        "runbook_url": "docs/alerting.md#llmspanssegmentbudgetburn",
                    },
                }
            )
    return alerts


def _divergence_alert(profile: Profile) -> dict[str, Any]:
    div = profile.offline_production_divergence
    prod = segment_rule_names("production", div.production_window)
    off = segment_rule_names("offline", div.offline_window)
    s1 = _num(duration_seconds(div.production_window))
    s2 = _num(duration_seconds(div.offline_window))
    return {
        "alert": "LLMSpansOfflineProductionDivergence",
        "expr": (
            f"abs({DIVERGENCE_Z}) > {_num(div.z)}\n"
            f"and on (pipeline, segment) ({prod['runs']} * {s1} >= {div.min_runs})\n"
            f"and on (pipeline, segment) ({off['runs']} * {s2} >= {div.min_runs})"
        ),
        "for": div.for_,
        "labels": {"severity": div.severity, "component": "pipeline"},
        "annotations": {
            "summary": (
                "{{ $labels.pipeline }}/{{ $labels.segment }}: offline and production "
                "failure ratios diverge"
            ),
            "description": (
                "The failure ratios of segment {{ $labels.segment }} of pipeline "
                "{{ $labels.pipeline }} in production (last "
                f"{div.production_window}) and offline (last {div.offline_window}) differ by "
                '{{ $value | printf "%.1f" }} standard errors (two-proportion z, threshold '
                f"{_num(div.z)}): the evaluation set no longer predicts production. Compare "
                f"{prod['ratio']} with {off['ratio']}."
            ),
            "runbook_url": "docs/alerting.md#llmspansofflineproductiondivergence",
        },
    }


def _judged_spike_alert(profile: Profile) -> dict[str, Any]:
    spike = profile.judged_failure_spike
    short = rule_names(profile, spike.short_window)
    base = rule_names(profile, spike.baseline_window)
    seconds = _num(duration_seconds(spike.short_window))
    # As the stage spike: the top judged reason joins in by (pipeline, segment, stage).
    expr = (
        "(\n"
        f"    {short['judged_failure_ratio']}\n"
        f"  > {_num(spike.factor)} * {base['judged_failure_ratio']}\n"
        f"  and {short['judged_failure_ratio']} > {_num(spike.floor)}\n"
        f"  and on (pipeline) ({short['judged_runs']} * {seconds} >= {spike.min_runs})\n"
        ")\n"
        "+ on (pipeline, segment, stage) group_left (reason)\n"
        "  (0 * topk by (pipeline, segment, stage) "
        f"(1, {short['judged_failures_by_reason']}))"
    )
    return {
        "alert": "LlmspansJudgedFailureSpike",
        "expr": expr,
        "for": spike.for_,
        "labels": {"severity": spike.severity, "component": "evaluation"},
        "annotations": {
            "summary": (
                "{{ $labels.pipeline }}/{{ $labels.segment }}: judged {{ $labels.stage }} "
                "failures spiking (top reason {{ $labels.reason }})"
            ),
            "description": (
                "{{ $value | humanizePercentage }} of the judged runs of pipeline "
                "{{ $labels.pipeline }} were judged failed in segment {{ $labels.segment }} "
                "with root cause in stage {{ $labels.stage }} over the last "
                f"{spike.short_window}: more than {_num(spike.factor)}x its "
                f"{spike.baseline_window} baseline and above {_num(spike.floor * 100)}%. "
                "Most frequent reason: {{ $labels.reason }}. These runs may look successful "
                "to the app: read the judge's explanation on their evaluate spans."
            ),
            "runbook_url": "docs/alerting.md#llmspansjudgedfailurespike",
        },
    }


def _evaluation_alerts(profile: Profile) -> list[dict[str, Any]]:
    health = profile.evaluation_health
    n = rule_names(profile, health.window)
    seconds = _num(duration_seconds(health.window))
    failed = "/".join(health.failed_verdicts)
    labels = {"severity": health.severity, "component": "evaluation"}
    spend = profile.evaluation_spend
    cost = rule_names(profile, spend.window)["evaluation_cost"]
    return [
        {
            "alert": "LlmspansJudgeErrors",
            "expr": (
                f"{n['evaluation_errors']} > {_num(health.error_ratio)}\n"
                f"and on (pipeline, evaluator) ({n['evaluations']} * {seconds}"
                f" >= {health.min_calls})"
            ),
            "for": health.for_,
            "labels": labels,
            "annotations": {
                "summary": (
                    "{{ $labels.pipeline }}: evaluator {{ $labels.evaluator }} fails to judge"
                ),
                "description": (
                    "{{ $value | humanizePercentage }} of the calls of evaluator "
                    "{{ $labels.evaluator }} on sampled runs of pipeline {{ $labels.pipeline }} "
                    f"ended {failed} over the last {health.window} (threshold "
                    f"{_num(health.error_ratio * 100)}%): those runs have no judged figures. "
                    "The judge endpoint is down, slow or answering malformed verdicts."
                ),
                "runbook_url": "docs/alerting.md#llmspansjudgeerrors",
            },
        },
        {
            "alert": "LlmspansEvaluationDrops",
            "expr": (
                f"{n['evaluation_drop_ratio']} > {_num(health.drop_ratio)}\n"
                "and on () (\n"
                f"  (sum({n['evaluation_dropped']}) + (sum({n['evaluations']}) or vector(0)))"
                f" * {seconds}\n  >= {health.min_sampled}\n)"
            ),
            "for": health.for_,
            "labels": labels,
            "annotations": {
                "summary": "sampled runs dropped before evaluation ({{ $labels.reason }})",
                "description": (
                    "{{ $value | humanizePercentage }} of the sampled runs were not evaluated "
                    f"over the last {health.window} (reason {{{{ $labels.reason }}}}, threshold "
                    f"{_num(health.drop_ratio * 100)}%): the judged figures rest on fewer runs "
                    "than the sample rate promises. queue_full: judges too slow for the "
                    "sample rate; budget_calls / budget_usd: the configured budget is spent."
                ),
                "runbook_url": "docs/alerting.md#llmspansevaluationdrops",
            },
        },
        {
            "alert": "LlmspansEvaluationOverBudget",
            "expr": f"sum({cost}) * 3600 > {_num(spend.usd_per_hour)}",
            "for": spend.for_,
            "labels": {"severity": spend.severity, "component": "evaluation"},
            "annotations": {
                "summary": "evaluation spend above its hourly budget",
                "description": (
                    'Evaluators spend {{ $value | printf "%.2f" }} USD per hour (over the last '
                    f"{spend.window}), above the budget of {_num(spend.usd_per_hour)} USD per "
                    "hour: lower the evaluation sample rate, use a cheaper judge model, or set "
                    "evaluation.usd_per_hour in the collector config to enforce it."
                ),
                "runbook_url": "docs/alerting.md#llmspansevaluationoverbudget",
            },
        },
    ]


def render(profile: Profile, profile_name: str = "production") -> str:
    """The rules file of ``profile`` as YAML text."""
    recording: list[dict[str, Any]] = []
    needs = profile.needs()
    for window in profile.windows():
        recording.extend(_recording_rules(profile, window, needs[window]))
    recording.extend(_segment_recording_rules(profile))
    alerts: list[dict[str, Any]] = [
        _spike_alert(profile),
        *_slo_alerts(profile),
        _latency_alert(profile),
        _cost_alert(profile),
        *_collector_alerts(profile),
        *_segment_budget_alerts(profile),
        _divergence_alert(profile),
        _judged_spike_alert(profile),
        *_evaluation_alerts(profile),
    ]

    def group(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name}
        if profile.interval is not None:
            body["interval"] = profile.interval
        body["rules"] = rules
        return body

    document = {
        "groups": [group("llmspans-recording", recording), group("llmspans-alerts", alerts)]
    }
    header = (
        f"# Generated by `python -m collector.prometheus.render --profile {profile_name}`\n"
        "# from collector/prometheus/profiles.yaml. Edit the profile, not this file.\n"
    )
    return header + yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=100)


class _Dumper(yaml.SafeDumper):
    """Multi-line expressions as literal blocks, so the rules file reads like PromQL."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m collector.prometheus.render",
        description="Render the llmspans Prometheus rules from a profile.",
    )
    parser.add_argument(
        "--profile", default="production", help="profile name (default: %(default)s)"
    )
    parser.add_argument("--profiles", type=Path, default=PROFILES_FILE, help="profiles file")
    parser.add_argument(
        "--output", type=Path, default=None, help="rules file to write; '-' for stdout"
    )
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when the output file differs from a render"
    )
    args = parser.parse_args(None if argv is None else list(argv))
    text = render(load_profile(args.profile, args.profiles), args.profile)
    output: Path = args.output or RULES_FILE
    if str(output) == "-":
        sys.stdout.write(text)
        return 0
    if args.check:
        current = output.read_text(encoding="utf-8") if output.exists() else ""
        if current != text:
            print(
                f"{output} is out of date: run python -m collector.prometheus.render "
                f"--profile {args.profile} --output {output}",
                file=sys.stderr,
            )
            return 1
        return 0
    output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
