"""The ticket store the support bot posts its replies to (SQLite)."""

from __future__ import annotations

from .._sqlite import SQLiteStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
    reply_id INTEGER PRIMARY KEY AUTOINCREMENT,
    ticket_id TEXT NOT NULL,
    body TEXT NOT NULL,
    citations TEXT NOT NULL
)
"""


class TicketStore(SQLiteStore):
    """Replies to support tickets; ``path=":memory:"`` keeps them in memory."""

    def __init__(self, path: str = ":memory:") -> None:
        super().__init__(_SCHEMA, path)

    def post_reply(self, ticket_id: str, body: str, citations: tuple[str, ...]) -> int:
        """Store a reply and return its id."""
        return self._insert(
            "INSERT INTO replies (ticket_id, body, citations) VALUES (?, ?, ?)",
            (ticket_id, body, ",".join(citations)),
        )

    def next_reply_id(self) -> int:
        """The id the next reply will get (what a broken writer might report without writing)."""
        return int(self._scalar("SELECT COALESCE(MAX(reply_id), 0) + 1 FROM replies"))

    def reply_exists(self, reply_id: int, ticket_id: str) -> bool:
        """Whether reply ``reply_id`` is stored for ``ticket_id``."""
        row = self._scalar(
            "SELECT 1 FROM replies WHERE reply_id = ? AND ticket_id = ?", (reply_id, ticket_id)
        )
        return row is not None
