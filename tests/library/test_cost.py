"""The price table: lookup, arithmetic, loading, overrides."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from pydantic import ValidationError

from llmspans import cost
from llmspans.cost import ModelPrice, PriceTable


def test_default_table_is_dated_and_covers_common_models() -> None:
    table = PriceTable.default()
    assert table.as_of == date(2025, 5, 1)
    assert table.currency == "USD"
    for model in ("gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "claude-3-5-haiku"):
        assert table.price(model) is not None


def test_cost_arithmetic() -> None:
    table = PriceTable(
        models={
            "m": ModelPrice(input=2.0, output=10.0, cache_read=0.5, cache_creation=2.5),
            "plain": ModelPrice(input=1.0, output=1.0),
        }
    )
    assert table.cost("m", 1_000_000, 0) == pytest.approx(2.0)
    assert table.cost("m", 0, 1_000_000) == pytest.approx(10.0)
    # 1000 input tokens of which 600 read from cache and 100 written to it.
    assert table.cost(
        "m", 1000, 50, cache_read_input_tokens=600, cache_creation_input_tokens=100
    ) == pytest.approx((300 * 2.0 + 600 * 0.5 + 100 * 2.5 + 50 * 10.0) / 1e6)
    # No cache prices: cached tokens cost the input price.
    assert table.cost("plain", 100, 0, cache_read_input_tokens=100) == pytest.approx(100 / 1e6)
    assert table.cost("unknown", 1, 1) is None
    assert table.cost("m", 0, 0) == 0.0


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o", "gpt-4o"),
        ("GPT-4o", "gpt-4o"),
        ("openai/gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4.1-mini", "gpt-4.1-mini"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("claude-sonnet-4@20250514", "claude-sonnet-4"),
        ("gpt-4omni", None),
        ("llama-3", None),
    ],
)
def test_model_lookup(model: str, expected: str | None) -> None:
    table = PriceTable.default()
    found = table.price(model)
    assert found == (table.models[expected] if expected else None)


def test_load_yaml_and_json(tmp_path: Path) -> None:
    yaml_file = tmp_path / "prices.yaml"
    yaml_file.write_text("as_of: 2026-01-02\nmodels:\n  local-llm: {input: 0.0, output: 1.0}\n")
    json_file = tmp_path / "prices.json"
    json_file.write_text(json.dumps({"models": {"x": {"input": 3, "output": 4}}}))
    from_yaml = PriceTable.load(yaml_file)
    assert from_yaml.as_of == date(2026, 1, 2)
    assert from_yaml.cost("local-llm", 10, 1_000_000) == pytest.approx(1.0)
    assert PriceTable.load(str(json_file)).cost("x", 1_000_000, 0) == pytest.approx(3.0)
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  x: {input: -1, output: 1}\n")
    with pytest.raises(ValidationError):
        PriceTable.load(bad)


def test_with_prices_overrides_one_model_without_changing_the_original() -> None:
    table = PriceTable.default()
    custom = table.with_prices(
        {"gpt-4o": {"input": 1.0, "output": 1.0}, "mine": ModelPrice(input=5, output=5)}
    )
    assert custom.cost("gpt-4o", 1_000_000, 0) == pytest.approx(1.0)
    assert custom.cost("mine", 1_000_000, 0) == pytest.approx(5.0)
    assert table.cost("gpt-4o", 1_000_000, 0) == pytest.approx(2.5)
    assert table.price("mine") is None


def test_module_level_table_and_cost_usd() -> None:
    assert cost.cost_usd("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)
    cost.set_price_table(PriceTable(models={"gpt-4o-mini": ModelPrice(input=1, output=0)}))
    assert cost.cost_usd("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(1.0)
    assert cost.cost_usd("gpt-4o", 1, 1) is None
    cost.set_price_table(None)
    assert cost.get_price_table().price("gpt-4o") is not None
