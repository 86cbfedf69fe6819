"""A small support-answer pipeline, instrumented with the llmspans decorators, with faults on tap.

Retrieval over a fixed, labelled knowledge base; context selection within a token
budget; a generation that cites what it was shown and states a confidence; an
action that posts the reply and is verified by reading it back. Each run may carry
one injected fault, ``(stage, mode)``, that produces exactly the signal
docs/conventions.md section 5 attributes to that stage, so the alerting stack sees
known root causes:

=================  ==========================================================
stage              modes
=================  ==========================================================
retrieval          ``error``, ``empty``, ``missed_relevant``
context_selection  ``error``, ``empty``, ``dropped_relevant``
generation         ``error``, ``refused``, ``unsupported_citation``, ``invalid_output``
action             ``error``, ``verification_failed``
=================  ==========================================================

Stage latencies are simulated (scaled by ``latency_scale``); nothing leaves the
process but spans.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import llmspans

#: every fault mode each stage can be given
FAULT_MODES: Final[dict[str, tuple[str, ...]]] = {
    "retrieval": ("error", "empty", "missed_relevant"),
    "context_selection": ("error", "empty", "dropped_relevant"),
    "generation": ("error", "refused", "unsupported_citation", "invalid_output"),
    "action": ("error", "verification_failed"),
}

PIPELINE_NAME: Final = "support_answer"
MODEL: Final = "gpt-4o-mini"
TOP_K: Final = 5
SELECT: Final = 3

Fault = tuple[str, str]


class InjectedFault(RuntimeError):
    """Raised by a stage whose injected fault mode is ``error``."""


@dataclass(frozen=True, slots=True)
class Document:
    id: str
    topic: int


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one run did: the injected fault (if any) and whether the reply was posted."""

    fault: Fault | None
    posted: bool
    confidence: float | None
    #: the run's reference, for feedback after the fact
    run: llmspans.RunRef | None = None


@dataclass(slots=True)
class FaultMix:
    """Probability of each ``(stage, mode)`` fault per run; the rest of the runs are clean."""

    shares: dict[Fault, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for (stage, mode), share in self.shares.items():
            if mode not in FAULT_MODES.get(stage, ()):
                raise ValueError(f"unknown fault {stage}:{mode}; modes: {FAULT_MODES}")
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"fault share of {stage}:{mode} must be in [0, 1]")
        if sum(self.shares.values()) > 1.0 + 1e-9:
            raise ValueError("fault shares add up to more than 1")

    def draw(self, rng: random.Random) -> Fault | None:
        """One run's fault, or ``None`` for a clean run."""
        point = rng.random()
        for fault, share in self.shares.items():
            if point < share:
                return fault
            point -= share
        return None

    @classmethod
    def parse(cls, specs: Sequence[str]) -> FaultMix:
        """``["retrieval:error=0.02", "generation:refused=0.01"]`` into a mix."""
        shares: dict[Fault, float] = {}
        for spec in specs:
            name, _, share = spec.partition("=")
            stage, _, mode = name.partition(":")
            try:
                shares[(stage, mode)] = float(share)
            except ValueError:
                raise ValueError(f"fault {spec!r}: expected stage:mode=share") from None
        return cls(shares)


#: the baseline failure mix of the steady phase: a few percent per stage
STEADY_FAULTS: Final[Mapping[Fault, float]] = {
    ("retrieval", "empty"): 0.015,
    ("retrieval", "missed_relevant"): 0.015,
    ("context_selection", "dropped_relevant"): 0.02,
    ("generation", "refused"): 0.01,
    ("generation", "unsupported_citation"): 0.02,
    ("action", "verification_failed"): 0.02,
}


class SupportPipeline:
    """The pipeline; :meth:`run` answers one question, optionally with an injected fault."""

    def __init__(self, latency_scale: float = 1.0, topics: int = 8, docs_per_topic: int = 4):
        self.latency_scale = latency_scale
        self.documents = [
            Document(f"kb-{topic:02d}-{n}", topic)
            for topic in range(topics)
            for n in range(docs_per_topic)
        ]
        self.topics = topics
        self.replies: dict[str, str] = {}

    def _sleep(self, rng: random.Random, low_ms: float, high_ms: float) -> None:
        if self.latency_scale > 0:
            time.sleep(rng.uniform(low_ms, high_ms) / 1000.0 * self.latency_scale)

    def relevant(self, topic: int) -> list[str]:
        return [d.id for d in self.documents if d.topic == topic][:2]

    @llmspans.retrieval(data_source="help_center", top_k=TOP_K)
    def retrieve(self, topic: int, fault: str | None, rng: random.Random) -> list[Document]:
        self._sleep(rng, 10, 40)
        llmspans.record_retrieval(relevant_ids=self.relevant(topic))
        if fault == "error":
            raise InjectedFault("search backend unavailable")
        if fault == "empty":
            found: list[Document] = []
        elif fault == "missed_relevant":
            found = [d for d in self.documents if d.topic != topic][:TOP_K]
        else:
            same = [d for d in self.documents if d.topic == topic]
            other = [d for d in self.documents if d.topic != topic]
            found = same + rng.sample(other, TOP_K - len(same))
        scores = [
            round(0.9 - 0.1 * rank + rng.uniform(-0.03, 0.03), 4) for rank in range(len(found))
        ]
        llmspans.record_retrieval(document_ids=[d.id for d in found], scores=scores)
        return found

    @llmspans.context_selection("top_by_score", token_budget=600)
    def select(
        self, candidates: list[Document], topic: int, fault: str | None, rng: random.Random
    ) -> list[Document]:
        self._sleep(rng, 2, 8)
        if fault == "error":
            raise InjectedFault("reranker timed out")
        if fault == "empty":
            chosen: list[Document] = []
        elif fault == "dropped_relevant":
            chosen = [d for d in candidates if d.topic != topic][:SELECT]
        else:
            chosen = candidates[:SELECT]
        llmspans.record_context(
            input_ids=[d.id for d in candidates],
            selected_ids=[d.id for d in chosen],
            tokens=180 * len(chosen),
        )
        return chosen

    @llmspans.generation(MODEL, provider="openai")
    def generate(
        self, context: list[Document], topic: int, fault: str | None, rng: random.Random
    ) -> tuple[str, float]:
        self._sleep(rng, 40, 160)
        if fault == "error":
            raise InjectedFault("model provider returned 529")
        input_tokens = 120 + 180 * len(context)
        output_tokens = rng.randint(60, 220)
        cited = [d.id for d in context if d.topic == topic][:2]
        if fault == "unsupported_citation":
            cited = [*cited, "kb-99-0"]
        confident = fault is None and bool(cited)
        confidence = round(min(0.99, max(0.05, rng.gauss(0.85 if confident else 0.55, 0.08))), 3)
        llmspans.record_generation(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            citations=cited,
            confidence=confidence,
            refused=fault == "refused",
            output_valid=fault != "invalid_output",
            cost_usd=round(input_tokens * 0.15e-6 + output_tokens * 0.6e-6, 8),
        )
        return (f"answer citing {', '.join(cited)}", confidence)

    @llmspans.action("post_reply")
    def post(self, ticket: str, text: str, fault: str | None, rng: random.Random) -> str:
        self._sleep(rng, 5, 20)
        if fault == "error":
            raise InjectedFault("ticket system refused the write")
        if fault != "verification_failed":
            self.replies[ticket] = text
        stored = self.replies.get(ticket)
        llmspans.record_action(
            verified=stored == text,
            verification=None if stored == text else "reply not found on the ticket",
        )
        return ticket

    @llmspans.pipeline(PIPELINE_NAME)
    def run(self, ticket: str, fault: Fault | None, rng: random.Random) -> RunResult:
        """Answer one ticket; an injected ``error`` ends the run early, as a fallback would."""
        topic = rng.randrange(self.topics)

        def mode(stage: str) -> str | None:
            return fault[1] if fault is not None and fault[0] == stage else None

        confidence: float | None = None
        posted = False
        try:
            found = self.retrieve(topic, mode("retrieval"), rng)
            chosen = self.select(found, topic, mode("context_selection"), rng)
            if mode("generation") == "refused":
                text = ""
                self.generate(chosen, topic, "refused", rng)
            else:
                text, confidence = self.generate(chosen, topic, mode("generation"), rng)
            if text:
                self.post(ticket, text, mode("action"), rng)
                posted = mode("action") is None
        except InjectedFault:
            posted = False
        llmspans.set_outcome(correct=fault is None)
        return RunResult(fault, posted, confidence, llmspans.current_run())
