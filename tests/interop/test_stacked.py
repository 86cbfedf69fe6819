"""llmspans' own openai instrumentor and a peer's on the same client: one call.

Each peer (OpenInference, OpenLLMetry, the official openai-v2) is stacked on
llmspans' instrumentor, in both orders (the instrumentor enabled last wraps the
other one's span), against the loopback fake API; every span goes through the real
OTLP/HTTP exporter to a real collector. Each model call writes two generation
spans, one inside the other; the collector must count one call, its cost once, and
still blame ``generation`` for its error and its refusal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import openai
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmspans
from llmspans import _attributes as A
from llmspans._tracing import use_tracer_provider
from llmspans.cost import cost_usd
from llmspans.instrumentation import instrument, uninstrument
from tests.collector.collector_support import RunningCollector, wait_until

from .fake_api import FAILING_MODEL, REFUSING_MODEL, FakeOpenAI
from .test_peers import PEERS

#: what the fake API answers a good call with (tests/instrumentation/fake_providers.py)
COST = cost_usd("gpt-4o-mini-2024-07-18", 1200, 300, cache_read_input_tokens=1000)


class Stacked:
    """llmspans' openai instrumentor and a peer's, enabled in ``order``."""

    def __init__(
        self, collector: RunningCollector, api: FakeOpenAI, peer: str, llmspans_first: bool
    ) -> None:
        self.provider = TracerProvider()
        self.provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector.http_url))
        )
        self.sent = InMemorySpanExporter()
        self.provider.add_span_processor(SimpleSpanProcessor(self.sent))
        self.peer = PEERS[peer]()
        self.llmspans_first = llmspans_first
        if llmspans_first:
            assert instrument("openai", tracer_provider=self.provider) == ["openai"]
            self.peer.instrument(tracer_provider=self.provider)
        else:
            self.peer.instrument(tracer_provider=self.provider)
            assert instrument("openai", tracer_provider=self.provider) == ["openai"]
        self.client = openai.OpenAI(base_url=api.url, api_key="test", max_retries=0)

    def ask(self, model: str) -> str | None:
        answer = self.client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "refund?"}]
        )
        return answer.choices[0].message.content

    def model_spans(self) -> int:
        """Generation spans written, by either instrumentation."""
        return sum(
            1
            for span in self.sent.get_finished_spans()
            if (span.attributes or {}).get(A.STAGE) == A.STAGE_GENERATION
            or (span.attributes or {}).get("openinference.span.kind") == "LLM"
            or (span.attributes or {}).get(A.GEN_AI_OPERATION_NAME) == "chat"
        )

    def close(self) -> None:
        # in the reverse order: each unwraps its own wrapper, the outer one first
        if self.llmspans_first:
            self.peer.uninstrument()
            uninstrument("openai")
        else:
            uninstrument("openai")
            self.peer.uninstrument()
        self.provider.shutdown()


@pytest.fixture(
    params=[(peer, first) for peer in sorted(PEERS) for first in (True, False)],
    ids=lambda param: f"{param[0]}-{'llmspans-inside' if param[1] else 'llmspans-outside'}",
)
def stacked(
    request: pytest.FixtureRequest,
    start_collector: Callable[..., RunningCollector],
    fake_openai: FakeOpenAI,
) -> Iterator[tuple[Stacked, RunningCollector]]:
    peer, llmspans_first = request.param
    collector = start_collector()
    both = Stacked(collector, fake_openai, peer, llmspans_first)
    previous = use_tracer_provider(both.provider)
    try:
        yield both, collector
    finally:
        use_tracer_provider(previous)
        both.close()


def _runs(collector: RunningCollector) -> float:
    return collector.metric("llmspans_task_outcomes_total")


def test_a_good_call_is_one_call_and_its_cost_once(
    stacked: tuple[Stacked, RunningCollector],
) -> None:
    both, collector = stacked

    @llmspans.pipeline("support")
    def answer() -> str | None:
        return both.ask("gpt-4o-mini")

    assert answer() == "The answer is 42."
    wait_until(lambda: _runs(collector) == 1, what="one run")
    assert both.model_spans() == 2  # the call, seen by both instrumentations
    assert collector.metric(
        "llmspans_stage_calls_total", pipeline="support", stage="generation"
    ) == 1
    assert COST is not None
    assert collector.metric("llmspans_task_cost_usd_total", pipeline="support") == pytest.approx(
        COST
    )
    assert collector.metric("llmspans_stage_failures_total") == 0


def test_an_error_is_one_generation_error(stacked: tuple[Stacked, RunningCollector]) -> None:
    both, collector = stacked

    @llmspans.pipeline("support")
    def answer() -> str | None:
        return both.ask(FAILING_MODEL)

    with pytest.raises(openai.InternalServerError):
        answer()
    wait_until(lambda: _runs(collector) == 1, what="one run")
    assert both.model_spans() == 2
    assert collector.metric(
        "llmspans_stage_failures_total", pipeline="support", stage="generation", reason="error"
    ) == 1
    assert collector.metric(
        "llmspans_stage_calls_total", pipeline="support", stage="generation", status="error"
    ) == 1
    assert collector.metric(
        "llmspans_stage_calls_total", pipeline="support", stage="generation", status="ok"
    ) == 0


def test_a_refusal_is_one_generation_refusal(stacked: tuple[Stacked, RunningCollector]) -> None:
    both, collector = stacked

    @llmspans.pipeline("support")
    def answer() -> str | None:
        return both.ask(REFUSING_MODEL)

    assert answer() is None
    wait_until(lambda: _runs(collector) == 1, what="one run")
    assert both.model_spans() == 2
    assert collector.metric(
        "llmspans_stage_failures_total", pipeline="support", stage="generation", reason="refused"
    ) == 1
    assert collector.metric(
        "llmspans_stage_calls_total", pipeline="support", stage="generation"
    ) == 1
