"""Semantic correctness of a query: does it return what the reference query returns?

Valid SQL is not enough: a query that runs can still answer a different question.
The check executes both queries and compares their results as *data*: column names
are ignored, numbers are compared after rounding (sums of floats depend on the
order of addition), and row order matters only when the reference query orders
its result (a top-level ``ORDER BY``).
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

_ORDER_BY: Final = re.compile(r"\border\s+by\b", re.IGNORECASE)
_STRING: Final = re.compile(r"'(?:[^']|'')*'")

Row = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class Check:
    """The outcome of a semantic check; ``reason`` says why it failed."""

    ok: bool
    reason: str | None = None


def order_matters(sql: str) -> bool:
    """Whether ``sql`` orders its final result: an ``ORDER BY`` outside every parenthesis."""
    text = _STRING.sub("''", sql)
    depth = 0
    top_level: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        top_level.append(char if depth == 0 else " ")
    return bool(_ORDER_BY.search("".join(top_level)))


def normalise(rows: Sequence[Row], *, digits: int = 6) -> list[Row]:
    """Rows with floats rounded, so that equal sums computed in another order compare equal."""
    return [tuple(round(v, digits) if isinstance(v, float) else v for v in row) for row in rows]


def same_result(candidate: Sequence[Row], reference: Sequence[Row], *, ordered: bool) -> Check:
    """Compare two result sets (as lists when ``ordered``, else as multisets)."""
    got, want = normalise(candidate), normalise(reference)
    if got and want and len(got[0]) != len(want[0]):
        return Check(False, f"{len(got[0])} columns, expected {len(want[0])}")
    if len(got) != len(want):
        return Check(False, f"{len(got)} rows, expected {len(want)}")
    if ordered:
        return Check(True) if got == want else Check(False, "rows differ or are out of order")
    if Counter(got) != Counter(want):
        return Check(False, "rows differ")
    return Check(True)


def semantically_equal(
    db: sqlite3.Connection, candidate: Sequence[Row], reference_sql: str
) -> Check:
    """Whether ``candidate`` (rows of a generated query) answers what ``reference_sql`` does."""
    reference = db.execute(reference_sql).fetchall()
    return same_result(candidate, reference, ordered=order_matters(reference_sql))
