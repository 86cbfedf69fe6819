"""``llmspans.configure()``: the one place that sets up the OpenTelemetry SDK.

Nothing else in llmspans installs a provider. ``configure()`` is called by the
application, on purpose, once at start-up. It builds a ``TracerProvider`` with a
``BatchSpanProcessor`` and an OTLP exporter, honouring the standard variables
(``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL``, ``OTEL_EXPORTER_OTLP_HEADERS``,
``OTEL_TRACES_EXPORTER``, ``OTEL_BSP_*``, ``OTEL_SDK_DISABLED``), installs it as the
global provider (unless one is installed already, or ``set_global=False``), and
makes llmspans trace through it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.util.types import AttributeValue

from llmspans import _content, _propagation
from llmspans._safety import logger
from llmspans._tracing import get_tracer_provider, use_tracer_provider
from llmspans.cost import PriceTable, set_price_table

if TYPE_CHECKING:
    from llmspans.core.model import Thresholds
    from llmspans.embedded import EmbeddedProcessor

PROTOCOL_HTTP: Final = "http/protobuf"
PROTOCOL_GRPC: Final = "grpc"
_PROTOCOLS: Final = (PROTOCOL_HTTP, PROTOCOL_GRPC)
_TRACES_PATH: Final = "/v1/traces"
_METRICS_PATH: Final = "/v1/metrics"


class Configuration:
    """What :func:`configure` set up; ``shutdown()`` flushes and stops all of it."""

    def __init__(
        self,
        tracer_provider: TracerProvider | None,
        *,
        owns_tracer_provider: bool,
        embedded_processor: EmbeddedProcessor | None = None,
        protocol: str | None = None,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.embedded_processor = embedded_processor
        self.protocol = protocol
        self._owns_tracer_provider = owns_tracer_provider
        # Guards _closed: shutdown() may be called from several threads and at exit.
        self._lock = threading.Lock()
        self._closed = False

    @property
    def metrics_port(self) -> int | None:
        """The port of the embedded mode's ``/metrics`` endpoint, when one was started."""
        if self.embedded_processor is None:
            return None
        return self.embedded_processor.metrics_port

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export every finished span (and, with a metrics push, the metrics) now;
        ``True`` when all of it went out."""
        ok = True
        if self.tracer_provider is not None:
            ok = self.tracer_provider.force_flush(timeout_millis) and ok
        return ok

    def shutdown(self) -> None:
        """Flush and stop the providers and the metrics endpoint (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self.tracer_provider is not None:
            if self._owns_tracer_provider:
                self.tracer_provider.shutdown()
            else:
                self.tracer_provider.force_flush()
                if self.embedded_processor is not None:
                    self.embedded_processor.shutdown()
            if get_tracer_provider() is self.tracer_provider:
                use_tracer_provider(None)


def _resolve_protocol(protocol: str | None) -> str:
    if protocol is not None:
        chosen, source = protocol, "protocol="
    else:
        env = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL"
        )
        chosen, source = (env or PROTOCOL_HTTP), "OTEL_EXPORTER_OTLP_PROTOCOL"
    chosen = chosen.strip().lower()
    if chosen == "http":
        chosen = PROTOCOL_HTTP
    if chosen not in _PROTOCOLS:
        raise ValueError(
            f"unsupported OTLP protocol {chosen!r} (from {source}); "
            f"use {PROTOCOL_HTTP!r} or {PROTOCOL_GRPC!r}"
        )
    return chosen


def _http_url(endpoint: str, path: str) -> str:
    """A base endpoint (as ``OTEL_EXPORTER_OTLP_ENDPOINT``) with the signal's path."""
    base = endpoint.rstrip("/")
    for known in (_TRACES_PATH, _METRICS_PATH):
        if base.endswith(known):
            base = base[: -len(known)]
    return base + path


def _otlp_span_exporter(
    protocol: str, endpoint: str | None, headers: Mapping[str, str] | None
) -> SpanExporter:
    header_dict = dict(headers) if headers else None
    if protocol == PROTOCOL_GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter(endpoint=endpoint, headers=header_dict)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpSpanExporter,
    )

    url = _http_url(endpoint, _TRACES_PATH) if endpoint else None
    return HttpSpanExporter(endpoint=url, headers=header_dict)


def _span_exporters(
    protocol: str, endpoint: str | None, headers: Mapping[str, str] | None
) -> list[SpanExporter]:
    names = [
        name.strip().lower()
        for name in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")
        if name.strip()
    ]
    exporters: list[SpanExporter] = []
    for name in names:
        if name == "otlp":
            exporters.append(_otlp_span_exporter(protocol, endpoint, headers))
        elif name == "console":
            exporters.append(ConsoleSpanExporter())
        elif name != "none":
            logger.warning("OTEL_TRACES_EXPORTER=%s is not supported by llmspans; ignored", name)
    return exporters


def _embedded_processor(
    resource: Resource,
    *,
    protocol: str,
    endpoint: str | None,
    headers: Mapping[str, str] | None,
    metrics_port: int | None,
    metrics_host: str,
    thresholds: Thresholds | None,
    max_pipelines: int,
) -> EmbeddedProcessor:
    """The embedded mode's processor, its metrics served on ``metrics_port`` or else
    pushed as OTLP to the metrics endpoint (unless ``OTEL_METRICS_EXPORTER=none``)."""
    from llmspans.embedded import EmbeddedProcessor

    metrics_endpoint: str | None = None
    if metrics_port is None and (
        os.environ.get("OTEL_METRICS_EXPORTER", "otlp").strip().lower() != "none"
    ):
        env = os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") or None
        base = endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None
        if protocol == PROTOCOL_GRPC:
            metrics_endpoint = env or base or "localhost:4317"
        else:
            metrics_endpoint = env or _http_url(base or "http://localhost:4318", _METRICS_PATH)
    return EmbeddedProcessor(
        thresholds=thresholds,
        max_pipelines=max_pipelines,
        metrics_host=metrics_host,
        metrics_port=metrics_port,
        metrics_endpoint=metrics_endpoint,
        metrics_protocol=protocol,
        metrics_headers=headers,
        resource=[(str(key), str(value)) for key, value in resource.attributes.items()],
    )


def _sdk_disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def _global_tracer_provider_is_set() -> bool:
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def configure(
    service_name: str | None = None,
    *,
    endpoint: str | None = None,
    protocol: str | None = None,
    headers: Mapping[str, str] | None = None,
    embedded: bool = False,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    tracer_provider: TracerProvider | None = None,
    resource_attributes: Mapping[str, AttributeValue] | None = None,
    span_exporter: SpanExporter | None = None,
    thresholds: Thresholds | None = None,
    max_pipelines: int = 50,
    capture_content: bool | None = None,
    redact: _content.Redactor | None = None,
    content_max_length: int | None = None,
    price_table: PriceTable | str | Path | None = None,
    propagate_context: bool = True,
    set_global: bool = True,
) -> Configuration:
    """Set up tracing (and, with ``embedded=True``, in-process metrics) for llmspans.

    - ``service_name``: the resource's ``service.name`` (else ``OTEL_SERVICE_NAME``).
    - ``endpoint``: OTLP endpoint (else ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``, else
      the OTLP default); for HTTP a base URL, ``/v1/traces`` is appended.
    - ``protocol``: ``"http/protobuf"`` (default) or ``"grpc"`` (else
      ``OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL``). ``headers``: extra OTLP headers.
    - ``span_exporter``: export there instead of OTLP (any SDK ``SpanExporter``).
    - ``tracer_provider``: use this provider (yours, set up as you like) instead of
      building one; it is not made global, and gets no exporter unless ``endpoint``
      or ``span_exporter`` is given.
    - ``embedded=True``: run the attribution and the metrics of docs/metrics.md in
      this process (:class:`llmspans.embedded.EmbeddedProcessor`), with ``/metrics``
      on ``metrics_host:metrics_port`` when ``metrics_port`` is given (``0`` picks a
      free port, see ``Configuration.metrics_port``), else an OTLP metrics push to
      ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`` or the OTLP endpoint (none with
      ``OTEL_METRICS_EXPORTER=none``). ``thresholds`` and ``max_pipelines`` tune it.
    - ``capture_content``, ``redact``, ``content_max_length``: content capture (see
      :mod:`llmspans._content`); ``None`` leaves the environment's choice.
    - ``price_table``: a :class:`~llmspans.cost.PriceTable` or a path to one.
    - ``propagate_context``: carry the context into ``ThreadPoolExecutor`` work.
    - ``set_global``: install the provider as the global one (when none is yet).

    ``OTEL_SDK_DISABLED=true`` turns all of it off. Raises ``ValueError`` for an
    unsupported protocol: a mistake in set-up is reported at start-up, not hidden.
    Returns a :class:`Configuration`; call its ``shutdown()`` at exit (it also runs
    at interpreter exit) to flush what is buffered.
    """
    chosen_protocol = _resolve_protocol(protocol)
    if capture_content is not None:
        _content.set_capture(capture_content)
    if content_max_length is not None:
        _content.set_max_length(content_max_length)
    if redact is not None:
        _content.set_redactor(redact)
    if price_table is not None:
        set_price_table(
            price_table if isinstance(price_table, PriceTable) else PriceTable.load(price_table)
        )
    if propagate_context:
        _propagation.instrument_thread_pools()
    if _sdk_disabled():
        logger.info("OTEL_SDK_DISABLED is true: llmspans does not trace")
        return Configuration(None, owns_tracer_provider=False)

    owns = tracer_provider is None
    if tracer_provider is None:
        attributes: dict[str, Any] = dict(resource_attributes or {})
        if service_name is not None:
            attributes[SERVICE_NAME] = service_name
        provider = TracerProvider(resource=Resource.create(attributes))
        exporters = (
            [span_exporter]
            if span_exporter is not None
            else _span_exporters(chosen_protocol, endpoint, headers)
        )
    else:
        provider = tracer_provider
        exporters = []
        if span_exporter is not None:
            exporters.append(span_exporter)
        elif endpoint is not None:
            exporters.append(_otlp_span_exporter(chosen_protocol, endpoint, headers))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))

    processor: EmbeddedProcessor | None = None
    if embedded:
        processor = _embedded_processor(
            provider.resource,
            protocol=chosen_protocol,
            endpoint=endpoint,
            headers=headers,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
            thresholds=thresholds,
            max_pipelines=max_pipelines,
        )
        provider.add_span_processor(processor)

    if set_global and owns:
        if _global_tracer_provider_is_set():
            logger.warning(
                "a global TracerProvider is already installed; llmspans traces through its "
                "own provider and leaves the global one as it is"
            )
        else:
            trace.set_tracer_provider(provider)
    use_tracer_provider(provider)
    return Configuration(
        provider,
        owns_tracer_provider=owns,
        embedded_processor=processor,
        protocol=chosen_protocol,
    )
