"""Fixtures of the examples and demo tests: the example pipelines, spans captured in memory."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from llmspans._demo.examples import load_examples, submodule
from llmspans.cost import get_price_table, set_price_table
from llmspans.testing import CapturedSpans, capture_spans


@pytest.fixture(scope="session")
def examples() -> ModuleType:
    return load_examples()


@pytest.fixture(scope="session")
def faults(examples: ModuleType) -> ModuleType:
    return submodule("_faults")


@pytest.fixture
def spans() -> Iterator[CapturedSpans]:
    with capture_spans() as captured:
        yield captured


@pytest.fixture(scope="session")
def pipelines(examples: ModuleType) -> dict[str, Any]:
    """One instance of each example, named as the demo names them."""
    return {
        "support_rag": submodule("support_rag").SupportRag(),
        "sql_analyst": submodule("sql_analyst").SqlAnalyst(),
        "booking_agent": submodule("booking_agent").BookingAgent(),
    }


@pytest.fixture
def example_prices(examples: ModuleType) -> Iterator[None]:
    """The demo's prices for the examples' local models, for the duration of a test."""
    previous = get_price_table()
    set_price_table(previous.with_prices(dict(examples.MODEL_PRICES)))
    yield
    set_price_table(previous)
