"""The core's data model: runs, verdicts, thresholds.

Pure data: no I/O, no globals. A *run* is the spans under one ``pipeline`` span
(docs/conventions.md section 5); a *verdict* is the core's decision about one run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llmspans.core.records import SpanRecord


class Thresholds(BaseModel):
    """Configurable thresholds of the attribution rules (docs/conventions.md section 5)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_score: float | None = Field(
        default=None,
        description="retrieval `low_relevance` fires when every score is below this; off when None",
    )
    min_citation_precision: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="generation `unsupported_citation` fires when citation precision is below this",
    )


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a verdict rests on: the span that fired the rule, the ids and numbers involved."""

    span_id: bytes = b""
    span_name: str = ""
    ids: tuple[str, ...] = ()
    numbers: tuple[tuple[str, float], ...] = ()
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one run and, for a failed run, its single root cause.

    ``failure_stage`` and ``failure_reason`` are ``None`` unless ``outcome`` is
    ``"failure"``; then both are set (stage may be ``"unattributed"``).
    """

    outcome: str
    failure_stage: str | None = None
    failure_reason: str | None = None
    evidence: Evidence | None = None


@dataclass(slots=True)
class Run:
    """The spans of one pipeline run: the pipeline span and the stage spans under it.

    ``stages`` maps a stage name to its spans in start-time order. Spans of a nested
    pipeline belong to the nested run, not to this one.
    """

    root: SpanRecord
    pipeline: str
    stages: dict[str, list[SpanRecord]] = field(default_factory=dict)
    #: every span of the run (root and stage spans and any others under it)
    spans: list[SpanRecord] = field(default_factory=list)
    #: facts derived from the whole run (retrieved ids, labels, shown context), computed
    #: once on first use by :mod:`llmspans.core.runs`, so rules that run per stage span
    #: stay linear in the run's spans. Only valid once the run is fully assembled.
    facts: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(slots=True)
class TraceResult:
    """Everything the core derives from one whole trace."""

    runs: list[tuple[Run, Verdict]] = field(default_factory=list)
    #: stage spans outside any pipeline: they count in stage metrics only
    standalone: list[SpanRecord] = field(default_factory=list)
    #: feedback spans (in a run's trace or in a trace of their own)
    feedback: list[SpanRecord] = field(default_factory=list)
    #: known attributes with a value of the wrong type, ignored
    bad_attributes: int = 0
