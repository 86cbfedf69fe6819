"""The booking agent: extraction, validation, and the execution-based check of the booking."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from llmspans import _attributes as A
from llmspans._demo.examples import submodule
from llmspans.testing import CapturedSpans

extract = submodule("booking_agent.extract")
store = submodule("booking_agent.store")
agent = submodule("booking_agent.pipeline")


def test_every_shipped_request_is_extracted_as_labelled() -> None:
    requests = agent.load_requests()
    assert len(requests) >= 25
    for labelled in requests:
        got = extract.extract(labelled.text)
        assert got == labelled.expected, labelled.text
        assert extract.validate(got) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": None}, "missing name"),
        ({"party_size": 0}, "party size 0"),
        ({"party_size": 13}, "party size 13"),
        ({"date": None}, "missing date or time"),
        ({"date": "2025-02-30"}, "day is out of range"),
        ({"time": "23:15"}, "outside opening hours"),
        ({"time": "09:00"}, "outside opening hours"),
    ],
)
def test_validation_names_what_is_wrong(change: dict[str, Any], message: str) -> None:
    good = extract.BookingRequest("Okafor", 4, "2025-03-14", "19:30")
    assert extract.validate(good) is None
    problem = extract.validate(replace(good, **change))
    assert problem is not None and message in problem


def test_the_book_confirms_only_rows_that_exist_with_the_requested_details() -> None:
    book = store.ReservationBook()
    request = extract.BookingRequest("Okafor", 4, "2025-03-14", "19:30")
    booking = store.Booking(book.insert(request), request)
    assert book.exists(booking)
    assert not book.exists(store.Booking(booking.reservation_id + 1, request))
    assert not book.exists(store.Booking(booking.reservation_id, replace(request, party_size=5)))
    assert book.next_id() == booking.reservation_id + 1
    book.close()


@pytest.mark.usefixtures("example_prices")
def test_a_booking_is_verified_by_reading_the_row_back(spans: CapturedSpans) -> None:
    bot = agent.BookingAgent()
    result = bot.handle("Table for two on March 15 at 8pm please, under the name Lindqvist.")
    assert result.confirmed and bot.book.count() == 1
    action = spans.one("execute_tool create_reservation")
    assert action.attributes[A.ACTION_VERIFIED] is True
    assert A.ACTION_VERIFICATION not in action.attributes
    generation = spans.one("chat booking-extractor-1")
    assert generation.attributes[A.GENERATION_OUTPUT_VALID] is True
    tokens_in = generation.attributes[A.GEN_AI_USAGE_INPUT_TOKENS]
    tokens_out = generation.attributes[A.GEN_AI_USAGE_OUTPUT_TOKENS]
    assert isinstance(tokens_in, int) and isinstance(tokens_out, int)
    assert generation.attributes[A.COST_USD] == pytest.approx(
        (0.15 * tokens_in + 0.60 * tokens_out) / 1e6
    )
    root = spans.one("invoke_workflow booking_agent")
    assert root.attributes[A.TASK_COMPLETED] is True


def test_a_tool_that_confirms_without_writing_fails_verification(
    spans: CapturedSpans, faults: Any
) -> None:
    bot = agent.BookingAgent()
    with faults.injecting(("action", "no_write")):
        result = bot.run(0)
    assert result.booking is not None and not result.confirmed
    assert bot.book.count() == 0
    action = spans.one("execute_tool create_reservation")
    assert action.attributes[A.ACTION_VERIFIED] is False
    assert "not found" in str(action.attributes[A.ACTION_VERIFICATION])
    assert spans.one("invoke_workflow booking_agent").attributes[A.TASK_COMPLETED] is False


def test_invalid_extraction_stops_before_the_tool(spans: CapturedSpans, faults: Any) -> None:
    bot = agent.BookingAgent()
    with faults.injecting(("generation", "invalid_output")):
        result = bot.run(2)
    assert result.booking is None and bot.book.count() == 0
    assert spans.by_stage("action") == []
    assert spans.one("chat booking-extractor-1").attributes[A.GENERATION_OUTPUT_VALID] is False
