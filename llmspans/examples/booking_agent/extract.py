"""A rule-based booking-request extractor: the "model" of the booking agent.

It turns a free-text request into a :class:`BookingRequest` the way an LLM with a
JSON schema would, and :func:`validate` is the app's schema check on its output.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Final

from .._text import MONTH_NAMES

MODEL: Final = "booking-extractor-1"
YEAR: Final = 2025
OPENING: Final = (dt.time(12, 0), dt.time(22, 30))
MAX_PARTY: Final = 12

_NUMBERS: Final = {
    w: i
    for i, w in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
        ]
    )
}
_MONTHS: Final = {m: i for i, m in enumerate(MONTH_NAMES, start=1)}
_N: Final = r"(\d{1,2}|" + "|".join(_NUMBERS) + ")"
_PARTY: Final = [
    re.compile(rf"\b(?:table|party|reservation|reserve a table) (?:for|of) {_N}\b", re.I),
    re.compile(rf"\b{_N} (?:people|guests|persons)\b", re.I),
    re.compile(rf"\bfor {_N}\b", re.I),
]
_ISO_DATE: Final = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_MONTH_DAY: Final = re.compile(r"\b(" + "|".join(_MONTHS) + r") (\d{1,2})\b", re.I)
_DAY_MONTH: Final = re.compile(r"\b(\d{1,2}) (" + "|".join(_MONTHS) + r")\b", re.I)
_TIME: Final = re.compile(r"\bat (noon|(\d{1,2})(?::(\d{2}))?\s*(am|pm)?)", re.I)
_CLOCK: Final = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_NAME: Final = [
    re.compile(r"\b(?i:under the name|name is|name:|booking name|name)\s+([A-Z][\w'-]+)"),
    re.compile(r"\bfor ([A-Z][\w'-]+)[?.!]"),
]


@dataclass(frozen=True, slots=True)
class BookingRequest:
    """A structured booking request; any field may be missing when extraction fails."""

    name: str | None
    party_size: int | None
    date: str | None  # YYYY-MM-DD
    time: str | None  # HH:MM, 24 h


def _number(text: str) -> int:
    return int(text) if text.isdigit() else _NUMBERS[text.lower()]


def _party(text: str) -> int | None:
    for pattern in _PARTY:
        match = pattern.search(text)
        if match:
            return _number(match.group(1))
    return None


def _date(text: str) -> str | None:
    if match := _ISO_DATE.search(text):
        return match.group(0)
    if match := _MONTH_DAY.search(text):
        month, day = _MONTHS[match.group(1).lower()], int(match.group(2))
    elif match := _DAY_MONTH.search(text):
        day, month = int(match.group(1)), _MONTHS[match.group(2).lower()]
    else:
        return None
    return f"{YEAR}-{month:02d}-{day:02d}"


def _time(text: str) -> str | None:
    match = _TIME.search(text)
    if match is None:
        clock = _CLOCK.search(text)
        return f"{int(clock.group(1)):02d}:{clock.group(2)}" if clock else None
    if match.group(1).lower() == "noon":
        return "12:00"
    hour, minute, meridiem = int(match.group(2)), int(match.group(3) or 0), match.group(4)
    if meridiem and meridiem.lower() == "pm" and hour < 12:
        hour += 12
    return f"{hour:02d}:{minute:02d}"


def _name(text: str) -> str | None:
    for pattern in _NAME:
        match = pattern.search(text)
        if match:
            return match.group(1)
    return None


def extract(text: str) -> BookingRequest:
    """Read the booking fields out of a free-text request."""
    return BookingRequest(_name(text), _party(text), _date(text), _time(text))


def validate(request: BookingRequest) -> str | None:
    """The app's check of the extracted request: ``None`` when valid, else why not."""
    if not request.name:
        return "missing name"
    if request.party_size is None or not 1 <= request.party_size <= MAX_PARTY:
        return f"party size {request.party_size} outside 1..{MAX_PARTY}"
    if request.date is None or request.time is None:
        return "missing date or time"
    try:
        dt.date.fromisoformat(request.date)
        at = dt.time.fromisoformat(request.time)
    except ValueError as error:
        return str(error)
    if not OPENING[0] <= at <= OPENING[1]:
        return f"{request.time} outside opening hours"
    return None
