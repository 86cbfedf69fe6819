"""Argument types of the command-line tools (``analyze``, ``diverge``, ``eval``,
``demo``): a bad value is refused by argparse with one clear line and exit 2."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["non_negative", "open_unit", "positive_int", "positive_int_at_most", "probability"]


def _number(text: str, kind: Callable[[str], float], expected: str) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1 (counts, sizes, concurrency)."""
    value = int(_number(text, int, "a positive integer"))
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def probability(text: str) -> float:
    """A number in [0, 1] (rates, shares)."""
    value = _number(text, float, "a number in [0, 1]")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}")
    return value


def open_unit(text: str) -> float:
    """A number in (0, 1) (a confidence level)."""
    value = _number(text, float, "a number in (0, 1)")
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text}")
    return value


def non_negative(text: str) -> float:
    """A number >= 0 (seconds); NaN is refused."""
    value = _number(text, float, "a number >= 0")
    if not value >= 0.0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def positive_int_at_most(high: int) -> Callable[[str], int]:
    """An integer in [1, ``high``] (a thread or task count that must stay bounded)."""

    def check(text: str) -> int:
        value = positive_int(text)
        if value > high:
            raise argparse.ArgumentTypeError(f"expected at most {high}, got {text}")
        return value

    return check
