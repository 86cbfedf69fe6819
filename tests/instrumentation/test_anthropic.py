"""The anthropic instrumentor against a loopback server that answers like the Messages API."""

from __future__ import annotations

import json

import anthropic
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, StatusCode

from llmspans import _attributes as attr
from llmspans.cost import cost_usd

from .conftest import Spans, decorated_stage, pipeline_root
from .fake_providers import ERROR_MODEL, FakeProviderServer

MODEL = "claude-3-5-sonnet-20241022"
MESSAGES = [{"role": "user", "content": "Say hello."}]
# Anthropic reports uncached input (30) apart from cache reads (100) and writes (20).
TOTAL_INPUT = 30 + 100 + 20


@pytest.fixture
def client(server: FakeProviderServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="test-key", max_retries=0)


@pytest.fixture
def aclient(server: FakeProviderServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=server.url, api_key="test-key", max_retries=0)


def _expected_cost(output_tokens: int) -> float:
    cost = cost_usd(
        MODEL,
        TOTAL_INPUT,
        output_tokens,
        cache_read_input_tokens=100,
        cache_creation_input_tokens=20,
    )
    assert cost is not None
    return cost


def test_message_creates_a_generation_span(
    client: anthropic.Anthropic, server: FakeProviderServer, spans: Spans
) -> None:
    with pipeline_root("assistant") as root:
        message = client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES)
    assert message.content[0].type == "text"
    span = spans.one(f"chat {MODEL}")
    assert span.kind is SpanKind.CLIENT
    assert span.parent is not None and span.parent.span_id == root.get_span_context().span_id
    assert spans.attributes(f"chat {MODEL}") == {
        attr.STAGE: "generation",
        attr.PIPELINE: "assistant",
        attr.GEN_AI_OPERATION_NAME: "chat",
        attr.GEN_AI_PROVIDER_NAME: "anthropic",
        attr.GEN_AI_REQUEST_MODEL: MODEL,
        attr.GEN_AI_REQUEST_MAX_TOKENS: 100,
        attr.GEN_AI_REQUEST_STREAM: False,
        attr.SERVER_ADDRESS: "127.0.0.1",
        attr.SERVER_PORT: server.server_address[1],
        attr.GEN_AI_RESPONSE_MODEL: MODEL,
        attr.GEN_AI_RESPONSE_ID: "msg_01",
        attr.GEN_AI_RESPONSE_FINISH_REASONS: ["end_turn"],
        attr.GEN_AI_USAGE_INPUT_TOKENS: TOTAL_INPUT,
        attr.GEN_AI_USAGE_OUTPUT_TOKENS: 12,
        attr.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 100,
        attr.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: 20,
        attr.GENERATION_CITATIONS: ["doc-3"],
        attr.COST_USD: pytest.approx(_expected_cost(12)),
    }


@pytest.mark.usefixtures("capture_content")
def test_content_with_capture_on(client: anthropic.Anthropic, spans: Spans) -> None:
    client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES, system="Be brief.")
    attributes = spans.attributes()
    # The system prompt is given apart from the messages: the conventions keep it apart.
    assert json.loads(attributes[attr.GEN_AI_SYSTEM_INSTRUCTIONS]) == [
        {"type": "text", "content": "Be brief."}
    ]
    assert json.loads(attributes[attr.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Say hello."}]}
    ]
    assert json.loads(attributes[attr.GEN_AI_OUTPUT_MESSAGES]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Hello from Claude."}],
            "finish_reason": "end_turn",
        }
    ]


def test_error_propagates_and_marks_the_span(client: anthropic.Anthropic, spans: Spans) -> None:
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model=ERROR_MODEL, max_tokens=10, messages=MESSAGES)
    span = spans.one()
    assert span.status.status_code is StatusCode.ERROR
    assert spans.attributes()[attr.ERROR_TYPE] == "BadRequestError"


def test_enriches_a_decorated_generation(client: anthropic.Anthropic, spans: Spans) -> None:
    with decorated_stage("generation", "reply"):
        client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES)
    assert spans.names() == ["chat reply"]
    attributes = spans.attributes()
    assert attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] == TOTAL_INPUT
    assert attributes[attr.GEN_AI_PROVIDER_NAME] == "anthropic"
    assert attr.GEN_AI_OPERATION_NAME not in attributes


def test_raw_stream_records_cumulative_usage(client: anthropic.Anthropic, spans: Spans) -> None:
    stream = client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES, stream=True)
    kinds = [event.type for event in stream]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    attributes = spans.attributes()
    assert attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] == TOTAL_INPUT
    assert attributes[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 15
    assert attributes[attr.GEN_AI_RESPONSE_FINISH_REASONS] == ["end_turn"]
    assert attributes[attr.COST_USD] == pytest.approx(_expected_cost(15))


def test_raw_stream_early_break_keeps_usage_seen_so_far(
    client: anthropic.Anthropic, spans: Spans
) -> None:
    stream = client.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES, stream=True)
    for event in stream:
        if event.type == "content_block_delta":
            break
    del stream
    attributes = spans.attributes()
    assert attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] == TOTAL_INPUT
    assert attributes[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 1  # from message_start
    assert attr.GEN_AI_RESPONSE_FINISH_REASONS not in attributes


def test_stream_helper(client: anthropic.Anthropic, spans: Spans) -> None:
    with client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        assert spans.all() == []
    assert text == "Hello from Claude."
    attributes = spans.attributes(f"chat {MODEL}")
    assert attributes[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 15
    assert attributes[attr.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 100
    assert attributes[attr.GEN_AI_RESPONSE_FINISH_REASONS] == ["end_turn"]


def test_stream_helper_early_exit(client: anthropic.Anthropic, spans: Spans) -> None:
    with client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream:
        for event in stream:
            if event.type == "content_block_start":
                break
    span = spans.one()
    assert span.status.status_code is StatusCode.UNSET
    assert spans.attributes()[attr.GEN_AI_USAGE_INPUT_TOKENS] == TOTAL_INPUT


async def test_async_create_stream_and_helper(
    aclient: anthropic.AsyncAnthropic, spans: Spans
) -> None:
    await aclient.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES)
    stream = await aclient.messages.create(
        model=MODEL, max_tokens=100, messages=MESSAGES, stream=True
    )
    async for _ in stream:
        pass
    async with aclient.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as managed:
        final = await managed.get_final_message()
    assert final.usage.output_tokens == 15
    outputs = [(s.attributes or {}).get(attr.GEN_AI_USAGE_OUTPUT_TOKENS) for s in spans.all()]
    assert outputs == [12, 15, 15]
    assert spans.names() == [f"chat {MODEL}"] * 3


async def test_parse_sync_and_async(
    client: anthropic.Anthropic, aclient: anthropic.AsyncAnthropic, spans: Spans
) -> None:
    client.messages.parse(model=MODEL, max_tokens=100, messages=MESSAGES)
    await aclient.messages.parse(model=MODEL, max_tokens=100, messages=MESSAGES)
    assert spans.names() == [f"chat {MODEL}"] * 2
    assert all((s.attributes or {})[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 12 for s in spans.all())


def test_the_sdks_own_span_nests_under_the_generation_span(
    server: FakeProviderServer, provider: TracerProvider, spans: Spans
) -> None:
    """anthropic >= 2 traces its own calls; that span is a child of ours, not a second stage."""
    traced = anthropic.Anthropic(
        base_url=server.url,
        api_key="test-key",
        max_retries=0,
        open_telemetry={"tracer_provider": provider},
    )
    traced.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES)
    ours = spans.one(f"chat {MODEL}")
    sdk = [s for s in spans.all() if s is not ours]
    assert len(sdk) == 1
    assert sdk[0].parent is not None and sdk[0].parent.span_id == ours.context.span_id
    assert attr.STAGE not in (sdk[0].attributes or {})
    assert (ours.attributes or {})[attr.STAGE] == "generation"


async def test_beta_messages_are_traced_too(
    client: anthropic.Anthropic, aclient: anthropic.AsyncAnthropic, spans: Spans
) -> None:
    client.beta.messages.create(model=MODEL, max_tokens=100, messages=MESSAGES)
    stream = await aclient.beta.messages.create(
        model=MODEL, max_tokens=100, messages=MESSAGES, stream=True
    )
    async for _ in stream:
        pass
    with client.beta.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as managed:
        managed.until_done()
    assert spans.names() == [f"chat {MODEL}"] * 3
    outputs = [(s.attributes or {}).get(attr.GEN_AI_USAGE_OUTPUT_TOKENS) for s in spans.all()]
    assert outputs == [12, 15, 15]
