"""GenAI semantic-convention attributes: endpoint, request parameters, streams, retrieval."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as semconv
from opentelemetry.semconv.attributes import server_attributes

from llmspans import _attributes as attr

from .conftest import Spans
from .fake_providers import FakeProviderServer
from .test_framework_roots import ChunkRetriever
from .test_langchain import ChatLoopbackOpenAI
from .test_vector_stores import _qdrant

MESSAGES = [{"role": "user", "content": "What is the answer?"}]
CLAUDE = "claude-3-5-sonnet-20241022"


@pytest.fixture
def client(server: FakeProviderServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="test-key", max_retries=0)


@pytest.fixture
def claude(server: FakeProviderServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="test-key", max_retries=0)


def test_the_names_are_the_semantic_conventions() -> None:
    assert attr.GEN_AI_REQUEST_TOP_P == semconv.GEN_AI_REQUEST_TOP_P == "gen_ai.request.top_p"
    assert attr.GEN_AI_RETRIEVAL_DOCUMENTS == "gen_ai.retrieval.documents"
    assert attr.GEN_AI_RETRIEVAL_QUERY_TEXT == "gen_ai.retrieval.query.text"
    assert attr.GEN_AI_REQUEST_STREAM == "gen_ai.request.stream"
    assert attr.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK == "gen_ai.response.time_to_first_chunk"
    assert attr.SERVER_ADDRESS == server_attributes.SERVER_ADDRESS == "server.address"
    assert attr.PROVIDER_AWS_BEDROCK == "aws.bedrock"


def test_openai_request_parameters(
    client: openai.OpenAI, server: FakeProviderServer, spans: Spans
) -> None:
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        temperature=0.3,
        top_p=0.9,
        seed=7,
        stop="END",
        frequency_penalty=0.5,
        presence_penalty=-0.5,
        n=2,
        response_format={"type": "json_object"},
        max_completion_tokens=64,
    )
    attributes = spans.attributes()
    assert attributes[attr.GEN_AI_REQUEST_TEMPERATURE] == 0.3
    assert attributes[attr.GEN_AI_REQUEST_TOP_P] == 0.9
    assert attributes[attr.GEN_AI_REQUEST_SEED] == 7
    assert attributes[attr.GEN_AI_REQUEST_STOP_SEQUENCES] == ["END"]
    assert attributes[attr.GEN_AI_REQUEST_FREQUENCY_PENALTY] == 0.5
    assert attributes[attr.GEN_AI_REQUEST_PRESENCE_PENALTY] == -0.5
    assert attributes[attr.GEN_AI_REQUEST_CHOICE_COUNT] == 2
    assert attributes[attr.GEN_AI_OUTPUT_TYPE] == "json"
    assert attributes[attr.GEN_AI_REQUEST_MAX_TOKENS] == 64
    assert attributes[attr.GEN_AI_REQUEST_STREAM] is False
    assert attributes[attr.SERVER_ADDRESS] == "127.0.0.1"
    assert attributes[attr.SERVER_PORT] == server.server_address[1]
    assert attr.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK not in attributes


def test_a_single_choice_is_not_recorded(client: openai.OpenAI, spans: Spans) -> None:
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, n=1)
    assert attr.GEN_AI_REQUEST_CHOICE_COUNT not in spans.attributes()


def test_openai_stream_records_stream_and_time_to_first_chunk(
    client: openai.OpenAI, spans: Spans
) -> None:
    for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
        pass
    span = spans.one()
    attributes = spans.attributes()
    assert attributes[attr.GEN_AI_REQUEST_STREAM] is True
    ttfc = attributes[attr.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK]
    assert span.start_time is not None and span.end_time is not None
    assert 0 < ttfc <= (span.end_time - span.start_time) / 1e9


def test_openai_responses_conversation_and_output_type(client: openai.OpenAI, spans: Spans) -> None:
    client.responses.create(
        model="gpt-4.1",
        input="Capital of France?",
        conversation="conv_42",
        text={"format": {"type": "text"}},
    )
    attributes = spans.attributes()
    assert attributes[attr.GEN_AI_CONVERSATION_ID] == "conv_42"
    assert attributes[attr.GEN_AI_OUTPUT_TYPE] == "text"


def test_openai_stream_helper_is_a_stream(client: openai.OpenAI, spans: Spans) -> None:
    with client.responses.stream(model="gpt-4.1", input="Capital of France?") as stream:
        for _ in stream:
            pass
    assert spans.attributes()[attr.GEN_AI_REQUEST_STREAM] is True


def test_embeddings_encoding_format(client: openai.OpenAI, spans: Spans) -> None:
    client.embeddings.create(model="text-embedding-3-small", input="a", encoding_format="float")
    assert spans.attributes()[attr.GEN_AI_REQUEST_ENCODING_FORMATS] == ["float"]


def test_anthropic_request_parameters(
    claude: anthropic.Anthropic, server: FakeProviderServer, spans: Spans
) -> None:
    # anthropic 2.x takes no sampling parameters (temperature, top_p, top_k) any more
    claude.messages.create(
        model=CLAUDE,
        max_tokens=100,
        messages=MESSAGES,
        stop_sequences=["###"],
        output_config={"format": {"type": "json_schema", "schema": {"type": "object"}}},
    )
    attributes = spans.attributes()
    assert attributes[attr.GEN_AI_REQUEST_MAX_TOKENS] == 100
    assert attributes[attr.GEN_AI_REQUEST_STOP_SEQUENCES] == ["###"]
    assert attributes[attr.GEN_AI_OUTPUT_TYPE] == "json"
    assert attributes[attr.GEN_AI_REQUEST_STREAM] is False
    assert attributes[attr.SERVER_PORT] == server.server_address[1]


def test_anthropic_stream_and_conversation_id(server: FakeProviderServer, spans: Spans) -> None:
    claude = anthropic.Anthropic(
        base_url=server.url,
        api_key="test-key",
        max_retries=0,
        open_telemetry={"traces": False, "conversation_id": "thread-9"},
    )
    stream = claude.messages.create(model=CLAUDE, max_tokens=100, messages=MESSAGES, stream=True)
    for _ in stream:
        pass
    attributes = spans.attributes()
    assert attributes[attr.GEN_AI_REQUEST_STREAM] is True
    assert attributes[attr.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0
    assert attributes[attr.GEN_AI_CONVERSATION_ID] == "thread-9"


def test_retrieval_documents_follow_the_ids(spans: Spans) -> None:
    _qdrant().query_points("docs", query=[1.0, 0.1, 0.0], limit=2)
    attributes = spans.attributes()
    documents = json.loads(attributes[attr.GEN_AI_RETRIEVAL_DOCUMENTS])
    assert [d["id"] for d in documents] == attributes[attr.RETRIEVAL_DOCUMENT_IDS]
    assert [d["score"] for d in documents] == pytest.approx(attributes[attr.RETRIEVAL_SCORES])


def test_llama_index_retrieval_documents_name_source_documents(spans: Spans) -> None:
    ChunkRetriever().retrieve("refunds?")
    documents = json.loads(spans.attributes()[attr.GEN_AI_RETRIEVAL_DOCUMENTS])
    assert [d["id"] for d in documents] == [
        "refund-policy",
        "shipping-faq",
        "refund-policy",
        "loose",
    ]


class UnscoredRetriever(ChunkRetriever):
    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [NodeWithScore(node=TextNode(id_="n1", text="t"))]


def test_a_node_without_score_gives_ids_only(spans: Spans) -> None:
    UnscoredRetriever().retrieve("q")
    assert json.loads(spans.attributes()[attr.GEN_AI_RETRIEVAL_DOCUMENTS]) == [{"id": "n1"}]


class _TunedChatModel(ChatLoopbackOpenAI):
    temperature: float = 0.3
    max_tokens: int = 77


def test_langchain_chat_model_request_parameters(server: FakeProviderServer, spans: Spans) -> None:
    model = _TunedChatModel(base_url=f"{server.url}/v1")
    model.invoke("hi", stop=["STOP"])
    list(model.stream("hi"))
    invoked, streamed = spans.all()
    for span in (invoked, streamed):
        attributes = span.attributes or {}
        assert attributes[attr.GEN_AI_REQUEST_TEMPERATURE] == 0.3
        assert attributes[attr.GEN_AI_REQUEST_MAX_TOKENS] == 77
    assert list((invoked.attributes or {})[attr.GEN_AI_REQUEST_STOP_SEQUENCES]) == ["STOP"]
    assert (invoked.attributes or {})[attr.GEN_AI_REQUEST_STREAM] is False
    assert (streamed.attributes or {})[attr.GEN_AI_REQUEST_STREAM] is True


#: The wire names of the contract (docs/conventions.md): taken from the conventions
#: package, pinned here so that an upgrade of it cannot change them unnoticed.
PINNED = {
    "GEN_AI_OPERATION_NAME": "gen_ai.operation.name",
    "GEN_AI_PROVIDER_NAME": "gen_ai.provider.name",
    "GEN_AI_REQUEST_MODEL": "gen_ai.request.model",
    "GEN_AI_RESPONSE_MODEL": "gen_ai.response.model",
    "GEN_AI_RESPONSE_ID": "gen_ai.response.id",
    "GEN_AI_RESPONSE_FINISH_REASONS": "gen_ai.response.finish_reasons",
    "GEN_AI_REQUEST_MAX_TOKENS": "gen_ai.request.max_tokens",
    "GEN_AI_REQUEST_TEMPERATURE": "gen_ai.request.temperature",
    "GEN_AI_USAGE_INPUT_TOKENS": "gen_ai.usage.input_tokens",
    "GEN_AI_USAGE_OUTPUT_TOKENS": "gen_ai.usage.output_tokens",
    "GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS": "gen_ai.usage.cache_read.input_tokens",
    "GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS": "gen_ai.usage.cache_creation.input_tokens",
    "GEN_AI_DATA_SOURCE_ID": "gen_ai.data_source.id",
    "GEN_AI_REQUEST_TOP_K": "gen_ai.request.top_k",
    "GEN_AI_TOOL_NAME": "gen_ai.tool.name",
    "GEN_AI_TOOL_CALL_ID": "gen_ai.tool.call.id",
    "GEN_AI_INPUT_MESSAGES": "gen_ai.input.messages",
    "GEN_AI_OUTPUT_MESSAGES": "gen_ai.output.messages",
    "GEN_AI_TOOL_CALL_ARGUMENTS": "gen_ai.tool.call.arguments",
    "GEN_AI_TOOL_CALL_RESULT": "gen_ai.tool.call.result",
    "ERROR_TYPE": "error.type",
    "DB_SYSTEM_NAME": "db.system.name",
    "DB_COLLECTION_NAME": "db.collection.name",
    "GEN_AI_CONVERSATION_ID": "gen_ai.conversation.id",
    "GEN_AI_REQUEST_SEED": "gen_ai.request.seed",
    "GEN_AI_REQUEST_STOP_SEQUENCES": "gen_ai.request.stop_sequences",
    "GEN_AI_REQUEST_FREQUENCY_PENALTY": "gen_ai.request.frequency_penalty",
    "GEN_AI_REQUEST_PRESENCE_PENALTY": "gen_ai.request.presence_penalty",
    "GEN_AI_REQUEST_CHOICE_COUNT": "gen_ai.request.choice.count",
    "GEN_AI_REQUEST_ENCODING_FORMATS": "gen_ai.request.encoding_formats",
    "GEN_AI_OUTPUT_TYPE": "gen_ai.output.type",
    "GEN_AI_WORKFLOW_NAME": "gen_ai.workflow.name",
    "GEN_AI_SYSTEM_INSTRUCTIONS": "gen_ai.system_instructions",
    "GEN_AI_SYSTEM": "gen_ai.system",
    "SERVER_PORT": "server.port",
    "PROVIDER_GCP_GEMINI": "gcp.gemini",
    "PROVIDER_GCP_VERTEX_AI": "gcp.vertex_ai",
    "PROVIDER_GCP_GEN_AI": "gcp.gen_ai",
}


@pytest.mark.parametrize(("name", "value"), sorted(PINNED.items()))
def test_wire_names_are_pinned(name: str, value: str) -> None:
    assert getattr(attr, name) == value
