"""Metric definitions (docs/conventions.md section 4) and what one evaluated trace yields.

The definitions are pure functions over ids and numbers. :func:`accumulate`
records what one :class:`~llmspans.core.model.TraceResult` yields into a
:class:`MetricSink`: counters, histogram values and one calibration observation
``(pipeline, confidence, correct)`` per run with a confidence. The shared store
(:class:`llmspans.core.store.MetricStore`, used by the collector and the embedded
mode), :class:`Aggregates` and the report of ``llmspans analyze`` are all sinks of
this one function, so their numbers agree by construction. The shape of every
metric (names, labels, buckets, help) is its row in :mod:`llmspans.core.catalogue`.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, NamedTuple, Protocol

from llmspans import _attributes as A
from llmspans.core.catalogue import CALIBRATION_BINS, CATALOGUE, EVALUATION
from llmspans.core.model import Run, TraceResult, Verdict
from llmspans.core.records import SpanRecord
from llmspans.core.runs import relevant_ids, retrieved_ids, selected_context_set

__all__ = [
    "CALIBRATION_BINS",
    "HISTOGRAM_BOUNDARIES",
    "MAX_DURATION_S",
    "MAX_LABEL_BYTES",
    "UNKNOWN_LABEL",
    "UNKNOWN_PIPELINE",
    "Aggregates",
    "HistogramData",
    "Labeler",
    "MetricSink",
    "Observation",
    "PipelineLabeler",
    "RunLabels",
    "accumulate",
    "calibration_bin",
    "calibration_labels",
    "citation_precision",
    "context_precision",
    "context_recall",
    "ece",
    "observations",
    "run_confidence",
    "run_correct",
]

#: Pipeline label of spans that carry no pipeline name (standalone stage spans,
#: feedback sent from outside any pipeline).
UNKNOWN_PIPELINE: Final = "unknown"
#: Label value for a missing feedback kind.
UNKNOWN_LABEL: Final = "unknown"
#: Label values are cut to this many bytes of UTF-8 (docs/conventions.md section 6).
MAX_LABEL_BYTES: Final = 128
#: Durations are clamped to this many seconds: a span whose clock is wrong by years
#: must not add years to a histogram's sum for good.
MAX_DURATION_S: Final = 7 * 24 * 3600.0
_MAX_DURATION_NS: Final = int(MAX_DURATION_S * 1e9)

#: Explicit bucket boundaries per histogram instrument, from the catalogue.
HISTOGRAM_BOUNDARIES: Final[dict[str, tuple[float, ...]]] = {
    metric.otel_name: metric.buckets
    for metric in (*CATALOGUE, *EVALUATION)
    if metric.kind == "histogram"
}

Labels = tuple[tuple[str, str], ...]


# --- definitions ------------------------------------------------------------------


def context_precision(retrieved: Sequence[str], relevant: Iterable[str]) -> float | None:
    """Rank-weighted context precision (RAGAS's formula, relevance from labels).

    Σ_k (precision@k · v_k) / (number of relevant documents among the retrieved),
    v_k = 1 when the k-th retrieved id is relevant; 0 when none is; ``None``
    without labels (an empty ``relevant``).
    """
    relevant_set = set(relevant)
    if not relevant_set:
        return None
    hits = 0
    total = 0.0
    for rank, doc in enumerate(retrieved, start=1):
        if doc in relevant_set:
            hits += 1
            total += hits / rank
    return total / hits if hits else 0.0


def context_recall(retrieved: Iterable[str], relevant: Iterable[str]) -> float | None:
    """|retrieved ∩ relevant| / |relevant|; ``None`` without labels."""
    relevant_set = set(relevant)
    if not relevant_set:
        return None
    return len(relevant_set & set(retrieved)) / len(relevant_set)


def citation_precision(
    citations: Iterable[str], selected: Iterable[str] | frozenset[str]
) -> float | None:
    """|citations ∩ selected context| / |citations| (distinct ids); ``None`` without citations.

    Pass ``selected`` as a set when testing many citation lists against one context:
    it is then used as it is, not copied.
    """
    cited = set(citations)
    if not cited:
        return None
    shown = selected if isinstance(selected, frozenset | set) else set(selected)
    return len(cited & shown) / len(cited)


def calibration_bin(confidence: float, bins: int = CALIBRATION_BINS) -> int:
    """The equal-width bin of a confidence in [0, 1]: ``[0, 0.1) -> 0`` ... ``[0.9, 1] -> 9``."""
    if not confidence > 0.0:  # also catches NaN
        return 0
    return min(int(confidence * bins), bins - 1)


def ece(pairs: Iterable[tuple[float, bool]], bins: int = CALIBRATION_BINS) -> float | None:
    """Expected calibration error: Σ_b (n_b / N) · |accuracy_b - mean confidence_b|.

    ``pairs`` are (confidence, correct); ``None`` when there are none. Computed as
    Σ_b |correct_b - confidence sum_b| / N, the same sum the Prometheus counters give.
    """
    count = [0] * bins
    correct = [0] * bins
    confidence_sum = [0.0] * bins
    for confidence, is_correct in pairs:
        index = calibration_bin(confidence, bins)
        count[index] += 1
        correct[index] += 1 if is_correct else 0
        confidence_sum[index] += confidence
    total = sum(count)
    if total == 0:
        return None
    return sum(abs(correct[b] - confidence_sum[b]) for b in range(bins)) / total


def run_confidence(run: Run) -> float | None:
    """The confidence of a run's answer: that of its last generation that recorded one."""
    confidences = [
        span.confidence
        for span in run.stages.get(A.STAGE_GENERATION, ())
        if span.confidence is not None
    ]
    return confidences[-1] if confidences else None


def run_correct(run: Run, verdict: Verdict) -> bool:
    """Ground truth when the app recorded ``llmspans.task.correct``, else ``outcome == success``."""
    if run.root.task_correct is not None:
        return run.root.task_correct
    return verdict.outcome == A.OUTCOME_SUCCESS


# --- observations -------------------------------------------------------------------


class Observation(NamedTuple):
    """One measurement: ``instrument`` is a ``METRIC_*`` dotted name."""

    instrument: str
    kind: Literal["counter", "histogram"]
    labels: Labels
    value: float


class MetricSink(Protocol):
    """Where :func:`accumulate` records measurements. The shared store, the report
    and :class:`Aggregates` all receive the same calls."""

    def count(self, instrument: str, labels: Labels, value: float) -> None:
        """Add ``value`` to a counter series."""

    def observe(self, instrument: str, labels: Labels, value: float) -> None:
        """Record ``value`` in a histogram series."""

    def calibrate(self, run: Labels, confidence: float, correct: bool) -> None:
        """One run with a confidence: its calibration counters and its ECE pair.
        ``run`` are the run's labels (pipeline, segment, source)."""


def calibration_labels(run: Labels, confidence: float, correct: bool) -> tuple[Labels, Labels]:
    """The label sets of the two calibration counters of one run: runs (by bin and
    correctness) and confidence sum (by bin), after the run's own labels."""
    bin_label = ("bin", _BIN_LABELS[calibration_bin(confidence)])
    return (
        (*run, bin_label, ("correct", "true" if correct else "false")),
        (*run, bin_label),
    )


class _Recorder:
    """A sink that keeps every measurement as an :class:`Observation`, in order (a
    calibration observation as the two counter increments it makes)."""

    __slots__ = ("found",)

    def __init__(self) -> None:
        self.found: list[Observation] = []

    def count(self, instrument: str, labels: Labels, value: float) -> None:
        self.found.append(Observation(instrument, "counter", labels, value))

    def observe(self, instrument: str, labels: Labels, value: float) -> None:
        self.found.append(Observation(instrument, "histogram", labels, value))

    def calibrate(self, run: Labels, confidence: float, correct: bool) -> None:
        runs, confidence_sum = calibration_labels(run, confidence, correct)
        self.count(A.METRIC_CALIBRATION_RUNS, runs, 1.0)
        self.count(A.METRIC_CALIBRATION_CONFIDENCE, confidence_sum, confidence)


def cut_label(value: str) -> str:
    """``value`` cut to :data:`MAX_LABEL_BYTES` bytes of UTF-8 (on a character boundary)."""
    if len(value) <= MAX_LABEL_BYTES // 4:
        return value  # four bytes per character at most: short enough for sure
    encoded = value.encode("utf-8", "surrogatepass")
    if len(encoded) <= MAX_LABEL_BYTES:
        return value
    return encoded[:MAX_LABEL_BYTES].decode("utf-8", "ignore")


class PipelineLabeler:
    """Bounds the ``pipeline`` label in length and in number.

    Names longer than :data:`MAX_LABEL_BYTES` bytes are cut (counted in
    ``truncated``). Names on the allow-list (``allow``) always keep their label and
    never use up a slot; of the others, the first ``limit`` pass and later ones become
    ``"other"``. With an allow-list, a flood of junk names can fill the free slots
    but never push a named pipeline into ``other``.

    A lock guards the set of admitted names, so concurrent callers never admit more
    than ``limit``.
    """

    def __init__(self, limit: int = 50, allow: Iterable[str] = ()) -> None:
        self.limit = limit
        self._allowed = frozenset(cut_label(name) for name in allow)
        self._known: set[str] = set()
        self._lock = threading.Lock()  # guards _known and truncated
        #: how many label values were cut to MAX_LABEL_BYTES
        self.truncated = 0

    def __call__(self, pipeline: str) -> str:
        if pipeline in self._known or pipeline in self._allowed:
            return pipeline
        name = cut_label(pipeline)
        with self._lock:
            if name is not pipeline:
                self.truncated += 1
            if name in self._known or name in self._allowed:
                return name
            if len(self._known) < self.limit:
                self._known.add(name)
                return name
        return A.OTHER_LABEL


class Labeler:
    """The labels of a run: ``pipeline``, ``segment`` and ``source``, each bounded.

    ``pipeline``: see :class:`PipelineLabeler` (``max_pipelines``, allow-list
    ``pipelines``). ``segment``: per pipeline label, the same policy with
    ``max_segments`` slots and the allow-list ``segments`` (``none`` when the run
    names no segment). ``source``: ``production`` when unset, one of
    ``production``/``offline``/``shadow``, else ``other``. With ``bounded=False``
    (the report of ``llmspans analyze``) names pass unchanged.
    """

    def __init__(
        self,
        max_pipelines: int = 50,
        pipelines: Iterable[str] = (),
        max_segments: int = 20,
        segments: Iterable[str] = (),
        *,
        bounded: bool = True,
    ) -> None:
        self.bounded = bounded
        self.pipeline: Callable[[str], str] = (
            PipelineLabeler(max_pipelines, pipelines) if bounded else _identity
        )
        self._max_segments = max_segments
        self._allowed_segments = tuple(segments)
        self._segments: dict[str, PipelineLabeler] = {}
        self._lock = threading.Lock()  # guards _segments and durations_clamped
        #: run labels -> the label tuples of that run's metrics, built once (see
        #: :class:`RunLabels`); at most _MAX_LABEL_SETS, started over when full
        self._label_sets: dict[Labels, RunLabels] = {}
        #: span durations longer than MAX_DURATION_S, recorded as MAX_DURATION_S
        self.durations_clamped = 0

    def clamp_duration(self) -> float:
        """Count one duration clamped; returns :data:`MAX_DURATION_S`."""
        with self._lock:
            self.durations_clamped += 1
        return MAX_DURATION_S

    @property
    def truncated(self) -> int:
        """Label values cut to :data:`MAX_LABEL_BYTES` so far."""
        found = self.pipeline.truncated if isinstance(self.pipeline, PipelineLabeler) else 0
        return found + sum(labeler.truncated for labeler in list(self._segments.values()))

    def run(self, pipeline: str, root: SpanRecord) -> Labels:
        """The run labels of a run whose (bounded) pipeline label is ``pipeline``."""
        segment = root.segment
        if not segment:
            segment = A.NO_SEGMENT
        elif self.bounded:
            labeler = self._segments.get(pipeline)
            if labeler is None:
                with self._lock:
                    labeler = self._segments.setdefault(
                        pipeline, PipelineLabeler(self._max_segments, self._allowed_segments)
                    )
            segment = labeler(segment)
        source = root.source
        if source is None:
            source = A.SOURCE_PRODUCTION
        elif source not in _SOURCES:
            source = A.OTHER_LABEL
        return (("pipeline", pipeline), ("segment", segment), ("source", source))

    def run_labels(self, pipeline: str, root: SpanRecord) -> RunLabels:
        """:meth:`run`, with the label tuples derived from it built once per distinct
        run labels: recording a run then allocates no label tuple of its own."""
        labels = self.run(pipeline, root)
        found = self._label_sets.get(labels)
        if found is None:
            found = RunLabels(labels)
            label_sets = self._label_sets
            # Bounded labels give at most pipelines x segments x sources sets; the
            # unbounded labels of the report are capped here instead.
            if len(label_sets) >= _MAX_LABEL_SETS:
                label_sets.clear()
            label_sets[labels] = found
        return found


#: label sets a Labeler keeps: above 51 pipelines x 21 segments x 4 sources
_MAX_LABEL_SETS: Final = 8192


class RunLabels:
    """The label tuples of one run's metrics, for one set of run labels.

    Every run of a pipeline, segment and source records the same few label sets
    (per stage and status, per outcome, per failure); building them once and
    reusing the same tuple objects saves an allocation per measurement, and a
    series lookup whose key is the very tuple stored in the dict compares by
    identity. The per-outcome and per-failure tuples are filled as they occur
    (outcomes, stages and reasons are small closed sets).
    """

    __slots__ = ("by_labels", "by_outcome_basis", "failures", "outcomes", "run", "stages")

    def __init__(self, run: Labels) -> None:
        self.run = run
        pipeline = run[0][1]
        #: stage -> (labels of its duration, of an ok call, of an error call)
        self.stages: dict[str, tuple[Labels, Labels, Labels]] = {}
        for stage in A.PIPELINE_ORDER:
            by_stage = (("pipeline", pipeline), ("stage", stage))
            self.stages[stage] = (by_stage, (*by_stage, _OK_STATUS), (*by_stage, _ERROR_STATUS))
        self.outcomes: dict[str, Labels] = {}
        self.failures: dict[tuple[str, str], Labels] = {}
        #: the run labels with the basis of quality metrics: ground-truth labels,
        #: or (calibration only) the run's outcome
        self.by_labels: Labels = (*run, _BASIS_LABELS)
        self.by_outcome_basis: Labels = (*run, _BASIS_OUTCOME)

    def outcome(self, outcome: str) -> Labels:
        found = self.outcomes.get(outcome)
        if found is None:
            found = self.outcomes[outcome] = (*self.run, ("outcome", outcome))
        return found

    def failure(self, stage: str, reason: str) -> Labels:
        key = (stage, reason)
        found = self.failures.get(key)
        if found is None:
            found = self.failures[key] = (*self.run, ("stage", stage), ("reason", reason))
        return found


_SOURCES: Final = frozenset(A.SOURCES)


def _identity(pipeline: str) -> str:
    return pipeline


_STAGE_CALLS: Final = A.METRIC_STAGE_CALLS
_STAGE_DURATION: Final = A.METRIC_STAGE_DURATION
_ERROR_STATUS: Final = ("status", "error")
_OK_STATUS: Final = ("status", "ok")


def _seconds(start_ns: int, end_ns: int, bounds: Labeler) -> float:
    """A span's duration in seconds, 0 when it ends before it starts, clamped to
    :data:`MAX_DURATION_S` (counted in ``bounds``)."""
    duration = end_ns - start_ns
    if duration <= 0:
        return 0.0
    if duration < _MAX_DURATION_NS:
        return duration / 1e9
    return bounds.clamp_duration()


def _stage_metrics(span: SpanRecord, pipeline: str, sink: MetricSink, bounds: Labeler) -> None:
    stage = cut_label(span.stage or "")
    sink.count(
        _STAGE_CALLS,
        (("pipeline", pipeline), ("stage", stage), ("status", "error" if span.error else "ok")),
        1.0,
    )
    sink.observe(
        _STAGE_DURATION,
        (("pipeline", pipeline), ("stage", stage)),
        _seconds(span.start_ns, span.end_ns, bounds),
    )


def _run_metrics(
    run: Run, verdict: Verdict, labels: RunLabels, sink: MetricSink, bounds: Labeler
) -> None:
    outcome = verdict.outcome
    stages = run.stages
    count = sink.count
    observe = sink.observe
    by_run = labels.run
    for stage in A.PIPELINE_ORDER:
        spans = stages.get(stage)
        if spans:
            # What _stage_metrics records, with the label sets built once per run labels.
            by_stage, ok, failed = labels.stages[stage]
            for span in spans:
                count(_STAGE_CALLS, failed if span.error else ok, 1.0)
                duration = span.end_ns - span.start_ns
                if duration <= 0:
                    observe(_STAGE_DURATION, by_stage, 0.0)
                else:
                    observe(
                        _STAGE_DURATION,
                        by_stage,
                        duration / 1e9 if duration < _MAX_DURATION_NS else bounds.clamp_duration(),
                    )
    by_outcome = labels.outcome(outcome)
    count(A.METRIC_TASK_OUTCOMES, by_outcome, 1.0)
    observe(
        A.METRIC_TASK_DURATION, by_outcome, _seconds(run.root.start_ns, run.root.end_ns, bounds)
    )
    if outcome == A.OUTCOME_FAILURE:
        count(
            A.METRIC_STAGE_FAILURES,
            labels.failure(
                verdict.failure_stage or A.STAGE_UNATTRIBUTED,
                verdict.failure_reason or A.REASON_ERROR,
            ),
            1.0,
        )
    costs = [span.cost_usd for span in run.spans if span.cost_usd is not None]
    count(A.METRIC_TASK_COST, by_outcome, math.fsum(costs) if costs else 0.0)

    retrievals = stages.get(A.STAGE_RETRIEVAL)
    if retrievals and any(span.relevant_ids for span in retrievals):
        relevant = relevant_ids(run)
        if relevant and any(span.document_ids is not None for span in retrievals):
            retrieved = retrieved_ids(run)
            precision = context_precision(retrieved, relevant)
            recall = context_recall(retrieved, relevant)
            if precision is not None:
                observe(A.METRIC_CONTEXT_PRECISION, labels.by_labels, precision)
            if recall is not None:
                observe(A.METRIC_CONTEXT_RECALL, labels.by_labels, recall)

    generations = stages.get(A.STAGE_GENERATION)
    if generations:
        if any(span.citations for span in generations):
            shown = selected_context_set(run)
            if shown is not None:
                for span in generations:
                    if span.citations:
                        value = citation_precision(span.citations, shown)
                        if value is not None:
                            observe(A.METRIC_CITATION_PRECISION, by_run, value)

        confidence = run_confidence(run)
        if confidence is not None:
            basis = labels.by_outcome_basis if run.root.task_correct is None else labels.by_labels
            sink.calibrate(basis, confidence, run_correct(run, verdict))


_BIN_LABELS: Final = tuple(str(index) for index in range(CALIBRATION_BINS))
_BASIS_LABELS: Final = ("basis", A.BASIS_LABELS)
_BASIS_OUTCOME: Final = ("basis", A.BASIS_OUTCOME)
#: run labels passed through unbounded (the report, tests)
_UNBOUNDED: Final = Labeler(bounded=False)


def accumulate(result: TraceResult, sink: MetricSink, labeler: Labeler | None = None) -> None:
    """Record every measurement of one evaluated trace into ``sink`` (the ECE gauge
    aside, which the sink derives from its calibration observations): the one
    definition of what a trace yields.

    Stage calls and durations for every stage span (standalone ones under
    ``pipeline="unknown"`` unless they carry a pipeline name); per run its outcome,
    duration, cost (the sum of ``llmspans.cost.usd`` over the run's spans), its one
    root-cause failure, context precision and recall (runs with labels), citation
    precision (per generation with citations) and one calibration observation (runs
    with a confidence); one feedback count per feedback span. Durations are clamped
    to :data:`MAX_DURATION_S`.
    """
    labels = labeler or _UNBOUNDED
    label = labels.pipeline
    for run, verdict in result.runs:
        _run_metrics(run, verdict, labels.run_labels(label(run.pipeline), run.root), sink, labels)
    for span in result.standalone:
        _stage_metrics(span, label(span.pipeline or UNKNOWN_PIPELINE), sink, labels)
    for span in result.feedback:
        sink.count(
            A.METRIC_FEEDBACK,
            (
                ("pipeline", label(span.pipeline or UNKNOWN_PIPELINE)),
                ("kind", cut_label(span.feedback_kind or UNKNOWN_LABEL)),
            ),
            1.0,
        )


def observations(result: TraceResult, labeler: Labeler | None = None) -> list[Observation]:
    """:func:`accumulate`'s measurements of one evaluated trace as a list, in order."""
    recorder = _Recorder()
    accumulate(result, recorder, labeler)
    return recorder.found


# --- in-memory aggregation ----------------------------------------------------------


@dataclass(slots=True)
class HistogramData:
    """A cumulative-free histogram: ``bucket_counts[i]`` counts values ≤ ``boundaries[i]``
    (and above the previous boundary); the last bucket counts values above every boundary."""

    boundaries: tuple[float, ...]
    bucket_counts: list[int]
    count: int = 0
    sum: float = 0.0

    @classmethod
    def empty(cls, boundaries: tuple[float, ...]) -> HistogramData:
        return cls(boundaries, [0] * (len(boundaries) + 1))

    def add(self, value: float) -> None:
        self.bucket_counts[bisect.bisect_left(self.boundaries, value)] += 1
        self.count += 1
        self.sum += value

    def merge(self, other: HistogramData) -> None:
        for index, count in enumerate(other.bucket_counts):
            self.bucket_counts[index] += count
        self.count += other.count
        self.sum += other.sum


@dataclass
class Aggregates:
    """Counters and histograms accumulated from observations, keyed by (instrument, labels).

    Histograms use the explicit boundaries of :data:`HISTOGRAM_BOUNDARIES` (the same
    buckets OTel records), so these numbers equal what the metric backends see. Not
    thread-safe: one owner applies observations.
    """

    counters: dict[tuple[str, Labels], float] = field(default_factory=dict)
    histograms: dict[tuple[str, Labels], HistogramData] = field(default_factory=dict)

    def count(self, instrument: str, labels: Labels, value: float) -> None:
        """Add to a counter series (the :class:`MetricSink` interface)."""
        key = (instrument, labels)
        counters = self.counters
        counters[key] = counters.get(key, 0.0) + value

    def observe(self, instrument: str, labels: Labels, value: float) -> None:
        """Record a value in a histogram series (the :class:`MetricSink` interface)."""
        key = (instrument, labels)
        histogram = self.histograms.get(key)
        if histogram is None:
            histogram = self.histograms[key] = HistogramData.empty(HISTOGRAM_BOUNDARIES[instrument])
        histogram.add(value)

    def calibrate(self, run: Labels, confidence: float, correct: bool) -> None:
        """Add one run's calibration counters (the :class:`MetricSink` interface)."""
        runs, confidence_sum = calibration_labels(run, confidence, correct)
        self.count(A.METRIC_CALIBRATION_RUNS, runs, 1.0)
        self.count(A.METRIC_CALIBRATION_CONFIDENCE, confidence_sum, confidence)

    def apply(self, observations: Iterable[Observation]) -> None:
        for instrument, kind, labels, value in observations:
            if kind == "counter":
                self.count(instrument, labels, value)
            else:
                self.observe(instrument, labels, value)

    @staticmethod
    def _matches(labels: Labels, wanted: Mapping[str, str]) -> bool:
        present = dict(labels)
        return all(present.get(key) == value for key, value in wanted.items())

    def counter(self, instrument: str, **labels: str) -> float:
        """Sum of a counter over every series whose labels include ``labels``."""
        return math.fsum(
            value
            for (name, series), value in self.counters.items()
            if name == instrument and self._matches(series, labels)
        )

    def histogram(self, instrument: str, **labels: str) -> HistogramData:
        """A histogram merged over every series whose labels include ``labels``."""
        merged = HistogramData.empty(HISTOGRAM_BOUNDARIES[instrument])
        for (name, series), histogram in self.histograms.items():
            if name == instrument and self._matches(series, labels):
                merged.merge(histogram)
        return merged

    def series(self, instrument: str) -> dict[Labels, float | HistogramData]:
        """Every series of one instrument: counter values or histograms by label set."""
        found: dict[Labels, float | HistogramData] = {}
        for (name, labels), value in self.counters.items():
            if name == instrument:
                found[labels] = value
        for (name, labels), histogram in self.histograms.items():
            if name == instrument:
                found[labels] = histogram
        return found

    def label_values(self, instrument: str, label: str) -> set[str]:
        """The values one label takes across an instrument's series."""
        return {
            dict(labels).get(label, "")
            for labels in self.series(instrument)
            if label in dict(labels)
        }

    def ece(self, **labels: str) -> float | None:
        """ECE from the calibration counters, exactly as the PromQL in docs/metrics.md:
        Σ_bin |correct runs - confidence sum| / runs."""
        total = self.counter(A.METRIC_CALIBRATION_RUNS, **labels)
        if total == 0:
            return None
        error = 0.0
        for index in range(CALIBRATION_BINS):
            bin_label = str(index)
            correct = self.counter(
                A.METRIC_CALIBRATION_RUNS, bin=bin_label, correct="true", **labels
            )
            confidence = self.counter(A.METRIC_CALIBRATION_CONFIDENCE, bin=bin_label, **labels)
            error += abs(correct - confidence)
        return error / total
