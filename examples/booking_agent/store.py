"""The restaurant's reservation book (SQLite)."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass

from .extract import BookingRequest

_SCHEMA = """
CREATE TABLE IF NOT EXISTS reservations (
    reservation_id INTEGER PRIMARY KEY AUTOINCREMENT,
    name           TEXT NOT NULL,
    party_size     INTEGER NOT NULL CHECK (party_size BETWEEN 1 AND 12),
    date           TEXT NOT NULL,
    time           TEXT NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class Booking:
    """A confirmation as the booking tool reports it (which may not be the truth)."""

    reservation_id: int
    request: BookingRequest


class ReservationBook:
    """Reservations in SQLite; ``path=":memory:"`` keeps them in memory."""

    def __init__(self, path: str = ":memory:") -> None:
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._lock = threading.Lock()  # guards self._db, shared by threads
        with self._lock, self._db:
            self._db.execute(_SCHEMA)

    def insert(self, request: BookingRequest) -> int:
        """Store a reservation and return its id."""
        with self._lock, self._db:
            cursor = self._db.execute(
                "INSERT INTO reservations (name, party_size, date, time) VALUES (?, ?, ?, ?)",
                (request.name, request.party_size, request.date, request.time),
            )
            return int(cursor.lastrowid or 0)

    def next_id(self) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT COALESCE(MAX(reservation_id), 0) + 1 FROM reservations"
            ).fetchone()
        return int(row[0])

    def exists(self, booking: Booking) -> bool:
        """Whether the reservation row is really there, with the requested details."""
        r = booking.request
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM reservations WHERE reservation_id = ? AND name = ? "
                "AND party_size = ? AND date = ? AND time = ?",
                (booking.reservation_id, r.name, r.party_size, r.date, r.time),
            ).fetchone()
        return row is not None

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM reservations").fetchone()[0])

    def close(self) -> None:
        self._db.close()
