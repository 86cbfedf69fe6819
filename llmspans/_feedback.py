"""References to pipeline runs, and user feedback on them.

``current_run()`` inside a ``@pipeline`` returns a :class:`RunRef`: the trace id and
span id of the run's root span and the pipeline name. It is small and serialisable
(``to_str()`` / ``from_str()``, ``to_dict()`` / ``from_dict()``), so an app stores it
with the response it produced and sends feedback later, from any process:

    llmspans.feedback(ref, kind="edit", edit_ratio=0.4)

A feedback call emits a span ``feedback {kind}`` (INTERNAL) in a trace of its own,
with an OpenTelemetry link to the run's root span; the collector counts it in
``llmspans_feedback_total`` by pipeline and kind.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags
from opentelemetry.util.types import AttributeValue

from llmspans import _attributes as A
from llmspans._context import current_pipeline, current_run_span
from llmspans._logging import log_internal_error
from llmspans._tracing import get_tracer

_SEPARATOR: Final = "-"


@dataclass(frozen=True, slots=True)
class RunRef:
    """A serialisable reference to one pipeline run (its root span)."""

    trace_id: int
    span_id: int
    pipeline: str

    @property
    def trace_id_hex(self) -> str:
        return f"{self.trace_id:032x}"

    @property
    def span_id_hex(self) -> str:
        return f"{self.span_id:016x}"

    def to_str(self) -> str:
        """``"{trace_id:32 hex}-{span_id:16 hex}-{pipeline}"``; :meth:`from_str` reads it."""
        return f"{self.trace_id_hex}{_SEPARATOR}{self.span_id_hex}{_SEPARATOR}{self.pipeline}"

    def __str__(self) -> str:
        return self.to_str()

    @classmethod
    def from_str(cls, text: str) -> RunRef:
        """Parse :meth:`to_str` output; ``ValueError`` when ``text`` is not a run reference."""
        parts = text.strip().split(_SEPARATOR, 2)
        if len(parts) != 3:
            raise ValueError(f"not an llmspans run reference: {text!r}")
        return cls._checked(parts[0], parts[1], parts[2], text)

    def to_dict(self) -> dict[str, str]:
        """A JSON-able form: ``{"trace_id": hex, "span_id": hex, "pipeline": name}``."""
        return {
            "trace_id": self.trace_id_hex,
            "span_id": self.span_id_hex,
            "pipeline": self.pipeline,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRef:
        """Read :meth:`to_dict` output; ``ValueError`` when a field is missing or invalid."""
        try:
            trace_id, span_id, pipeline = data["trace_id"], data["span_id"], data["pipeline"]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not an llmspans run reference: {data!r}") from exc
        return cls._checked(str(trace_id), str(span_id), str(pipeline), data)

    @classmethod
    def _checked(cls, trace_hex: str, span_hex: str, pipeline: str, source: object) -> RunRef:
        if len(trace_hex) != 32 or len(span_hex) != 16 or not pipeline:
            raise ValueError(f"not an llmspans run reference: {source!r}")
        try:
            trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
        except ValueError as exc:
            raise ValueError(f"not an llmspans run reference: {source!r}") from exc
        if trace_id == 0 or span_id == 0:
            raise ValueError(f"run reference with an invalid (zero) id: {source!r}")
        return cls(trace_id, span_id, pipeline)


def current_run() -> RunRef | None:
    """A reference to the pipeline run the caller is in.

    ``None`` outside a ``@pipeline``, and when the run is not traced (no tracer
    provider configured), since there would be nothing to link feedback to.
    """
    try:
        span = current_run_span()
        if span is None:
            return None
        span_context = span.get_span_context()
        if not span_context.is_valid:
            return None
        name = current_pipeline() or "unknown"
        return RunRef(span_context.trace_id, span_context.span_id, name)
    except Exception as exc:
        log_internal_error("current_run", exc)
        return None


def _coerce(run: RunRef | str | Mapping[str, Any]) -> RunRef:
    if isinstance(run, RunRef):
        return run
    if isinstance(run, str):
        return RunRef.from_str(run)
    if isinstance(run, Mapping):
        return RunRef.from_dict(run)
    raise ValueError(f"feedback() needs a RunRef, its to_str() or to_dict() form, got {run!r}")


def feedback(
    run: RunRef | str | Mapping[str, Any] | None,
    kind: str,
    *,
    edit_ratio: float | None = None,
) -> None:
    """Record user feedback on a pipeline run.

    ``run`` is what :func:`current_run` returned (or its ``to_str()`` / ``to_dict()``
    form); ``None`` (an untraced run) records nothing. ``kind`` is one of ``accept``,
    ``edit``, ``bypass``, ``reject``; ``edit_ratio`` (share of the output the user
    changed, in [0, 1]) fits ``edit``.

    Raises ``ValueError`` for an unknown ``kind``, an ``edit_ratio`` outside [0, 1] or
    a malformed run reference: misuse of the API is reported at once rather than
    silently losing feedback. Nothing else is raised.
    """
    if kind not in A.FEEDBACK_KINDS:
        raise ValueError(
            f"feedback kind must be one of {', '.join(A.FEEDBACK_KINDS)}; got {kind!r}"
        )
    if edit_ratio is not None and not (
        isinstance(edit_ratio, int | float)
        and math.isfinite(edit_ratio)
        and 0.0 <= edit_ratio <= 1.0
    ):
        raise ValueError(f"edit_ratio must be a number in [0, 1], got {edit_ratio!r}")
    if run is None:
        return
    ref = _coerce(run)
    try:
        attributes: dict[str, AttributeValue] = {
            A.STAGE: A.STAGE_FEEDBACK,
            A.PIPELINE: ref.pipeline,
            A.FEEDBACK_KIND: kind,
        }
        if edit_ratio is not None:
            attributes[A.FEEDBACK_EDIT_RATIO] = float(edit_ratio)
        link = Link(
            SpanContext(
                ref.trace_id,
                ref.span_id,
                is_remote=True,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )
        )
        # A root span in a new trace: feedback is not part of whatever runs now.
        span = get_tracer().start_span(
            A.span_name(A.STAGE_FEEDBACK, kind),
            context=otel_context.Context(),
            kind=SpanKind.INTERNAL,
            attributes=attributes,
            links=[link],
        )
        span.end()
    except Exception as exc:
        log_internal_error("feedback", exc)
