"""LangChain retrievers, chat models and tools -> stage spans, with the real langchain-core.

The chat model here is a small integration (as ``langchain-openai`` is one) that
calls the real ``openai`` client against the loopback server: the test proves
that the LangChain span and the nested client call make one generation span.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from langchain_core.callbacks import CallbackManagerForLLMRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import tool
from opentelemetry.trace import SpanKind, StatusCode

import llmspans
from llmspans import _attributes as attr

from .conftest import Spans, decorated_stage, pipeline_root
from .fake_providers import FakeProviderServer
from .test_vector_stores import _collection


class ChatLoopbackOpenAI(BaseChatModel):
    """A minimal OpenAI chat integration over the real client."""

    model_name: str = "gpt-4o-mini"
    base_url: str

    @property
    def _llm_type(self) -> str:
        return "loopback-openai"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "openai"
        return params

    def _client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key="k", max_retries=0)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        completion = self._client().chat.completions.create(
            model=self.model_name, messages=[{"role": "user", "content": str(messages[-1].content)}]
        )
        usage = completion.usage
        assert usage is not None
        message = AIMessage(
            content=completion.choices[0].message.content or "",
            usage_metadata={
                "input_tokens": usage.prompt_tokens,
                "output_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
            },
            response_metadata={"model_name": completion.model, "finish_reason": "stop"},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        stream = self._client().chat.completions.create(
            model=self.model_name,
            messages=[{"role": "user", "content": str(messages[-1].content)}],
            stream=True,
            stream_options={"include_usage": True},
        )
        for chunk in stream:
            if chunk.usage is not None:
                message = AIMessageChunk(
                    content="",
                    usage_metadata={
                        "input_tokens": chunk.usage.prompt_tokens,
                        "output_tokens": chunk.usage.completion_tokens,
                        "total_tokens": chunk.usage.total_tokens,
                    },
                    response_metadata={"model_name": chunk.model},
                )
            elif chunk.choices:
                message = AIMessageChunk(content=chunk.choices[0].delta.content or "")
            else:
                continue
            yield ChatGenerationChunk(message=message)


class ChromaRetriever(BaseRetriever):
    """A retriever over a chromadb collection (as ``langchain-chroma`` provides)."""

    collection: Any
    k: int = 2

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        result = self.collection.query(query_texts=[query], n_results=self.k)
        return [
            Document(id=doc_id, page_content=text, metadata={"score": 1.0 - distance})
            for doc_id, text, distance in zip(
                result["ids"][0], result["documents"][0], result["distances"][0], strict=True
            )
        ]


@pytest.fixture
def chat_model(server: FakeProviderServer) -> ChatLoopbackOpenAI:
    return ChatLoopbackOpenAI(base_url=f"{server.url}/v1")


def test_retriever_over_chromadb_is_one_retrieval_span(spans: Spans) -> None:
    retriever = ChromaRetriever(collection=_collection("cosine"))
    with pipeline_root("rag") as root:
        documents = retriever.invoke("banana")
    assert [d.id for d in documents] == ["doc-a", "doc-c"]
    span = spans.one("retrieval ChromaRetriever")
    assert span.kind is SpanKind.INTERNAL
    assert span.parent is not None and span.parent.span_id == root.get_span_context().span_id
    assert spans.names() == ["retrieval ChromaRetriever", "invoke_workflow rag"]
    attributes = spans.attributes("retrieval ChromaRetriever")
    assert attributes[attr.STAGE] == "retrieval"
    assert attributes[attr.PIPELINE] == "rag"
    assert attributes[attr.GEN_AI_REQUEST_TOP_K] == 2
    assert attributes[attr.RETRIEVAL_DOCUMENT_IDS] == ["doc-a", "doc-c"]
    assert attributes[attr.RETRIEVAL_SCORES] == pytest.approx(
        [d.metadata["score"] for d in documents]
    )
    assert attributes[attr.DB_SYSTEM_NAME] == "chromadb"  # the nested query enriched it


async def test_async_retriever(spans: Spans) -> None:
    retriever = ChromaRetriever(collection=_collection("cosine"), k=1)
    await retriever.ainvoke("tree")
    assert spans.names() == ["retrieval ChromaRetriever"]
    assert spans.attributes()[attr.RETRIEVAL_DOCUMENT_IDS] == ["doc-b"]


def test_chat_model_over_openai_is_one_generation_span(
    chat_model: ChatLoopbackOpenAI, spans: Spans
) -> None:
    with pipeline_root("qa"):
        reply = chat_model.invoke("What is the answer?")
    assert reply.content == "The answer is 42."
    assert spans.names() == ["chat gpt-4o-mini", "invoke_workflow qa"]
    attributes = spans.attributes("chat gpt-4o-mini")
    assert attributes[attr.GEN_AI_PROVIDER_NAME] == "openai"
    assert attributes[attr.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    assert attributes[attr.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini-2024-07-18"
    # reported by both the client call and the chat model, counted once
    assert attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] == 1200
    assert attributes[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 300
    assert attributes[attr.GEN_AI_RESPONSE_FINISH_REASONS] == ["stop"]
    assert attributes[attr.COST_USD] > 0
    assert spans.one("chat gpt-4o-mini").kind is SpanKind.CLIENT


def test_chat_model_in_a_decorated_generation_counts_once(
    chat_model: ChatLoopbackOpenAI, spans: Spans
) -> None:
    with decorated_stage("generation", "answer"):
        chat_model.invoke("What is the answer?")
        chat_model.invoke("And again?")
    assert spans.names() == ["chat answer"]
    assert spans.attributes()[attr.GEN_AI_USAGE_INPUT_TOKENS] == 2400


def test_chat_model_stream(chat_model: ChatLoopbackOpenAI, spans: Spans) -> None:
    chunks = list(chat_model.stream("What is the answer?"))
    assert "".join(str(c.content) for c in chunks) == "The answer is 42."
    assert spans.names() == ["chat gpt-4o-mini"]
    attributes = spans.attributes()
    assert attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] == 50
    assert attributes[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 7


def test_chat_model_stream_early_break(chat_model: ChatLoopbackOpenAI, spans: Spans) -> None:
    stream = chat_model.stream("What is the answer?")
    next(stream)
    assert spans.all() == []
    stream.close()
    assert spans.names() == ["chat gpt-4o-mini"]
    assert spans.one().status.status_code is StatusCode.UNSET


async def test_fake_chat_model_async_paths(spans: Spans) -> None:
    model = GenericFakeChatModel(
        messages=iter([AIMessage(content="one two"), AIMessage(content="x")])
    )
    chunks = [chunk async for chunk in model.astream("hi")]
    assert "".join(str(c.content) for c in chunks) == "one two"
    reply = await model.ainvoke("hi")
    assert reply.content == "x"
    assert spans.names() == ["chat", "chat"]
    assert all((s.attributes or {})[attr.STAGE] == "generation" for s in spans.all())


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@tool
def book_flight(destination: str) -> str:
    """Book a flight."""
    raise RuntimeError(f"no seats to {destination}")


def test_tool_is_an_action_span(spans: Spans) -> None:
    with pipeline_root("agent"):
        assert add.invoke({"a": 2, "b": 3}) == 5
    span = spans.one("execute_tool add")
    assert span.kind is SpanKind.INTERNAL
    assert spans.attributes("execute_tool add") == {
        attr.STAGE: "action",
        attr.PIPELINE: "agent",
        attr.GEN_AI_OPERATION_NAME: "execute_tool",
        attr.GEN_AI_TOOL_NAME: "add",
    }


def test_tool_call_id_and_content(spans: Spans, capture_content: None) -> None:
    message = add.invoke(
        {"name": "add", "args": {"a": 1, "b": 1}, "id": "call_7", "type": "tool_call"}
    )
    assert message.content == "2"
    attributes = spans.attributes()
    assert attributes[attr.GEN_AI_TOOL_CALL_ID] == "call_7"
    assert '"a": 1' in attributes[attr.GEN_AI_TOOL_CALL_ARGUMENTS]
    assert attributes[attr.GEN_AI_TOOL_CALL_RESULT] == "2"


def test_tool_error_propagates_unchanged(spans: Spans) -> None:
    with pytest.raises(RuntimeError, match="no seats to Oslo"):
        book_flight.invoke({"destination": "Oslo"})
    span = spans.one("execute_tool book_flight")
    assert span.status.status_code is StatusCode.ERROR
    assert spans.attributes()[attr.ERROR_TYPE] == "RuntimeError"


async def test_async_tool(spans: Spans) -> None:
    assert await add.ainvoke({"a": 4, "b": 4}) == 8
    assert spans.names() == ["execute_tool add"]


def test_tool_in_a_decorated_action_enriches(spans: Spans) -> None:
    with decorated_stage("action", "pay"):
        add.invoke({"a": 1, "b": 2})
    assert spans.names() == ["execute_tool pay"]
    assert spans.attributes()[attr.GEN_AI_TOOL_NAME] == "add"


def test_chat_model_batch_runs_in_threads_under_the_pipeline(
    chat_model: ChatLoopbackOpenAI, spans: Spans
) -> None:
    with pipeline_root("qa") as root:
        replies = chat_model.batch(["one?", "two?"])
    assert [r.content for r in replies] == ["The answer is 42."] * 2
    generations = [s for s in spans.all() if s.name == "chat gpt-4o-mini"]
    assert len(generations) == 2
    for span in generations:
        assert span.parent is not None and span.parent.span_id == root.get_span_context().span_id
        assert (span.attributes or {})[attr.GEN_AI_USAGE_INPUT_TOKENS] == 1200
        assert (span.attributes or {})[attr.PIPELINE] == "qa"


@tool
def cancel_order(order: str) -> str:
    """Cancel an order and check that it is cancelled."""
    llmspans.record_action(verified=False, verification=f"{order} still open")
    return "requested"


def test_record_action_inside_a_tool_lands_on_its_span(spans: Spans) -> None:
    assert cancel_order.invoke({"order": "A7"}) == "requested"
    attributes = spans.attributes("execute_tool cancel_order")
    assert attributes[attr.ACTION_VERIFIED] is False
    assert attributes[attr.ACTION_VERIFICATION] == "A7 still open"


async def test_chat_model_astream_over_openai_in_an_executor(
    chat_model: ChatLoopbackOpenAI, spans: Spans
) -> None:
    chunks = [chunk async for chunk in chat_model.astream("What is the answer?")]
    assert "".join(str(c.content) for c in chunks) == "The answer is 42."
    assert spans.names() == ["chat gpt-4o-mini"]
    assert spans.attributes()[attr.GEN_AI_USAGE_INPUT_TOKENS] == 50


async def test_chat_model_astream_aclose_ends_the_span(
    chat_model: ChatLoopbackOpenAI, spans: Spans
) -> None:
    stream = chat_model.astream("What is the answer?")
    await anext(stream)
    assert spans.all() == []
    await stream.aclose()
    assert spans.names() == ["chat gpt-4o-mini"]
