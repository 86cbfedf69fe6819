"""A small deterministic RAG pipeline for the offline harness tests.

``billing`` questions retrieve the right document; ``refunds`` questions retrieve
only a distractor (retrieval silently misses), so their runs fail as
``retrieval/missed_relevant`` once labelled; ``small_talk`` retrieves nothing it
needs. The answer is the first retrieved document's text.
"""

from __future__ import annotations

import asyncio
from typing import Any

import llmspans

CORPUS = {
    "bill-1": "invoices are sent monthly",
    "refund-1": "refunds take 5 days",
    "noise-1": "our office is in Lyon",
}


@llmspans.retrieval("faq")
def search(question: str) -> list[dict[str, Any]]:
    if "invoice" in question:
        return [{"id": "bill-1", "score": 0.9}, {"id": "noise-1", "score": 0.2}]
    return [{"id": "noise-1", "score": 0.4}]


@llmspans.generation("fake-model", provider="fake")
def answer(question: str, docs: list[dict[str, Any]]) -> str:
    first = docs[0]["id"]
    llmspans.record_generation(citations=[first], confidence=0.8)
    return CORPUS[first]


@llmspans.pipeline("faq_answer")
def handle(question: str) -> str:
    result = answer(question, search(question))
    llmspans.set_outcome(completed=True)
    return result


@llmspans.pipeline("faq_answer_async")
async def handle_async(question: str) -> str:
    await asyncio.sleep(0)
    return answer(question, search(question))


def broken(question: str) -> str:
    raise RuntimeError("boom")


def loose_check(result: object, expected: object) -> bool:
    return str(result).lower() == str(expected).lower()
