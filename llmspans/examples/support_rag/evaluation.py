"""The support bot under evaluation: an offline labelled set, and a judge that knows the truth.

- :func:`answer` is the pipeline function ``llmspans eval`` calls with each line's
  ``input`` (the question); :func:`cites_expected` is its ``--check``::

      llmspans eval "$(python -m llmspans.examples.support_rag.evaluation)" \\
          --pipeline llmspans.examples.support_rag.evaluation:answer \\
          --check llmspans.examples.support_rag.evaluation:cites_expected

- :data:`OFFLINE_SET` (``data/offline_set.jsonl``) is the team's labelled set: 200
  lines over the labelled questions of ``data/questions.json``, in file order,
  **without the billing segment**, which live traffic serves a good deal of. It was
  made once from ``questions.json`` and is checked in.
- :func:`judge` is a deterministic local evaluator (docs/evaluation.md) for sampled
  runs: it knows the articles that answer every shipped question, labelled ones and
  the live billing questions of ``data/live_questions.json`` alike, which the bot
  itself is never told. No network, no model: the same run always gets the same
  judgment.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from functools import cache
from typing import Final

from llmspans.evaluation import Judgment, Run

from .knowledge import DATA_DIR, load_live_questions, load_questions
from .pipeline import Reply, SupportRag

__all__ = ["OFFLINE_SET", "answer", "cites_expected", "ground_truth", "judge"]

#: the labelled offline set, one ``llmspans eval`` line per question asked
OFFLINE_SET: Final = DATA_DIR / "offline_set.jsonl"

#: the pipeline the judge knows the truth of
PIPELINE: Final = "support_rag"

_lock = threading.Lock()  # guards _bots
#: the one bot the offline runs share, made at the first call
_bots: list[SupportRag] = []
_tickets = itertools.count(1)


def _shared_bot() -> SupportRag:
    with _lock:
        if not _bots:
            _bots.append(SupportRag())
        return _bots[0]


def answer(question: str) -> Reply:
    """Answer one question of the offline set as a new ticket (the pipeline of ``llmspans
    eval``; labels come from the harness, not from this call)."""
    return _shared_bot().handle(question, ticket_id=f"T-eval-{next(_tickets)}")


def cites_expected(result: object, expected: object) -> bool:
    """``--check``: the reply cites one of the expected articles (and was not a refusal)."""
    reply_answer = getattr(result, "answer", None)
    if reply_answer is None or reply_answer.refused:
        return False
    wanted = set(expected) if isinstance(expected, list | tuple) else {expected}
    return bool(set(reply_answer.citations) & wanted)


def _key(question: str) -> str:
    return " ".join(question.lower().split())


@cache
def ground_truth() -> Mapping[str, frozenset[str]]:
    """Every shipped question (normalised) -> the ids of the articles that answer it."""
    return {
        _key(q.question): frozenset(q.relevant_ids)
        for q in (*load_questions(), *load_live_questions())
    }


def _supported(claim: str | None, text: str | None) -> bool:
    return bool(claim) and bool(text) and _key(str(claim)) in _key(str(text))


def judge(run: Run) -> Judgment:
    """Judge one sampled support run against the ground truth.

    Relevant: the retrieved articles that answer the question. A citation is
    supported when the cited article was retrieved and says the claim word for word
    (the extractive answerer quotes a sentence). Correct: the answer cites an article
    that answers the question. A run of another pipeline, or a question the judge
    has no truth for, is left unjudged (every field ``None``).
    """
    truth = ground_truth().get(_key(run.input)) if run.pipeline == PIPELINE and run.input else None
    if truth is None:
        return Judgment(explanation="no ground truth for this input")
    texts = {document.id: document.text for document in run.documents}
    relevant = [document.id for document in run.documents if document.id in truth]
    supported = [
        cited for cited, claim in run.citations.items() if _supported(claim, texts.get(cited))
    ]
    unsupported = [cited for cited in run.citations if cited not in supported]
    correct = bool(set(run.citations) & truth)
    missing = sorted(truth - set(texts))
    explanation = (
        f"answered by {', '.join(sorted(truth))}; "
        + ("retrieved" if relevant else f"not retrieved ({', '.join(missing)})")
        + ("; the answer cites it" if correct else "; the answer does not cite it")
    )
    return Judgment(
        relevant_ids=relevant,
        supported_citations=supported,
        unsupported_citations=unsupported,
        correct=correct,
        score=1.0 if correct else 0.0,
        explanation=explanation,
    )


if __name__ == "__main__":
    print(OFFLINE_SET)
