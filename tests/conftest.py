"""Shared test configuration. Each area keeps its fixtures in its own folder's conftest.

Shared here: the Arize Phoenix fixtures (``phoenix``, ``phoenix_factory``) from
``tests/phoenix.py``; the repository root goes on ``sys.path`` so that any test can
also ``from tests.phoenix import start_phoenix``.

Property tests are repeatable: Hypothesis' ``ci`` profile (derandomized, no
deadline, no ``too_slow`` health check, which depends on the machine's load) is
the default, so a run tests the same examples on every machine and never fails
by chance. ``LLMSPANS_HYPOTHESIS_PROFILE=explore`` (or ``--hypothesis-profile
explore``) draws fresh random examples on every run, to look for new failures.
"""

import os
import sys
from pathlib import Path

from hypothesis import settings

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

settings.register_profile("explore", parent=settings.get_profile("ci"), derandomize=False)
settings.load_profile(os.environ.get("LLMSPANS_HYPOTHESIS_PROFILE", "ci"))

from tests.phoenix import phoenix, phoenix_factory  # noqa: E402

__all__ = ["phoenix", "phoenix_factory"]
