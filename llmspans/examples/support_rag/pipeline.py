"""The support bot, instrumented with llmspans: one span per stage under one pipeline span.

    retrieval          BM25 over the help centre       -> document ids, scores, relevant ids
    context_selection  best articles within a budget   -> candidate and selected ids, tokens
    generation         a cited answer                  -> citations, confidence, tokens, cost
    action             the reply posted to the ticket  -> verified by reading the row back

Run one question yourself::

    python -m llmspans.examples.support_rag "How long is the password reset link valid?"
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import llmspans

from .._faults import injected, note_injected_fault, raise_if_error
from .._latency import simulate
from .answer import Answer, Answerer, default_answerer
from .knowledge import Document, KnowledgeBase, Question, load_questions
from .segments import segment_argument
from .tickets import TicketStore

TOP_K: Final = 5
TOKEN_BUDGET: Final = 200


@dataclass(frozen=True, slots=True)
class Reply:
    """What the bot did with one ticket."""

    ticket_id: str
    answer: Answer | None
    reply_id: int | None
    #: the run's reference, stored with the response (for feedback later); None untraced
    run: llmspans.RunRef | None
    error: str | None = None

    @property
    def trace_id(self) -> str:
        return self.run.trace_id_hex if self.run is not None else ""


class SupportRag:
    """Answers labelled support questions; the demo calls :meth:`run` with a question index."""

    name: Final = "support_rag"
    stages: Final = ("retrieval", "context_selection", "generation", "action")
    fault_modes: Final = {
        "retrieval": ("error", "empty", "wrong_documents"),
        "context_selection": ("error", "empty", "dropped_relevant"),
        "generation": ("error", "refused", "unsupported_citation"),
        "action": ("error", "no_write"),
    }

    def __init__(
        self,
        knowledge: KnowledgeBase | None = None,
        questions: Sequence[Question] | None = None,
        answerer: Answerer | None = None,
        tickets: TicketStore | None = None,
    ) -> None:
        self.knowledge = knowledge or KnowledgeBase.load()
        self.questions = list(questions if questions is not None else load_questions())
        self.answerer = answerer or default_answerer()
        self.tickets = tickets or TicketStore()

    def __len__(self) -> int:
        return len(self.questions)

    def run(self, index: int) -> Reply:
        """Handle labelled question number ``index`` as ticket ``T-{index}``."""
        q = self.questions[index]
        return self.handle(
            q.question, ticket_id=f"T-{q.id}", relevant_ids=q.relevant_ids, segment=q.segment
        )

    def serve(self, question: Question, ticket_id: str) -> Reply:
        """Handle ``question`` as live traffic: its segment is known (the help desk's
        topic), its labels are not."""
        return self.handle(question.question, ticket_id=ticket_id, segment=question.segment)

    @llmspans.pipeline("support_rag", segment=segment_argument)
    def handle(
        self,
        question: str,
        *,
        ticket_id: str,
        relevant_ids: Sequence[str] | None = None,
        segment: str | None = None,
    ) -> Reply:
        """Answer ``question`` and post the reply; ``relevant_ids`` are ground-truth labels,
        ``segment`` the class of question (``llmspans.segment``)."""
        note_injected_fault()
        run = llmspans.current_run()
        try:
            docs = self.search(question, relevant_ids=relevant_ids)
            context = self.select(docs, TOKEN_BUDGET, relevant_ids=relevant_ids)
            answer = self.generate(question, context)
        except Exception as error:
            # The service answers "try again later"; the failing stage's span holds the error.
            llmspans.set_outcome(completed=False)
            return Reply(ticket_id, None, None, run, error=type(error).__name__)
        correct = None if relevant_ids is None else bool(set(answer.citations) & set(relevant_ids))
        if answer.refused:
            llmspans.set_outcome(completed=False, correct=correct)
            return Reply(ticket_id, answer, None, run)
        try:
            reply_id = self.post_reply(ticket_id, answer)
        except Exception as error:
            llmspans.set_outcome(completed=False, correct=correct)
            return Reply(ticket_id, answer, None, run, error=type(error).__name__)
        llmspans.set_outcome(
            completed=self.tickets.reply_exists(reply_id, ticket_id), correct=correct
        )
        return Reply(ticket_id, answer, reply_id, run)

    @llmspans.retrieval(data_source="nimbus-help-centre")
    def search(self, query: str, *, relevant_ids: Sequence[str] | None = None) -> list[Document]:
        """The best help-centre articles; llmspans reads ids and scores from the result."""
        raise_if_error("retrieval")
        simulate("vector_store")
        docs = self.knowledge.search(query, TOP_K)
        match injected("retrieval"):
            case "empty":
                docs = []
            case "wrong_documents":
                docs = self._unrelated(relevant_ids or ())
        if relevant_ids is not None:
            llmspans.record_retrieval(relevant_ids=list(relevant_ids))
        return docs

    @llmspans.context_selection
    def select(
        self, docs: Sequence[Document], budget: int, *, relevant_ids: Sequence[str] | None = None
    ) -> list[Document]:
        """Articles in rank order while they fit the token budget."""
        raise_if_error("context_selection")
        simulate("reranker")
        selected: list[Document] = []
        used = 0
        for doc in docs:
            if used + doc.tokens <= budget:
                selected.append(doc)
                used += doc.tokens
        match injected("context_selection"):
            case "empty":
                selected, used = [], 0
            case "dropped_relevant":
                # A buggy reranker that pushes the relevant articles out of the budget.
                wanted = set(relevant_ids or ())
                selected = [d for d in docs if d.id not in wanted][:2]
                used = sum(d.tokens for d in selected)
        llmspans.record_context(
            input_ids=[d.id for d in docs],
            selected_ids=[d.id for d in selected],
            token_budget=budget,
            tokens=used,
        )
        return selected

    @llmspans.generation(model="nimbus-extractive-1", provider="llmspans.examples")
    def generate(self, question: str, context: Sequence[Document]) -> Answer:
        """A cited answer from the selected articles."""
        raise_if_error("generation")
        simulate("model")
        answer = self.answerer.answer(question, context)
        match injected("generation"):
            case "refused":
                answer = _refusal(answer)
            case "unsupported_citation":
                # A hallucinated reference: an article the model was never shown.
                shown = {d.id for d in context}
                unseen = next(i for i in sorted(self.knowledge.documents) if i not in shown)
                answer = _with_citations(answer, (*answer.citations, unseen))
        llmspans.record_generation(
            model=self.answerer.model,
            response_model=answer.model,
            provider=self.answerer.provider,
            input_tokens=answer.input_tokens,
            output_tokens=answer.output_tokens,
            citations=list(answer.citations),
            confidence=answer.confidence,
            refused=answer.refused,
            completion=answer.text,
            claims=dict.fromkeys(answer.citations, answer.claim),
        )
        return answer

    @llmspans.action
    def post_reply(self, ticket_id: str, answer: Answer) -> int:
        """Post the answer to the ticket, then read it back: an execution-based check."""
        raise_if_error("action")
        simulate("database")
        if injected("action") == "no_write":
            # A writer that reports success without committing anything.
            reply_id = self.tickets.next_reply_id()
        else:
            reply_id = self.tickets.post_reply(ticket_id, answer.text, answer.citations)
        stored = self.tickets.reply_exists(reply_id, ticket_id)
        llmspans.record_action(
            verified=stored, verification=None if stored else f"reply {reply_id} not stored"
        )
        return reply_id

    def _unrelated(self, relevant_ids: Sequence[str]) -> list[Document]:
        pool = [d for i, d in sorted(self.knowledge.documents.items()) if i not in relevant_ids]
        # Seeded by the labels, so a "wrong documents" fault is reproducible.
        picks = random.Random(",".join(relevant_ids)).sample(pool, TOP_K)
        return [
            Document(d.id, d.title, d.text, round(1.0 / (r + 2), 4)) for r, d in enumerate(picks)
        ]


def _refusal(answer: Answer) -> Answer:
    text = "I'm sorry, I can't help with that."
    return Answer(text, (), 0.05, True, answer.model, answer.input_tokens, 9)


def _with_citations(answer: Answer, citations: tuple[str, ...]) -> Answer:
    return Answer(
        answer.text + "".join(f" [{c}]" for c in citations[len(answer.citations) :]),
        citations,
        answer.confidence,
        answer.refused,
        answer.model,
        answer.input_tokens,
        answer.output_tokens,
    )
