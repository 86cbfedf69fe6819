"""A rule-based text-to-SQL "model": one query template per kind of question.

It stands in for an LLM so the example runs offline and deterministically. Its
queries are deliberately written differently from the reference queries (subqueries
where the reference joins, ``BETWEEN`` where it uses ``strftime``): the semantic
check has to compare results, not text.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from .._text import MONTH_NAMES, estimate_tokens

MODEL: Final = "sql-template-1"

_MONTHS: Final = {name: f"{i:02d}" for i, name in enumerate(MONTH_NAMES, start=1)}
_TABLE_REF: Final = re.compile(r"\b(?:from|join)\s+([a-z_][a-z0-9_]*)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class GeneratedQuery:
    """A generated query and the facts the generation span records."""

    sql: str
    tables: tuple[str, ...]
    input_tokens: int
    output_tokens: int
    confidence: float


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _month_range(month: str, year: str) -> tuple[str, str]:
    mm = _MONTHS[month.lower()]
    return f"'{year}-{mm}-01'", f"'{year}-{mm}-31'"


def _customers_in(m: re.Match[str]) -> str:
    country = _quote(m["country"])
    return f"SELECT COUNT(customer_id) AS customers FROM customers WHERE country = {country}"


def _revenue(m: re.Match[str]) -> str:
    start, end = _month_range(m["month"], m["year"])
    return (
        "SELECT ROUND(SUM(quantity * unit_price), 2) AS revenue FROM order_items WHERE order_id IN "
        f"(SELECT order_id FROM orders WHERE order_date BETWEEN {start} AND {end} "
        "AND status != 'cancelled')"
    )


def _top_products(m: re.Match[str]) -> str:
    return (
        "SELECT products.name, SUM(order_items.quantity) AS units_sold FROM products "
        "JOIN order_items ON order_items.product_id = products.product_id "
        "JOIN orders ON orders.order_id = order_items.order_id "
        "WHERE orders.status IN ('shipped', 'delivered') "
        f"GROUP BY products.name ORDER BY units_sold DESC, products.name LIMIT {int(m['n'])}"
    )


def _frequent_customers(m: re.Match[str]) -> str:
    return (
        "SELECT name FROM customers WHERE customer_id IN (SELECT customer_id FROM orders "
        f"GROUP BY customer_id HAVING COUNT(order_id) > {int(m['n'])})"
    )


def _average_order_value(m: re.Match[str]) -> str:
    return (
        "WITH totals AS (SELECT order_items.order_id, SUM(quantity * unit_price) AS total "
        "FROM order_items JOIN orders ON orders.order_id = order_items.order_id "
        "JOIN customers ON customers.customer_id = orders.customer_id "
        f"WHERE customers.country = {_quote(m['country'])} AND orders.status != 'cancelled' "
        "GROUP BY order_items.order_id) SELECT ROUND(AVG(total), 2) FROM totals"
    )


def _returned_as(m: re.Match[str]) -> str:
    reason = m["reason"].strip().lower().replace(" ", "_")
    return f"SELECT COUNT(return_id) FROM returns WHERE reason = {_quote(reason)}"


def _suppliers_in(m: re.Match[str]) -> str:
    return f"SELECT name FROM suppliers WHERE country = {_quote(m['country'])} ORDER BY name"


def _products_over(m: re.Match[str]) -> str:
    return (
        f"SELECT COUNT(product_id) FROM products WHERE category = {_quote(m['category'].lower())} "
        f"AND unit_price > {float(m['price'])}"
    )


def _never_returned(m: re.Match[str]) -> str:
    return (
        "SELECT products.name FROM products "
        "JOIN suppliers ON suppliers.supplier_id = products.supplier_id "
        f"WHERE suppliers.country = {_quote(m['country'])} AND NOT EXISTS "
        "(SELECT 1 FROM returns WHERE returns.product_id = products.product_id)"
    )


def _cancelled_in(m: re.Match[str]) -> str:
    start, end = _month_range(m["month"], m["year"])
    return (
        "SELECT COUNT(order_id) FROM orders WHERE status = 'cancelled' "
        f"AND order_date BETWEEN {start} AND {end}"
    )


_INTENTS: Final[list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]]] = [
    (re.compile(p, re.IGNORECASE), build)
    for p, build in [
        (r"how many customers are in (?P<country>[\w ]+)\?", _customers_in),
        (r"total revenue in (?P<month>[a-z]+) (?P<year>\d{4})\?", _revenue),
        (r"top (?P<n>\d+) products by units sold", _top_products),
        (r"customers placed more than (?P<n>\d+) orders", _frequent_customers),
        (r"average order value for customers in (?P<country>[\w ]+)\?", _average_order_value),
        (r"returned as (?P<reason>[\w ]+)\?", _returned_as),
        (r"suppliers are based in (?P<country>[\w ]+)\?", _suppliers_in),
        (
            r"how many (?P<category>\w+) products cost more than (?P<price>[\d.]+) dollars",
            _products_over,
        ),
        (r"products from suppliers in (?P<country>[\w ]+) were never returned", _never_returned),
        (r"orders were cancelled in (?P<month>[a-z]+) (?P<year>\d{4})\?", _cancelled_in),
    ]
]


def tables_in(sql: str) -> tuple[str, ...]:
    """The tables a query reads (``FROM``/``JOIN`` targets that are not CTE names), in order."""
    ctes = {m.group(1).lower() for m in re.finditer(r"\b(\w+)\s+as\s*\(", sql, re.IGNORECASE)}
    seen = dict.fromkeys(t.lower() for t in _TABLE_REF.findall(sql) if t.lower() not in ctes)
    return tuple(seen)


def is_valid_sql(db: sqlite3.Connection, sql: str) -> bool:
    """Whether SQLite can prepare ``sql`` (syntax and names), without running it."""
    try:
        db.execute(f"EXPLAIN {sql}")
    except sqlite3.Error:
        return False
    return True


def generate_sql(question: str, schema_prompt: str) -> GeneratedQuery | None:
    """The query for ``question``, or ``None`` when no template understands it."""
    for pattern, build in _INTENTS:
        match = pattern.search(question)
        if match:
            sql = build(match)
            return GeneratedQuery(
                sql=sql,
                tables=tables_in(sql),
                input_tokens=estimate_tokens(schema_prompt) + estimate_tokens(question) + 40,
                output_tokens=estimate_tokens(sql),
                confidence=0.9,
            )
    return None
