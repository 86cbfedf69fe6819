"""Framework runs with no decorated pipeline become pipeline roots; LlamaIndex document ids."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.runnables import RunnableLambda
from llama_index.core.base.base_retriever import BaseRetriever as LlamaRetriever
from llama_index.core.llms.mock import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import (
    NodeRelationship,
    NodeWithScore,
    QueryBundle,
    RelatedNodeInfo,
    TextNode,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

import llmspans
from llmspans import _attributes as attr
from llmspans.core.evaluate import evaluate_trace
from llmspans.core.model import Thresholds
from llmspans.embedded import record_from_readable_span

from .conftest import Spans
from .fake_providers import FakeProviderServer
from .test_langchain import ChatLoopbackOpenAI, ChromaRetriever
from .test_vector_stores import _collection


@pytest.fixture
def chain(server: FakeProviderServer) -> Any:
    retriever = ChromaRetriever(collection=_collection("cosine"))
    model = ChatLoopbackOpenAI(base_url=f"{server.url}/v1")
    prompt = RunnableLambda(lambda docs: f"Answer from: {', '.join(d.page_content for d in docs)}")
    return retriever | prompt | model


def _root(spans: Spans) -> ReadableSpan:
    roots = [s for s in spans.all() if (s.attributes or {}).get(attr.STAGE) == "pipeline"]
    assert len(roots) == 1, spans.names()
    return roots[0]


def _under(spans: Spans, root: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans.all() if s is not root and s.context.trace_id == root.context.trace_id]


def test_a_top_level_chain_is_one_attributed_run(chain: Any, spans: Spans) -> None:
    reply = chain.invoke("banana")
    assert reply.content == "The answer is 42."
    root = _root(spans)
    assert root.name == "invoke_workflow RunnableSequence"
    assert root.parent is None
    attributes = root.attributes or {}
    assert attributes[attr.PIPELINE] == "RunnableSequence"
    assert attributes[attr.GEN_AI_OPERATION_NAME] == "invoke_workflow"
    assert attributes[attr.PIPELINE_FRAMEWORK] == "langchain"
    stages = {(s.attributes or {}).get(attr.STAGE) for s in _under(spans, root)}
    assert {"retrieval", "generation"} <= stages
    for span in _under(spans, root):
        if (span.attributes or {}).get(attr.STAGE):
            assert (span.attributes or {})[attr.PIPELINE] == "RunnableSequence"
    result = evaluate_trace([record_from_readable_span(s) for s in spans.all()], Thresholds())
    [(run, _verdict)] = result.runs
    assert sorted(run.stages) == ["generation", "retrieval"]


def test_run_name_and_thread_id_name_the_run(chain: Any, spans: Spans) -> None:
    chain.invoke("banana", config={"run_name": "support", "configurable": {"thread_id": "conv-7"}})
    root = _root(spans)
    assert root.name == "invoke_workflow support"
    assert (root.attributes or {})[attr.GEN_AI_CONVERSATION_ID] == "conv-7"


@pytest.mark.usefixtures("library_provider")
def test_inside_a_decorated_pipeline_no_second_root(chain: Any, spans: Spans) -> None:
    @llmspans.pipeline("support")
    def handle(question: str) -> Any:
        return chain.invoke(question)

    handle("banana")
    root = _root(spans)
    assert root.name == "invoke_workflow support"
    assert attr.PIPELINE_FRAMEWORK not in (root.attributes or {})


def test_a_streamed_chain_root_covers_the_stream(chain: Any, spans: Spans) -> None:
    pieces = [chunk.content for chunk in chain.stream("banana")]
    assert "".join(pieces) == "The answer is 42."
    root = _root(spans)
    children = _under(spans, root)
    assert {(s.attributes or {}).get(attr.STAGE) for s in children} >= {"retrieval", "generation"}
    assert all(s.end_time is not None and root.end_time is not None for s in children)
    assert all(s.end_time <= root.end_time for s in children if s.end_time and root.end_time)


async def test_an_async_chain_is_a_root(chain: Any, spans: Spans) -> None:
    await chain.ainvoke("banana")
    root = _root(spans)
    assert any((s.attributes or {}).get(attr.STAGE) == "generation" for s in _under(spans, root))


def test_a_failing_chain_marks_its_root(spans: Spans) -> None:
    def boom(_: Any) -> Any:
        raise RuntimeError("step failed")

    chain = RunnableLambda(lambda x: x) | RunnableLambda(boom)
    with pytest.raises(RuntimeError, match="step failed"):
        chain.invoke("q")
    root = _root(spans)
    assert root.status.status_code is StatusCode.ERROR


# --- LlamaIndex ------------------------------------------------------------------------


def _chunk(chunk_id: str, document_id: str | None, score: float) -> NodeWithScore:
    relationships = (
        {NodeRelationship.SOURCE: RelatedNodeInfo(node_id=document_id)} if document_id else {}
    )
    node = TextNode(id_=chunk_id, text=f"text of {chunk_id}", relationships=relationships)
    return NodeWithScore(node=node, score=score)


class ChunkRetriever(LlamaRetriever):
    """Returns chunks of two source documents (as an index of split documents does)."""

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [
            _chunk("chunk-1", "refund-policy", 0.9),
            _chunk("chunk-2", "shipping-faq", 0.8),
            _chunk("chunk-3", "refund-policy", 0.7),
            _chunk("loose", None, 0.5),
        ]


def test_llama_index_records_source_document_ids_and_chunk_ids(spans: Spans) -> None:
    ChunkRetriever().retrieve("refunds?")
    attributes = spans.attributes("retrieval ChunkRetriever")
    assert attributes[attr.RETRIEVAL_DOCUMENT_IDS] == [
        "refund-policy",
        "shipping-faq",
        "refund-policy",
        "loose",
    ]
    assert attributes[attr.RETRIEVAL_CHUNK_IDS] == ["chunk-1", "chunk-2", "chunk-3", "loose"]
    assert attributes[attr.RETRIEVAL_SCORES] == pytest.approx([0.9, 0.8, 0.7, 0.5])


def test_a_top_level_query_engine_is_a_run(spans: Spans) -> None:
    engine = RetrieverQueryEngine.from_args(ChunkRetriever(), llm=MockLLM())
    engine.query("refunds?")
    root = _root(spans)
    assert root.name == "invoke_workflow RetrieverQueryEngine"
    assert (root.attributes or {})[attr.PIPELINE_FRAMEWORK] == "llama_index"
    retrieval = spans.one("retrieval ChunkRetriever")
    assert retrieval.context.trace_id == root.context.trace_id
    assert (retrieval.attributes or {})[attr.PIPELINE] == "RetrieverQueryEngine"


async def test_an_async_query_engine_is_a_run(spans: Spans) -> None:
    engine = RetrieverQueryEngine.from_args(ChunkRetriever(), llm=MockLLM())
    await engine.aquery("refunds?")
    root = _root(spans)
    assert spans.one("retrieval ChunkRetriever").context.trace_id == root.context.trace_id


def test_a_top_level_chat_engine_turn_is_a_run(spans: Spans) -> None:
    from llama_index.core.chat_engine import ContextChatEngine

    engine = ContextChatEngine.from_defaults(retriever=ChunkRetriever(), llm=MockLLM())
    engine.chat("refunds?")
    root = _root(spans)
    assert root.name == "invoke_workflow ContextChatEngine"
    retrieval = spans.one("retrieval ChunkRetriever")
    assert retrieval.context.trace_id == root.context.trace_id
    assert (retrieval.attributes or {})[attr.PIPELINE] == "ContextChatEngine"


def test_a_langgraph_run_is_one_root_with_its_thread_id(chain: Any, spans: Spans) -> None:
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    class State(TypedDict):
        question: str
        answer: str

    def answer(state: State) -> dict[str, str]:
        return {"answer": str(chain.invoke(state["question"]).content)}

    builder = StateGraph(State)
    builder.add_node("answer", answer)
    builder.add_edge(START, "answer")
    builder.add_edge("answer", END)
    graph = builder.compile()
    result = graph.invoke({"question": "banana"}, config={"configurable": {"thread_id": "t-1"}})
    assert result["answer"] == "The answer is 42."
    root = _root(spans)  # the chain inside the graph opens no second root
    assert root.name == "invoke_workflow LangGraph"
    attributes = root.attributes or {}
    assert attributes[attr.PIPELINE_FRAMEWORK] == "langgraph"
    assert attributes[attr.GEN_AI_CONVERSATION_ID] == "t-1"
    stages = {(s.attributes or {}).get(attr.STAGE) for s in _under(spans, root)}
    assert {"retrieval", "generation"} <= stages
