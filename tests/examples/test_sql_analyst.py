"""The SQL analyst: semantic correctness of a query, the generator, and the verified action."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmspans import _attributes as A
from llmspans._demo.examples import submodule
from llmspans.testing import CapturedSpans

check = submodule("sql_analyst.check")
database = submodule("sql_analyst.database")
generator = submodule("sql_analyst.generator")
Row = tuple[object, ...]


@pytest.fixture(scope="module")
def db() -> Iterator[sqlite3.Connection]:
    connection: sqlite3.Connection = database.open_database()
    yield connection
    connection.close()


@pytest.mark.parametrize(
    ("sql", "ordered"),
    [
        ("SELECT name FROM customers ORDER BY name", True),
        ("select name from customers order  by name limit 3", True),
        ("SELECT COUNT(*) FROM (SELECT name FROM customers ORDER BY name)", False),
        ("SELECT name FROM customers WHERE name = 'x ORDER BY y'", False),
        ("SELECT name FROM customers", False),
        ("SELECT * FROM (SELECT 1) ORDER BY 1", True),
    ],
)
def test_order_matters_only_for_a_top_level_order_by(sql: str, ordered: bool) -> None:
    assert check.order_matters(sql) is ordered


def test_same_result_compares_multisets_unless_ordered() -> None:
    a = [("x", 1), ("y", 2)]
    b = [("y", 2), ("x", 1)]
    assert check.same_result(a, b, ordered=False).ok
    out_of_order = check.same_result(a, b, ordered=True)
    assert not out_of_order.ok and out_of_order.reason == "rows differ or are out of order"
    duplicates = check.same_result([("x",), ("x",)], [("x",), ("y",)], ordered=False)
    assert not duplicates.ok and duplicates.reason == "rows differ"
    assert check.same_result([(1,)], [(1,), (2,)], ordered=False).reason == "1 rows, expected 2"
    assert check.same_result([(1, 2)], [(1,)], ordered=False).reason == "2 columns, expected 1"


def test_sums_added_in_another_order_compare_equal() -> None:
    values = [0.1] * 10
    assert sum(values) != 1.0
    assert check.same_result([(sum(values),)], [(1.0,)], ordered=False).ok
    assert not check.same_result([(1.01,)], [(1.0,)], ordered=False).ok


def test_equivalent_queries_pass_and_different_answers_fail(db: sqlite3.Connection) -> None:
    reference = (
        "SELECT c.name FROM customers c JOIN orders o ON o.customer_id = c.customer_id "
        "GROUP BY c.customer_id HAVING COUNT(*) > 10"
    )
    equivalent = (
        "SELECT name FROM customers WHERE customer_id IN "
        "(SELECT customer_id FROM orders GROUP BY customer_id HAVING COUNT(*) > 10) "
        "ORDER BY name DESC"
    )
    assert check.semantically_equal(db, db.execute(equivalent).fetchall(), reference).ok
    off_by_one = equivalent.replace("> 10", ">= 10")
    rows = db.execute(off_by_one).fetchall()
    assert not check.semantically_equal(db, rows, reference).ok
    # Valid SQL that runs is not enough.
    assert not check.semantically_equal(db, [], reference).ok


def test_ordered_reference_rejects_the_same_rows_in_another_order(db: sqlite3.Connection) -> None:
    reference = "SELECT name FROM products ORDER BY unit_price DESC, name LIMIT 5"
    reversed_rows = list(reversed(db.execute(reference).fetchall()))
    assert not check.semantically_equal(db, reversed_rows, reference).ok
    assert check.semantically_equal(db, db.execute(reference).fetchall(), reference).ok


def test_every_question_gets_a_valid_query_on_its_tables_with_the_reference_result(
    db: sqlite3.Connection,
) -> None:
    empty = database.open_database(with_data=False)
    questions = database.load_questions()
    assert len(questions) >= 20
    for q in questions:
        query = generator.generate_sql(q.question, "")
        assert query is not None, q.question
        assert query.sql != q.reference_sql
        assert set(query.tables) == set(q.tables), q.question
        assert generator.is_valid_sql(db, query.sql)
        rows = db.execute(query.sql).fetchall()
        assert check.semantically_equal(db, rows, q.reference_sql).ok, q.question
        # The same query on a database without rows must fail the check, otherwise an
        # action fault ("stale replica") could go unnoticed.
        stale = empty.execute(query.sql).fetchall()
        assert not check.semantically_equal(db, stale, q.reference_sql).ok
    empty.close()


def test_the_generator_declines_what_it_does_not_understand() -> None:
    assert generator.generate_sql("Write me a poem about invoices.", "") is None


def test_tables_in_skips_common_table_expressions() -> None:
    sql = "WITH totals AS (SELECT order_id FROM order_items JOIN orders ON 1) SELECT * FROM totals"
    assert generator.tables_in(sql) == ("order_items", "orders")


def test_is_valid_sql_rejects_syntax_errors_and_unknown_tables(db: sqlite3.Connection) -> None:
    assert generator.is_valid_sql(db, "SELECT COUNT(*) FROM orders")
    assert not generator.is_valid_sql(db, "SELEC COUNT(*) FROM orders")
    assert not generator.is_valid_sql(db, "SELECT COUNT(*) FROM invoices")


def test_a_run_records_each_stage_and_verifies_the_result(
    pipelines: dict[str, Any], spans: CapturedSpans
) -> None:
    analyst = pipelines["sql_analyst"]
    answer = analyst.run(3)  # total revenue in a month: orders + order_items
    assert answer.check is not None and answer.check.ok
    root = spans.one("invoke_workflow sql_analyst")
    assert format(root.context.trace_id, "032x") == answer.trace_id
    retrieval = spans.attributes("retrieval shop-schema")
    assert set(retrieval[A.RETRIEVAL_RELEVANT_IDS]) == {"orders", "order_items"}
    assert set(retrieval[A.RETRIEVAL_RELEVANT_IDS]) <= set(retrieval[A.RETRIEVAL_DOCUMENT_IDS])
    selection = spans.by_stage("context_selection")[0].attributes
    assert {"orders", "order_items"} <= set(selection[A.CONTEXT_SELECTED_IDS])
    generation = spans.attributes("chat sql-template-1")
    assert set(generation[A.GENERATION_CITATIONS]) == {"orders", "order_items"}
    assert generation[A.GENERATION_OUTPUT_VALID] is True
    assert generation[A.GEN_AI_USAGE_INPUT_TOKENS] > generation[A.GEN_AI_USAGE_OUTPUT_TOKENS] > 0
    action = spans.by_stage("action")[0].attributes
    assert action[A.ACTION_VERIFIED] is True
    assert root.attributes[A.TASK_COMPLETED] is True


def test_a_wrong_result_fails_verification_with_the_reason(
    pipelines: dict[str, Any], spans: CapturedSpans, faults: Any
) -> None:
    with faults.injecting(("action", "stale_replica")):
        answer = pipelines["sql_analyst"].run(0)
    assert answer.check is not None and not answer.check.ok
    action = spans.by_stage("action")[0].attributes
    assert action[A.ACTION_VERIFIED] is False
    assert action[A.ACTION_VERIFICATION] == answer.check.reason
    root = spans.one("invoke_workflow sql_analyst")
    assert root.attributes[A.TASK_COMPLETED] is False
    assert root.attributes["llmspans_examples.injected_fault"] == "action:stale_replica"


_rows = st.lists(
    st.tuples(st.integers(-5, 5), st.sampled_from(["a", "b", "c"]), st.floats(0, 10, width=32)),
    max_size=8,
)


@given(rows=_rows, seed=st.integers(0, 1000))
def test_an_unordered_result_equals_any_permutation_of_itself(rows: list[Row], seed: int) -> None:
    shuffled = list(rows)
    random.Random(seed).shuffle(shuffled)
    assert check.same_result(shuffled, rows, ordered=False).ok
    if check.normalise(shuffled) != check.normalise(rows):  # equal once rounded: the same data
        assert not check.same_result(shuffled, rows, ordered=True).ok


@given(rows=_rows.filter(bool), extra=st.tuples(st.integers(6, 9), st.just("z"), st.just(0.0)))
def test_one_extra_or_missing_row_is_never_equal(rows: list[Row], extra: Row) -> None:
    assert not check.same_result([*rows, extra], rows, ordered=False).ok
    assert not check.same_result(rows[1:], rows, ordered=False).ok
