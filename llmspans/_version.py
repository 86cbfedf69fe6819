"""The name and version llmspans reports itself by (tracer scope, ``__version__``).

The version is written in one place, ``pyproject.toml``, and read here from the
installed package's metadata.
"""

from __future__ import annotations

from importlib import metadata
from typing import Final

NAME: Final = "llmspans"


def _installed_version() -> str:
    try:
        return metadata.version(NAME)
    except metadata.PackageNotFoundError:  # imported from a source tree, not installed
        return "0+unknown"


VERSION: Final = _installed_version()
