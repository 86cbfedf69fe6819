"""The metric store every mode aggregates into: one :class:`MetricStore` per process.

The collector and the embedded mode each keep one; :func:`~llmspans.core.metrics.
accumulate` writes each evaluated trace into it (it is a
:class:`~llmspans.core.metrics.MetricSink`): counter sums, histogram buckets, the
exemplar of every series (the latest trace behind it) and, per pipeline, the recent
(confidence, correct) pairs of the ECE gauge. It also holds health counters and
gauges of whatever hosts it. :mod:`llmspans.core.exposition` renders it as
Prometheus text or an OTLP export. No I/O; no locks (the owner serialises access).
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable

from llmspans import _attributes as A
from llmspans.core.catalogue import by_prometheus_name
from llmspans.core.metrics import (
    HISTOGRAM_BOUNDARIES,
    Aggregates,
    HistogramData,
    Labeler,
    Labels,
    accumulate,
    calibration_labels,
    ece,
)
from llmspans.core.model import TraceResult

__all__ = ["GaugeReader", "MetricStore"]

#: A gauge callback: the current (labels, value) pairs of one gauge.
GaugeReader = Callable[[], Iterable[tuple[Labels, float]]]
#: (trace id hex, unix time) of the trace behind an exemplar
Stamp = tuple[str, float]


class MetricStore:
    """Everything the metric endpoints show, and the sink :func:`accumulate` writes to.

    ``max_pipelines`` and ``pipelines`` bound the ``pipeline`` label, ``max_segments``
    and ``segments`` the ``segment`` label of each pipeline (see
    :class:`~llmspans.core.metrics.Labeler`); the ECE gauge covers the last
    ``ece_window`` runs with a confidence of each pipeline. ``health`` holds the
    host's own counters by (Prometheus family name, labels), ``gauges`` its gauge
    callbacks by Prometheus family name: both are rows of
    :data:`~llmspans.core.catalogue.COLLECTOR_HEALTH`.
    """

    def __init__(
        self,
        max_pipelines: int = 50,
        ece_window: int = 1000,
        pipelines: Iterable[str] = (),
        max_segments: int = 20,
        segments: Iterable[str] = (),
    ) -> None:
        self.labeler = Labeler(max_pipelines, pipelines, max_segments, segments)
        self.aggregates = Aggregates()
        self.health: dict[tuple[str, Labels], float] = {}
        self.gauges: dict[str, GaugeReader] = {}
        #: (instrument, labels) -> the series' latest value and the stamp of its trace
        #: (for histograms: of the bucket the value fell in)
        self.exemplars: dict[tuple[str, Labels], tuple[float, Stamp]] = {}
        self._ece_window = max(1, ece_window)
        #: pipeline label -> recent (confidence, correct) pairs
        self._calibration: dict[str, deque[tuple[float, bool]]] = {}
        self._counters = self.aggregates.counters
        self._histograms = self.aggregates.histograms
        self._stamp: Stamp = ("", 0.0)
        self.start_time_ns = time.time_ns()

    # --- recording ---------------------------------------------------------------

    def record(self, result: TraceResult, trace_id: bytes) -> None:
        """Add one evaluated trace's measurements; they become exemplars of their series."""
        self._stamp = (trace_id.hex(), time.time())
        accumulate(result, self, self.labeler)

    def count(self, instrument: str, labels: Labels, value: float) -> None:
        """Add to a counter series (the :class:`~llmspans.core.metrics.MetricSink` interface)."""
        key = (instrument, labels)
        counters = self._counters
        counters[key] = counters.get(key, 0.0) + value
        self.exemplars[key] = (value, self._stamp)

    def observe(self, instrument: str, labels: Labels, value: float) -> None:
        """Record a value in a histogram series (the sink interface)."""
        key = (instrument, labels)
        histogram = self._histograms.get(key)
        if histogram is None:
            histogram = self._histograms[key] = HistogramData.empty(
                HISTOGRAM_BOUNDARIES[instrument]
            )
        # HistogramData.add written out: one Python call less per measurement, on
        # the path every finished trace takes.
        histogram.bucket_counts[bisect_left(histogram.boundaries, value)] += 1
        histogram.count += 1
        histogram.sum += value
        self.exemplars[key] = (value, self._stamp)

    def calibrate(self, run: Labels, confidence: float, correct: bool) -> None:
        """One run with a confidence: both calibration counters and its ECE pair (the
        gauge is per pipeline)."""
        runs, confidence_sum = calibration_labels(run, confidence, correct)
        self.count(A.METRIC_CALIBRATION_RUNS, runs, 1.0)
        self.count(A.METRIC_CALIBRATION_CONFIDENCE, confidence_sum, confidence)
        pipeline = run[0][1]
        window = self._calibration.get(pipeline)
        if window is None:
            window = self._calibration[pipeline] = deque(maxlen=self._ece_window)
        window.append((confidence, correct))

    # --- health ------------------------------------------------------------------

    def add_health(self, name: str, value: float = 1.0, **labels: str) -> None:
        """Add to one of the host's health counters (a Prometheus family name)."""
        key = (name, tuple(sorted(labels.items())))
        self.health[key] = self.health.get(key, 0.0) + value

    def health_value(self, name: str, **labels: str) -> float:
        """Sum of a health counter over the series whose labels include ``labels``."""
        return math.fsum(
            value
            for (series, present), value in self.health.items()
            if series == name and all(dict(present).get(k) == v for k, v in labels.items())
        )

    def add_gauge(self, name: str, reader: GaugeReader) -> None:
        """Register a gauge callback under a Prometheus family name of the catalogue."""
        by_prometheus_name(name)  # a KeyError for a name the catalogue does not know
        self.gauges[name] = reader

    # --- derived -------------------------------------------------------------------

    def ece(self) -> dict[str, float]:
        """ECE per pipeline label over each pipeline's recent window of runs."""
        found: dict[str, float] = {}
        for pipeline, window in self._calibration.items():
            value = ece(window)
            if value is not None:
                found[pipeline] = value
        return found

    def counter(self, instrument: str, **labels: str) -> float:
        """Sum of a counter over every series whose labels include ``labels``."""
        return self.aggregates.counter(instrument, **labels)
