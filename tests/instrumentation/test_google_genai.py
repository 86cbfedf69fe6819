"""The Google Gen AI SDK against a loopback server that answers like the Gemini API."""

from __future__ import annotations

import pytest
from google import genai
from google.genai import errors, types

from llmspans import _attributes as attr
from llmspans.cost import cost_usd

from .conftest import Spans, decorated_stage, pipeline_root
from .fake_providers import ERROR_MODEL, GEMINI_TEXT, FakeProviderServer

MODEL = "gemini-2.0-flash"


@pytest.fixture
def client(server: FakeProviderServer) -> genai.Client:
    return genai.Client(
        api_key="test-key",
        http_options=types.HttpOptions(base_url=server.url, retry_options=None),
    )


def test_generate_content_is_a_generation_span(
    client: genai.Client, server: FakeProviderServer, spans: Spans
) -> None:
    with pipeline_root("assistant"):
        response = client.models.generate_content(
            model=MODEL,
            contents="Say something.",
            config=types.GenerateContentConfig(
                temperature=0.5, top_k=20, max_output_tokens=64, stop_sequences=["END"]
            ),
        )
    assert response.text == "".join(GEMINI_TEXT)
    span = spans.one(f"chat {MODEL}")
    assert span.kind.name == "CLIENT"
    attributes = spans.attributes(f"chat {MODEL}")
    assert attributes[attr.STAGE] == "generation"
    assert attributes[attr.PIPELINE] == "assistant"
    assert attributes[attr.GEN_AI_PROVIDER_NAME] == "gcp.gemini"
    assert attributes[attr.GEN_AI_REQUEST_MODEL] == MODEL
    assert attributes[attr.GEN_AI_REQUEST_TEMPERATURE] == 0.5
    assert attributes[attr.GEN_AI_REQUEST_TOP_K] == 20
    assert attributes[attr.GEN_AI_REQUEST_MAX_TOKENS] == 64
    assert attributes[attr.GEN_AI_REQUEST_STOP_SEQUENCES] == ["END"]
    assert attributes[attr.GEN_AI_REQUEST_STREAM] is False
    assert attributes[attr.GEN_AI_RESPONSE_MODEL] == f"{MODEL}-001"
    assert attributes[attr.GEN_AI_RESPONSE_ID] == "gemini-resp-1"
    assert attributes[attr.GEN_AI_RESPONSE_FINISH_REASONS] == ["stop"]
    assert attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] == 120
    assert attributes[attr.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 100
    assert attributes[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 8 + 4  # thinking is output
    expected = cost_usd(f"{MODEL}-001", 120, 12, cache_read_input_tokens=100)
    if expected is not None:
        assert attributes[attr.COST_USD] == pytest.approx(expected)
    assert attributes[attr.SERVER_ADDRESS] == "127.0.0.1"
    assert attributes[attr.SERVER_PORT] == server.server_address[1]


def test_stream_span_covers_the_stream(client: genai.Client, spans: Spans) -> None:
    stream = client.models.generate_content_stream(model=MODEL, contents="Say something.")
    text = "".join(chunk.text or "" for chunk in stream)
    assert text == "".join(GEMINI_TEXT)
    attributes = spans.attributes(f"chat {MODEL}")
    assert attributes[attr.GEN_AI_REQUEST_STREAM] is True
    assert attributes[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 12  # the last chunk's counts
    assert attributes[attr.GEN_AI_RESPONSE_FINISH_REASONS] == ["stop"]
    assert attributes[attr.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0


async def test_async_generate_and_stream(client: genai.Client, spans: Spans) -> None:
    await client.aio.models.generate_content(model=MODEL, contents="Say something.")
    stream = await client.aio.models.generate_content_stream(model=MODEL, contents="Again.")
    async for _ in stream:
        pass
    outputs = [(s.attributes or {}).get(attr.GEN_AI_USAGE_OUTPUT_TOKENS) for s in spans.all()]
    assert outputs == [12, 12]
    assert spans.names() == [f"chat {MODEL}"] * 2


@pytest.mark.usefixtures("capture_content")
def test_content_with_capture_on(client: genai.Client, spans: Spans) -> None:
    client.models.generate_content(model=MODEL, contents="Say something.")
    attributes = spans.attributes()
    assert "Say something." in attributes[attr.GEN_AI_INPUT_MESSAGES]
    assert "".join(GEMINI_TEXT) in attributes[attr.GEN_AI_OUTPUT_MESSAGES]


def test_enriches_a_decorated_generation(client: genai.Client, spans: Spans) -> None:
    with decorated_stage("generation", "reply"):
        client.models.generate_content(model=MODEL, contents="Say something.")
    assert spans.names() == ["chat reply"]
    assert spans.attributes()[attr.GEN_AI_USAGE_INPUT_TOKENS] == 120


def test_error_marks_the_span(client: genai.Client, spans: Spans) -> None:
    with pytest.raises(errors.ClientError):
        client.models.generate_content(model=ERROR_MODEL, contents="Say something.")
    assert spans.one().status.status_code.name == "ERROR"
