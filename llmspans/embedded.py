"""Embedded mode: the collector's engine, inside the app's process.

For a one-process app or a notebook with no collector: :class:`EmbeddedProcessor`
is a ``SpanProcessor`` that hands ended spans to the same engine the collector runs
(:class:`llmspans.core.engine.Engine`: assembly, attribution, aggregation into the
shared :class:`~llmspans.core.store.MetricStore`). Its metrics are the collector's,
family for family and label for label: served as Prometheus text on
``metrics_host:metrics_port`` (``0`` picks a free port), pushed as OTLP to
``metrics_endpoint``, or read in process from :attr:`EmbeddedProcessor.store`.

``llmspans.configure(embedded=True, metrics_port=0)`` installs it; it can also be
added by hand::

    provider.add_span_processor(EmbeddedProcessor(metrics_port=9464))

When a trace is final:

* when its **local root span** ends (the pipeline span, or whatever span encloses
  it in this process); children end before their parents, so the trace is whole;
* a trace whose local root never ends (a hung run) is finalised ``trace_timeout_s``
  after its first span, by a background sweeper thread; its pipeline span never
  ended, so its stage spans count in the stage metrics only;
* when more than ``max_inflight_traces`` traces or ``max_inflight_spans`` spans are
  waiting, the oldest traces are finalised early: memory stays bounded;
* a span that ends after its parent's trace was final (a background task outliving
  its request) is late: it never changes a run's numbers twice. A new local root in
  the same trace (a second request of one distributed trace reaching this process)
  starts a new group as usual.

The verdict cannot be written onto the root span (an ended span is read-only);
exporters see the spans as the app made them. The collector is the place that
enriches traces.

Errors of this processor never reach the app: they are logged once per kind on the
``llmspans`` logger and the span is dropped from the metrics.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from llmspans._logging import log_internal_error
from llmspans._metrics_endpoint import MetricsPusher, MetricsServer
from llmspans._tracing import get_tracer_provider
from llmspans._version import VERSION
from llmspans.core import exposition
from llmspans.core.convert import read_attributes
from llmspans.core.engine import Assembler, Engine, Trace
from llmspans.core.judging import (
    sampled_runs,
)
from llmspans.core.model import Run, Thresholds, Verdict
from llmspans.core.records import SpanRecord
from llmspans.core.store import MetricStore
from llmspans.evaluation._runner import (
    EvaluationRunner,
    Evaluator,
    load_evaluator,
    record_outcomes,
)
from llmspans.evaluation._spans import SCOPE_NAME, EvaluationSpan, evaluation_span

__all__ = ["EmbeddedProcessor", "record_from_readable_span"]


def record_from_readable_span(span: ReadableSpan) -> SpanRecord:
    """The record of an ended SDK span (what a ``SpanProcessor.on_end`` receives).

    Ids, times, status and links are read from the span; its attributes through the
    core's :func:`~llmspans.core.convert.read_attributes`, as every source's are.
    """
    context = span.context
    parent = span.parent
    # Positional arguments, links only when there are some: once per span ended.
    record = SpanRecord(
        context.trace_id.to_bytes(16, "big") if context is not None else b"",
        context.span_id.to_bytes(8, "big") if context is not None else b"",
        parent.span_id.to_bytes(8, "big") if parent is not None else b"",
        span.name,
        span.start_time or 0,
        span.end_time or 0,
        span.status.status_code is StatusCode.ERROR,
    )
    links = span.links
    if links:
        record.links = tuple(
            (link.context.trace_id.to_bytes(16, "big"), link.context.span_id.to_bytes(8, "big"))
            for link in links
        )
    attributes = span.attributes
    if attributes:
        read_attributes(record, attributes, span.events)
    return record


class EmbeddedProcessor(SpanProcessor):
    """Assembles runs in process, attributes them and aggregates their metrics.

    ``thresholds`` are the attribution thresholds. ``trace_timeout_s`` bounds how
    long an unfinished trace is kept. ``max_pipelines`` and ``pipelines`` bound the
    ``pipeline`` label (later names become ``other``; listed names always keep
    theirs). ``max_inflight_traces`` and ``max_inflight_spans`` bound memory, and
    ``max_trace_spans`` the spans of one trace kept for attribution. The ECE gauge
    covers the last ``ece_window`` runs with a confidence of each pipeline.

    Metrics out: ``metrics_port`` (with ``metrics_host``) serves ``/metrics``;
    ``metrics_endpoint`` (an OTLP/HTTP URL ending in ``/v1/metrics``, or
    ``host:port`` with ``metrics_protocol="grpc"``) receives an OTLP push every
    ``push_interval_s`` and at shutdown, with ``resource`` attributes.

    With ``evaluators``, sampled runs are judged in background threads (bounded by
    ``evaluation_concurrency``, ``evaluation_queue_size``, ``evaluation_timeout_s``
    and the budget); each judgment is recorded into the metrics and emitted as an
    ``evaluate {pipeline}`` span linked to the run's root, through
    ``tracer_provider`` (default: the provider the library traces through, else the
    global one), as the collector forwards it. Judgments that come back while the
    provider shuts down reach its exporters only when this processor was added
    before their span processors (processors shut down in the order they were added).
    """

    def __init__(
        self,
        thresholds: Thresholds | None = None,
        trace_timeout_s: float = 60.0,
        max_pipelines: int = 50,
        *,
        pipelines: Iterable[str] = (),
        max_inflight_traces: int = 10_000,
        max_inflight_spans: int = 200_000,
        max_trace_spans: int = 10_000,
        finalized_cache_size: int = 10_000,
        ece_window: int = 1_000,
        metrics_host: str = "127.0.0.1",
        metrics_port: int | None = None,
        metrics_endpoint: str | None = None,
        metrics_protocol: str = "http/protobuf",
        metrics_headers: Mapping[str, str] | None = None,
        push_interval_s: float = 60.0,
        resource: Sequence[tuple[str, str]] = (),
        evaluators: Sequence[str | Evaluator] = (),
        evaluation_concurrency: int = 2,
        evaluation_queue_size: int = 1000,
        evaluation_timeout_s: float = 60.0,
        evaluation_calls_per_minute: float | None = None,
        evaluation_usd_per_hour: float | None = None,
        tracer_provider: otel_trace.TracerProvider | None = None,
    ) -> None:
        self._tracer_provider = tracer_provider
        self._tracer: otel_trace.Tracer | None = None
        self.trace_timeout_s = trace_timeout_s
        self._max_inflight_traces = max(1, max_inflight_traces)
        self._max_inflight_spans = max(1, max_inflight_spans)
        self.store = MetricStore(max_pipelines, ece_window, pipelines)
        self.engine = Engine(
            thresholds,
            self.store,
            Assembler(
                trace_idle_s=math.inf,  # final when the local root ends, not when idle
                trace_timeout_s=trace_timeout_s,
                finalized_cache_size=finalized_cache_size,
                late_by_parent=True,
                max_trace_spans=max_trace_spans,
            ),
        )
        #: continuous evaluation (docs/evaluation.md): sampled runs are judged in the
        #: runner's threads, their judgments recorded on each sweep; None when off
        self.evaluation: EvaluationRunner[tuple[Run, Verdict]] | None = (
            EvaluationRunner(
                [_named(evaluator) for evaluator in evaluators],
                concurrency=evaluation_concurrency,
                queue_size=evaluation_queue_size,
                timeout_s=evaluation_timeout_s,
                calls_per_minute=evaluation_calls_per_minute,
                usd_per_hour=evaluation_usd_per_hour,
            )
            if evaluators
            else None
        )
        # _lock guards the engine (its assembler and store), _sweeper and _closed.
        self._lock = threading.Lock()
        self._sweeper: threading.Thread | None = None
        self._closed = False
        self._stop = threading.Event()
        self._server = (
            MetricsServer(self.render, metrics_host, metrics_port)
            if metrics_port is not None
            else None
        )
        self._pusher = (
            MetricsPusher(
                lambda: self._locked_otlp(resource),
                metrics_endpoint,
                metrics_protocol,
                metrics_headers,
                push_interval_s,
            )
            if metrics_endpoint
            else None
        )

    # --- metrics out ---------------------------------------------------------------

    @property
    def metrics_port(self) -> int | None:
        """The port ``/metrics`` is served on, when ``metrics_port`` was given."""
        return self._server.port if self._server is not None else None

    def render(self, openmetrics: bool = False) -> str:
        """The metrics as Prometheus text (as ``/metrics`` serves them)."""
        with self._lock:
            return exposition.render(self.store, openmetrics=openmetrics)

    def _locked_otlp(self, resource: Sequence[tuple[str, str]]) -> bytes:
        with self._lock:
            return exposition.otlp_request(self.store, resource).SerializeToString()

    # --- SpanProcessor ---------------------------------------------------------------

    def on_end(self, span: ReadableSpan) -> None:
        try:
            scope = span.instrumentation_scope
            if scope is not None and scope.name == SCOPE_NAME:
                return  # an ``evaluate`` span this processor emitted: not a run
            self._on_end(span)
        except Exception as error:
            log_internal_error("embedded.on_end", error)

    def shutdown(self) -> None:
        """Finalise every waiting trace, push the metrics a last time, stop the threads."""
        with self._lock:
            self._closed = True
            sweeper, self._sweeper = self._sweeper, None
            waiting = self.engine.assembler.drain()
        self._evaluate(trace for trace, _ in waiting)
        if self.evaluation is not None:
            self.evaluation.close(timeout_s=5.0)
            self.collect_evaluations()
        self._stop.set()
        if sweeper is not None and sweeper is not threading.current_thread():
            sweeper.join(timeout=5)
        if self._pusher is not None:
            self._pusher.shutdown()
        if self._server is not None:
            self._server.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Finalise traces past their timeout and push the metrics (when configured)."""
        self.sweep()
        if self._pusher is not None:
            return self._pusher.push(timeout_s=timeout_millis / 1000)
        return True

    # --- internals ----------------------------------------------------------------------

    def _on_end(self, span: ReadableSpan) -> None:
        record = record_from_readable_span(span)
        parent = span.parent
        local_root = parent is None or parent.is_remote
        assembler = self.engine.assembler
        now = time.monotonic()
        with self._lock:
            if self._closed:
                done = [_alone(record)]
            else:
                trace = assembler.add(record, now, 0, local_root)
                if trace is None:
                    # Late: its trace is final. Evaluated alone, it counts once in the
                    # stage metrics and never changes the run's numbers.
                    done = [_alone(record)]
                else:
                    done = [found for found, _ in assembler.due(now)] if local_root else []
                    # evict() only over a bound: on every span it was a call and a list
                    if (
                        assembler.inflight_spans > self._max_inflight_spans
                        or assembler.inflight_traces > self._max_inflight_traces
                    ):
                        done.extend(
                            found
                            for found, _ in assembler.evict(
                                self._max_inflight_traces, self._max_inflight_spans
                            )
                        )
                if self._sweeper is None:
                    self._start_sweeper()
        if done:
            self._evaluate(done)

    def _evaluate(self, done: Iterable[Trace]) -> None:
        """Attribute finished traces, then record their metrics under ``_lock``."""
        for trace in done:
            try:
                result = self.engine.attribute(trace)
                if result is not None:
                    with self._lock:
                        self.store.record(result, trace.trace_id)
                    if self.evaluation is not None:
                        for run, verdict, evaluated in sampled_runs(result):
                            self.evaluation.submit((run, verdict), evaluated)
            except Exception as error:
                log_internal_error("embedded.evaluate", error)

    def collect_evaluations(self) -> int:
        """Record the judgments that came back so far and emit their ``evaluate``
        spans; how many there were."""
        if self.evaluation is None:
            return 0
        outcomes, dropped = self.evaluation.take()
        store = self.store
        thresholds = self.engine.thresholds
        with self._lock:
            verdicts = record_outcomes(outcomes, dropped, store, thresholds, store.labeler)
        for outcome, judged in zip(outcomes, verdicts, strict=True):
            try:
                self._emit(evaluation_span(outcome, judged))
            except Exception as error:
                log_internal_error("embedded.evaluation_span", error)
        return len(outcomes)

    def _emit(self, built: EvaluationSpan) -> None:
        """Start and end ``built`` through the app's tracer provider, in a trace of
        its own linked to the judged run's root."""
        tracer = self._tracer
        if tracer is None:
            provider = (
                self._tracer_provider or get_tracer_provider() or otel_trace.get_tracer_provider()
            )
            tracer = self._tracer = provider.get_tracer(SCOPE_NAME, VERSION)
        trace_id, span_id = built.link
        linked = SpanContext(
            int.from_bytes(trace_id, "big"),
            int.from_bytes(span_id, "big"),
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
        span = tracer.start_span(
            built.name,
            context=otel_context.Context(),  # a trace of its own, not the caller's
            kind=SpanKind.INTERNAL,
            attributes=built.attributes,
            links=[Link(linked)],
            start_time=built.start_ns,
        )
        if built.error is not None:
            span.set_status(Status(StatusCode.ERROR, built.error))
        span.end(end_time=built.end_ns)

    def sweep(self) -> None:
        """Finalise the traces that have waited ``trace_timeout_s``."""
        try:
            self.collect_evaluations()
            with self._lock:
                due = self.engine.assembler.due(time.monotonic())
            self._evaluate(trace for trace, _ in due)
        except Exception as error:
            log_internal_error("embedded.sweep", error)

    def _start_sweeper(self) -> None:
        interval = min(max(self.trace_timeout_s / 4, 0.05), 5.0)

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


def _named(evaluator: str | Evaluator) -> tuple[str, Evaluator]:
    """An evaluator with its ``evaluator`` label: the spec it was loaded from, or its name."""
    if isinstance(evaluator, str):
        return evaluator, load_evaluator(evaluator)
    name = getattr(evaluator, "__name__", None) or type(evaluator).__name__
    return f"{getattr(evaluator, '__module__', '')}:{name}".lstrip(":"), evaluator


def _alone(record: SpanRecord) -> Trace:
    """A trace of one record, evaluated on its own (late spans, spans after shutdown)."""
    trace = Trace(record.trace_id, 0.0, 0.0, [record])
    trace.staged = record.stage is not None
    return trace
