"""The collector-side processor: decoded requests in; verdicts, metrics and spans out.

Both receivers hand it a parsed ``ExportTraceServiceRequest``. Per span it keeps
only the core's :class:`SpanRecord` for assembly. Every span except pipeline spans
goes on to the exporters right away, in the batch it came in (the original bytes
when nothing was taken out, else the request re-serialised once). Pipeline spans
are held back, as their serialised bytes plus the serialised resource and scope,
until their trace is final; then the core evaluates the trace
(:func:`~llmspans.core.evaluate.evaluate_trace`), its observations go into the
metrics, and each pipeline span leaves enriched with ``llmspans.outcome``,
``llmspans.failure.stage`` and ``llmspans.failure.reason``.

Admission control happens before anything is taken: a request that would push the
in-flight spans past ``max_inflight_spans`` or an exporter queue past its size is
refused whole with backpressure (:class:`Backpressure`), so the sender retries and
nothing is dropped silently.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from llmspans import _attributes as A
from llmspans.collector._protobuf import SLIM_EXPORT_REQUEST, SlimDecoder, key_prefix
from llmspans.collector.config import CollectorSettings
from llmspans.collector.evaluation import (
    CollectorEvaluation,
    request_without_content,
    without_content,
)
from llmspans.collector.forwarding import Forwarder
from llmspans.collector.metrics import MetricsStore
from llmspans.core.engine import Assembler, Engine, Finalised, Trace
from llmspans.core.model import Thresholds, TraceResult, Verdict
from llmspans.core.records import SpanRecord

__all__ = ["Accepted", "Backpressure", "Processor"]

_log = logging.getLogger("llmspans.collector")

_ZERO_TRACE_ID: Final = bytes(16)
_ZERO_SPAN_ID: Final = bytes(8)
_VERDICT_KEYS: Final = frozenset({A.OUTCOME, A.FAILURE_STAGE, A.FAILURE_REASON})
_MAX_ERROR_EXAMPLES: Final = 5
#: Traces finalised per sweep step: a burst of due traces is worked off in steps,
#: with the receivers served in between.
SWEEP_LIMIT: Final = 2000
#: Refusals that ask the sender to come back later (``/readyz`` turns 503 meanwhile).
_BACKPRESSURE_REASONS: Final = frozenset(
    {"inflight_limit", "inflight_bytes", "queue_full", "memory_limit"}
)


class Backpressure(Exception):
    """The request was refused whole and should be retried after ``retry_after`` seconds.

    ``status`` is the HTTP status (429 or 503); gRPC answers UNAVAILABLE.
    """

    def __init__(self, status: int, reason: str, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


class TooLarge(Exception):
    """A request holding more spans than the collector could ever admit at once."""


@dataclass(slots=True)
class Accepted:
    """What an export request got: OTLP partial success when ``rejected`` or ``message``."""

    spans: int
    rejected: int = 0
    message: str = ""


@dataclass(slots=True)
class _Held:
    """A pipeline span waiting for its trace's verdict."""

    span_id: bytes
    span: bytes
    resource: bytes
    resource_schema: str
    scope: bytes
    scope_schema: str


@dataclass(slots=True)
class _Intake:
    """What taking one request's spans did, for the collector's own metrics."""

    late: int
    truncated: int
    invalid: int
    bad_attributes: int
    #: spans taken out of the request (invalid ids, pipeline spans held back)
    taken_out: int
    #: notes for the sender's partial success
    messages: list[str]


class Processor:
    """Admission, assembly, evaluation and forwarding; one instance per collector.

    Runs on the event loop thread only: no locks.
    """

    def __init__(
        self,
        settings: CollectorSettings,
        metrics: MetricsStore,
        forwarder: Forwarder,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.forwarder = forwarder
        self.clock = clock
        assembly = settings.assembly
        self.assembler = Assembler(
            assembly.trace_idle_s,
            assembly.trace_timeout_s,
            assembly.finalized_cache_size,
            max_trace_spans=assembly.max_trace_spans,
        )
        self.max_inflight_bytes = settings.limits.max_inflight_bytes
        self._refused_at = -math.inf
        self.thresholds: Thresholds = settings.attribution.thresholds()
        self.engine = Engine(self.thresholds, metrics.store, self.assembler)
        self.max_inflight_spans = assembly.max_inflight_spans
        self.retry_after = settings.limits.retry_after_s
        self._sweep_interval = assembly.sweep_interval_s
        self._last_sweep = clock()
        self.closing = False
        self._decoder = SlimDecoder(max_ids=settings.limits.max_ids_per_span)
        #: continuous evaluation of sampled runs (docs/evaluation.md); None when off
        self.evaluation = (
            CollectorEvaluation(settings.evaluation, metrics.store, self.thresholds, forwarder)
            if settings.evaluation.evaluators
            else None
        )
        #: Content a sampled run recorded only for its judge (its spans are marked
        #: llmspans.evaluation.sampled_content) is stripped before forwarding unless
        #: evaluation.forward_content, whether or not this collector judges.
        self._strip_content = not settings.evaluation.forward_content
        metrics.gauges["llmspans_collector_traces_inflight"] = lambda: [
            ((), float(self.assembler.inflight_traces))
        ]
        metrics.gauges["llmspans_collector_spans_inflight"] = lambda: [
            ((), float(self.assembler.inflight_spans))
        ]
        metrics.gauges["llmspans_collector_forward_queue_spans"] = lambda: [
            ((("exporter", e.name),), float(e.queued_spans + e.sending_spans))
            for e in forwarder.exporters
        ]

    @property
    def ids_truncated(self) -> int:
        """List elements the decoder left out of attribution (``max_ids_per_span``)."""
        return self._decoder.ids_truncated

    # --- admission -------------------------------------------------------------------

    @property
    def overloaded(self) -> bool:
        """Whether new data would be refused right now (``/readyz`` says so)."""
        return (
            self.closing
            or self.assembler.inflight_spans >= self.max_inflight_spans
            or not self.forwarder.room(1)
            # Refusing requests right now (a bound nearly reached: a small request
            # still fits, a full batch does not): not ready either.
            or self.clock() - self._refused_at < max(self.retry_after, 1.0)
        )

    def reject(self, reason: str, spans: int = 0) -> None:
        """Count a refused request (and its spans, when known)."""
        self.metrics.count("llmspans_collector_requests_rejected", reason=reason)
        if spans:
            self.metrics.count("llmspans_collector_spans_rejected", spans, reason=reason)
        if reason in _BACKPRESSURE_REASONS:
            self._refused_at = self.clock()

    def _admit(self, spans: int, size: int = 0) -> None:
        if self.closing:
            raise Backpressure(503, "shutting_down", "the collector is shutting down", 1.0)
        if spans > self.max_inflight_spans:
            raise TooLarge(
                f"the request holds {spans} spans, more than max_inflight_spans "
                f"({self.max_inflight_spans})"
            )
        for exporter in self.forwarder.exporters:
            if spans > exporter.queue_size or size > exporter.queue_bytes:
                raise TooLarge(
                    f"the request holds {spans} spans ({size} bytes), more than the queue "
                    f"of exporter {exporter.name} ({exporter.queue_size} spans, "
                    f"{exporter.queue_bytes} bytes)"
                )
        if self.assembler.inflight_spans + spans > self.max_inflight_spans:
            raise Backpressure(
                429,
                "inflight_limit",
                f"{self.assembler.inflight_spans} spans in flight; the bound is "
                f"{self.max_inflight_spans}",
                self.retry_after,
            )
        # The assembler's own estimate of what it holds, once it keeps one; the
        # request's size stands in for what its spans will add.
        inflight_bytes: int = self.assembler.inflight_bytes
        if inflight_bytes and inflight_bytes + size > self.max_inflight_bytes:
            raise Backpressure(
                429,
                "inflight_bytes",
                f"{inflight_bytes} bytes held in flight; the bound is {self.max_inflight_bytes}",
                self.retry_after,
            )
        if not self.forwarder.room(spans, size):
            raise Backpressure(
                503, "queue_full", "an exporter queue is full; retry later", self.retry_after
            )

    # --- the hot path ----------------------------------------------------------------

    def accept(
        self,
        request: ExportTraceServiceRequest,
        raw: bytes | None,
        *,
        rejected: int = 0,
        errors: Iterable[str] = (),
    ) -> Accepted:
        """Take one decoded export request.

        ``raw`` is the request's protobuf bytes when the caller has them (forwarded
        as they are when no span is taken out). ``rejected``/``errors`` report spans
        the decoder already dropped (OTLP JSON with invalid ids). Raises
        :class:`Backpressure` or :class:`TooLarge` without taking anything.

        The steps: read the spans with the slim schema, admit the request whole,
        convert each span and hand it to the engine's assembler (holding pipeline
        spans back), count what happened, forward the rest.
        """
        slim = _slim_request(request, raw)
        total = _span_count(slim)
        self._admit_request(total, rejected, len(raw) if raw is not None else request.ByteSize())
        # Each span's share of the request's bytes, plus what its id lists hold in
        # memory: the in-flight byte estimate (docs/collector.md, memory model).
        share = len(raw) // total if raw is not None and total else 0
        intake = self._assemble(slim, share, list(errors))
        self._count_intake(intake, rejected)
        forward = total - intake.taken_out
        if forward:
            self._forward(slim, raw if not intake.taken_out else None, forward)
        return Accepted(total + rejected, intake.invalid + rejected, "; ".join(intake.messages))

    def _admit_request(self, spans: int, rejected: int, size: int) -> None:
        """Count the request's spans as received and admit it whole (:meth:`_admit`);
        a refused request is counted with its reason and the refusal re-raised."""
        self.metrics.count("llmspans_collector_spans_received", spans + rejected)
        try:
            self._admit(spans, size)
        except Backpressure as refusal:
            self.reject(refusal.reason, spans + rejected)
            raise
        except TooLarge:
            self.reject("too_large", spans + rejected)
            raise

    def _assemble(self, slim: Any, share: int, messages: list[str]) -> _Intake:
        """Convert every span of an admitted request and hand it to the assembler.

        Spans with invalid ids are taken out of the request (and described in
        ``messages``, a few of them); pipeline spans are taken out and held on their
        trace until its verdict. One pass over the spans: the collector's hot loop.

        The clock is read per span: a request whose conversion takes longer than
        trace_idle_s (huge id lists) must not leave its trace looking idle to the
        sweep that runs between the pieces of a large body.
        """
        clock = self.clock
        add = self.assembler.add
        truncated_before = self.assembler.truncated_spans
        decoder = self._decoder
        convert = decoder.record
        late = 0
        bad_attributes = 0
        invalid = 0
        taken_out = 0
        for resource_spans in slim.resource_spans:
            resource_bytes: bytes | None = None
            for scope_spans in resource_spans.scope_spans:
                spans = scope_spans.spans
                scope_bytes: bytes | None = None
                remove: list[int] = []
                for index, span in enumerate(spans):
                    record = convert(span)
                    # The id checks are written out here, not called: this loop runs
                    # once per span, and a Python call costs more than the checks.
                    trace_id = record.trace_id
                    span_id = record.span_id
                    parent_id = record.parent_span_id
                    if (
                        len(trace_id) != 16
                        or trace_id == _ZERO_TRACE_ID
                        or len(span_id) != 8
                        or span_id == _ZERO_SPAN_ID
                        or (parent_id and len(parent_id) != 8)
                    ):
                        invalid += 1
                        remove.append(index)
                        if len(messages) < _MAX_ERROR_EXAMPLES:
                            messages.append(_invalid_ids(record))
                        continue
                    if record.bad_attributes:
                        bad_attributes += record.bad_attributes
                    size = share + _ID_BYTES * decoder.list_items
                    trace = add(record, clock(), size)
                    if trace is None:
                        late += 1
                        continue
                    # Names, stages, pipelines and document ids repeat across spans:
                    # the decoder interns them, one string object each instead of one
                    # per span (memory per in-flight span).
                    if record.stage == A.STAGE_PIPELINE:
                        # The resource and scope bytes are read once per group and
                        # shared by every pipeline span held from it.
                        if resource_bytes is None:
                            resource_bytes = resource_spans.resource
                        if scope_bytes is None:
                            scope_bytes = scope_spans.scope
                        _hold(
                            trace,
                            record,
                            span,
                            resource=resource_bytes,
                            resource_schema=resource_spans.schema_url,
                            scope=scope_bytes,
                            scope_schema=scope_spans.schema_url,
                        )
                        remove.append(index)
                if remove:
                    taken_out += len(remove)
                    for index in reversed(remove):
                        del spans[index]
        truncated = self.assembler.truncated_spans - truncated_before
        return _Intake(late, truncated, invalid, bad_attributes, taken_out, messages)

    def _count_intake(self, intake: _Intake, rejected: int) -> None:
        """The collector's own metrics of one request's spans; a note for the sender
        when known attributes had the wrong type."""
        metrics = self.metrics
        if intake.late:
            metrics.count("llmspans_collector_late_spans", intake.late)
        if intake.truncated:
            metrics.count("llmspans_collector_spans_truncated", intake.truncated)
        if intake.invalid:
            metrics.count("llmspans_collector_spans_rejected", intake.invalid, reason="invalid_id")
        if rejected:
            metrics.count("llmspans_collector_spans_rejected", rejected, reason="invalid_id")
        if intake.bad_attributes:
            metrics.count("llmspans_collector_bad_attributes", intake.bad_attributes)
            intake.messages.append(
                f"{intake.bad_attributes} known attribute value(s) had the wrong type and "
                "were ignored (docs/conventions.md section 3 lists the types)"
            )

    def _forward(self, slim: Any, raw: bytes | None, spans: int) -> None:
        """Hand the request's remaining ``spans`` to the exporters: ``raw`` as it came
        when given (nothing was taken out), else the slim request re-serialised."""
        payload = raw if raw is not None else slim.SerializeToString()
        if self._strip_content:
            payload = request_without_content(payload)
        self.forwarder.submit(payload, spans)

    # --- finalisation ----------------------------------------------------------------

    def sweep(self, limit: int | None = SWEEP_LIMIT) -> int:
        """Finalise the traces that are due now, at most ``limit`` of them (oldest
        first); returns how many were finalised. When it returns ``limit``, more
        may be due: the caller sweeps again after letting the receivers run."""
        now = self.clock()
        self._last_sweep = now
        done = self.assembler.due(now, limit)
        if done:
            self._finalise(done)
        return len(done)

    def sweep_if_overdue(self) -> None:
        """Sweep when the last sweep is older than ``sweep_interval_s``.

        Called after each request: under load the event loop is busy with requests
        and a timer-driven sweep would wait behind them, delaying the metrics.
        """
        if self.clock() - self._last_sweep >= self._sweep_interval:
            self.safe_sweep()

    def safe_sweep(self) -> int:
        """:meth:`sweep`, with a fault of ours counted and logged instead of raised."""
        self.collect_evaluations()
        try:
            return self.sweep()
        except Exception as error:
            # The request that happened to trigger the sweep was taken already: a
            # fault here is ours, counted and logged, never the sender's error.
            self.internal_error("sweep", error)
            return 0

    def drain(self) -> int:
        """Finalise every in-flight trace (shutdown)."""
        done = self.assembler.drain()
        if done:
            self._finalise(done)
        if self.evaluation is not None:
            self.evaluation.close(self.settings.shutdown.timeout_s / 2)
        return len(done)

    def _finalise(self, done: list[tuple[Trace, Finalised]]) -> None:
        metrics = self.metrics
        outgoing: dict[tuple[bytes, str, bytes, str], list[tuple[bytes, Verdict | None]]] = {}
        held_spans = 0
        counts: dict[Finalised, int] = {}
        # Traces come grouped by reason: count runs of one reason (an Enum's hash is
        # a Python-level call, too dear once per trace).
        last_why: Finalised | None = None
        run_length = 0
        for trace, why in done:
            if why is not last_why:
                if last_why is not None:
                    counts[last_why] = counts.get(last_why, 0) + run_length
                last_why, run_length = why, 0
            run_length += 1
            verdicts: dict[bytes, Verdict] = {}
            if not trace.staged:
                # No stage span, so no run, no stage metric, no feedback: the core
                # would derive nothing (plain service traces passing through).
                continue
            result: TraceResult | None = None
            try:
                result = self.engine.evaluate(trace)
            except Exception as error:
                # A fault in evaluating one trace must not stop the collector: its
                # spans still go out, without a verdict.
                self.internal_error("evaluate", error)
            if result is not None:
                for run, verdict in result.runs:
                    verdicts[run.root.span_id] = verdict
            if result is not None and self.evaluation is not None:
                self._offer_for_evaluation(result)
            for item in trace.held or ():
                if not isinstance(item, _Held):
                    continue
                key = (item.resource, item.resource_schema, item.scope, item.scope_schema)
                span = without_content(item.span) if self._strip_content else item.span
                outgoing.setdefault(key, []).append((span, verdicts.get(item.span_id)))
                held_spans += 1
        if last_why is not None:
            counts[last_why] = counts.get(last_why, 0) + run_length
        for why, count in counts.items():
            metrics.count("llmspans_collector_traces_finalized", count, reason=why.value)
        if Finalised.TIMEOUT in counts:
            metrics.count("llmspans_collector_traces_evicted", counts[Finalised.TIMEOUT])
        if outgoing:
            try:
                payload = _enriched_request(outgoing)
            except Exception as error:
                self.internal_error("enrich", error)
                return
            # Held spans were admitted with their requests: they never wait for room.
            self.forwarder.submit(payload, held_spans)

    # --- continuous evaluation (llmspans/collector/evaluation.py) ----------------------

    def _offer_for_evaluation(self, result: TraceResult) -> None:
        """Hand a finalised trace's sampled runs to the evaluation runner (never waiting)."""
        if self.evaluation is None:
            return
        try:
            self.evaluation.offer(result)
        except Exception as error:
            self.internal_error("evaluation", error)

    def collect_evaluations(self) -> int:
        """Record the judgments that came back and forward their spans."""
        if self.evaluation is None:
            return 0
        try:
            return self.evaluation.collect()
        except Exception as error:
            self.internal_error("evaluation", error)
            return 0

    def internal_error(self, kind: str, error: Exception) -> None:
        self.metrics.count("llmspans_collector_internal_errors", kind=kind)
        if self.metrics.health_value("llmspans_collector_internal_errors", kind=kind) == 1:
            _log.error("internal error (%s); logged once per kind", kind, exc_info=error)


#: bytes one entry of an id or score list holds in memory (object and tuple slot), for
#: the in-flight estimate
_ID_BYTES: Final = 64


def _slim_request(request: ExportTraceServiceRequest, raw: bytes | None) -> Any:
    """The request read again with the slim schema.

    The request was parsed (and so validated) with the full schema by the receiver;
    the spans are read from the same bytes parsed with the slim schema, which
    decodes only the attributes the core reads (see
    llmspans.collector._protobuf.SlimDecoder). Re-serialising the slim message gives
    the same spans back.
    """
    return SLIM_EXPORT_REQUEST.FromString(raw if raw is not None else request.SerializeToString())


def _span_count(slim: Any) -> int:
    total = 0
    for resource_spans in slim.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            total += len(scope_spans.spans)
    return total


def _hold(
    trace: Trace,
    record: SpanRecord,
    span: Any,
    *,
    resource: bytes,
    resource_schema: str,
    scope: bytes,
    scope_schema: str,
) -> None:
    """Keep a pipeline span on its trace, encoded with its resource and scope, until
    the trace's verdict is written onto it."""
    held = _Held(
        record.span_id,
        span.SerializeToString(),
        resource,
        resource_schema,
        scope,
        scope_schema,
    )
    if trace.held is None:
        trace.held = [held]
    else:
        trace.held.append(held)


def _invalid_ids(record: SpanRecord) -> str:
    """What the sender is told about a span refused for its ids."""
    return (
        f"span {record.name!r}: invalid ids (trace {record.trace_id.hex()!r}, "
        f"span {record.span_id.hex()!r}, parent {record.parent_span_id.hex()!r})"
    )


def _string_attribute(key: str, value: str) -> bytes:
    attribute = KeyValue(key=key)
    attribute.value.string_value = value
    return attribute.SerializeToString()


#: encoded key prefixes (tag, length, key) of the verdict attributes
_VERDICT_PREFIXES: Final = frozenset(key_prefix(key) for key in _VERDICT_KEYS)
#: byte strings every encoded verdict key contains (llmspans.outcome, llmspans.failure.*)
_VERDICT_OUTCOME: Final = A.OUTCOME.encode()
_VERDICT_FAILURE: Final = A.FAILURE_STAGE.encode().rpartition(b".")[0]
#: the encoded verdict attributes per (outcome, stage, reason); few combinations exist
_VERDICT_ATTRIBUTES: dict[tuple[str, str | None, str | None], tuple[bytes, ...]] = {}


def _verdict_attributes(verdict: Verdict) -> tuple[bytes, ...]:
    key = (verdict.outcome, verdict.failure_stage, verdict.failure_reason)
    found = _VERDICT_ATTRIBUTES.get(key)
    if found is None:
        encoded = [_string_attribute(A.OUTCOME, verdict.outcome)]
        if verdict.failure_stage is not None:
            encoded.append(_string_attribute(A.FAILURE_STAGE, verdict.failure_stage))
        if verdict.failure_reason is not None:
            encoded.append(_string_attribute(A.FAILURE_REASON, verdict.failure_reason))
        found = tuple(encoded)
        if len(_VERDICT_ATTRIBUTES) < 4096:
            _VERDICT_ATTRIBUTES[key] = found
    return found


def _is_verdict_attribute(raw: bytes) -> bool:
    """Whether an encoded ``KeyValue`` is one of the verdict attributes.

    The usual layout (the key, then one value field reaching the end) is read from
    the bytes; anything else is decoded, since the last key field would count.
    """
    size = len(raw)
    if size > 1 and raw[0] == 0x0A and raw[1] < 0x80:
        after = 2 + raw[1]
        if after == size:
            return raw in _VERDICT_PREFIXES
        if after + 1 < size and raw[after] == 0x12:
            position = after + 1
            length = shift = 0
            while position < size:
                byte = raw[position]
                length |= (byte & 0x7F) << shift
                position += 1
                if byte < 0x80:
                    if position + length == size:
                        return raw[:after] in _VERDICT_PREFIXES
                    break
                shift += 7
    return KeyValue.FromString(raw).key in _VERDICT_KEYS


def _enriched_request(
    outgoing: dict[tuple[bytes, str, bytes, str], list[tuple[bytes, Verdict | None]]],
) -> bytes:
    """One export request with the held spans, each carrying its trace's verdict.

    Built with the slim schema: resource and scope are copied as the bytes they
    arrived as, attributes stay encoded, and the verdict attributes are appended
    pre-encoded (a repeated field's elements concatenate).
    """
    request = SLIM_EXPORT_REQUEST()
    for (resource, resource_schema, scope, scope_schema), spans in outgoing.items():
        resource_spans = request.resource_spans.add()
        resource_spans.resource = resource
        resource_spans.schema_url = resource_schema
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope = scope
        scope_spans.schema_url = scope_schema
        for span_bytes, verdict in spans:
            span = scope_spans.spans.add()
            span.ParseFromString(span_bytes)
            if verdict is None:
                continue
            # The collector's verdict replaces any the sender set. A key is encoded
            # as it is, so a span whose bytes hold no verdict key has none to remove.
            attributes = span.attributes
            if _VERDICT_OUTCOME in span_bytes or _VERDICT_FAILURE in span_bytes:
                stale = [i for i, raw in enumerate(attributes) if _is_verdict_attribute(raw)]
                for index in reversed(stale):
                    del attributes[index]
            attributes.extend(_verdict_attributes(verdict))
    result: bytes = request.SerializeToString()
    return result


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` wants whole seconds; round up so senders never come back early."""
    return str(max(1, math.ceil(seconds)))
