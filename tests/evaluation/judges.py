"""Code evaluators the tests load by name (``tests.evaluation.judges:...``)."""

from __future__ import annotations

import asyncio
import time

from llmspans.evaluation import Judgment, Run

#: the fact every question of the scenario asks for
KEY = "refund"
ANSWER = "5 days"


def judge(run: Run) -> Judgment:
    """Relevant: a document about refunds. Supported: the claim is in the cited text.
    Correct: the answer says 5 days."""
    texts = {document.id: document.text or "" for document in run.documents}
    relevant = [document.id for document in run.documents if KEY in (document.text or "")]
    supported = [
        doc for doc, claim in run.citations.items() if claim and claim in texts.get(doc, "")
    ]
    unsupported = [doc for doc in run.citations if doc not in supported]
    return Judgment(
        relevant_ids=relevant,
        supported_citations=supported,
        unsupported_citations=unsupported,
        correct=ANSWER in (run.answer or ""),
        cost_usd=0.001,
    )


async def async_judge(run: Run) -> Judgment:
    await asyncio.sleep(0)
    return judge(run)


def hangs(run: Run) -> Judgment:
    time.sleep(5)
    return Judgment()


def liar(run: Run) -> Judgment:
    """Claims ids that were never retrieved, and a score out of range."""
    return Judgment(relevant_ids=["never-retrieved", *[d.id for d in run.documents[:1]]], score=7.0)


def not_a_judgment(run: Run) -> object:
    return {"correct": True}


def broken(run: Run) -> Judgment:
    raise RuntimeError("judge exploded")


NOT_CALLABLE = 3
