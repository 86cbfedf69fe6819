"""Okapi BM25 in plain Python: no model download, deterministic, fast enough for ~100 docs."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Hit:
    """One ranked document: its id and BM25 score."""

    id: str
    score: float


class BM25:
    """An Okapi BM25 index over ``(id, terms)`` pairs.

    ``k1`` and ``b`` are the usual parameters (Robertson and Zaragoza's defaults).
    The idf is the non-negative variant ``log(1 + (N - n + 0.5) / (n + 0.5))``.
    """

    def __init__(
        self, documents: Sequence[tuple[str, Sequence[str]]], *, k1: float = 1.2, b: float = 0.75
    ) -> None:
        if not documents:
            raise ValueError("BM25 needs at least one document")
        self._ids = [doc_id for doc_id, _ in documents]
        self._tf = [Counter(doc_terms) for _, doc_terms in documents]
        self._len = [len(doc_terms) for _, doc_terms in documents]
        self._avg_len = sum(self._len) / len(self._len) or 1.0
        self._k1 = k1
        self._b = b
        df: Counter[str] = Counter()
        for tf in self._tf:
            df.update(tf.keys())
        n = len(documents)
        self._idf = {t: math.log(1.0 + (n - c + 0.5) / (c + 0.5)) for t, c in df.items()}

    def __len__(self) -> int:
        return len(self._ids)

    def score(self, query_terms: Sequence[str], index: int) -> float:
        """BM25 score of document number ``index`` for ``query_terms``."""
        tf = self._tf[index]
        norm = self._k1 * (1.0 - self._b + self._b * self._len[index] / self._avg_len)
        total = 0.0
        for term in set(query_terms):
            f = tf.get(term, 0)
            if f:
                total += self._idf[term] * f * (self._k1 + 1.0) / (f + norm)
        return total

    def search(self, query_terms: Sequence[str], top_k: int) -> list[Hit]:
        """The ``top_k`` best documents with a positive score, best first (ties by id)."""
        scored = [Hit(doc_id, self.score(query_terms, i)) for i, doc_id in enumerate(self._ids)]
        ranked = sorted((h for h in scored if h.score > 0.0), key=lambda h: (-h.score, h.id))
        return ranked[:top_k]
