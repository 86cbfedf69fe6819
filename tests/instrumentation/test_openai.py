"""The openai instrumentor against a loopback server that answers like the OpenAI API."""

from __future__ import annotations

import openai
import pytest
from opentelemetry.trace import SpanKind, StatusCode

from llmspans import _attributes as attr
from llmspans._state import STATE
from llmspans.cost import cost_usd

from .conftest import Spans, decorated_stage, pipeline_root
from .fake_providers import ERROR_MODEL, FakeProviderServer


@pytest.fixture
def client(server: FakeProviderServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="test-key", max_retries=0)


@pytest.fixture
def aclient(server: FakeProviderServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="test-key", max_retries=0)


MESSAGES = [{"role": "user", "content": "What is the answer?"}]


def test_chat_completion_creates_a_generation_span(
    client: openai.OpenAI, server: FakeProviderServer, spans: Spans
) -> None:
    with pipeline_root("qa") as root:
        completion = client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=50, temperature=0.2
        )
    assert completion.choices[0].message.content == "The answer is 42."
    span = spans.one("chat gpt-4o-mini")
    assert span.kind is SpanKind.CLIENT
    assert span.parent is not None and span.parent.span_id == root.get_span_context().span_id
    assert span.status.status_code is StatusCode.UNSET
    expected_cost = cost_usd("gpt-4o-mini-2024-07-18", 1200, 300, cache_read_input_tokens=1000)
    assert expected_cost is not None
    assert spans.attributes("chat gpt-4o-mini") == {
        attr.STAGE: "generation",
        attr.PIPELINE: "qa",
        attr.GEN_AI_OPERATION_NAME: "chat",
        attr.GEN_AI_PROVIDER_NAME: "openai",
        attr.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
        attr.GEN_AI_REQUEST_MAX_TOKENS: 50,
        attr.GEN_AI_REQUEST_TEMPERATURE: 0.2,
        attr.GEN_AI_REQUEST_STREAM: False,
        attr.SERVER_ADDRESS: "127.0.0.1",
        attr.SERVER_PORT: server.server_address[1],
        attr.GEN_AI_RESPONSE_MODEL: "gpt-4o-mini-2024-07-18",
        attr.GEN_AI_RESPONSE_ID: "chatcmpl-123",
        attr.GEN_AI_RESPONSE_FINISH_REASONS: ["stop"],
        attr.GEN_AI_USAGE_INPUT_TOKENS: 1200,
        attr.GEN_AI_USAGE_OUTPUT_TOKENS: 300,
        attr.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 1000,
        attr.GENERATION_CITATIONS: ["https://docs.example/doc-1"],
        attr.COST_USD: pytest.approx(expected_cost),
    }


def test_no_content_is_recorded_by_default(client: openai.OpenAI, spans: Spans) -> None:
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    attributes = spans.attributes()
    assert attr.GEN_AI_INPUT_MESSAGES not in attributes
    assert attr.GEN_AI_OUTPUT_MESSAGES not in attributes


@pytest.mark.usefixtures("capture_content")
def test_content_is_recorded_when_capture_is_on(client: openai.OpenAI, spans: Spans) -> None:
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    attributes = spans.attributes()
    assert "What is the answer?" in attributes[attr.GEN_AI_INPUT_MESSAGES]
    assert "The answer is 42." in attributes[attr.GEN_AI_OUTPUT_MESSAGES]


def test_a_sampled_run_marks_the_content_it_records_only_for_its_judge(
    client: openai.OpenAI, spans: Spans
) -> None:
    with pipeline_root("qa") as root:
        STATE.sampled_runs.add(root)  # as @pipeline does for a run the trace id samples
        STATE.runs_sampled = True  # with the set: what @pipeline does
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        finally:
            STATE.sampled_runs.discard(root)
    attributes = spans.attributes("chat gpt-4o-mini")
    assert "What is the answer?" in attributes[attr.GEN_AI_INPUT_MESSAGES]
    assert "The answer is 42." in attributes[attr.GEN_AI_OUTPUT_MESSAGES]
    assert attributes[attr.EVALUATION_SAMPLED_CONTENT] is True


@pytest.mark.usefixtures("capture_content")
def test_content_captured_on_purpose_is_not_marked(client: openai.OpenAI, spans: Spans) -> None:
    with pipeline_root("qa") as root:
        STATE.sampled_runs.add(root)
        STATE.runs_sampled = True  # with the set: what @pipeline does
        try:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        finally:
            STATE.sampled_runs.discard(root)
    attributes = spans.attributes("chat gpt-4o-mini")
    assert attr.GEN_AI_OUTPUT_MESSAGES in attributes
    assert attr.EVALUATION_SAMPLED_CONTENT not in attributes


def test_inside_a_decorated_generation_the_stage_span_is_enriched(
    client: openai.OpenAI, spans: Spans
) -> None:
    with decorated_stage("generation", "answer", pipeline="qa"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert spans.names() == ["chat answer"]
    attributes = spans.attributes("chat answer")
    assert attributes[attr.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini-2024-07-18"
    assert attributes[attr.GEN_AI_PROVIDER_NAME] == "openai"
    # two calls: their tokens and cost add up on the one stage span
    assert attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] == 2400
    assert attributes[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 600
    single = cost_usd("gpt-4o-mini-2024-07-18", 1200, 300, cache_read_input_tokens=1000)
    assert single is not None
    assert attributes[attr.COST_USD] == pytest.approx(2 * single)


def test_inside_a_decorated_retrieval_a_generation_span_nests(
    client: openai.OpenAI, spans: Spans
) -> None:
    with decorated_stage("retrieval", "faq") as outer:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    span = spans.one("chat gpt-4o-mini")
    assert span.parent is not None and span.parent.span_id == outer.get_span_context().span_id
    assert spans.attributes("retrieval faq").get(attr.GEN_AI_USAGE_INPUT_TOKENS) is None


def test_api_error_propagates_unchanged_and_marks_the_span(
    client: openai.OpenAI, spans: Spans
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=ERROR_MODEL, messages=MESSAGES)
    assert raised.value.status_code == 400
    span = spans.one(f"chat {ERROR_MODEL}")
    assert span.status.status_code is StatusCode.ERROR
    assert spans.attributes()[attr.ERROR_TYPE] == "BadRequestError"
    assert [event.name for event in span.events] == ["exception"]


def test_stream_with_usage_ends_once_on_exhaustion(
    client: openai.OpenAI, server: FakeProviderServer, spans: Spans
) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    assert spans.all() == []  # the span covers the stream, not just the request
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "The answer is 42."
    attributes = spans.attributes("chat gpt-4o-mini")
    assert attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] == 50
    assert attributes[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 7
    assert attributes[attr.GEN_AI_RESPONSE_FINISH_REASONS] == ["stop"]
    assert attributes[attr.GEN_AI_RESPONSE_ID] == "chatcmpl-456"
    stream.close()
    del stream
    assert len(spans.all()) == 1
    # the user's request went out unchanged
    assert server.requests[-1][1]["stream_options"] == {"include_usage": True}


def test_stream_without_usage_is_not_changed(
    client: openai.OpenAI, server: FakeProviderServer, spans: Spans
) -> None:
    for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
        pass
    assert "stream_options" not in server.requests[-1][1]
    attributes = spans.attributes()
    assert attr.GEN_AI_USAGE_INPUT_TOKENS not in attributes
    assert attributes[attr.GEN_AI_RESPONSE_FINISH_REASONS] == ["stop"]


def test_stream_early_break_ends_on_garbage_collection(client: openai.OpenAI, spans: Spans) -> None:
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    for _ in stream:
        break
    assert spans.all() == []
    del stream
    span = spans.one()
    assert span.status.status_code is StatusCode.UNSET
    assert spans.attributes()[attr.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini-2024-07-18"


def test_stream_close_and_context_manager_end_once(client: openai.OpenAI, spans: Spans) -> None:
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    next(iter(stream))
    stream.close()
    assert len(spans.all()) == 1
    stream.close()
    with client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    ) as second:
        next(iter(second))
    assert len(spans.all()) == 2
    del stream, second
    assert len(spans.all()) == 2


def test_stream_helper_span_covers_the_with_block(client: openai.OpenAI, spans: Spans) -> None:
    with client.chat.completions.stream(
        model="gpt-4o-mini", messages=MESSAGES, stream_options={"include_usage": True}
    ) as stream:
        for event in stream:
            if event.type == "content.done":
                break
        assert spans.all() == []
    attributes = spans.attributes("chat gpt-4o-mini")
    assert attributes[attr.STAGE] == "generation"
    assert attributes[attr.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini-2024-07-18"


def test_stream_helper_to_completion_records_usage(client: openai.OpenAI, spans: Spans) -> None:
    with client.chat.completions.stream(
        model="gpt-4o-mini", messages=MESSAGES, stream_options={"include_usage": True}
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "The answer is 42."
    attributes = spans.attributes("chat gpt-4o-mini")
    assert attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] == 50
    assert attributes[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 7


async def test_async_chat_and_stream(aclient: openai.AsyncOpenAI, spans: Spans) -> None:
    with pipeline_root("qa"):
        await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        stream = await aclient.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    assert len(chunks) == 6
    first, second = [s for s in spans.all() if s.name == "chat gpt-4o-mini"]
    assert first.attributes is not None and second.attributes is not None
    assert first.attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] == 1200
    assert second.attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] == 50
    assert second.attributes[attr.PIPELINE] == "qa"


async def test_async_stream_early_break_and_aclose(
    aclient: openai.AsyncOpenAI, spans: Spans
) -> None:
    stream = await aclient.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    )
    async for _ in stream:
        break
    assert spans.all() == []
    await stream.close()
    assert len(spans.all()) == 1
    async with aclient.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES) as managed:
        async for _ in managed:
            pass
    assert len(spans.all()) == 2


def test_responses_api(client: openai.OpenAI, server: FakeProviderServer, spans: Spans) -> None:
    response = client.responses.create(model="gpt-4.1", input="Capital of France?")
    assert response.output_text == "Paris."
    expected = cost_usd("gpt-4.1-2025-04-14", 100, 10, cache_read_input_tokens=20)
    assert spans.attributes("chat gpt-4.1") == {
        attr.STAGE: "generation",
        attr.GEN_AI_OPERATION_NAME: "chat",
        attr.GEN_AI_PROVIDER_NAME: "openai",
        attr.GEN_AI_REQUEST_MODEL: "gpt-4.1",
        attr.GEN_AI_REQUEST_STREAM: False,
        attr.SERVER_ADDRESS: "127.0.0.1",
        attr.SERVER_PORT: server.server_address[1],
        attr.GEN_AI_RESPONSE_MODEL: "gpt-4.1-2025-04-14",
        attr.GEN_AI_RESPONSE_ID: "resp_123",
        attr.GEN_AI_RESPONSE_FINISH_REASONS: ["completed"],
        attr.GEN_AI_USAGE_INPUT_TOKENS: 100,
        attr.GEN_AI_USAGE_OUTPUT_TOKENS: 10,
        attr.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 20,
        attr.GENERATION_CITATIONS: ["file-doc-7"],
        attr.COST_USD: pytest.approx(expected),
    }


def test_responses_stream(client: openai.OpenAI, spans: Spans) -> None:
    stream = client.responses.create(model="gpt-4.1", input="Capital of France?", stream=True)
    kinds = [event.type for event in stream]
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    attributes = spans.attributes("chat gpt-4.1")
    assert attributes[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 10
    assert attributes[attr.GEN_AI_RESPONSE_FINISH_REASONS] == ["completed"]


def test_responses_stream_helper(client: openai.OpenAI, spans: Spans) -> None:
    with client.responses.stream(model="gpt-4.1", input="Capital of France?") as stream:
        final = stream.get_final_response()
    assert final.output_text == "Paris."
    attributes = spans.attributes("chat gpt-4.1")
    assert attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] == 100


async def test_async_responses_and_stream(aclient: openai.AsyncOpenAI, spans: Spans) -> None:
    await aclient.responses.create(model="gpt-4.1", input="Capital of France?")
    stream = await aclient.responses.create(model="gpt-4.1", input="Capital?", stream=True)
    async for _ in stream:
        pass
    assert [s.name for s in spans.all()] == ["chat gpt-4.1", "chat gpt-4.1"]
    assert all((s.attributes or {}).get(attr.GEN_AI_USAGE_OUTPUT_TOKENS) == 10 for s in spans.all())


def test_embeddings_span_is_not_a_stage(client: openai.OpenAI, spans: Spans) -> None:
    with decorated_stage("retrieval", "faq") as outer:
        result = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(result.data) == 2
    span = spans.one("embeddings text-embedding-3-small")
    assert span.parent is not None and span.parent.span_id == outer.get_span_context().span_id
    attributes = spans.attributes("embeddings text-embedding-3-small")
    assert attr.STAGE not in attributes
    assert attributes[attr.GEN_AI_OPERATION_NAME] == "embeddings"
    assert attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] == 8
    assert attributes[attr.COST_USD] == pytest.approx(8 * 0.02e-6)


async def test_async_embeddings(aclient: openai.AsyncOpenAI, spans: Spans) -> None:
    await aclient.embeddings.create(model="text-embedding-3-small", input="a")
    assert spans.names() == ["embeddings text-embedding-3-small"]


def test_raw_response_calls_keep_working(client: openai.OpenAI, spans: Spans) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.parse().choices[0].message.content == "The answer is 42."
    assert spans.one().attributes is not None


async def test_async_stream_early_break_ends_on_garbage_collection(
    aclient: openai.AsyncOpenAI, spans: Spans
) -> None:
    stream = await aclient.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    )
    async for _ in stream:
        break
    assert spans.all() == []
    del stream
    assert len(spans.all()) == 1


def test_stream_returned_from_an_ended_stage_is_consumed_quietly(
    client: openai.OpenAI, spans: Spans, caplog: pytest.LogCaptureFixture
) -> None:
    with decorated_stage("generation", "answer"):
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    assert len(list(stream)) == 6
    assert spans.names() == ["chat answer"]
    assert not [r for r in caplog.records if "ended span" in r.getMessage()]


def test_llmspans_instrument_is_the_instrumentation_entry(provider: object) -> None:
    import llmspans
    from llmspans.instrumentation import instrument

    assert llmspans.instrument is instrument


def test_legacy_completions_are_text_completion_generations(
    client: openai.OpenAI, spans: Spans
) -> None:
    client.completions.create(model="gpt-3.5-turbo-instruct", prompt="The answer is", max_tokens=5)
    attributes = spans.attributes("text_completion gpt-3.5-turbo-instruct")
    assert attributes[attr.STAGE] == "generation"
    assert attributes[attr.GEN_AI_OPERATION_NAME] == "text_completion"
    assert attributes[attr.GEN_AI_RESPONSE_FINISH_REASONS] == ["length"]
    assert attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] == 4
    assert attributes[attr.COST_USD] == pytest.approx(cost_usd("gpt-3.5-turbo-instruct", 4, 2))


@pytest.mark.usefixtures("capture_content")
async def test_legacy_completions_stream(aclient: openai.AsyncOpenAI, spans: Spans) -> None:
    stream = await aclient.completions.create(
        model="gpt-3.5-turbo-instruct", prompt="The answer is", stream=True
    )
    texts = [chunk.choices[0].text async for chunk in stream]
    assert texts == [" 4", "2"]
    attributes = spans.attributes()
    assert attributes[attr.GEN_AI_RESPONSE_FINISH_REASONS] == ["stop"]
    assert '" 42"' in attributes[attr.GEN_AI_OUTPUT_MESSAGES]


def test_parse_helpers_are_generations(client: openai.OpenAI, spans: Spans) -> None:
    parsed = client.chat.completions.parse(model="gpt-4o-mini", messages=MESSAGES)
    assert parsed.choices[0].message.content == "The answer is 42."
    response = client.responses.parse(model="gpt-4.1", input="Capital of France?")
    assert response.output_text == "Paris."
    assert spans.names() == ["chat gpt-4o-mini", "chat gpt-4.1"]
    tokens = [(s.attributes or {})[attr.GEN_AI_USAGE_INPUT_TOKENS] for s in spans.all()]
    assert tokens == [1200, 100]


async def test_async_parse(aclient: openai.AsyncOpenAI, spans: Spans) -> None:
    await aclient.chat.completions.parse(model="gpt-4o-mini", messages=MESSAGES)
    await aclient.responses.parse(model="gpt-4.1", input="Capital of France?")
    assert spans.names() == ["chat gpt-4o-mini", "chat gpt-4.1"]


def test_concurrent_calls_in_one_stage_add_up(client: openai.OpenAI, spans: Spans) -> None:
    import contextvars
    from concurrent.futures import ThreadPoolExecutor

    def call() -> None:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    with decorated_stage("generation", "fan-out"), ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(contextvars.copy_context().run, call) for _ in range(8)]
        for future in futures:
            future.result()
    assert spans.names() == ["chat fan-out"]
    attributes = spans.attributes()
    assert attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] == 8 * 1200
    assert attributes[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 8 * 300
