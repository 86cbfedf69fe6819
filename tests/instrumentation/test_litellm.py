"""LiteLLM against the loopback OpenAI and Anthropic APIs: one span per call, any provider."""

from __future__ import annotations

import litellm
import pytest

from llmspans import _attributes as attr
from llmspans.cost import cost_usd

from .conftest import Spans, pipeline_root
from .fake_providers import FakeProviderServer

MESSAGES = [{"role": "user", "content": "What is the answer?"}]
CLAUDE = "claude-3-5-sonnet-20241022"


def test_openai_path_is_one_span_with_tokens_and_cost(
    server: FakeProviderServer, spans: Spans
) -> None:
    with pipeline_root("qa"):
        response = litellm.completion(
            model="openai/gpt-4o-mini",
            messages=MESSAGES,
            api_base=f"{server.url}/v1",
            api_key="k",
            temperature=0.2,
        )
    assert response.choices[0].message.content == "The answer is 42."
    span = spans.one("chat gpt-4o-mini")
    attributes = spans.attributes("chat gpt-4o-mini")
    assert attributes[attr.STAGE] == "generation"
    assert attributes[attr.PIPELINE] == "qa"
    assert attributes[attr.GEN_AI_PROVIDER_NAME] == "openai"
    assert attributes[attr.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    assert attributes[attr.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini-2024-07-18"
    assert attributes[attr.GEN_AI_REQUEST_TEMPERATURE] == 0.2
    # counted once: the nested openai call enriches this span, LiteLLM's totals replace it
    assert attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] == 1200
    assert attributes[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 300
    expected = cost_usd("gpt-4o-mini-2024-07-18", 1200, 300, cache_read_input_tokens=1000)
    assert attributes[attr.COST_USD] == pytest.approx(expected)
    assert attributes[attr.SERVER_ADDRESS] == "127.0.0.1"
    assert span.kind.name == "CLIENT"


def test_anthropic_path_without_the_sdk(server: FakeProviderServer, spans: Spans) -> None:
    response = litellm.completion(
        model=f"anthropic/{CLAUDE}",
        messages=MESSAGES,
        api_base=server.url,
        api_key="k",
        max_tokens=100,
    )
    assert "Hello from Claude." in str(response.choices[0].message.content)
    assert [path for path, _ in server.requests] == ["/v1/messages"]
    attributes = spans.attributes(f"chat {CLAUDE}")
    assert attributes[attr.GEN_AI_PROVIDER_NAME] == "anthropic"
    assert attributes[attr.GEN_AI_REQUEST_MAX_TOKENS] == 100
    assert attributes[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 12
    assert attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] >= 30
    assert attributes[attr.COST_USD] > 0


def test_streamed_completion(server: FakeProviderServer, spans: Spans) -> None:
    stream = litellm.completion(
        model="openai/gpt-4o-mini",
        messages=MESSAGES,
        api_base=f"{server.url}/v1",
        api_key="k",
        stream=True,
        stream_options={"include_usage": True},
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "The answer is 42."
    attributes = spans.attributes("chat gpt-4o-mini")
    assert attributes[attr.GEN_AI_REQUEST_STREAM] is True
    assert attributes[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 7
    assert attributes[attr.GEN_AI_RESPONSE_FINISH_REASONS] == ["stop"]


async def test_acompletion(server: FakeProviderServer, spans: Spans) -> None:
    await litellm.acompletion(
        model="openai/gpt-4o-mini", messages=MESSAGES, api_base=f"{server.url}/v1", api_key="k"
    )
    attributes = spans.attributes("chat gpt-4o-mini")
    assert attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] == 1200


def test_embedding(server: FakeProviderServer, spans: Spans) -> None:
    litellm.embedding(
        model="openai/text-embedding-3-small",
        input=["a", "b"],
        api_base=f"{server.url}/v1",
        api_key="k",
    )
    attributes = spans.attributes("embeddings text-embedding-3-small")
    assert attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] == 8
    assert attr.STAGE not in attributes


def test_error_propagates(server: FakeProviderServer, spans: Spans) -> None:
    with pytest.raises(litellm.exceptions.BadRequestError):
        litellm.completion(
            model="openai/model-that-fails",
            messages=MESSAGES,
            api_base=f"{server.url}/v1",
            api_key="k",
            num_retries=0,
        )
    span = spans.one("chat model-that-fails")
    assert span.status.status_code.name == "ERROR"
