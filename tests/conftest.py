"""Shared test configuration. Each area keeps its fixtures in its own folder's conftest.

Shared here: the Arize Phoenix fixtures (``phoenix``, ``phoenix_factory``) from
``tests/phoenix.py``; the repository root goes on ``sys.path`` so that any test can
also ``from tests.phoenix import start_phoenix``.
"""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.phoenix import phoenix, phoenix_factory  # noqa: E402

__all__ = ["phoenix", "phoenix_factory"]
