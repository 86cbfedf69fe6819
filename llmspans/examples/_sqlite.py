"""The SQLite store the example apps write to: one connection shared by threads."""

from __future__ import annotations

import sqlite3
import threading
from typing import Any


class SQLiteStore:
    """One table's store, created from ``schema``; ``path=":memory:"`` keeps it in memory."""

    def __init__(self, schema: str, path: str = ":memory:") -> None:
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._lock = threading.Lock()  # guards self._db: one connection shared by threads
        with self._lock, self._db:
            self._db.execute(schema)

    def _insert(self, sql: str, parameters: tuple[Any, ...]) -> int:
        """Run one ``INSERT`` in its own transaction and return the new row's id."""
        with self._lock, self._db:
            cursor = self._db.execute(sql, parameters)
            return int(cursor.lastrowid or 0)

    def _scalar(self, sql: str, parameters: tuple[Any, ...] = ()) -> Any:
        """The first column of the first row of a query, or None when there is no row."""
        with self._lock:
            row = self._db.execute(sql, parameters).fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        self._db.close()
