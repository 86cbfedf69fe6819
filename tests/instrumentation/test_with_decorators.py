"""Auto-instrumented client calls inside the library's real decorators: no duplicate spans."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from langchain_core.tools import tool

import llmspans
from llmspans import _attributes as attr
from llmspans.cost import cost_usd

from .conftest import Spans
from .fake_providers import FakeProviderServer
from .test_vector_stores import _collection

MESSAGES = [{"role": "user", "content": "What is the answer?"}]


pytestmark = pytest.mark.usefixtures("library_provider")


@tool
def refund(order: str) -> str:
    """Refund an order."""
    return f"refunded {order}"


def test_a_pipeline_of_decorated_stages_over_instrumented_clients(
    server: FakeProviderServer, spans: Spans
) -> None:
    collection = _collection("cosine")
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="k", max_retries=0)

    @llmspans.retrieval(data_source="faq")
    def search(question: str) -> list[str]:
        result = collection.query(query_texts=[question], n_results=3)
        return [doc_id for doc_id in result["ids"][0] if doc_id != "doc-b"]

    @llmspans.generation
    def answer(question: str, ids: list[str]) -> Any:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # a retry
        return client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    @llmspans.action(name="refund")
    def act() -> str:
        return refund.invoke({"order": "A1"})

    @llmspans.pipeline("support")
    def handle(question: str) -> str:
        ids = search(question)
        completion = answer(question, ids)
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # no stage
        act()
        return str(completion.choices[0].message.content)

    assert handle("banana") == "The answer is 42."
    assert sorted(spans.names()) == sorted(
        [
            "retrieval faq",
            "chat gpt-4o-mini",  # the decorated generation, named after the client's model
            "chat gpt-4o-mini",  # the call outside any stage: a stage span of its own
            "execute_tool refund",
            "invoke_workflow support",
        ]
    )
    by_name: dict[str, list[Any]] = {}
    for span in spans.all():
        by_name.setdefault(span.name, []).append(span)
    root = by_name["invoke_workflow support"][0]
    assert all(
        s.parent is not None and s.parent.span_id == root.context.span_id
        for s in spans.all()
        if s is not root
    )

    retrieval = dict(by_name["retrieval faq"][0].attributes)
    assert retrieval[attr.DB_SYSTEM_NAME] == "chromadb"
    # the stage's own result wins over the raw vector-store answer
    assert list(retrieval[attr.RETRIEVAL_DOCUMENT_IDS]) == ["doc-a", "doc-c"]

    decorated, standalone = sorted(
        by_name["chat gpt-4o-mini"], key=lambda s: s.attributes[attr.GEN_AI_USAGE_INPUT_TOKENS]
    )[::-1]
    single = cost_usd("gpt-4o-mini-2024-07-18", 1200, 300, cache_read_input_tokens=1000)
    assert single is not None
    assert decorated.attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] == 2400
    assert decorated.attributes[attr.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 2000
    assert decorated.attributes[attr.COST_USD] == pytest.approx(2 * single)
    assert standalone.attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] == 1200
    assert standalone.attributes[attr.PIPELINE] == "support"
    assert standalone.attributes[attr.STAGE] == "generation"

    action = dict(by_name["execute_tool refund"][0].attributes)
    assert action[attr.STAGE] == "action"
    assert action[attr.GEN_AI_TOOL_NAME] == "refund"
