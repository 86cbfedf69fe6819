"""The segment of a support run: the class of question it served (``llmspans.segment``)."""

from __future__ import annotations

from typing import Any

#: the segments of the shipped questions (``segment`` in ``data/questions.json``)
SEGMENTS = ("account", "billing", "product", "security")


def segment_argument(*args: Any, **kwargs: Any) -> str | None:
    """The ``segment`` keyword argument of :meth:`SupportRag.handle`, if given: the
    decorator reads it when the run starts, so evaluation sampling can depend on it."""
    segment = kwargs.get("segment")
    return segment if isinstance(segment, str) else None
