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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
from llmspans._logging import logger
from llmspans._runs import check_source
from llmspans._state import STATE
from llmspans._tracing import get_tracer_provider, use_tracer_provider
from llmspans.cost import PriceTable, set_price_table

if TYPE_CHECKING:
    from llmspans.core.model import Thresholds
    from llmspans.embedded import EmbeddedProcessor
    from llmspans.evaluation._runner import Evaluator

PROTOCOL_HTTP: Final = "http/protobuf"
PROTOCOL_GRPC: Final = "grpc"
_PROTOCOLS: Final = (PROTOCOL_HTTP, PROTOCOL_GRPC)
_TRACES_PATH: Final = "/v1/traces"
_METRICS_PATH: Final = "/v1/metrics"


@dataclass(frozen=True, slots=True)
class _Previous:
    """The library settings as they were before :func:`configure` changed them."""

    capture: bool | None
    max_length: int | None
    redactor: _content.Redactor | None
    price_table: PriceTable | None
    tracer_provider: trace.TracerProvider | None
    instrumented_threads: bool
    """Whether ``configure()`` enabled the thread propagation (then shutdown disables it)."""
    run_source: str | None
    sample_rate: float
    sample_rates: dict[str, float]

    @classmethod
    def now(cls, *, instrumented_threads: bool = False) -> _Previous:
        return cls(
            STATE.capture,
            STATE.max_length,
            STATE.redactor,
            STATE.price_table,
            STATE.tracer_provider,
            instrumented_threads,
            STATE.run_source,
            STATE.sample_rate,
            STATE.sample_rates,
        )

    def restore(self, provider: TracerProvider | None) -> None:
        """Undo what ``configure()`` changed; ``provider`` is the one it made the library use."""
        STATE.capture = self.capture
        STATE.max_length = self.max_length
        STATE.redactor = self.redactor
        STATE.price_table = self.price_table
        STATE.run_source = self.run_source
        STATE.sample_rate = self.sample_rate
        STATE.sample_rates = self.sample_rates
        STATE.runs_changed()
        if provider is not None and get_tracer_provider() is provider:
            use_tracer_provider(self.tracer_provider)
        if self.instrumented_threads:
            _propagation.uninstrument_threads()


class Configuration:
    """What :func:`configure` set up; ``shutdown()`` flushes and stops all of it, and
    puts the library's settings back as they were before ``configure()``."""

    def __init__(
        self,
        tracer_provider: TracerProvider | None,
        *,
        owns_tracer_provider: bool,
        embedded_processor: EmbeddedProcessor | None = None,
        protocol: str | None = None,
        previous: _Previous | None = None,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.embedded_processor = embedded_processor
        self.protocol = protocol
        self._owns_tracer_provider = owns_tracer_provider
        self._previous = previous
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
        """Flush and stop the providers and the metrics endpoint, and undo the library
        settings ``configure()`` made: the provider the library traces through, the
        thread propagation, content capture and the price table (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._previous is not None:
            self._previous.restore(self.tracer_provider)
        if self.tracer_provider is not None:
            if self._owns_tracer_provider:
                self.tracer_provider.shutdown()
            else:
                self.tracer_provider.force_flush()
                if self.embedded_processor is not None:
                    self.embedded_processor.shutdown()


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


def _sdk_disabled() -> bool:
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


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
    source: str | None = None,
    evaluation_sample_rate: float | None = None,
    evaluation_sample_rates: Mapping[str, float] | None = None,
    evaluators: Sequence[str | Evaluator] | None = None,
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
    - ``propagate_context``: carry the context into ``ThreadPoolExecutor`` work and
      new threads (``opentelemetry-instrumentation-threading``, undone by
      ``shutdown()``; left as it is when the application enabled it already).
    - ``set_global``: install the provider as the global one (when none is yet).
    - ``source``: ``llmspans.run.source`` of the runs this process starts
      (``production``, ``offline`` or ``shadow``; else ``LLMSPANS_RUN_SOURCE``).
    - ``evaluation_sample_rate``: the share of runs sampled for evaluation, decided
      from the trace id (else ``LLMSPANS_EVALUATION_SAMPLE_RATE``, else 0);
      ``evaluation_sample_rates`` overrides it per segment. A sampled run records
      the content a judge needs even with content capture off (docs/evaluation.md).
    - ``evaluators`` (with ``embedded=True``): judge the sampled runs in this process
      (``package.module:function`` names or the functions); each judgment becomes
      metrics and an ``evaluate {pipeline}`` span exported with the app's spans.

    ``OTEL_SDK_DISABLED=true`` turns all of it off. Raises ``ValueError`` for an
    unsupported protocol: a mistake in set-up is reported at start-up, not hidden.
    Returns a :class:`Configuration`; call its ``shutdown()`` at exit: it flushes
    what is buffered, stops the metrics endpoint and undoes the settings above.
    (The SDK providers also shut down at interpreter exit on their own; the
    metrics endpoint and the settings do not.)
    """
    chosen_protocol = _resolve_protocol(protocol)
    if evaluators and not embedded:
        raise ValueError("evaluators= judges runs in this process: it needs embedded=True")
    previous = _apply_settings(
        capture_content=capture_content,
        content_max_length=content_max_length,
        redact=redact,
        price_table=price_table,
        propagate_context=propagate_context,
        source=source,
        sample_rate=evaluation_sample_rate,
        sample_rates=evaluation_sample_rates,
    )
    if _sdk_disabled():
        logger.info("OTEL_SDK_DISABLED is true: llmspans does not trace")
        return Configuration(None, owns_tracer_provider=False, previous=previous)

    owns = tracer_provider is None
    provider, exporters = _tracer_provider(
        tracer_provider,
        service_name=service_name,
        resource_attributes=resource_attributes,
        span_exporter=span_exporter,
        protocol=chosen_protocol,
        endpoint=endpoint,
        headers=headers,
    )
    processor: EmbeddedProcessor | None = None
    if embedded:
        processor = _embedded_processor(
            provider,
            protocol=chosen_protocol,
            endpoint=endpoint,
            headers=headers,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
            thresholds=thresholds,
            max_pipelines=max_pipelines,
            evaluators=evaluators,
        )
    # After the embedded mode's processor: processors shut down in the order they
    # were added, so the judgments it emits while draining are still exported.
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    if set_global and owns:
        _install_global(provider)
    use_tracer_provider(provider)
    return Configuration(
        provider,
        owns_tracer_provider=owns,
        embedded_processor=processor,
        protocol=chosen_protocol,
        previous=previous,
    )


def _apply_settings(
    *,
    capture_content: bool | None,
    content_max_length: int | None,
    redact: _content.Redactor | None,
    price_table: PriceTable | str | Path | None,
    propagate_context: bool,
    source: str | None = None,
    sample_rate: float | None = None,
    sample_rates: Mapping[str, float] | None = None,
) -> _Previous:
    """Content capture, price table, thread propagation, run source and evaluation
    sampling; returns what they were."""
    table = (
        price_table
        if price_table is None or isinstance(price_table, PriceTable)
        else PriceTable.load(price_table)
    )
    if content_max_length is not None and content_max_length < 0:
        raise ValueError(f"content_max_length must be >= 0, got {content_max_length}")
    if source is not None:
        check_source(source)
    rate = sample_rate
    if rate is None:
        text = os.environ.get("LLMSPANS_EVALUATION_SAMPLE_RATE", "").strip()
        try:
            rate = float(text) if text else None
        except ValueError:
            raise ValueError(
                f"LLMSPANS_EVALUATION_SAMPLE_RATE must be a number in [0, 1], got {text!r}"
            ) from None
    rates = dict(sample_rates or {})
    for value in (rate, *rates.values()):
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f"an evaluation sample rate is a number in [0, 1], got {value}")
    instrumented_threads = propagate_context and _propagation.instrument_threads()
    previous = _Previous.now(instrumented_threads=instrumented_threads)
    if capture_content is not None:
        _content.set_capture(capture_content)
    if content_max_length is not None:
        _content.set_max_length(content_max_length)
    if redact is not None:
        _content.set_redactor(redact)
    if table is not None:
        set_price_table(table)
    if source is not None:
        STATE.run_source = source
    if rate is not None:
        STATE.sample_rate = rate
    if sample_rates is not None:
        STATE.sample_rates = rates
    STATE.runs_changed()
    return previous


def _tracer_provider(
    given: TracerProvider | None,
    *,
    service_name: str | None,
    resource_attributes: Mapping[str, AttributeValue] | None,
    span_exporter: SpanExporter | None,
    protocol: str,
    endpoint: str | None,
    headers: Mapping[str, str] | None,
) -> tuple[TracerProvider, list[SpanExporter]]:
    """The given provider, or a new one; and the exporters to add to it (the caller
    adds a batch processor for each, after the embedded mode's processor).

    A provider of the application's gets an exporter only when asked for one
    (``span_exporter`` or ``endpoint``); a new one gets ``OTEL_TRACES_EXPORTER``'s.
    """
    exporters: list[SpanExporter]
    if given is None:
        attributes: dict[str, Any] = dict(resource_attributes or {})
        if service_name is not None:
            attributes[SERVICE_NAME] = service_name
        provider = TracerProvider(resource=Resource.create(attributes))
        exporters = (
            [span_exporter]
            if span_exporter is not None
            else _span_exporters(protocol, endpoint, headers)
        )
    else:
        provider = given
        exporters = []
        if span_exporter is not None:
            exporters.append(span_exporter)
        elif endpoint is not None:
            exporters.append(_otlp_span_exporter(protocol, endpoint, headers))
    return provider, exporters


def _embedded_processor(
    provider: TracerProvider,
    *,
    protocol: str,
    endpoint: str | None,
    headers: Mapping[str, str] | None,
    metrics_port: int | None,
    metrics_host: str,
    thresholds: Thresholds | None,
    max_pipelines: int,
    evaluators: Sequence[str | Evaluator] | None = None,
) -> EmbeddedProcessor:
    """The embedded mode's processor on ``provider``, its metrics served on
    ``metrics_port`` or else pushed as OTLP to the metrics endpoint (unless
    ``OTEL_METRICS_EXPORTER=none``)."""
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
    processor = EmbeddedProcessor(
        thresholds=thresholds,
        max_pipelines=max_pipelines,
        metrics_host=metrics_host,
        metrics_port=metrics_port,
        metrics_endpoint=metrics_endpoint,
        metrics_protocol=protocol,
        metrics_headers=headers,
        resource=[(str(key), str(value)) for key, value in provider.resource.attributes.items()],
        tracer_provider=provider,
        evaluators=list(evaluators) if evaluators else (),
    )
    provider.add_span_processor(processor)
    return processor


def _install_global(provider: TracerProvider) -> None:
    """Install the provider configure() built as the global one, where none is yet."""
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    else:
        logger.warning(
            "a global TracerProvider is already installed; llmspans traces through its "
            "own provider and leaves the global one as it is"
        )
