"""The shipped help-centre corpus of the fictional product "Nimbus Notes" and its search index."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .._text import estimate_tokens, terms
from ..bm25 import BM25

DATA_DIR: Final = Path(__file__).parent / "data"


@dataclass(frozen=True, slots=True)
class Document:
    """A help-centre article as retrieval returns it; llmspans reads its ``id`` and ``score``."""

    id: str
    title: str
    text: str
    score: float = 0.0

    @property
    def tokens(self) -> int:
        return estimate_tokens(f"{self.title}\n{self.text}")


@dataclass(frozen=True, slots=True)
class Question:
    """A labelled support question: the ids of the articles that answer it are known,
    and the segment (class of question: ``account``, ``billing``, ...) it belongs to."""

    id: str
    question: str
    relevant_ids: tuple[str, ...]
    segment: str | None = None


class KnowledgeBase:
    """The corpus with a BM25 index over titles and bodies."""

    def __init__(self, documents: list[Document]) -> None:
        self.documents = {d.id: d for d in documents}
        # The title counts twice: it is the best summary of what an article is about.
        self._index = BM25([(d.id, terms(f"{d.title} {d.title} {d.text}")) for d in documents])

    @classmethod
    def load(cls, path: Path = DATA_DIR / "corpus.jsonl") -> KnowledgeBase:
        with path.open(encoding="utf-8") as f:
            docs = [Document(**json.loads(line)) for line in f if line.strip()]
        return cls(docs)

    def search(self, query: str, top_k: int) -> list[Document]:
        """The ``top_k`` best articles for ``query``, best first, with their BM25 scores."""
        hits = self._index.search(terms(query), top_k)
        return [_with_score(self.documents[h.id], h.score) for h in hits]


def _with_score(doc: Document, score: float) -> Document:
    return Document(doc.id, doc.title, doc.text, round(score, 4))


def load_questions(path: Path = DATA_DIR / "questions.json") -> list[Question]:
    """The labelled questions shipped with the corpus."""
    with path.open(encoding="utf-8") as f:
        raw = json.load(f)
    return [
        Question(q["id"], q["question"], tuple(q["relevant_ids"]), q.get("segment")) for q in raw
    ]


def load_live_questions(path: Path = DATA_DIR / "live_questions.json") -> list[Question]:
    """Billing questions in customers' own words, as live traffic brings them.

    The bot gets no labels for them; their ``relevant_ids`` are the ground truth
    only the demo's judge knows (:mod:`.evaluation`). Several use words the help
    centre does not, so retrieval silently misses the article that answers them.
    """
    return load_questions(path)
