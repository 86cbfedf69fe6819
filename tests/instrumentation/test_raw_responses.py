"""``with_raw_response`` calls keep tokens, response model and cost (openai and anthropic)."""

from __future__ import annotations

import gc

import anthropic
import openai
import pytest

from llmspans import _attributes as attr
from llmspans.cost import cost_usd

from .conftest import Spans, decorated_stage
from .fake_providers import FakeProviderServer

MESSAGES = [{"role": "user", "content": "What is the answer?"}]
CLAUDE = "claude-3-5-sonnet-20241022"


@pytest.fixture
def client(server: FakeProviderServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="test-key", max_retries=0)


@pytest.fixture
def aclient(server: FakeProviderServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="test-key", max_retries=0)


@pytest.fixture
def claude(server: FakeProviderServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="test-key", max_retries=0)


@pytest.fixture
def aclaude(server: FakeProviderServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=server.url, api_key="test-key", max_retries=0)


def _chat_facts(attributes: dict[str, object]) -> None:
    expected = cost_usd("gpt-4o-mini-2024-07-18", 1200, 300, cache_read_input_tokens=1000)
    assert attributes[attr.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini-2024-07-18"
    assert attributes[attr.GEN_AI_RESPONSE_ID] == "chatcmpl-123"
    assert attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] == 1200
    assert attributes[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 300
    assert attributes[attr.GEN_AI_RESPONSE_FINISH_REASONS] == ["stop"]
    assert attributes[attr.COST_USD] == pytest.approx(expected)


def test_openai_raw_chat_completion(client: openai.OpenAI, spans: Spans) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    # the span has ended when the call returns, as for create()
    _chat_facts(spans.attributes("chat gpt-4o-mini"))
    assert raw.headers["content-type"] == "application/json"
    completion = raw.parse()
    assert completion.choices[0].message.content == "The answer is 42."
    assert type(raw).__name__ == "LegacyAPIResponse"


async def test_openai_raw_chat_completion_async(aclient: openai.AsyncOpenAI, spans: Spans) -> None:
    raw = await aclient.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    assert raw.parse().usage is not None
    _chat_facts(spans.attributes("chat gpt-4o-mini"))


def test_openai_raw_inside_a_decorated_generation_enriches_it(
    client: openai.OpenAI, spans: Spans
) -> None:
    with decorated_stage("generation", "answer"):
        client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    _chat_facts(spans.attributes("chat answer"))


def test_openai_raw_stream(client: openai.OpenAI, spans: Spans) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    assert spans.all() == []  # the span covers the stream
    stream = raw.parse()
    assert raw.parse() is stream
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "The answer is 42."
    attributes = spans.attributes("chat gpt-4o-mini")
    assert attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] == 50
    assert attributes[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 7
    assert attributes[attr.GEN_AI_RESPONSE_FINISH_REASONS] == ["stop"]


def test_openai_raw_stream_never_parsed_ends_on_collection(
    client: openai.OpenAI, spans: Spans
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    )
    raw.http_response.close()
    del raw
    gc.collect()
    span = spans.one("chat gpt-4o-mini")
    assert attr.GEN_AI_USAGE_INPUT_TOKENS not in (span.attributes or {})


def test_openai_raw_responses_and_embeddings(client: openai.OpenAI, spans: Spans) -> None:
    client.responses.with_raw_response.create(model="gpt-4.1", input="Capital of France?")
    client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=["a", "b"])
    responses = spans.attributes("chat gpt-4.1")
    assert responses[attr.GEN_AI_USAGE_INPUT_TOKENS] == 100
    assert responses[attr.GEN_AI_RESPONSE_MODEL] == "gpt-4.1-2025-04-14"
    embeddings = spans.attributes("embeddings text-embedding-3-small")
    assert embeddings[attr.GEN_AI_USAGE_INPUT_TOKENS] == 8


def test_anthropic_raw_message(claude: anthropic.Anthropic, spans: Spans) -> None:
    raw = claude.messages.with_raw_response.create(model=CLAUDE, max_tokens=100, messages=MESSAGES)
    attributes = spans.attributes(f"chat {CLAUDE}")
    assert attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] == 150
    assert attributes[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 12
    assert attributes[attr.GEN_AI_RESPONSE_MODEL] == CLAUDE
    assert attributes[attr.COST_USD] > 0
    assert raw.parse().content[0].type == "text"


async def test_anthropic_raw_message_async(aclaude: anthropic.AsyncAnthropic, spans: Spans) -> None:
    raw = await aclaude.messages.with_raw_response.create(
        model=CLAUDE, max_tokens=100, messages=MESSAGES
    )
    message = await raw.parse()
    assert message.usage.output_tokens == 12
    assert spans.attributes(f"chat {CLAUDE}")[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 12


async def test_anthropic_raw_stream_async(aclaude: anthropic.AsyncAnthropic, spans: Spans) -> None:
    raw = await aclaude.messages.with_raw_response.create(
        model=CLAUDE, max_tokens=100, messages=MESSAGES, stream=True
    )
    stream = await raw.parse()
    kinds = [event.type async for event in stream]
    assert kinds[-1] == "message_stop"
    attributes = spans.attributes(f"chat {CLAUDE}")
    assert attributes[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 15
    assert attributes[attr.GEN_AI_RESPONSE_FINISH_REASONS] == ["end_turn"]


def test_anthropic_streaming_response_parsed_in_the_block(
    claude: anthropic.Anthropic, spans: Spans
) -> None:
    with claude.messages.with_streaming_response.create(
        model=CLAUDE, max_tokens=100, messages=MESSAGES
    ) as response:
        message = response.parse()
    assert message.usage.output_tokens == 12
    assert spans.attributes(f"chat {CLAUDE}")[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 12
