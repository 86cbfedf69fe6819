"""Pre-built OTLP export requests shaped like llmspans traffic.

A *run* is what one pipeline invocation instrumented with llmspans sends: a
``pipeline`` root span with ``retrieval``, ``context_selection``, ``generation``
and ``action`` children, plus a ``feedback`` span that arrives as the root of its
own trace and links to the run (as ``llmspans.feedback`` produces it from another
process). With ``spans_per_trace`` above 6 the extra spans are further stage spans
under the same root (an agent loop), and the feedback span is left out.

Every trace id is unique across the whole load, so the collector never sees a
span for an already-final trace. Building protobuf messages in Python is slow
(tens of microseconds per span), so :meth:`RequestBuilder.batches` serializes a
few template batches once and makes each further batch by swapping the 8-byte
trace-id prefix they share for a fresh one: one ``bytes.replace`` per batch.
"""

from __future__ import annotations

import os
import random
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from llmspans import _attributes as A

KIND_INTERNAL = Span.SpanKind.SPAN_KIND_INTERNAL
KIND_CLIENT = Span.SpanKind.SPAN_KIND_CLIENT

_U64 = 0xFFFFFFFFFFFFFFFF
_STAGE_CYCLE = (A.STAGE_RETRIEVAL, A.STAGE_CONTEXT_SELECTION, A.STAGE_GENERATION, A.STAGE_ACTION)


def _kv(key: str, value: object) -> KeyValue:
    return KeyValue(key=key, value=_any(value))


def _any(value: object) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, list | tuple):
        return AnyValue(array_value=ArrayValue(values=[_any(v) for v in value]))
    raise TypeError(f"unsupported attribute value {value!r}")


@dataclass(frozen=True)
class LoadShape:
    """What each trace of the load looks like."""

    spans_per_trace: int = 6
    #: bytes of opaque content attribute (``gen_ai.input.messages``) on every span
    payload_bytes: int = 0
    pipelines: int = 10
    #: share of runs whose action fails verification (they become failures)
    failure_share: float = 0.1
    #: share of runs marked ``llmspans.evaluation.sampled`` on their root
    sampled_share: float = 0.0


class RequestBuilder:
    """Builds serialized ``ExportTraceServiceRequest`` batches of whole runs."""

    def __init__(self, shape: LoadShape, seed: int | None = None) -> None:
        if shape.spans_per_trace < 2:
            raise ValueError("spans_per_trace must be at least 2")
        self.shape = shape
        self._rng = random.Random(seed)
        self._salt = (os.getpid() << 20) ^ self._rng.getrandbits(40)
        self._prefix = struct.pack(">Q", self._rng.getrandbits(64))
        self._trace_counter = 0
        self._span_counter = 0
        self._payload = "x" * shape.payload_bytes
        self._templates = {stage: self._stage_attributes(stage) for stage in _STAGE_CYCLE}

    @property
    def spans_per_run(self) -> int:
        """Spans one run sends (the feedback trace included)."""
        return self.shape.spans_per_trace

    def _trace_id(self) -> bytes:
        self._trace_counter += 1
        return self._prefix + struct.pack(">Q", self._trace_counter)

    def _span_id(self) -> bytes:
        self._span_counter += 1
        return struct.pack(">Q", (self._salt << 24 ^ self._span_counter) & _U64 or 1)

    def _stage_attributes(self, stage: str) -> list[KeyValue]:
        docs = [f"doc-{i}" for i in range(10)]
        attrs: list[KeyValue] = [_kv(A.STAGE, stage)]
        if stage == A.STAGE_RETRIEVAL:
            attrs += [
                _kv(A.GEN_AI_OPERATION_NAME, A.OP_RETRIEVAL),
                _kv(A.GEN_AI_DATA_SOURCE_ID, "faq"),
                _kv(A.GEN_AI_REQUEST_TOP_K, 10),
                _kv(A.RETRIEVAL_DOCUMENT_IDS, docs),
                _kv(A.RETRIEVAL_SCORES, [0.95 - 0.05 * i for i in range(10)]),
                _kv(A.RETRIEVAL_RELEVANT_IDS, ["doc-1", "doc-4"]),
            ]
        elif stage == A.STAGE_CONTEXT_SELECTION:
            attrs += [
                _kv(A.CONTEXT_INPUT_IDS, docs),
                _kv(A.CONTEXT_SELECTED_IDS, docs[:4]),
                _kv(A.CONTEXT_TOKEN_BUDGET, 4000),
                _kv(A.CONTEXT_TOKENS, 3100),
            ]
        elif stage == A.STAGE_GENERATION:
            attrs += [
                _kv(A.GEN_AI_OPERATION_NAME, A.OP_CHAT),
                _kv(A.GEN_AI_PROVIDER_NAME, "openai"),
                _kv(A.GEN_AI_REQUEST_MODEL, "gpt-4o-mini"),
                _kv(A.GEN_AI_RESPONSE_MODEL, "gpt-4o-mini-2024-07-18"),
                _kv(A.GEN_AI_USAGE_INPUT_TOKENS, 3150),
                _kv(A.GEN_AI_USAGE_OUTPUT_TOKENS, 240),
                _kv(A.GENERATION_CITATIONS, ["doc-1", "doc-2"]),
                _kv(A.GENERATION_CONFIDENCE, 0.82),
                _kv(A.COST_USD, 0.000617),
            ]
        return attrs

    def _span(  # noqa: PLR0917
        self,
        trace_id: bytes,
        parent: bytes,
        name: str,
        kind: Span.SpanKind.ValueType,
        start: int,
        end: int,
        attrs: list[KeyValue],
    ) -> Span:
        span = Span(
            trace_id=trace_id,
            span_id=self._span_id(),
            parent_span_id=parent,
            name=name,
            kind=kind,
            start_time_unix_nano=start,
            end_time_unix_nano=end,
            attributes=attrs,
            status=Status(code=Status.StatusCode.STATUS_CODE_OK),
        )
        if self._payload:
            span.attributes.append(_kv(A.GEN_AI_INPUT_MESSAGES, self._payload))
        return span

    def run_spans(self, pipeline: str, now_ns: int | None = None) -> list[Span]:
        """The spans of one run, children first and the root last (as SDKs export them)."""
        shape = self.shape
        end = now_ns if now_ns is not None else time.time_ns()
        start = end - 2_000_000_000
        trace_id = self._trace_id()
        root_id = self._span_id()
        with_feedback = shape.spans_per_trace == 6
        children = shape.spans_per_trace - 1 - (1 if with_feedback else 0)
        failed = self._rng.random() < shape.failure_share
        spans: list[Span] = []
        pipe_kv = _kv(A.PIPELINE, pipeline)
        step = 1_500_000_000 // max(children, 1)
        for i in range(children):
            stage = _STAGE_CYCLE[i % 4]
            attrs = [*self._templates[stage], pipe_kv]
            kind = (
                KIND_CLIENT if stage in (A.STAGE_RETRIEVAL, A.STAGE_GENERATION) else KIND_INTERNAL
            )
            if stage == A.STAGE_ACTION:
                attrs += [
                    _kv(A.GEN_AI_OPERATION_NAME, A.OP_EXECUTE_TOOL),
                    _kv(A.GEN_AI_TOOL_NAME, "create_ticket"),
                    _kv(A.ACTION_VERIFIED, not failed),
                ]
                if failed:
                    attrs.append(_kv(A.ACTION_VERIFICATION, "ticket not found"))
            detail = {
                A.STAGE_RETRIEVAL: "faq",
                A.STAGE_CONTEXT_SELECTION: "rerank",
                A.STAGE_GENERATION: "gpt-4o-mini",
                A.STAGE_ACTION: "create_ticket",
            }[stage]
            s = start + 100_000_000 + i * step
            spans.append(
                self._span(
                    trace_id, root_id, A.span_name(stage, detail), kind, s, s + step // 2, attrs
                )
            )
        root = self._span(
            trace_id,
            b"",
            A.span_name(A.STAGE_PIPELINE, pipeline),
            KIND_INTERNAL,
            start,
            end,
            [
                _kv(A.STAGE, A.STAGE_PIPELINE),
                pipe_kv,
                _kv(A.GEN_AI_OPERATION_NAME, A.OP_INVOKE_WORKFLOW),
            ],
        )
        if self.shape.sampled_share and self._rng.random() < self.shape.sampled_share:
            root.attributes.append(_kv(A.EVALUATION_SAMPLED, True))
        root.span_id = root_id
        spans.append(root)
        if with_feedback:
            fb = self._span(
                self._trace_id(),
                b"",
                A.span_name(A.STAGE_FEEDBACK, "accept"),
                KIND_INTERNAL,
                end + 1_000_000,
                end + 2_000_000,
                [_kv(A.STAGE, A.STAGE_FEEDBACK), pipe_kv, _kv(A.FEEDBACK_KIND, "accept")],
            )
            fb.links.add(trace_id=trace_id, span_id=root_id)
            spans.append(fb)
        return spans

    def request(self, spans: list[Span], service: str = "bench-app") -> ExportTraceServiceRequest:
        """One export request holding ``spans`` under one resource and scope."""
        req = ExportTraceServiceRequest()
        rs = req.resource_spans.add()
        rs.resource.attributes.extend(
            [_kv("service.name", service), _kv("openinference.project.name", "bench")]
        )
        ss = rs.scope_spans.add()
        ss.scope.name = "llmspans"
        ss.scope.version = "0.1.0"
        ss.spans.extend(spans)
        return req

    def _batch_spans(self, batch_spans: int, run: int) -> tuple[list[Span], int]:
        spans: list[Span] = []
        while len(spans) + self.spans_per_run <= max(batch_spans, self.spans_per_run):
            spans.extend(self.run_spans(f"rag-{run % self.shape.pipelines}"))
            run += 1
        return spans, run

    def batches(
        self, total_spans: int, batch_spans: int = 512, templates: int = 8
    ) -> Iterator[tuple[bytes, int]]:
        """Serialized requests of whole runs (about ``batch_spans`` spans each) and span counts.

        Stops at the first batch that reaches ``total_spans`` (so it may send up to one
        batch more than asked).
        """
        marker = self._prefix
        built: list[tuple[bytes, int]] = []
        run = 0
        for _ in range(templates):
            spans, run = self._batch_spans(batch_spans, run)
            built.append((self.request(spans).SerializeToString(), len(spans)))
        sent = 0
        batch = 0
        while sent < total_spans:
            data, count = built[batch % templates]
            fresh = struct.pack(">Q", ((self._salt << 16) ^ batch ^ 0x5A5A000000000000) & _U64)
            batch += 1
            sent += count
            yield data.replace(marker, fresh), count
