"""The example pipelines the demo runs: the installed :mod:`llmspans.examples` package."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Final

#: the package the example pipelines live in
PACKAGE: Final = "llmspans.examples"


def load_examples() -> ModuleType:
    """The examples package (its ``MODEL_PRICES`` price the examples' stand-in models)."""
    return importlib.import_module(PACKAGE)


def submodule(name: str) -> ModuleType:
    """``llmspans.examples.<name>``, e.g. ``submodule("support_rag")``."""
    return importlib.import_module(f"{PACKAGE}.{name}")
