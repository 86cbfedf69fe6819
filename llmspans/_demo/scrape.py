"""The collector's numbers, read back from its Prometheus ``/metrics`` text."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

CONTEXT_PRECISION = "llmspans_retrieval_context_precision"
CONTEXT_RECALL = "llmspans_retrieval_context_recall"
CITATION_PRECISION = "llmspans_generation_citation_precision"
CITATION_SUPPORT = "llmspans_generation_citation_support"
_QUALITY = (CONTEXT_PRECISION, CONTEXT_RECALL, CITATION_PRECISION, CITATION_SUPPORT)
#: the ``basis`` of a judged figure (docs/evaluation.md); the app's own are ``labels``
BASIS_JUDGE = "judge"
BASIS_LABELS = "labels"
#: the collector's forwarding series -> the field of :class:`ScrapedMetrics` they go to
_FORWARDING = {
    "llmspans_collector_spans_forwarded_total": "forwarded",
    "llmspans_collector_spans_dropped_total": "dropped",
    "llmspans_collector_forward_queue_spans": "queued",
}


@dataclass
class ScrapedMetrics:
    """The docs/conventions.md section 4 series the demo report shows, summed over any
    other labels."""

    outcomes: dict[tuple[str, str], float] = field(default_factory=dict)
    failures: dict[tuple[str, str, str], float] = field(default_factory=dict)
    cost_usd: dict[str, float] = field(default_factory=dict)
    #: (pipeline, stage) -> sorted [(upper bound, cumulative count)]
    stage_buckets: dict[tuple[str, str], list[tuple[float, float]]] = field(default_factory=dict)
    #: pipeline -> bin -> [runs, correct runs, confidence sum]
    calibration: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    #: (instrument, pipeline, basis) -> [sum, count] of the quality histograms (basis ""
    #: for the histograms without one: citation precision and support)
    quality: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)
    #: (pipeline, stage, reason) -> runs failing once judged (llmspans_judged_failures_total)
    judged_failures: dict[tuple[str, str, str], float] = field(default_factory=dict)
    #: (pipeline, verdict) -> evaluator calls (llmspans_evaluations_total)
    evaluations: dict[tuple[str, str], float] = field(default_factory=dict)
    #: reason -> sampled runs not judged (llmspans_evaluation_dropped_total)
    evaluation_dropped: dict[str, float] = field(default_factory=dict)
    #: (pipeline, kind) -> feedback events
    feedback: dict[tuple[str, str], float] = field(default_factory=dict)
    spans_received: float = 0.0
    #: exporter -> spans delivered, given up on, and waiting in its queue
    forwarded: dict[str, float] = field(default_factory=dict)
    dropped: dict[str, float] = field(default_factory=dict)
    queued: dict[str, float] = field(default_factory=dict)

    def mean(self, instrument: str, pipeline: str, basis: str = "") -> float | None:
        """Mean of a quality histogram (``_sum / _count``), e.g. :data:`CONTEXT_RECALL`;
        ``basis`` picks the app's labels or the judge where the histogram has one (the
        app's labels when not given)."""
        if not basis and instrument in (CONTEXT_PRECISION, CONTEXT_RECALL):
            basis = BASIS_LABELS
        total, count = self.quality.get((instrument, pipeline, basis), (0.0, 0.0))
        return total / count if count else None

    def count(self, instrument: str, pipeline: str, basis: str = "") -> float:
        """How many values a quality histogram holds (see :meth:`mean`)."""
        if not basis and instrument in (CONTEXT_PRECISION, CONTEXT_RECALL):
            basis = BASIS_LABELS
        return self.quality.get((instrument, pipeline, basis), (0.0, 0.0))[1]

    def judged_runs(self, pipeline: str) -> float:
        """Evaluator calls on the pipeline's runs that returned a judgment."""
        return sum(
            v
            for (p, verdict), v in self.evaluations.items()
            if p == pipeline and verdict not in ("error", "timeout")
        )

    def spans_to_forward(self) -> float:
        """Spans the exporters are given: those received, and one ``evaluate`` span per
        evaluator call the collector made itself."""
        return self.spans_received + sum(self.evaluations.values())

    def runs(self) -> float:
        return sum(self.outcomes.values())

    def stage_p95(self, pipeline: str, stage: str) -> float | None:
        """p95 of a stage's duration as PromQL's ``histogram_quantile(0.95, ...)`` computes it."""
        buckets = self.stage_buckets.get((pipeline, stage))
        return None if not buckets else histogram_quantile(0.95, buckets)

    def ece(self, pipeline: str) -> float | None:
        bins = self.calibration.get(pipeline)
        if not bins:
            return None
        runs = sum(b[0] for b in bins.values())
        if not runs:
            return None
        return math.fsum(abs(b[1] - b[2]) for b in bins.values()) / runs


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus's ``histogram_quantile``: linear interpolation inside the bucket."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


def parse_metrics(text: str) -> ScrapedMetrics:
    """Read the demo's series out of a ``/metrics`` page."""
    m = ScrapedMetrics()
    buckets: dict[tuple[str, str], dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            value = float(sample.value)
            pipeline = labels.get("pipeline", "")
            if sample.name == "llmspans_task_outcomes_total":
                key2 = (pipeline, labels["outcome"])
                m.outcomes[key2] = m.outcomes.get(key2, 0.0) + value
            elif sample.name == "llmspans_stage_failures_total":
                key3 = (pipeline, labels["stage"], labels["reason"])
                m.failures[key3] = m.failures.get(key3, 0.0) + value
            elif sample.name == "llmspans_task_cost_usd_total":
                m.cost_usd[pipeline] = m.cost_usd.get(pipeline, 0.0) + value
            elif sample.name == "llmspans_stage_duration_seconds_bucket":
                buckets[(pipeline, labels["stage"])][float(labels["le"])] += value
            elif labels.get("basis") == BASIS_JUDGE and sample.name.startswith(
                "llmspans_calibration_"
            ):
                # The ECE stays on the app's basis (docs/evaluation.md).
                continue
            elif sample.name == "llmspans_calibration_runs_total":
                slot = m.calibration.setdefault(pipeline, {}).setdefault(labels["bin"], [0.0] * 3)
                slot[0] += value
                if labels.get("correct") == "true":
                    slot[1] += value
            elif sample.name == "llmspans_calibration_confidence_total":
                slot = m.calibration.setdefault(pipeline, {}).setdefault(labels["bin"], [0.0] * 3)
                slot[2] += value
            elif (
                sample.name.endswith(("_sum", "_count"))
                and sample.name.rsplit("_", 1)[0] in _QUALITY
            ):
                instrument, part = sample.name.rsplit("_", 1)
                key_q = (instrument, pipeline, labels.get("basis", ""))
                slot = m.quality.setdefault(key_q, [0.0, 0.0])
                slot[0 if part == "sum" else 1] += value
            elif sample.name == "llmspans_judged_failures_total":
                key3 = (pipeline, labels["stage"], labels["reason"])
                m.judged_failures[key3] = m.judged_failures.get(key3, 0.0) + value
            elif sample.name == "llmspans_evaluations_total":
                key_e = (pipeline, labels["verdict"])
                m.evaluations[key_e] = m.evaluations.get(key_e, 0.0) + value
            elif sample.name == "llmspans_evaluation_dropped_total":
                reason = labels.get("reason", "")
                m.evaluation_dropped[reason] = m.evaluation_dropped.get(reason, 0.0) + value
            elif sample.name == "llmspans_feedback_total":
                key_kind = (pipeline, labels["kind"])
                m.feedback[key_kind] = m.feedback.get(key_kind, 0.0) + value
            elif sample.name == "llmspans_collector_spans_received_total":
                m.spans_received += value
            elif sample.name in _FORWARDING:
                counts = getattr(m, _FORWARDING[sample.name])
                exporter = labels.get("exporter", "")
                counts[exporter] = counts.get(exporter, 0.0) + value
    m.stage_buckets = {key: sorted(b.items()) for key, b in buckets.items()}
    return m
