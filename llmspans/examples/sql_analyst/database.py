"""The shop's analytics database (SQLite, from the shipped schema and data) and its table cards."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .._text import estimate_tokens

DATA_DIR: Final = Path(__file__).parent / "data"


@dataclass(frozen=True, slots=True)
class TableCard:
    """What schema retrieval returns for one table: its description and DDL."""

    id: str
    description: str
    ddl: str
    score: float = 0.0

    @property
    def tokens(self) -> int:
        return estimate_tokens(f"{self.description}\n{self.ddl}")


@dataclass(frozen=True, slots=True)
class AnalystQuestion:
    """A question with the tables it needs and a reference query that answers it."""

    id: str
    question: str
    tables: tuple[str, ...]
    reference_sql: str


def open_database(path: str = ":memory:", *, with_data: bool = True) -> sqlite3.Connection:
    """A fresh copy of the shop database (with empty tables when ``with_data`` is false)."""
    db = sqlite3.connect(path, check_same_thread=False)
    db.executescript((DATA_DIR / "schema.sql").read_text(encoding="utf-8"))
    if with_data:
        db.executescript((DATA_DIR / "data.sql").read_text(encoding="utf-8"))
    return db


def table_cards(db: sqlite3.Connection) -> list[TableCard]:
    """One card per table, from ``sqlite_master`` and the shipped descriptions."""
    descriptions: dict[str, str] = json.loads(
        (DATA_DIR / "tables.json").read_text(encoding="utf-8")
    )
    rows = db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name")
    return [TableCard(name, descriptions.get(name, ""), sql) for name, sql in rows]


def load_questions(path: Path = DATA_DIR / "questions.json") -> list[AnalystQuestion]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    return [
        AnalystQuestion(q["id"], q["question"], tuple(q["tables"]), q["reference_sql"]) for q in raw
    ]
