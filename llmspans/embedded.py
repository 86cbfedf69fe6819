"""Embedded mode: the collector's attribution and metrics, inside the app's process.

For a one-process app or a notebook with no collector: :class:`EmbeddedProcessor`
is a ``SpanProcessor`` that collects ended spans per trace, evaluates each trace
with the same pure core the collector runs (:mod:`llmspans.core`), and records the
SPEC section 4 metrics on instruments of the app's ``MeterProvider``. With a
Prometheus reader on that provider the metric names are exactly the SPEC ones
(``llmspans_stage_failures_total{pipeline,stage,reason}`` ...).

``llmspans.configure(embedded=True)`` installs it; it can also be added by hand::

    provider.add_span_processor(EmbeddedProcessor(meter_provider=meter_provider))

When a trace is final:

* when its **local root span** ends (the pipeline span, or whatever span encloses
  it in this process); children end before their parents, so the trace is whole;
* a trace whose local root never ends (a hung run) is finalised ``run_timeout_s``
  after its first span, by a background sweeper thread; its pipeline span never
  ended, so its stage spans count in the stage metrics only;
* when more than ``max_inflight_traces`` traces or ``max_inflight_spans`` spans are
  waiting, the oldest traces are finalised early: memory stays bounded;
* a span that ends after its parent's trace was final (a background task outliving
  its request) is evaluated on its own: it counts once in the stage metrics and
  never changes a run's numbers twice. A new local root in the same trace (a
  second request of one distributed trace reaching this process) starts a new
  group as usual.

How the metrics are recorded: the counters are observable (callback) counters
over cumulative totals the processor keeps in memory, so a finished trace costs a
few dict updates under one lock instead of one OTel SDK call per measurement; the
histograms stay synchronous OTel histograms (the API has no observable histogram)
with the SPEC boundaries, recorded with attribute dicts built once per label set.
The numbers exported are the same either way: a cumulative counter reports the
total of what was added, and the SDK derives deltas for delta temporality.

The verdict cannot be written onto the root span (an ended span is read-only);
exporters see the spans as the app made them. The collector is the place that
enriches traces.

Errors of this processor never reach the app: they are logged once per kind on the
``llmspans`` logger and the span is dropped from the metrics.
"""

from __future__ import annotations

import importlib.metadata
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

from opentelemetry import context as otel_context
from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, MeterProvider
from opentelemetry.metrics import Observation as OTelObservation
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from llmspans import _attributes as A
from llmspans._logging import log_internal_error
from llmspans.core.convert import record_from_readable_span
from llmspans.core.evaluate import evaluate_trace
from llmspans.core.metrics import (
    COUNTERS,
    HISTOGRAM_BOUNDARIES,
    PipelineLabeler,
    accumulate,
    ece,
    run_confidence,
    run_correct,
)
from llmspans.core.model import Thresholds, TraceResult
from llmspans.core.records import SpanRecord

__all__ = ["INSTRUMENT_DESCRIPTIONS", "EmbeddedProcessor"]

_METER_NAME: Final = "llmspans"

#: description of every instrument (also used by the collector's metrics).
INSTRUMENT_DESCRIPTIONS: Final[dict[str, str]] = {
    A.METRIC_STAGE_CALLS: "Stage spans seen, by pipeline, stage and status (ok/error).",
    A.METRIC_STAGE_DURATION: "Duration of stage spans.",
    A.METRIC_TASK_OUTCOMES: "Finished pipeline runs by outcome (success/failure/unverified).",
    A.METRIC_TASK_DURATION: "End-to-end duration of pipeline runs, by outcome.",
    A.METRIC_STAGE_FAILURES: "Root-cause failures, one per failed run, by stage and reason.",
    A.METRIC_CONTEXT_PRECISION: "Rank-weighted context precision per run with relevance labels.",
    A.METRIC_CONTEXT_RECALL: "Context recall per run with relevance labels.",
    A.METRIC_CITATION_PRECISION: "Share of citations the model was shown, per generation.",
    A.METRIC_TASK_COST: "Cost in US dollars of pipeline runs, by outcome.",
    A.METRIC_FEEDBACK: "User feedback events by kind (accept/edit/bypass/reject).",
    A.METRIC_CALIBRATION_RUNS: "Runs with a confidence, by confidence bin and correctness.",
    A.METRIC_CALIBRATION_CONFIDENCE: "Sum of the confidences of the runs in each bin.",
    A.METRIC_CALIBRATION_ECE: "Expected calibration error over the recent runs.",
}
#: Units: seconds for durations (Prometheus adds ``_seconds``); none elsewhere, so the
#: Prometheus names are exactly SPEC section 4 (a unit "USD" would add ``_USD``).
_UNITS: Final[dict[str, str]] = {
    A.METRIC_STAGE_DURATION: "s",
    A.METRIC_TASK_DURATION: "s",
}


def _version() -> str | None:
    try:
        return importlib.metadata.version("llmspans")
    except importlib.metadata.PackageNotFoundError:
        return None


def _create_histograms(meter: Meter) -> dict[str, Histogram]:
    """The histograms of SPEC section 4, with the bucket boundaries of
    ``HISTOGRAM_BOUNDARIES`` (the OTel API has no observable histogram)."""
    return {
        name: meter.create_histogram(
            name,
            unit=_UNITS.get(name, ""),
            description=INSTRUMENT_DESCRIPTIONS[name],
            explicit_bucket_boundaries_advisory=list(boundaries),
        )
        for name, boundaries in HISTOGRAM_BOUNDARIES.items()
    }


Labels = tuple[tuple[str, str], ...]

#: attribute dicts by label set kept for reuse (beyond this many the cache restarts)
_ATTRIBUTES_CACHE_SIZE: Final = 10_000


class _Totals:
    """Cumulative counter values by instrument and label set, read at collection time.

    ``lock`` guards ``series`` (the outer dict is fixed; the inner dicts grow). It is
    never held while calling into the OTel SDK: collection calls the counters'
    callbacks under the SDK's own locks, and those callbacks take this one.
    """

    __slots__ = ("lock", "series")

    def __init__(self, instruments: Iterable[str]) -> None:
        self.lock = threading.Lock()
        self.series: dict[str, dict[Labels, float]] = {name: {} for name in instruments}

    def add(self, counts: dict[tuple[str, Labels], float]) -> None:
        """Add one trace's counts, in one lock round."""
        series = self.series
        with self.lock:
            for (instrument, labels), value in counts.items():
                values = series[instrument]
                values[labels] = values.get(labels, 0.0) + value

    def snapshot(self, instrument: str) -> list[tuple[Labels, float]]:
        with self.lock:
            return list(self.series[instrument].items())


class _TraceSink:
    """The :class:`~llmspans.core.metrics.MetricSink` of one evaluated trace.

    Counts are summed here and added to the totals once the trace is done;
    histogram values go straight to the OTel histograms.
    """

    __slots__ = ("attributes", "counts", "histograms")

    def __init__(
        self, histograms: dict[str, Histogram], attributes: Callable[[Labels], dict[str, str]]
    ) -> None:
        self.histograms = histograms
        self.attributes = attributes
        self.counts: dict[tuple[str, Labels], float] = {}

    def count(self, instrument: str, labels: Labels, value: float) -> None:
        key = (instrument, labels)
        counts = self.counts
        counts[key] = counts.get(key, 0.0) + value

    def observe(self, instrument: str, labels: Labels, value: float) -> None:
        self.histograms[instrument].record(value, self.attributes(labels))


@dataclass(slots=True)
class _PendingTrace:
    first_seen: float
    records: list[SpanRecord] = field(default_factory=list)


class EmbeddedProcessor(SpanProcessor):
    """Assembles runs in process and records the SPEC section 4 metrics.

    ``meter_provider`` defaults to the global one. ``thresholds`` are the attribution
    thresholds. ``run_timeout_s`` bounds how long an unfinished trace is kept.
    ``max_pipelines`` bounds the ``pipeline`` label (later names become ``other``).
    ``max_inflight_traces`` and ``max_inflight_spans`` bound memory. The ECE gauge
    covers the last ``ece_window`` runs with a confidence of each pipeline.
    """

    def __init__(
        self,
        meter_provider: MeterProvider | None = None,
        thresholds: Thresholds | None = None,
        run_timeout_s: float = 60.0,
        max_pipelines: int = 50,
        *,
        max_inflight_traces: int = 10_000,
        max_inflight_spans: int = 200_000,
        finalized_cache_size: int = 10_000,
        ece_window: int = 1_000,
    ) -> None:
        self._thresholds = thresholds or Thresholds()
        self._run_timeout_s = run_timeout_s
        self._max_inflight_traces = max(1, max_inflight_traces)
        self._max_inflight_spans = max(1, max_inflight_spans)
        self._finalized_cache_size = max(0, finalized_cache_size)
        self._ece_window = max(1, ece_window)
        self._labeler = PipelineLabeler(max_pipelines)
        provider = meter_provider or otel_metrics.get_meter_provider()
        meter = provider.get_meter(_METER_NAME, _version())
        #: label set -> its attribute dict, built once (read and filled without a lock:
        #: a lookup and an insert are each atomic, and a lost insert is only rebuilt)
        self._attribute_dicts: dict[Labels, dict[str, str]] = {}
        self._totals = _Totals(COUNTERS)
        for name in COUNTERS:
            meter.create_observable_counter(
                name,
                callbacks=[self._observe_counter(name)],
                unit=_UNITS.get(name, ""),
                description=INSTRUMENT_DESCRIPTIONS[name],
            )
        self._histograms = _create_histograms(meter)
        meter.create_observable_gauge(
            A.METRIC_CALIBRATION_ECE,
            callbacks=[self._observe_ece],
            description=INSTRUMENT_DESCRIPTIONS[A.METRIC_CALIBRATION_ECE],
        )

        # _lock guards _traces, _inflight_spans, _finalized, _ece_pairs, _sweeper and
        # _closed. Evaluation and metric recording run outside it.
        self._lock = threading.Lock()
        #: trace id -> spans waiting for the trace's local root, in first-seen order
        self._traces: OrderedDict[bytes, _PendingTrace] = OrderedDict()
        self._inflight_spans = 0
        #: recently finalised traces: trace id -> ids of their spans. A span whose parent
        #: is one of these is late and evaluated alone; a new local root in the same
        #: trace (a second request of one distributed trace) is buffered as usual.
        self._finalized: OrderedDict[bytes, set[bytes]] = OrderedDict()
        #: pipeline label -> recent (confidence, correct) pairs for the ECE gauge
        self._ece_pairs: dict[str, deque[tuple[float, bool]]] = {}
        self._sweeper: threading.Thread | None = None
        self._closed = False
        self._stop = threading.Event()

    # --- SpanProcessor ---------------------------------------------------------------

    def on_end(self, span: ReadableSpan) -> None:
        try:
            self._on_end(span)
        except Exception as error:
            log_internal_error("embedded.on_end", error)

    def shutdown(self) -> None:
        """Finalise every waiting trace (their metrics are recorded) and stop the sweeper."""
        with self._lock:
            self._closed = True
            sweeper, self._sweeper = self._sweeper, None
            pending = self._take_all()
        self._stop.set()
        self._finalize(pending)
        if sweeper is not None and sweeper is not threading.current_thread():
            sweeper.join(timeout=5)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Finalise traces past their timeout; runs still in progress keep waiting."""
        self.sweep()
        return True

    # --- internals ----------------------------------------------------------------------

    def _on_end(self, span: ReadableSpan) -> None:
        record = record_from_readable_span(span)
        parent = span.parent
        local_root = parent is None or parent.is_remote
        now = time.monotonic()
        ready: list[list[SpanRecord]] = []
        with self._lock:
            if self._closed:
                ready.append([record])
            elif self._is_late(record):
                ready.append([record])  # evaluated alone: counted once, the run unchanged
            else:
                pending = self._traces.get(record.trace_id)
                if pending is None:
                    pending = self._traces[record.trace_id] = _PendingTrace(now)
                pending.records.append(record)
                self._inflight_spans += 1
                if local_root:
                    ready.append(self._take(record.trace_id))
                ready.extend(self._take_over_limits())
                if self._sweeper is None:
                    self._start_sweeper()
        self._finalize(ready)

    def _is_late(self, record: SpanRecord) -> bool:
        """Whether the span hangs under a trace already finalised (caller holds ``_lock``)."""
        done = self._finalized.get(record.trace_id)
        if done is None or record.parent_span_id not in done:
            return False
        done.add(record.span_id)  # its own late children are late too
        return True

    def _take(self, trace_id: bytes) -> list[SpanRecord]:
        """Remove a waiting trace (caller holds ``_lock``) and remember it as final."""
        pending = self._traces.pop(trace_id)
        self._inflight_spans -= len(pending.records)
        if self._finalized_cache_size:
            done = self._finalized.setdefault(trace_id, set())
            done.update(record.span_id for record in pending.records)
            self._finalized.move_to_end(trace_id)
            while len(self._finalized) > self._finalized_cache_size:
                self._finalized.popitem(last=False)
        return pending.records

    def _take_over_limits(self) -> list[list[SpanRecord]]:
        taken: list[list[SpanRecord]] = []
        while self._traces and (
            len(self._traces) > self._max_inflight_traces
            or self._inflight_spans > self._max_inflight_spans
        ):
            taken.append(self._take(next(iter(self._traces))))
        return taken

    def _take_expired(self, now: float) -> list[list[SpanRecord]]:
        taken: list[list[SpanRecord]] = []
        while self._traces:
            trace_id, pending = next(iter(self._traces.items()))
            if now - pending.first_seen < self._run_timeout_s:
                break
            taken.append(self._take(trace_id))
        return taken

    def _take_all(self) -> list[list[SpanRecord]]:
        return [self._take(trace_id) for trace_id in list(self._traces)]

    def sweep(self) -> None:
        """Finalise the traces that have waited ``run_timeout_s``."""
        try:
            with self._lock:
                expired = self._take_expired(time.monotonic())
            self._finalize(expired)
        except Exception as error:
            log_internal_error("embedded.sweep", error)

    def _start_sweeper(self) -> None:
        interval = min(max(self._run_timeout_s / 4, 0.05), 5.0)

        def loop() -> None:
            while not self._stop.wait(interval):
                self.sweep()

        # The sweeper must not be traced itself, nor carry the app's context.
        token = otel_context.attach(otel_context.Context())
        try:
            self._sweeper = threading.Thread(target=loop, name="llmspans-embedded", daemon=True)
            self._sweeper.start()
        finally:
            otel_context.detach(token)

    def _finalize(self, traces: Iterable[list[SpanRecord]]) -> None:
        for records in traces:
            try:
                result = evaluate_trace(records, self._thresholds)
                self._record(result)
            except Exception as error:
                log_internal_error("embedded.evaluate", error)

    def _record(self, result: TraceResult) -> None:
        sink = _TraceSink(self._histograms, self._attributes)
        accumulate(result, sink, self._labeler)
        if sink.counts:
            self._totals.add(sink.counts)
        pairs = [
            (self._labeler(run.pipeline), confidence, run_correct(run, verdict))
            for run, verdict in result.runs
            if (confidence := run_confidence(run)) is not None
        ]
        if pairs:
            with self._lock:
                for pipeline, confidence, correct in pairs:
                    window = self._ece_pairs.get(pipeline)
                    if window is None:
                        window = self._ece_pairs[pipeline] = deque(maxlen=self._ece_window)
                    window.append((confidence, correct))

    def _attributes(self, labels: Labels) -> dict[str, str]:
        """The attribute dict of a label set, built once (the SDK never changes it)."""
        attributes = self._attribute_dicts.get(labels)
        if attributes is None:
            if len(self._attribute_dicts) >= _ATTRIBUTES_CACHE_SIZE:
                self._attribute_dicts = {}
            attributes = self._attribute_dicts[labels] = dict(labels)
        return attributes

    def _observe_counter(
        self, instrument: str
    ) -> Callable[[CallbackOptions], Iterable[OTelObservation]]:
        def observe(options: CallbackOptions) -> Iterable[OTelObservation]:
            try:
                return [
                    OTelObservation(value, self._attributes(labels))
                    for labels, value in self._totals.snapshot(instrument)
                ]
            except Exception as error:
                log_internal_error("embedded.counters", error)
                return []

        return observe

    def _observe_ece(self, options: CallbackOptions) -> Iterable[OTelObservation]:
        try:
            with self._lock:
                windows = {pipeline: list(pairs) for pipeline, pairs in self._ece_pairs.items()}
            found: list[OTelObservation] = []
            for pipeline, pairs in windows.items():
                value = ece(pairs)
                if value is not None:
                    found.append(OTelObservation(value, {"pipeline": pipeline}))
            return found
        except Exception as error:
            log_internal_error("embedded.ece", error)
            return []
