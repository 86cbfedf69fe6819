"""Send each trace whole to one of several exporters, chosen by its trace id.

This is what the OpenTelemetry Collector's ``loadbalancing`` exporter with
``routing_key: traceID`` does in front of collector replicas, done in the sender:
every span of a trace lands on the same replica, so each replica sees whole traces.
The choice is the trace id modulo the number of exporters (the gateway uses a
consistent-hash ring instead; any function of the trace id keeps traces whole).
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult


class TraceShardingExporter(SpanExporter):
    """Partition every batch by trace id over ``exporters``."""

    def __init__(self, exporters: Sequence[SpanExporter]) -> None:
        if not exporters:
            raise ValueError("TraceShardingExporter needs at least one exporter")
        self._exporters = list(exporters)

    def shard_of(self, trace_id: int) -> int:
        """Index of the exporter that gets every span of ``trace_id``."""
        return trace_id % len(self._exporters)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        parts: list[list[ReadableSpan]] = [[] for _ in self._exporters]
        for span in spans:
            context = span.context
            trace_id = context.trace_id if context is not None else 0
            parts[self.shard_of(trace_id)].append(span)
        result = SpanExportResult.SUCCESS
        for exporter, part in zip(self._exporters, parts, strict=True):
            if part and exporter.export(part) is not SpanExportResult.SUCCESS:
                result = SpanExportResult.FAILURE
        return result

    def shutdown(self) -> None:
        for exporter in self._exporters:
            exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(exporter.force_flush(timeout_millis) for exporter in self._exporters)
