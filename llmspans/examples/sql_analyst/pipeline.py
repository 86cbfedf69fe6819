"""The SQL analyst, instrumented with llmspans.

    retrieval          cards of the tables it needs       -> table ids, scores, labels
    context_selection  the cards that fit the budget      -> selected table ids
    generation         a SQL query                        -> tables it reads (citations), validity
    action             the query executed on SQLite       -> verified: same result as the reference

The action is verified by *execution*: the rows the generated query returns are
compared with the rows of a reference query, so SQL that runs but answers a
different question fails verification.

    python -m llmspans.examples.sql_analyst "How many customers are in France?"
"""

from __future__ import annotations

import random
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import llmspans

from .._faults import injected, note_injected_fault, raise_if_error
from .._latency import simulate
from .._text import terms
from ..bm25 import BM25
from .check import Check, Row, semantically_equal
from .database import AnalystQuestion, TableCard, load_questions, open_database, table_cards
from .generator import MODEL, GeneratedQuery, generate_sql, is_valid_sql, tables_in

TOP_K: Final = 4
TOKEN_BUDGET: Final = 400
#: a table is worth prompt space when it scores at least this share of the best one
RELATIVE_SCORE_CUTOFF: Final = 0.25


@dataclass(frozen=True, slots=True)
class AnalystAnswer:
    """What the analyst returned for one question."""

    question: str
    sql: str | None
    rows: list[Row] | None
    check: Check | None
    #: the run's reference, stored with the response (for feedback later); None untraced
    run: llmspans.RunRef | None
    error: str | None = None

    @property
    def trace_id(self) -> str:
        return self.run.trace_id_hex if self.run is not None else ""


class SqlAnalyst:
    """Answers the labelled questions; the demo calls :meth:`run` with a question index."""

    name: Final = "sql_analyst"
    stages: Final = ("retrieval", "context_selection", "generation", "action")
    fault_modes: Final = {
        "retrieval": ("error", "empty", "wrong_documents"),
        "context_selection": ("error", "empty", "dropped_relevant"),
        "generation": ("error", "refused", "invalid_output", "unsupported_citation"),
        "action": ("error", "stale_replica"),
    }

    def __init__(
        self,
        db: sqlite3.Connection | None = None,
        questions: Sequence[AnalystQuestion] | None = None,
    ) -> None:
        self.db = db or open_database()
        self._lock = threading.Lock()  # guards self.db, shared by threads
        self.questions = list(questions if questions is not None else load_questions())
        self.cards = {card.id: card for card in table_cards(self.db)}
        self._index = BM25(
            [
                (c.id, terms(f"{c.id.replace('_', ' ')} {c.description}"))
                for c in self.cards.values()
            ]
        )

    def __len__(self) -> int:
        return len(self.questions)

    def run(self, index: int) -> AnalystAnswer:
        q = self.questions[index]
        return self.answer(q.question, relevant_tables=q.tables, reference_sql=q.reference_sql)

    @llmspans.pipeline("sql_analyst")
    def answer(
        self,
        question: str,
        *,
        relevant_tables: Sequence[str] | None = None,
        reference_sql: str | None = None,
    ) -> AnalystAnswer:
        """Answer ``question`` with SQL; with a ``reference_sql`` the result is checked."""
        note_injected_fault()
        run = llmspans.current_run()
        query: GeneratedQuery | None = None
        try:
            cards = self.find_tables(question, relevant_tables=relevant_tables)
            context = self.select_tables(cards, TOKEN_BUDGET, relevant_tables=relevant_tables)
            query = self.write_sql(question, context)
            if query is None or not self._valid(query.sql):
                llmspans.set_outcome(completed=False, correct=False)
                return AnalystAnswer(question, query.sql if query else None, None, None, run)
            rows, check = self.run_query(query.sql, reference_sql)
        except Exception as error:
            llmspans.set_outcome(completed=False, correct=False)
            sql = query.sql if query else None
            return AnalystAnswer(question, sql, None, None, run, type(error).__name__)
        ok = check.ok if check is not None else None
        llmspans.set_outcome(completed=ok, correct=ok)
        return AnalystAnswer(question, query.sql, rows, check, run)

    @llmspans.retrieval(data_source="shop-schema")
    def find_tables(
        self, question: str, *, relevant_tables: Sequence[str] | None = None
    ) -> list[TableCard]:
        """Schema linking: the tables whose descriptions match the question."""
        raise_if_error("retrieval")
        simulate("vector_store")
        hits = self._index.search(terms(question), TOP_K)
        cards = [_scored(self.cards[h.id], h.score) for h in hits]
        match injected("retrieval"):
            case "empty":
                cards = []
            case "wrong_documents":
                wrong = [
                    c for i, c in sorted(self.cards.items()) if i not in (relevant_tables or ())
                ]
                cards = [_scored(c, 0.5) for c in random.Random(question).sample(wrong, 2)]
        if relevant_tables is not None:
            llmspans.record_retrieval(relevant_ids=list(relevant_tables))
        return cards

    @llmspans.context_selection
    def select_tables(
        self,
        cards: Sequence[TableCard],
        budget: int,
        *,
        relevant_tables: Sequence[str] | None = None,
    ) -> list[TableCard]:
        """The strongest tables that fit the prompt budget."""
        raise_if_error("context_selection")
        simulate("reranker")
        best = cards[0].score if cards else 0.0
        selected: list[TableCard] = []
        used = 0
        for card in cards:
            if card.score >= RELATIVE_SCORE_CUTOFF * best and used + card.tokens <= budget:
                selected.append(card)
                used += card.tokens
        match injected("context_selection"):
            case "empty":
                selected = []
            case "dropped_relevant":
                selected = [c for c in cards if c.id not in (relevant_tables or ())][:1]
        llmspans.record_context(
            input_ids=[c.id for c in cards],
            selected_ids=[c.id for c in selected],
            token_budget=budget,
            tokens=sum(c.tokens for c in selected),
        )
        return selected

    @llmspans.generation(model=MODEL, provider="llmspans.examples")
    def write_sql(self, question: str, context: Sequence[TableCard]) -> GeneratedQuery | None:
        """A query for ``question`` over the tables in ``context``; it cites the tables it reads."""
        raise_if_error("generation")
        simulate("model")
        schema_prompt = "\n\n".join(f"-- {c.description}\n{c.ddl}" for c in context)
        query = generate_sql(question, schema_prompt) if context else None
        match injected("generation"):
            case "refused":
                query = None
            case "invalid_output" if query is not None:
                query = _replace_sql(query, query.sql.replace("SELECT", "SELEC", 1))
            case "unsupported_citation" if query is not None:
                # Reads a table the model was never shown; the answer itself is unchanged.
                shown = {c.id for c in context}
                unseen = next(t for t in sorted(self.cards) if t not in shown)
                sql = f"SELECT * FROM ({query.sql}) WHERE EXISTS (SELECT 1 FROM {unseen})"
                query = _replace_sql(query, sql)
        if query is None:
            llmspans.record_generation(
                input_tokens=len(question) // 4 + 40, output_tokens=8, refused=True, citations=[]
            )
            return None
        valid = self._valid(query.sql)
        llmspans.record_generation(
            input_tokens=query.input_tokens,
            output_tokens=query.output_tokens,
            citations=list(query.tables),
            confidence=query.confidence,
            output_valid=valid,
        )
        return query

    @llmspans.action
    def run_query(self, sql: str, reference_sql: str | None) -> tuple[list[Row], Check | None]:
        """Execute the query; verified when its result equals the reference query's."""
        raise_if_error("action")
        simulate("database")
        with self._lock:
            if injected("action") == "stale_replica":
                # A replica that has the schema but lost its rows.
                rows = open_database(with_data=False).execute(sql).fetchall()
            else:
                rows = self.db.execute(sql).fetchall()
            check = semantically_equal(self.db, rows, reference_sql) if reference_sql else None
        if check is not None:
            llmspans.record_action(verified=check.ok, verification=check.reason)
        return rows, check

    def _valid(self, sql: str) -> bool:
        with self._lock:
            return is_valid_sql(self.db, sql)


def _scored(card: TableCard, score: float) -> TableCard:
    return TableCard(card.id, card.description, card.ddl, round(score, 4))


def _replace_sql(query: GeneratedQuery, sql: str) -> GeneratedQuery:
    return GeneratedQuery(
        sql, tables_in(sql), query.input_tokens, query.output_tokens, query.confidence
    )
