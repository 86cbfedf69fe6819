"""The booking agent, instrumented with llmspans.

    generation  the booking request extracted from free text -> tokens, cost, output validity
    action      the reservation written into SQLite           -> verified by reading the row back

The action's ``verify`` callback runs after the tool returns and checks the
downstream state (the reservation row with the requested details), not the tool's
own claim of success: that is what makes task completion execution-based.

    python -m llmspans.examples.booking_agent "Table for 2 on March 15 at 8pm, under the name Lind."
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

import llmspans

from .._faults import injected, note_injected_fault, raise_if_error
from .._latency import simulate
from .._text import estimate_tokens
from .extract import MODEL, BookingRequest, extract, validate
from .store import Booking, ReservationBook

DATA_DIR: Final = Path(__file__).parent / "data"


@dataclass(frozen=True, slots=True)
class LabelledRequest:
    id: str
    text: str
    expected: BookingRequest


@dataclass(frozen=True, slots=True)
class BookingResult:
    """What the agent did with one request."""

    request: BookingRequest | None
    booking: Booking | None
    confirmed: bool
    #: the run's reference, stored with the response (for feedback later); None untraced
    run: llmspans.RunRef | None
    error: str | None = None

    @property
    def trace_id(self) -> str:
        return self.run.trace_id_hex if self.run is not None else ""


def load_requests(path: Path = DATA_DIR / "requests.json") -> list[LabelledRequest]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    return [LabelledRequest(r["id"], r["request"], BookingRequest(**r["expected"])) for r in raw]


class BookingAgent:
    """Books the labelled requests; the demo calls :meth:`run` with a request index."""

    name: Final = "booking_agent"
    stages: Final = ("generation", "action")
    fault_modes: Final = {
        "generation": ("error", "refused", "invalid_output"),
        "action": ("error", "no_write"),
    }

    def __init__(
        self, book: ReservationBook | None = None, requests: Sequence[LabelledRequest] | None = None
    ) -> None:
        self.book = book or ReservationBook()
        self.requests = list(requests if requests is not None else load_requests())

    def __len__(self) -> int:
        return len(self.requests)

    def run(self, index: int) -> BookingResult:
        labelled = self.requests[index]
        return self.handle(labelled.text, expected=labelled.expected)

    @llmspans.pipeline("booking_agent")
    def handle(self, text: str, *, expected: BookingRequest | None = None) -> BookingResult:
        """Book what ``text`` asks for; ``expected`` is the ground-truth extraction, if known."""
        note_injected_fault()
        run = llmspans.current_run()
        try:
            request = self.understand(text)
            if request is None or validate(request) is not None:
                llmspans.set_outcome(completed=False, correct=False)
                return BookingResult(request, None, False, run)
            booking = create_reservation(self.book, request)
        except Exception as error:
            llmspans.set_outcome(completed=False, correct=False)
            return BookingResult(None, None, False, run, type(error).__name__)
        confirmed = self.book.exists(booking)
        correct = confirmed and (expected is None or request == expected)
        llmspans.set_outcome(completed=confirmed, correct=correct)
        return BookingResult(request, booking, confirmed, run)

    @llmspans.generation(model=MODEL, provider="llmspans.examples")
    def understand(self, text: str) -> BookingRequest | None:
        """The structured request, or ``None`` when the model declines."""
        raise_if_error("generation")
        simulate("model")
        request: BookingRequest | None = extract(text)
        match injected("generation"):
            case "refused":
                request = None
            case "invalid_output" if request is not None:
                request = replace(request, date=None)
        fields = {} if request is None else _as_dict(request)
        found = sum(v is not None for v in fields.values())
        llmspans.record_generation(
            input_tokens=estimate_tokens(text) + 60,
            output_tokens=estimate_tokens(json.dumps(fields)) if fields else 6,
            refused=request is None,
            output_valid=request is not None and validate(request) is None,
            confidence=round(0.5 + 0.1 * found, 2),
        )
        return request


def _reservation_stored(
    booking: Booking, book: ReservationBook, request: BookingRequest
) -> tuple[bool, str]:
    """The execution-based check: is the reservation row there, with the requested details?"""
    if book.exists(booking):
        return True, ""
    return False, f"reservation {booking.reservation_id} not found in the book"


@llmspans.action(verify=_reservation_stored)
def create_reservation(book: ReservationBook, request: BookingRequest) -> Booking:
    """The booking tool: writes the reservation and returns its confirmation."""
    raise_if_error("action")
    simulate("database")
    if injected("action") == "no_write":
        # A tool that confirms without committing anything: only the check notices.
        return Booking(book.next_id(), request)
    return Booking(book.insert(request), request)


def _as_dict(request: BookingRequest) -> dict[str, object]:
    return {
        "name": request.name,
        "party_size": request.party_size,
        "date": request.date,
        "time": request.time,
    }
