"""Finding and importing the example pipelines shipped in the repository's ``examples/``."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Final

#: the name the examples package is imported under (``examples`` is too common a name)
PACKAGE: Final = "llmspans_examples"


def examples_dir() -> Path:
    """``$LLMSPANS_EXAMPLES_DIR``, else ``examples/`` next to the ``llmspans`` package."""
    configured = os.environ.get("LLMSPANS_EXAMPLES_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / "examples"


def load_examples() -> ModuleType:
    """The examples package, imported once (a ``FileNotFoundError`` says where it looked)."""
    loaded = sys.modules.get(PACKAGE)
    if loaded is not None:
        return loaded
    root = examples_dir()
    init = root / "__init__.py"
    if not init.is_file():
        raise FileNotFoundError(
            f"the example pipelines are not at {root}: run the demo from a clone of the "
            "llmspans repository, or set LLMSPANS_EXAMPLES_DIR"
        )
    spec = importlib.util.spec_from_file_location(
        PACKAGE, init, submodule_search_locations=[str(root)]
    )
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {init}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[PACKAGE]
        raise
    return module


def submodule(name: str) -> ModuleType:
    """``examples.<name>``, e.g. ``submodule("support_rag")``."""
    load_examples()
    return importlib.import_module(f"{PACKAGE}.{name}")
