"""The collector's metrics: the shared store of the core plus the collector's own health.

Evaluated traces go into the core's :class:`~llmspans.core.store.MetricStore` (the
same aggregation the embedded mode uses); ``/metrics`` and the OTLP push render it
with :mod:`llmspans.core.exposition`, adding the health rows of
:data:`~llmspans.core.catalogue.COLLECTOR_HEALTH`. Owned by the event loop thread:
no locks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from llmspans.core import exposition
from llmspans.core.catalogue import COLLECTOR_HEALTH
from llmspans.core.model import TraceResult
from llmspans.core.store import MetricStore

__all__ = ["MetricsStore", "otlp_request"]

_LABELS_TRUNCATED = "llmspans_collector_labels_truncated"
_DURATIONS_CLAMPED = "llmspans_collector_durations_clamped"


class MetricsStore:
    """The core store, with the collector's health counters addressed by name."""

    def __init__(
        self,
        max_pipelines: int = 50,
        ece_window: int = 1000,
        pipelines: Iterable[str] = (),
        max_segments: int = 20,
        segments: Iterable[str] = (),
    ) -> None:
        self.store = MetricStore(max_pipelines, ece_window, pipelines, max_segments, segments)
        self.aggregates = self.store.aggregates
        self.health = self.store.health
        self.gauges = self.store.gauges

    def record(self, result: TraceResult, trace_id: bytes) -> None:
        """Add one finalised trace's measurements (exemplars stamped with its id)."""
        self.store.record(result, trace_id)

    def count(self, name: str, value: float = 1.0, **labels: str) -> None:
        """Add to one of the collector's health counters (a Prometheus family name)."""
        self.store.add_health(name, value, **labels)

    def health_value(self, name: str, **labels: str) -> float:
        """Sum of a health counter over the series whose labels include ``labels``."""
        self._sync()
        return self.store.health_value(name, **labels)

    def ece(self) -> dict[str, float]:
        """ECE per pipeline label over each pipeline's recent window of runs."""
        return self.store.ece()

    def render(self, openmetrics: bool = False) -> str:
        """The text exposition: every catalogue metric and the collector's health."""
        self._sync()
        return exposition.render(self.store, COLLECTOR_HEALTH, openmetrics)

    def _sync(self) -> None:
        labeler = self.store.labeler
        truncated = labeler.truncated
        if truncated:
            self.health[(_LABELS_TRUNCATED, ())] = float(truncated)
        clamped = labeler.durations_clamped
        if clamped:
            self.health[(_DURATIONS_CLAMPED, ())] = float(clamped)


def otlp_request(
    metrics: MetricsStore, resource: Sequence[tuple[str, str]]
) -> ExportMetricsServiceRequest:
    """The collector's metrics as one OTLP export, ``service.instance.id`` on the resource."""
    metrics._sync()
    return exposition.otlp_request(
        metrics.store, resource, COLLECTOR_HEALTH, scope_name="llmspans.collector"
    )
