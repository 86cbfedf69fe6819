"""Each peer's own instrumentation of the real OpenAI client, sent to a real collector.

OpenInference (``openinference-instrumentation-openai``), OpenLLMetry
(``opentelemetry-instrumentation-openai``) and the official OpenTelemetry
instrumentation (``opentelemetry-instrumentation-openai-v2``) instrument the real
``openai`` client against a loopback fake of the API; their spans go through the
real OTLP/HTTP exporter to a collector on loopback, and the collector's
``/metrics`` must show the right stage and reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmspans
from llmspans._tracing import use_tracer_provider
from tests.collector.collector_support import RunningCollector, Sink, attributes, wait_until

from .fake_api import FAILING_MODEL, REFUSING_MODEL, FakeOpenAI


def _openinference() -> Any:
    from openinference.instrumentation.openai import OpenAIInstrumentor

    return OpenAIInstrumentor()


def _openllmetry() -> Any:
    from opentelemetry.instrumentation.openai import OpenAIInstrumentor

    return OpenAIInstrumentor()


def _official() -> Any:
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    return OpenAIInstrumentor()


PEERS: dict[str, Callable[[], Any]] = {
    "openinference": _openinference,
    "openllmetry": _openllmetry,
    "openai-v2": _official,
}


class Peer:
    """A peer instrumentor exporting to a collector, and a client it instruments."""

    def __init__(self, collector: RunningCollector, api: FakeOpenAI, make: Callable[[], Any]):
        self.provider = TracerProvider()
        self.provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector.http_url))
        )
        self.instrumentor = make()
        self.instrumentor.instrument(tracer_provider=self.provider)
        self.client = openai.OpenAI(base_url=api.url, api_key="test", max_retries=0)

    def ask(self, model: str) -> str | None:
        answer = self.client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "refund?"}]
        )
        return answer.choices[0].message.content

    def close(self) -> None:
        self.instrumentor.uninstrument()
        self.provider.shutdown()


@pytest.fixture(params=sorted(PEERS))
def peer(
    request: pytest.FixtureRequest,
    start_collector: Callable[..., RunningCollector],
    fake_openai: FakeOpenAI,
) -> Iterator[tuple[Peer, RunningCollector]]:
    collector = start_collector()
    instrumented = Peer(collector, fake_openai, PEERS[request.param])
    previous = use_tracer_provider(instrumented.provider)
    yield instrumented, collector
    use_tracer_provider(previous)
    instrumented.close()


def _outcomes(collector: RunningCollector) -> float:
    return collector.metric("llmspans_task_outcomes_total")


def test_an_error_of_the_peers_call_is_a_generation_error(
    peer: tuple[Peer, RunningCollector],
) -> None:
    instrumented, collector = peer

    @llmspans.pipeline("support")
    def answer() -> str | None:
        return instrumented.ask(FAILING_MODEL)

    with pytest.raises(openai.InternalServerError):
        answer()
    wait_until(lambda: _outcomes(collector) == 1, what="one run")
    assert collector.metric(
        "llmspans_stage_failures_total", pipeline="support", stage="generation", reason="error"
    ) == 1
    assert collector.metric(
        "llmspans_stage_calls_total", pipeline="support", stage="generation", status="error"
    ) == 1


def test_a_refusal_of_the_peers_call_is_a_generation_refusal(
    peer: tuple[Peer, RunningCollector],
) -> None:
    instrumented, collector = peer

    @llmspans.pipeline("support")
    def answer() -> str | None:
        return instrumented.ask(REFUSING_MODEL)

    assert answer() is None
    wait_until(lambda: _outcomes(collector) == 1, what="one run")
    assert collector.metric(
        "llmspans_stage_failures_total", pipeline="support", stage="generation", reason="refused"
    ) == 1
    assert collector.metric(
        "llmspans_stage_calls_total", pipeline="support", stage="generation", status="ok"
    ) == 1


def test_a_good_answer_is_counted_and_unverified(peer: tuple[Peer, RunningCollector]) -> None:
    instrumented, collector = peer

    @llmspans.pipeline("support")
    def answer() -> str | None:
        return instrumented.ask("gpt-4o-mini")

    assert answer() == "The answer is 42."
    wait_until(lambda: _outcomes(collector) == 1, what="one run")
    assert collector.metric(
        "llmspans_task_outcomes_total", pipeline="support", outcome="unverified"
    ) == 1
    assert collector.metric("llmspans_stage_failures_total") == 0
    assert collector.metric(
        "llmspans_stage_calls_total", pipeline="support", stage="generation", status="ok"
    ) == 1


def test_a_trace_of_all_three_peers_is_one_attributed_run(
    start_collector: Callable[..., RunningCollector], fake_openai: FakeOpenAI
) -> None:
    """OpenInference's own tracer opens a CHAIN and a RETRIEVER; the chat calls are
    instrumented by the three peers at once, as happens when teams mix them."""
    from openinference.instrumentation import OITracer, TraceConfig
    from openinference.semconv.trace import DocumentAttributes, SpanAttributes

    collector = start_collector()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector.http_url)))
    sent = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(sent))
    instrumentors = [make() for make in PEERS.values()]
    for instrumentor in instrumentors:
        instrumentor.instrument(tracer_provider=provider)
    client = openai.OpenAI(base_url=fake_openai.url, api_key="test", max_retries=0)
    tracer = OITracer(provider.get_tracer("app"), config=TraceConfig())
    try:
        with tracer.start_as_current_span("answer", openinference_span_kind="chain"):
            with tracer.start_as_current_span("kb", openinference_span_kind="retriever") as kb:
                prefix = SpanAttributes.RETRIEVAL_DOCUMENTS
                for index, (doc, score) in enumerate((("kb-1", 0.9), ("kb-2", 0.4))):
                    kb.set_attribute(f"{prefix}.{index}.{DocumentAttributes.DOCUMENT_ID}", doc)
                    kb.set_attribute(
                        f"{prefix}.{index}.{DocumentAttributes.DOCUMENT_SCORE}", score
                    )
            for model in ("gpt-4o-mini", REFUSING_MODEL):
                client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": "refund?"}]
                )
    finally:
        for instrumentor in instrumentors:
            instrumentor.uninstrument()
        provider.shutdown()
    wait_until(lambda: _outcomes(collector) == 1, what="one run")
    assert collector.metric(
        "llmspans_stage_failures_total", pipeline="answer", stage="generation", reason="refused"
    ) == 1
    assert collector.metric("llmspans_stage_calls_total", pipeline="answer", stage="retrieval") == 1
    # each peer writes a span of its own for each call, one inside the other: the
    # call is seen three times and counted once
    model_calls = [
        span
        for span in sent.get_finished_spans()
        if (span.attributes or {}).get("openinference.span.kind") == "LLM"
        or (span.attributes or {}).get("gen_ai.operation.name") == "chat"
    ]
    assert len(model_calls) == 6  # 3 peers x 2 calls
    assert collector.metric(
        "llmspans_stage_calls_total", pipeline="answer", stage="generation"
    ) == 2


def test_the_peers_root_is_forwarded_with_the_verdict(
    start_collector: Callable[..., RunningCollector], sink: Sink, fake_openai: FakeOpenAI
) -> None:
    """A top CHAIN is held back like an llmspans pipeline span and enriched."""
    collector = start_collector(exporters=[{"protocol": "http", "endpoint": sink.url}])
    instrumented = Peer(collector, fake_openai, _openinference)
    from openinference.instrumentation import OITracer, TraceConfig

    tracer = OITracer(instrumented.provider.get_tracer("app"), config=TraceConfig())
    try:
        with (
            tracer.start_as_current_span("answer", openinference_span_kind="chain"),
            pytest.raises(openai.InternalServerError),
        ):
            instrumented.ask(FAILING_MODEL)
    finally:
        instrumented.close()
    wait_until(lambda: len(sink.spans()) == 2, what="both spans forwarded")
    root = next(span for span in sink.spans() if span.name == "answer")
    found = attributes(root)
    assert found["llmspans.outcome"] == "failure"
    assert (found["llmspans.failure.stage"], found["llmspans.failure.reason"]) == (
        "generation",
        "error",
    )
