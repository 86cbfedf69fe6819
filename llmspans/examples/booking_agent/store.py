"""The restaurant's reservation book (SQLite)."""

from __future__ import annotations

from dataclasses import dataclass

from .._sqlite import SQLiteStore
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


class ReservationBook(SQLiteStore):
    """Reservations in SQLite; ``path=":memory:"`` keeps them in memory."""

    def __init__(self, path: str = ":memory:") -> None:
        super().__init__(_SCHEMA, path)

    def insert(self, request: BookingRequest) -> int:
        """Store a reservation and return its id."""
        return self._insert(
            "INSERT INTO reservations (name, party_size, date, time) VALUES (?, ?, ?, ?)",
            (request.name, request.party_size, request.date, request.time),
        )

    def next_id(self) -> int:
        return int(self._scalar("SELECT COALESCE(MAX(reservation_id), 0) + 1 FROM reservations"))

    def exists(self, booking: Booking) -> bool:
        """Whether the reservation row is really there, with the requested details."""
        r = booking.request
        row = self._scalar(
            "SELECT 1 FROM reservations WHERE reservation_id = ? AND name = ? "
            "AND party_size = ? AND date = ? AND time = ?",
            (booking.reservation_id, r.name, r.party_size, r.date, r.time),
        )
        return row is not None

    def count(self) -> int:
        return int(self._scalar("SELECT COUNT(*) FROM reservations"))
