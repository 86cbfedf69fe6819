"""Answerers: turn a question and the selected articles into a cited answer.

The default :class:`ExtractiveAnswerer` is deterministic and local: it quotes the
sentence that covers most of the question and cites its article. When
``OPENAI_BASE_URL`` and ``OPENAI_API_KEY`` are set, :class:`ChatAnswerer` asks any
OpenAI-compatible endpoint instead, with the same contract.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from .._text import estimate_tokens, terms
from .knowledge import Document

_SENTENCE: Final = re.compile(r"(?<=[.!?])\s+")
_CITATION: Final = re.compile(r"\[(kb-\d{3})\]")
_CONFIDENCE: Final = re.compile(r"confidence\s*[:=]\s*([01](?:\.\d+)?)", re.IGNORECASE)
_CONFIDENCE_LINE: Final = re.compile(r"^\s*confidence\s*[:=].*$", re.IGNORECASE | re.MULTILINE)

#: the instructions every answerer sends (or would send) with the context
SYSTEM_PROMPT: Final = (
    "You are the support assistant of Nimbus Notes. Answer the question using only "
    "the articles given. Cite every article you use as [kb-NNN]. If the articles do "
    "not answer the question, say you cannot answer. End with a line "
    "'Confidence: X' where X between 0 and 1 is how sure you are."
)


@dataclass(frozen=True, slots=True)
class Answer:
    """A generated answer and the facts llmspans records about it."""

    text: str
    citations: tuple[str, ...]
    confidence: float
    refused: bool
    model: str
    input_tokens: int
    output_tokens: int

    @property
    def claim(self) -> str:
        """What the answer asserts, without its citation marks and confidence line: the
        claim each cited article is cited for (``llmspans.generation.claims``)."""
        text = _CONFIDENCE_LINE.sub("", _CITATION.sub("", self.text))
        return " ".join(text.split())


class Answerer(Protocol):
    model: str
    provider: str

    def answer(self, question: str, context: Sequence[Document]) -> Answer: ...


def prompt_for(question: str, context: Sequence[Document]) -> str:
    """The user message: the selected articles, then the question."""
    articles = "\n\n".join(f"[{d.id}] {d.title}\n{d.text}" for d in context)
    return f"Articles:\n{articles}\n\nQuestion: {question}"


class ExtractiveAnswerer:
    """Quotes the best-covering sentence of the selected articles and cites its article.

    Confidence is the share of the question's content words the quoted sentence
    and its article's title cover, squeezed into [0.2, 0.95]: a rough but honest
    signal, which the calibration metric (ECE) then measures.
    """

    model = "nimbus-extractive-1"
    provider = "llmspans.examples"

    def answer(self, question: str, context: Sequence[Document]) -> Answer:
        prompt_tokens = estimate_tokens(SYSTEM_PROMPT) + estimate_tokens(
            prompt_for(question, context)
        )
        wanted = set(terms(question))
        best: tuple[float, int, str, Document] | None = None
        for rank, doc in enumerate(context):
            title_terms = set(terms(doc.title))
            for sentence in _SENTENCE.split(doc.text):
                covered = wanted & (set(terms(sentence)) | title_terms)
                coverage = len(covered) / len(wanted) if wanted else 0.0
                key = (coverage, -rank, sentence, doc)
                if coverage > 0 and (best is None or key[:2] > best[:2]):
                    best = key
        if best is None:
            text = "I could not find this in the help centre. A colleague will follow up."
            return Answer(text, (), 0.1, True, self.model, prompt_tokens, estimate_tokens(text))
        coverage, _, sentence, doc = best
        text = f"{sentence} [{doc.id}]"
        confidence = round(0.2 + 0.75 * coverage, 3)
        return Answer(
            text, (doc.id,), confidence, False, self.model, prompt_tokens, estimate_tokens(text)
        )


class ChatAnswerer:
    """Asks an OpenAI-compatible chat endpoint (``OPENAI_BASE_URL``, ``OPENAI_API_KEY``)."""

    provider = "openai"

    def __init__(self, model: str | None = None) -> None:
        from openai import OpenAI

        self.model = model or os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
        self._client = OpenAI()

    def answer(self, question: str, context: Sequence[Document]) -> Answer:
        response = self._client.chat.completions.create(
            model=self.model,
            temperature=0,
            messages=[
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": prompt_for(question, context)},
            ],
        )
        text = response.choices[0].message.content or ""
        citations = tuple(dict.fromkeys(_CITATION.findall(text)))
        match = _CONFIDENCE.search(text)
        confidence = min(1.0, float(match.group(1))) if match else 0.5
        usage = response.usage
        return Answer(
            text=text,
            citations=citations,
            confidence=confidence,
            refused=not citations,
            model=response.model or self.model,
            input_tokens=usage.prompt_tokens if usage else estimate_tokens(text),
            output_tokens=usage.completion_tokens if usage else estimate_tokens(text),
        )


def default_answerer() -> Answerer:
    """The chat answerer when an OpenAI-compatible endpoint is set, else the extractive one."""
    if os.environ.get("OPENAI_BASE_URL") and os.environ.get("OPENAI_API_KEY"):
        return ChatAnswerer()
    return ExtractiveAnswerer()
