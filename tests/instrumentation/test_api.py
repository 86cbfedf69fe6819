"""``instrument()`` / ``uninstrument()``, optional libraries, error boundaries, sampling."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, ClassVar

import openai
import pytest
import wrapt
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from llmspans import _attributes as attr
from llmspans._state import STATE
from llmspans.instrumentation import INSTRUMENTORS, instrument, uninstrument
from llmspans.instrumentation._base import Request, StageCall, get_tracer, sync_wrapper
from llmspans.instrumentation._patching import Patch, PatchingInstrumentor
from llmspans.instrumentation._streams import Ending, SyncStreamProxy
from llmspans.instrumentation.openai import OpenAIInstrumentor

from .conftest import _METER_PROVIDER, Spans
from .fake_providers import FakeProviderServer
from .test_vector_stores import _qdrant

MESSAGES = [{"role": "user", "content": "hi"}]


def test_instrument_reports_the_enabled_instrumentors(provider: TracerProvider) -> None:
    assert instrument(tracer_provider=provider) == list(INSTRUMENTORS)
    assert instrument("openai", "qdrant", tracer_provider=provider) == ["openai", "qdrant"]


def test_unknown_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown instrumentor"):
        instrument("openai", "pinecone")


def test_uninstrument_and_instrument_again(provider: TracerProvider, spans: Spans) -> None:
    client = _qdrant()
    uninstrument("qdrant")
    try:
        client.query_points("docs", query=[1.0, 0.0, 0.0], limit=1)
        assert spans.all() == []
    finally:
        assert instrument("qdrant", tracer_provider=provider) == ["qdrant"]
    client.query_points("docs", query=[1.0, 0.0, 0.0], limit=1)
    assert spans.names() == ["retrieval docs"]


class _MissingLibraryInstrumentor(PatchingInstrumentor):
    library: ClassVar[str] = "llmspans_no_such_client"
    requirement: ClassVar[str] = "llmspans-no-such-client >= 1"

    def patches(self, tracer: trace.Tracer) -> list[Patch]:
        raise AssertionError("patches() must not be asked for when the library is missing")


class _TooNewOpenAIInstrumentor(OpenAIInstrumentor):
    _instance = None  # BaseInstrumentor is a per-class singleton
    requirement: ClassVar[str] = "openai < 1"


@pytest.mark.parametrize("cls", [_MissingLibraryInstrumentor, _TooNewOpenAIInstrumentor])
def test_missing_or_unsupported_library_is_a_debug_logged_no_op(
    cls: type[PatchingInstrumentor], caplog: pytest.LogCaptureFixture
) -> None:
    instrumentor = cls()
    assert not instrumentor.available()
    with caplog.at_level(logging.DEBUG, logger="llmspans"):
        instrumentor.instrument(skip_dep_check=True)
    try:
        assert any(
            r.levelno == logging.DEBUG and "not instrumenting" in r.getMessage()
            for r in caplog.records
        )
        assert instrumentor._applied == []
    finally:
        instrumentor.uninstrument()


class _Target:
    def call(self, value: int) -> int:
        return value * 2


@pytest.fixture
def target(provider: TracerProvider) -> Iterator[type[_Target]]:
    STATE.logged_kinds.clear()
    yield _Target
    original = _Target.__dict__["call"]
    if isinstance(original, wrapt.FunctionWrapper):
        _Target.call = original.__wrapped__  # type: ignore[method-assign]


def _request(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request:
    return Request(stage="action", name="execute_tool double", kind=trace.SpanKind.INTERNAL)


def _boom(*_: Any) -> Any:
    raise KeyError("a bug of ours")


def test_an_error_reading_the_request_leaves_the_call_untraced(
    target: type[_Target], provider: TracerProvider, spans: Spans, caplog: pytest.LogCaptureFixture
) -> None:
    wrapt.wrap_function_wrapper(
        target, "call", sync_wrapper(get_tracer(provider), "test.kind", _boom, lambda c, r: r)
    )
    with caplog.at_level(logging.WARNING, logger="llmspans"):
        assert target().call(21) == 42
        assert target().call(1) == 2
    assert spans.all() == []
    logged = [r for r in caplog.records if "test.kind.request" in r.getMessage()]
    assert len(logged) == 1  # once per kind


def test_an_error_reading_the_response_keeps_the_result_and_ends_the_span(
    target: type[_Target], provider: TracerProvider, spans: Spans
) -> None:
    wrapt.wrap_function_wrapper(
        target, "call", sync_wrapper(get_tracer(provider), "test.kind", _request, _boom)
    )
    assert target().call(5) == 10
    assert spans.names() == ["execute_tool double"]


def test_a_failing_chunk_observer_does_not_disturb_iteration(
    provider: TracerProvider, spans: Spans
) -> None:
    call = StageCall.start(get_tracer(provider), _request(None, (), {}))
    stream = SyncStreamProxy(iter([1, 2, 3]), Ending(call, "test.stream"), _boom)
    assert list(stream) == [1, 2, 3]
    assert spans.names() == ["execute_tool double"]


def test_unsampled_calls_work_and_export_nothing(
    server: FakeProviderServer, provider: TracerProvider, spans: Spans
) -> None:
    unsampled = TracerProvider(sampler=ALWAYS_OFF)
    exporter = InMemorySpanExporter()
    unsampled.add_span_processor(SimpleSpanProcessor(exporter))
    uninstrument("openai")
    try:
        instrument("openai", tracer_provider=unsampled)
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="k", max_retries=0)
        reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert reply.choices[0].message.content == "The answer is 42."
        chunks = list(
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        )
        assert len(chunks) == 5
    finally:
        uninstrument("openai")
        instrument("openai", tracer_provider=provider, meter_provider=_METER_PROVIDER)
    assert exporter.get_finished_spans() == ()


def test_a_call_under_an_unsampled_parent_is_not_exported(
    server: FakeProviderServer, spans: Spans
) -> None:
    parent = NonRecordingSpan(
        SpanContext(trace_id=0x1234, span_id=0x5678, is_remote=True, trace_flags=TraceFlags(0))
    )
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="k", max_retries=0)
    with trace.use_span(parent):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert spans.all() == []  # parent-based sampling: the whole trace is dropped
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert spans.attributes()[attr.GEN_AI_USAGE_INPUT_TOKENS] == 1200


def test_given_skips_the_client_sentinels_and_keeps_falsy_values() -> None:
    import anthropic
    import openai

    from llmspans.instrumentation._base import given

    kwargs = {
        "model": openai.NotGiven(),
        "stop": openai.Omit(),
        "system": anthropic.NotGiven(),
        "metadata": anthropic.Omit(),
        "temperature": 0,
        "stream": False,
        "user": "",
    }
    for name in ("model", "stop", "system", "metadata", "absent"):
        assert given(kwargs, name) is None
    assert given(kwargs, "temperature") == 0
    assert given(kwargs, "stream") is False
    assert given(kwargs, "user") == ""
