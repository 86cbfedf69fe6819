"""Text helpers shared by the examples: a tokenizer, a token-count estimate, month names."""

from __future__ import annotations

import re
from typing import Final

_WORD: Final = re.compile(r"[a-z0-9]+")

#: English month names, lower case, January first (independent of the locale)
MONTH_NAMES: Final = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)

STOPWORDS: Final = frozenset(
    [
        "a",
        "about",
        "after",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "get",
        "go",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "my",
        "of",
        "on",
        "or",
        "our",
        "so",
        "the",
        "their",
        "them",
        "there",
        "this",
        "to",
        "under",
        "up",
        "we",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
        "me",
        "much",
        "many",
        "long",
        "far",
        "should",
        "happens",
        "work",
        "works",
    ]
)


def _stem(word: str) -> str:
    """A deliberately tiny stemmer: folds the most common English plurals."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def terms(text: str) -> list[str]:
    """Lower-cased, stemmed content words of ``text`` (stopwords removed)."""
    return [_stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


def estimate_tokens(text: str) -> int:
    """Token estimate of ``text``: about four characters per token, as for English BPE."""
    return max(1, (len(text) + 3) // 4)
