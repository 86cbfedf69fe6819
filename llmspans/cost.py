"""Token usage to money: the price table behind ``llmspans.cost.usd``.

A :class:`PriceTable` maps model names to prices in USD per million tokens. The
library ships a small default table (``llmspans/data/prices.yaml``, with the date
its prices were read); load your own with :meth:`PriceTable.load` and install it
with :func:`set_price_table`, or override single models with
:meth:`PriceTable.with_prices`.

Model lookup: exact name first, then case-insensitively, then without a provider
prefix (``openai/gpt-4o``), then the longest table entry that the name starts with
followed by ``-``, ``:`` or ``@`` (so ``gpt-4o-mini-2024-07-18`` is priced as
``gpt-4o-mini``, ``claude-3-5-sonnet-20241022`` as ``claude-3-5-sonnet``).
"""

from __future__ import annotations

import json
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic import BaseModel, ConfigDict, Field

from llmspans._state import STATE

_PER_TOKEN: Final = 1e-6
_LOOKUP_CACHE_SIZE: Final = 1024
_SEPARATORS: Final = ("-", ":", "@")


class ModelPrice(BaseModel):
    """Prices of one model in USD per million tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: float = Field(ge=0, description="per million uncached input tokens")
    output: float = Field(ge=0, description="per million output tokens")
    cache_read: float | None = Field(
        default=None, ge=0, description="per million input tokens read from cache"
    )
    cache_creation: float | None = Field(
        default=None, ge=0, description="per million input tokens written to cache"
    )


class PriceTable(BaseModel):
    """Model prices; immutable, so a table can be shared between threads."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    as_of: date | None = Field(default=None, description="when the prices were read")
    currency: str = "USD"
    models: dict[str, ModelPrice] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> PriceTable:
        """Read a table from a YAML (``.yaml``/``.yml``) or JSON file."""
        file = Path(path)
        text = file.read_text(encoding="utf-8")
        data: Any = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
        return cls.model_validate(data)

    @classmethod
    def default(cls) -> PriceTable:
        """The table shipped with llmspans."""
        text = resources.files("llmspans").joinpath("data/prices.yaml").read_text("utf-8")
        return cls.model_validate(yaml.safe_load(text))

    def with_prices(self, prices: dict[str, ModelPrice | dict[str, float]]) -> PriceTable:
        """A copy of this table with the given models added or replaced."""
        merged = dict(self.models)
        for model, price in prices.items():
            merged[model] = price if isinstance(price, ModelPrice) else ModelPrice(**price)
        return self.model_copy(update={"models": merged})

    def price(self, model: str) -> ModelPrice | None:
        """The price of ``model`` (see the module docstring for the lookup), or ``None``."""
        # Remembered in STATE.price_lookups, not on the table: private attributes of
        # pydantic models are slow to read, and price() runs on every generation.
        # Names come from code, so there are few of them.
        models = self.models
        lookups = STATE.price_lookups
        key = (id(models), model)
        cached = lookups.get(key)
        # The entry holds the models dict itself, so its id cannot be reused meanwhile.
        if cached is not None and cached[0] is models:
            return cached[1]
        found = self._find(model)
        if len(lookups) >= _LOOKUP_CACHE_SIZE:
            lookups.clear()
        lookups[key] = (models, found)
        return found

    def _find(self, model: str) -> ModelPrice | None:
        found = self.models.get(model)
        if found is not None:
            return found
        lowered = model.strip().lower()
        if "/" in lowered:
            lowered = lowered.rsplit("/", 1)[1]
        best: tuple[int, ModelPrice] | None = None
        for name, candidate in self.models.items():
            key = name.lower()
            if lowered == key:
                return candidate
            if (
                lowered.startswith(key)
                and lowered[len(key)] in _SEPARATORS
                and (best is None or len(key) > best[0])
            ):
                best = (len(key), candidate)
        return best[1] if best is not None else None

    def cost(
        self,
        model: str,
        input_tokens: int,
        output_tokens: int,
        *,
        cache_read_input_tokens: int = 0,
        cache_creation_input_tokens: int = 0,
    ) -> float | None:
        """Cost in USD, or ``None`` when the model is not in the table.

        ``input_tokens`` counts all input tokens, the cached ones included; tokens read
        from or written to the cache are charged at their own price when the table
        has one, else at the input price.
        """
        price = self.price(model)
        if price is None:
            return None
        if not cache_read_input_tokens and not cache_creation_input_tokens:
            return (max(0, input_tokens) * price.input + max(0, output_tokens) * price.output) * (
                _PER_TOKEN
            )
        cache_read = max(0, cache_read_input_tokens)
        cache_creation = max(0, cache_creation_input_tokens)
        uncached = max(0, input_tokens - cache_read - cache_creation)
        read_price = price.cache_read if price.cache_read is not None else price.input
        creation_price = price.cache_creation if price.cache_creation is not None else price.input
        total = (
            uncached * price.input
            + cache_read * read_price
            + cache_creation * creation_price
            + max(0, output_tokens) * price.output
        )
        return total * _PER_TOKEN


def get_price_table() -> PriceTable:
    """The table in use (the shipped default until :func:`set_price_table`)."""
    table = STATE.price_table
    if table is None:
        table = STATE.price_table = PriceTable.default()
    return table


def set_price_table(table: PriceTable | None) -> None:
    """Use ``table`` for every cost from now on (``None``: the shipped default)."""
    STATE.price_table = table


def cost_usd(
    model: str,
    input_tokens: int,
    output_tokens: int,
    *,
    cache_read_input_tokens: int = 0,
    cache_creation_input_tokens: int = 0,
) -> float | None:
    """Cost of one call with the table in use; ``None`` when the model is unknown."""
    return get_price_table().cost(
        model,
        input_tokens,
        output_tokens,
        cache_read_input_tokens=cache_read_input_tokens,
        cache_creation_input_tokens=cache_creation_input_tokens,
    )
