"""Helpers to test code instrumented with llmspans, in this project and in yours.

    from llmspans.testing import capture_spans

    def test_answer_is_traced():
        with capture_spans() as spans:
            handle("What is the refund policy?")
        root = spans.one("invoke_workflow support_answer")
        retrieval = spans.one("retrieval faq")
        assert retrieval.parent.span_id == root.context.span_id
        assert retrieval.attributes["llmspans.retrieval.document_ids"] == ("doc-7", "doc-2")

:func:`capture_spans` gives llmspans its own tracer provider (an in-memory exporter,
a seeded id generator so ids repeat from run to run) for the duration of the
block. The global TracerProvider is never touched, so it works whatever the
application installed. As a pytest fixture:

    @pytest.fixture
    def spans():
        with capture_spans() as captured:
            yield captured
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.util.types import AttributeValue

from llmspans import _attributes as A
from llmspans._context import current_pipeline, current_stage
from llmspans._tracing import use_tracer_provider

__all__ = [
    "CapturedSpans",
    "SeededIdGenerator",
    "assert_context_clean",
    "capture_spans",
]


class SeededIdGenerator(IdGenerator):
    """Trace and span ids from a seeded random generator: the same sequence every run."""

    def __init__(self, seed: int = 0) -> None:
        self._random = random.Random(seed)

    def generate_span_id(self) -> int:
        span_id = 0
        while span_id == 0:
            span_id = self._random.getrandbits(64)
        return span_id

    def generate_trace_id(self) -> int:
        trace_id = 0
        while trace_id == 0:
            trace_id = self._random.getrandbits(128)
        return trace_id


class CapturedSpans:
    """The finished spans of a :func:`capture_spans` block, in the order they ended."""

    def __init__(self, exporter: InMemorySpanExporter, provider: TracerProvider) -> None:
        self._exporter = exporter
        self.provider = provider

    @property
    def spans(self) -> list[ReadableSpan]:
        return list(self._exporter.get_finished_spans())

    def __len__(self) -> int:
        return len(self._exporter.get_finished_spans())

    def __iter__(self) -> Iterator[ReadableSpan]:
        return iter(self.spans)

    def names(self) -> list[str]:
        return [span.name for span in self.spans]

    def by_name(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans if span.name == name]

    def by_stage(self, stage: str) -> list[ReadableSpan]:
        return [span for span in self.spans if (span.attributes or {}).get(A.STAGE) == stage]

    def one(self, name: str) -> ReadableSpan:
        """The one span called ``name``; ``AssertionError`` if there are none or several."""
        found = self.by_name(name)
        if len(found) != 1:
            raise AssertionError(
                f"expected exactly one span {name!r}, found {len(found)}; spans: {self.names()}"
            )
        return found[0]

    def attributes(self, name: str) -> dict[str, AttributeValue]:
        """The attributes of the one span called ``name``."""
        return dict(self.one(name).attributes or {})

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        parent_id = parent.context.span_id if parent.context is not None else None
        return [
            span
            for span in self.spans
            if span.parent is not None and span.parent.span_id == parent_id
        ]

    def clear(self) -> None:
        self._exporter.clear()


@contextmanager
def capture_spans(seed: int = 0, *, resource: Resource | None = None) -> Iterator[CapturedSpans]:
    """Capture every span llmspans emits inside the block (see the module docstring).

    Spans of other instrumentation that uses the global provider are not captured;
    pass ``captured.provider`` to it if you need them too.
    """
    provider = TracerProvider(
        id_generator=SeededIdGenerator(seed),
        resource=resource or Resource.create({"service.name": "llmspans-test"}),
    )
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    previous = use_tracer_provider(provider)
    try:
        yield CapturedSpans(exporter, provider)
    finally:
        use_tracer_provider(previous)
        provider.shutdown()


def assert_context_clean() -> None:
    """Fail if a span or an llmspans stage is still current (a leaked context).

    Use it in an autouse fixture after each test, as a check that every decorated
    call detached its context.
    """
    span = trace.get_current_span()
    if span.get_span_context().is_valid:
        raise AssertionError(f"a span is still current: {span!r}")
    stage = current_stage()
    if stage is not None:
        raise AssertionError(f"an llmspans stage is still current: {stage.stage}")
    if current_pipeline() is not None:
        raise AssertionError("an llmspans pipeline is still current")
