"""Captured content in the GenAI conventions' ``parts`` shape, for every client that captures it.

Each client runs against the loopback fake of its API; the recorded
``gen_ai.input.messages``, ``gen_ai.output.messages`` and
``gen_ai.system_instructions`` are decoded and compared whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import boto3
import litellm
import openai
import pytest
from botocore.config import Config
from google import genai
from google.genai import types
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from llmspans import _attributes as attr
from llmspans import _content
from llmspans.instrumentation import _messages as messages

from .conftest import Spans, pipeline_root
from .fake_providers import BEDROCK_TEXT, CHAT_TEXT, GEMINI_TEXT, FakeProviderServer

pytestmark = pytest.mark.usefixtures("capture_content")


def _decoded(spans: Spans, key: str, name: str | None = None) -> Any:
    return json.loads(spans.attributes(name)[key])


def _text(role: str, content: str, finish_reason: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"role": role, "parts": [{"type": "text", "content": content}]}
    if finish_reason is not None:
        found["finish_reason"] = finish_reason
    return found


@pytest.fixture
def oai(server: FakeProviderServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="k", max_retries=0)


def test_openai_chat_history_with_tool_calls(oai: openai.OpenAI, spans: Spans) -> None:
    oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "rainy"},
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "https://x.example/a.png"}}],
            },
        ],
    )
    assert _decoded(spans, attr.GEN_AI_INPUT_MESSAGES) == [
        _text("system", "Be brief."),
        _text("user", "Weather in Paris?"),
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "id": "call_1",
                    "name": "weather",
                    "arguments": {"city": "Paris"},
                }
            ],
        },
        {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": "call_1", "response": "rainy"}],
        },
        {
            "role": "user",
            "parts": [{"type": "uri", "modality": "image", "uri": "https://x.example/a.png"}],
        },
    ]
    assert _decoded(spans, attr.GEN_AI_OUTPUT_MESSAGES) == [
        _text("assistant", "".join(CHAT_TEXT), "stop")
    ]
    # Chat completions take the system prompt in the history: nothing is given apart.
    assert attr.GEN_AI_SYSTEM_INSTRUCTIONS not in spans.attributes()


def test_openai_stream_output(oai: openai.OpenAI, spans: Spans) -> None:
    stream = oai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Q"}], stream=True
    )
    for _ in stream:
        pass
    assert _decoded(spans, attr.GEN_AI_OUTPUT_MESSAGES) == [
        _text("assistant", "".join(CHAT_TEXT), "stop")
    ]


def test_openai_responses_instructions_and_output(oai: openai.OpenAI, spans: Spans) -> None:
    oai.responses.create(model="gpt-4.1", instructions="Answer in one word.", input="Capital?")
    assert _decoded(spans, attr.GEN_AI_SYSTEM_INSTRUCTIONS) == [
        {"type": "text", "content": "Answer in one word."}
    ]
    assert _decoded(spans, attr.GEN_AI_INPUT_MESSAGES) == [_text("user", "Capital?")]
    assert _decoded(spans, attr.GEN_AI_OUTPUT_MESSAGES) == [
        _text("assistant", "Paris.", "completed")
    ]


def test_openai_legacy_completion_prompt(oai: openai.OpenAI, spans: Spans) -> None:
    oai.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say 42")
    assert _decoded(spans, attr.GEN_AI_INPUT_MESSAGES) == [_text("user", "Say 42")]
    [output] = _decoded(spans, attr.GEN_AI_OUTPUT_MESSAGES)
    assert output["role"] == "assistant" and output["parts"][0]["type"] == "text"


def test_anthropic_tool_use_and_result(server: FakeProviderServer, spans: Spans) -> None:
    client = anthropic.Anthropic(base_url=server.url, api_key="k", max_retries=0)
    client.messages.create(
        model="claude-3-5-sonnet-20241022",
        max_tokens=50,
        system=[{"type": "text", "text": "Be brief."}],
        messages=[
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "need a tool", "signature": "s"},
                    {"type": "tool_use", "id": "tu_1", "name": "weather", "input": {"c": "P"}},
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "tu_1", "content": "rainy"}],
            },
        ],
    )
    assert _decoded(spans, attr.GEN_AI_SYSTEM_INSTRUCTIONS) == [
        {"type": "text", "content": "Be brief."}
    ]
    assert _decoded(spans, attr.GEN_AI_INPUT_MESSAGES) == [
        _text("user", "Weather?"),
        {
            "role": "assistant",
            "parts": [
                {"type": "reasoning", "content": "need a tool"},
                {"type": "tool_call", "id": "tu_1", "name": "weather", "arguments": {"c": "P"}},
            ],
        },
        {
            "role": "user",
            "parts": [{"type": "tool_call_response", "id": "tu_1", "response": "rainy"}],
        },
    ]


@pytest.fixture
def bedrock(server: FakeProviderServer) -> Any:
    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=server.url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1}),
    )


BEDROCK_MODEL = "us.anthropic.claude-3-5-sonnet-20241022-v2:0"


def test_bedrock_converse(bedrock: Any, spans: Spans) -> None:
    bedrock.converse(
        modelId=BEDROCK_MODEL,
        system=[{"text": "Be brief."}],
        messages=[
            {"role": "user", "content": [{"text": "Say hi."}]},
            {
                "role": "assistant",
                "content": [{"toolUse": {"toolUseId": "t1", "name": "greet", "input": {}}}],
            },
            {
                "role": "user",
                "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "hi"}]}}],
            },
        ],
    )
    assert _decoded(spans, attr.GEN_AI_SYSTEM_INSTRUCTIONS) == [
        {"type": "text", "content": "Be brief."}
    ]
    assert _decoded(spans, attr.GEN_AI_INPUT_MESSAGES) == [
        _text("user", "Say hi."),
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": "t1", "name": "greet", "arguments": {}}],
        },
        {"role": "user", "parts": [{"type": "tool_call_response", "id": "t1", "response": "hi"}]},
    ]
    assert _decoded(spans, attr.GEN_AI_OUTPUT_MESSAGES) == [
        _text("assistant", "".join(BEDROCK_TEXT), "end_turn")
    ]


def test_bedrock_converse_stream(bedrock: Any, spans: Spans) -> None:
    response = bedrock.converse_stream(
        modelId=BEDROCK_MODEL, messages=[{"role": "user", "content": [{"text": "Say hi."}]}]
    )
    for _ in response["stream"]:
        pass
    assert _decoded(spans, attr.GEN_AI_OUTPUT_MESSAGES) == [
        _text("assistant", "".join(BEDROCK_TEXT), "end_turn")
    ]


def test_bedrock_invoke_model_body(bedrock: Any, spans: Spans) -> None:
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 20,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Say hi."}],
    }
    bedrock.invoke_model(modelId=BEDROCK_MODEL, body=json.dumps(body))
    assert _decoded(spans, attr.GEN_AI_SYSTEM_INSTRUCTIONS) == [
        {"type": "text", "content": "Be brief."}
    ]
    assert _decoded(spans, attr.GEN_AI_INPUT_MESSAGES) == [_text("user", "Say hi.")]


@pytest.fixture
def gemini(server: FakeProviderServer) -> genai.Client:
    return genai.Client(
        api_key="k", http_options=types.HttpOptions(base_url=server.url, retry_options=None)
    )


def test_gemini_system_instruction_and_output(gemini: genai.Client, spans: Spans) -> None:
    gemini.models.generate_content(
        model="gemini-2.0-flash",
        contents=[
            types.Content(role="user", parts=[types.Part(text="Hi")]),
            types.Content(
                role="model",
                parts=[types.Part(function_call=types.FunctionCall(name="f", args={"a": 1}))],
            ),
            "Go on.",
        ],
        config=types.GenerateContentConfig(system_instruction="Be brief."),
    )
    assert _decoded(spans, attr.GEN_AI_SYSTEM_INSTRUCTIONS) == [
        {"type": "text", "content": "Be brief."}
    ]
    assert _decoded(spans, attr.GEN_AI_INPUT_MESSAGES) == [
        _text("user", "Hi"),
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": None, "name": "f", "arguments": {"a": 1}}],
        },
        _text("user", "Go on."),
    ]
    assert _decoded(spans, attr.GEN_AI_OUTPUT_MESSAGES) == [
        _text("assistant", "".join(GEMINI_TEXT), "stop")
    ]


def test_gemini_stream_output(gemini: genai.Client, spans: Spans) -> None:
    for _ in gemini.models.generate_content_stream(model="gemini-2.0-flash", contents="Hi"):
        pass
    assert _decoded(spans, attr.GEN_AI_OUTPUT_MESSAGES) == [
        _text("assistant", "".join(GEMINI_TEXT), "stop")
    ]


def test_litellm_input_and_output(server: FakeProviderServer, spans: Spans) -> None:
    litellm.completion(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "Q"}],
        api_base=f"{server.url}/v1",
        api_key="k",
    )
    assert _decoded(spans, attr.GEN_AI_INPUT_MESSAGES, "chat gpt-4o-mini") == [_text("user", "Q")]
    assert _decoded(spans, attr.GEN_AI_OUTPUT_MESSAGES, "chat gpt-4o-mini") == [
        _text("assistant", "".join(CHAT_TEXT), "stop")
    ]


def test_langchain_messages() -> None:
    converted = messages.langchain_input(
        [
            SystemMessage("Be brief."),
            HumanMessage("Weather?"),
            AIMessage("", tool_calls=[{"id": "c1", "name": "weather", "args": {"c": "P"}}]),
            ToolMessage("rainy", tool_call_id="c1"),
        ]
    )
    assert converted == [
        _text("system", "Be brief."),
        _text("user", "Weather?"),
        {
            "role": "assistant",
            "parts": [
                {"type": "text", "content": ""},
                {"type": "tool_call", "id": "c1", "name": "weather", "arguments": {"c": "P"}},
            ],
        },
        {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": "c1", "response": "rainy"}],
        },
    ]


def test_redaction_applies_to_every_content_attribute(oai: openai.OpenAI, spans: Spans) -> None:
    seen: list[str] = []

    def redact(text: str) -> str:
        seen.append(text)
        return text.replace("secret", "[x]")

    _content.set_redactor(redact)
    try:
        oai.responses.create(model="gpt-4.1", instructions="secret rules", input="my secret")
    finally:
        _content.set_redactor(None)
    attributes = spans.attributes()
    assert "secret" not in attributes[attr.GEN_AI_SYSTEM_INSTRUCTIONS]
    assert "secret" not in attributes[attr.GEN_AI_INPUT_MESSAGES]
    assert len(seen) == 3  # instructions, input, output: each passed the hook


def test_nothing_is_built_with_capture_off(
    oai: openai.OpenAI, spans: Spans, monkeypatch: pytest.MonkeyPatch
) -> None:
    _content.set_capture(False)
    built: list[object] = []
    monkeypatch.setattr(messages, "responses_input", built.append)
    oai.responses.create(model="gpt-4.1", instructions="rules", input="hello")
    attributes = spans.attributes()
    assert built == []
    for key in (
        attr.GEN_AI_SYSTEM_INSTRUCTIONS,
        attr.GEN_AI_INPUT_MESSAGES,
        attr.GEN_AI_OUTPUT_MESSAGES,
    ):
        assert key not in attributes


# --- the bound --------------------------------------------------------------------------


@pytest.fixture
def short_content() -> Iterator[None]:
    _content.set_max_length(1000)
    yield
    _content.set_max_length(None)


class _CountingList(list[Any]):
    """A list that counts the items iterated over."""

    looked_at = 0

    def __iter__(self) -> Iterator[Any]:
        for item in super().__iter__():
            self.looked_at += 1
            yield item


@pytest.mark.usefixtures("short_content")
def test_a_long_history_is_converted_only_as_far_as_it_is_recorded() -> None:
    history = _CountingList({"role": "user", "content": "x" * 10} for _ in range(200_000))
    converted = messages.openai_chat_input(history)
    assert converted is not None
    # 1000 characters hold a few dozen such messages; the rest are never looked at.
    assert 10 < len(converted) < 40
    assert history.looked_at <= len(converted) + 1


@pytest.mark.usefixtures("short_content")
def test_one_huge_text_is_cut_before_it_is_serialized() -> None:
    converted = messages.anthropic_input([{"role": "user", "content": "y" * 5_000_000}])
    assert converted is not None
    assert len(converted[0]["parts"][0]["content"]) <= 1001


@pytest.mark.usefixtures("short_content")
def test_streamed_text_is_held_only_up_to_the_limit() -> None:
    from llmspans.instrumentation._genai import StreamedText

    text = StreamedText()
    for _ in range(100_000):
        text.add("z" * 50)
    assert text.size <= 1000 + 50


def test_a_run_sampled_for_evaluation_records_content_with_capture_off(
    oai: openai.OpenAI, spans: Spans
) -> None:
    from llmspans._state import STATE

    _content.set_capture(False)
    with pipeline_root("qa") as root:
        STATE.sampled_runs.add(root)
        STATE.runs_sampled = True  # with the set: what @pipeline does
        try:
            oai.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "Q"}]
            )
        finally:
            STATE.sampled_runs.discard(root)
    attributes = spans.attributes("chat gpt-4o-mini")
    assert json.loads(attributes[attr.GEN_AI_INPUT_MESSAGES]) == [_text("user", "Q")]
    assert json.loads(attributes[attr.GEN_AI_OUTPUT_MESSAGES]) == [
        _text("assistant", "".join(CHAT_TEXT), "stop")
    ]
