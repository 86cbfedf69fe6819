"""The collector's numbers, read back from its Prometheus ``/metrics`` text."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

CONTEXT_PRECISION = "llmspans_retrieval_context_precision"
CONTEXT_RECALL = "llmspans_retrieval_context_recall"
CITATION_PRECISION = "llmspans_generation_citation_precision"
_QUALITY = (CONTEXT_PRECISION, CONTEXT_RECALL, CITATION_PRECISION)
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
    #: (instrument, pipeline) -> [sum, count] of the quality histograms
    quality: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    #: (pipeline, kind) -> feedback events
    feedback: dict[tuple[str, str], float] = field(default_factory=dict)
    spans_received: float = 0.0
    #: exporter -> spans delivered, given up on, and waiting in its queue
    forwarded: dict[str, float] = field(default_factory=dict)
    dropped: dict[str, float] = field(default_factory=dict)
    queued: dict[str, float] = field(default_factory=dict)

    def mean(self, instrument: str, pipeline: str) -> float | None:
        """Mean of a quality histogram (``_sum / _count``), e.g. :data:`CONTEXT_RECALL`."""
        total, count = self.quality.get((instrument, pipeline), (0.0, 0.0))
        return total / count if count else None

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
                slot = m.quality.setdefault((instrument, pipeline), [0.0, 0.0])
                slot[0 if part == "sum" else 1] += value
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
