"""Continuous evaluation in the collector (docs/evaluation.md).

Sampled runs of finalised traces go to an :class:`~llmspans.evaluation.EvaluationRunner`
(a bounded queue: ingestion never waits for a judge, drops are counted). On each
sweep the outcomes are recorded into the shared store by the core's
:func:`~llmspans.core.judging.accumulate_judgment`, and each becomes an
``evaluate {pipeline}`` span in a trace of its own, linked to the run's root,
forwarded like any span. Runs on the event loop thread, like the processor.
"""

from __future__ import annotations

import os
from collections.abc import MutableSequence, Sequence
from typing import Final

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from llmspans import _attributes as A
from llmspans.collector._protobuf import SLIM_EXPORT_REQUEST, key_prefix
from llmspans.collector.config import Evaluation, LLMJudgeEntry
from llmspans.collector.forwarding import Forwarder
from llmspans.core.judging import (
    sampled_runs,
)
from llmspans.core.model import Run, Thresholds, TraceResult, Verdict
from llmspans.core.store import MetricStore
from llmspans.evaluation import EvaluationRunner, Evaluator, LLMJudge, load_evaluator
from llmspans.evaluation._runner import record_outcomes
from llmspans.evaluation._spans import SCOPE_NAME, AttributeValue, EvaluationSpan, evaluation_span

__all__ = [
    "CollectorEvaluation",
    "evaluators_of",
    "otlp_span",
    "request_without_content",
    "without_content",
]


#: encoded key prefixes of the content attributes stripped from a marked span
_CONTENT_PREFIXES: Final = tuple(sorted(key_prefix(key) for key in A.CONTENT_ATTRIBUTES))
#: the marker of a span whose content was recorded only because its run is sampled
_MARK_PREFIX: Final = key_prefix(A.EVALUATION_SAMPLED_CONTENT)
#: the marker as exporters encode it (``bool_value: true``)
_MARK: Final = KeyValue(
    key=A.EVALUATION_SAMPLED_CONTENT, value=AnyValue(bool_value=True)
).SerializeToString()


def evaluators_of(settings: Evaluation) -> list[tuple[str, Evaluator]]:
    """The configured evaluators, loaded (a ``ValueError`` for one that cannot be)."""
    found: list[tuple[str, Evaluator]] = []
    for entry in settings.evaluators:
        if isinstance(entry, LLMJudgeEntry):
            judge = LLMJudge(
                entry.base_url,
                entry.model,
                api_key_env=entry.api_key_env,
                timeout_s=entry.timeout_s,
                retries=entry.retries,
                max_documents=entry.max_documents,
            )
            found.append((judge.__name__, judge))
        else:
            found.append((entry, load_evaluator(entry)))
    return found


def _marked(attributes: Sequence[bytes]) -> bool:
    """Whether encoded attributes hold ``llmspans.evaluation.sampled_content = true``."""
    for attribute in attributes:
        if attribute.startswith(_MARK_PREFIX):
            if attribute == _MARK:
                return True
            try:
                value = KeyValue.FromString(attribute).value
            except DecodeError:
                return False
            return value.WhichOneof("value") == "bool_value" and value.bool_value
    return False


def _strip(attributes: MutableSequence[bytes]) -> bool:
    """Remove the content attributes from a marked span's encoded attributes; whether
    any were removed."""
    if not _marked(attributes):
        return False
    removed = False
    for index in reversed(range(len(attributes))):
        if attributes[index].startswith(_CONTENT_PREFIXES):
            del attributes[index]
            removed = True
    return removed


def without_content(span: bytes) -> bytes:
    """An encoded span without the content its run recorded only because it was
    sampled (the span carries ``llmspans.evaluation.sampled_content``); the same
    bytes for any other span (docs/evaluation.md)."""
    if _MARK_PREFIX not in span:
        return span
    slim = SLIM_EXPORT_REQUEST().resource_spans.add().scope_spans.add().spans.add()
    slim.ParseFromString(span)
    if not _strip(slim.attributes):
        return span
    stripped: bytes = slim.SerializeToString()
    return stripped


def request_without_content(payload: bytes) -> bytes:
    """An encoded export request without the content sampled runs recorded only for
    their judge (:func:`without_content` of each span); the same bytes when no span
    carries the marker, which costs one substring search."""
    if _MARK_PREFIX not in payload:
        return payload
    request = SLIM_EXPORT_REQUEST.FromString(payload)
    removed = False
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                removed = _strip(span.attributes) or removed
    if not removed:
        return payload
    stripped: bytes = request.SerializeToString()
    return stripped


def _any_value(value: AttributeValue) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    found = AnyValue()
    found.array_value.values.extend(AnyValue(string_value=item) for item in value)
    return found


class CollectorEvaluation:
    """The collector's evaluation: submit sampled runs, record and forward outcomes."""

    def __init__(
        self,
        settings: Evaluation,
        store: MetricStore,
        thresholds: Thresholds,
        forwarder: Forwarder,
    ) -> None:
        self.settings = settings
        self.store = store
        self.thresholds = thresholds
        self.forwarder = forwarder
        self.runner: EvaluationRunner[tuple[Run, Verdict]] = EvaluationRunner(
            evaluators_of(settings),
            concurrency=settings.concurrency,
            queue_size=settings.queue_size,
            timeout_s=settings.timeout_s,
            calls_per_minute=settings.calls_per_minute,
            usd_per_hour=settings.usd_per_hour,
        )

    def offer(self, result: TraceResult) -> bool:
        """Hand the trace's sampled runs to the runner; whether it had any."""
        found = sampled_runs(result)
        for run, verdict, evaluated in found:
            self.runner.submit((run, verdict), evaluated)
        return bool(found)

    def collect(self) -> int:
        """Record the outcomes so far and forward their spans; how many there were."""
        outcomes, dropped = self.runner.take()
        store = self.store
        verdicts = record_outcomes(outcomes, dropped, store, self.thresholds, store.labeler)
        if not outcomes:
            return 0
        request = ExportTraceServiceRequest()
        scope_spans = request.resource_spans.add().scope_spans.add()
        scope_spans.scope.name = SCOPE_NAME
        scope_spans.spans.extend(
            otlp_span(evaluation_span(outcome, judged))
            for outcome, judged in zip(outcomes, verdicts, strict=True)
        )
        self.forwarder.submit(request.SerializeToString(), len(outcomes))
        return len(outcomes)

    def close(self, timeout_s: float) -> None:
        """Let queued runs finish within ``timeout_s``, then record what came out."""
        self.runner.close(timeout_s)
        self.collect()


def otlp_span(built: EvaluationSpan) -> Span:
    """The OTLP encoding of an ``evaluate`` span, in a trace of its own."""
    span = Span(
        trace_id=os.urandom(16),
        span_id=os.urandom(8),
        name=built.name,
        kind=Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=built.start_ns,
        end_time_unix_nano=built.end_ns,
    )
    span.links.add(trace_id=built.link[0], span_id=built.link[1])
    span.attributes.extend(
        KeyValue(key=key, value=_any_value(v)) for key, v in built.attributes.items()
    )
    if built.error is not None:
        span.status.code = Status.STATUS_CODE_ERROR
        span.status.message = built.error
    return span
