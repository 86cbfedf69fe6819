"""The ticket store the support bot posts its replies to (SQLite)."""

from __future__ import annotations

import sqlite3
import threading

_SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
    reply_id INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id TEXT NOT NULL,
    body TEXT NOT NULL,
    citations TEXT NOT NULL
)
"""


class TicketStore:
    """Replies to support tickets; ``path=":memory:"`` keeps them in memory."""

    def __init__(self, path: str = ":memory:") -> None:
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._lock = threading.Lock()  # guards self._db: one connection shared by threads
        with self._lock, self._db:
            self._db.execute(_SCHEMA)

    def post_reply(self, ticket_id: str, body: str, citations: tuple[str, ...]) -> int:
        """Store a reply and return its id."""
        with self._lock, self._db:
            cursor = self._db.execute(
                "INSERT INTO replies (ticket_id, body, citations) VALUES (?, ?, ?)",
                (ticket_id, body, ",".join(citations)),
            )
            return int(cursor.lastrowid or 0)

    def next_reply_id(self) -> int:
        """The id the next reply will get (what a broken writer might report without writing)."""
        with self._lock:
            row = self._db.execute("SELECT COALESCE(MAX(reply_id), 0) + 1 FROM replies").fetchone()
        return int(row[0])

    def reply_exists(self, reply_id: int, ticket_id: str) -> bool:
        """Whether reply ``reply_id`` is stored for ``ticket_id``."""
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM replies WHERE reply_id = ? AND ticket_id = ?", (reply_id, ticket_id)
            ).fetchone()
        return row is not None

    def close(self) -> None:
        self._db.close()
