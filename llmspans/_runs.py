"""What a run records about itself at its root: segment, source, evaluation sampling.

``@llmspans.pipeline("name", segment=...)`` and :func:`set_segment` name the class of
input a run served (``llmspans.segment``); the run's source (``llmspans.run.source``:
``production``, ``offline``, ``shadow``) comes from :func:`run_source` around the
call, else ``configure(source=...)``, else ``LLMSPANS_RUN_SOURCE``; with
``configure(evaluation_sample_rate=...)`` a run the trace id samples is marked
``llmspans.evaluation.sampled`` and its stages record the content a judge needs
(docs/conventions.md sections 7 and 8).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry.trace import Span

from llmspans import _attributes as A
from llmspans._context import Stage, current_run_span
from llmspans._logging import log_internal_error, warn_once
from llmspans._state import STATE
from llmspans.core.judging import should_sample

__all__ = [
    "LABELS_KEY",
    "SOURCE_KEY",
    "RunLabels",
    "SegmentOption",
    "pipeline_result",
    "pipeline_start",
    "run_labels",
    "run_sampled",
    "run_source",
    "set_segment",
]

#: A pipeline's segment: a name, or a function of the pipeline's arguments.
SegmentOption = str | Callable[..., object] | None

#: The environment variable naming the source of the runs a process starts.
SOURCE_ENV: Final = "LLMSPANS_RUN_SOURCE"
#: Where :func:`run_source` puts a run's source in the context.
SOURCE_KEY: Final = otel_context.create_key("llmspans.run.source")
#: Where :func:`run_labels` puts a run's :class:`RunLabels` in the context.
LABELS_KEY: Final = otel_context.create_key("llmspans.run.labels")


@dataclass(frozen=True, slots=True)
class RunLabels:
    """Ground truth for the runs started inside :func:`run_labels` (the offline
    harness): the segment the input belongs to, the relevant document ids (put on
    each retrieval as ``llmspans.retrieval.relevant_ids``) and a check of the
    pipeline's result (``llmspans.task.correct`` on the root)."""

    segment: str | None = None
    relevant_ids: tuple[str, ...] | None = None
    check: Callable[[object], bool | None] | None = None


@contextmanager
def run_labels(labels: RunLabels) -> Iterator[None]:
    """Runs started inside the block carry ``labels``."""
    token = otel_context.attach(otel_context.set_value(LABELS_KEY, labels))
    try:
        yield
    finally:
        otel_context.detach(token)


def pipeline_result(
    stage: Stage,
    ctx: otel_context.Context,
    result: object,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    """The pipeline decorator's result hook: ``llmspans.task.correct`` from the labels'
    check, when the run (``ctx``, its context) has labels with one."""
    labels = ctx.get(LABELS_KEY)
    if (
        not isinstance(labels, RunLabels)
        or labels.check is None
        or A.TASK_CORRECT in stage.recorded
    ):
        return
    try:
        correct = labels.check(result)
    except Exception as exc:
        log_internal_error("pipeline.check", exc)
        return
    if correct is not None:
        stage.pending[A.TASK_CORRECT] = bool(correct)


#: Segment names are cut to this many characters on the span (labels cut further).
_MAX_SEGMENT_CHARS: Final = 256


def _environment_source() -> str | None:
    """``LLMSPANS_RUN_SOURCE``, or ``None``: read once and kept, like the content
    variables, until ``reload_environment()`` (or a reset)."""
    read = STATE.source_from_env
    if read is None:
        read = STATE.source_from_env = (os.environ.get(SOURCE_ENV) or None,)
        STATE.runs_changed()
    return read[0]


def check_source(source: str) -> str:
    """``source`` if it is one of ``production``, ``offline``, ``shadow``; else ValueError."""
    if source not in A.SOURCES:
        raise ValueError(f"a run source is one of {', '.join(A.SOURCES)}; got {source!r}")
    return source


@contextmanager
def run_source(source: str) -> Iterator[None]:
    """Runs started inside the block record ``llmspans.run.source = source`` (the
    offline harness and shadow runs use it; ``production`` is the default)."""
    token = otel_context.attach(otel_context.set_value(SOURCE_KEY, check_source(source)))
    try:
        yield
    finally:
        otel_context.detach(token)


def _segment_of(
    segment: SegmentOption, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> str | None:
    if segment is None:
        return None
    if callable(segment):
        try:
            value = segment(*args, **kwargs)
        except Exception as exc:
            log_internal_error("pipeline.segment", exc)
            return None
        if value is None:
            return None
        segment = str(value)
    return segment[:_MAX_SEGMENT_CHARS]


def pipeline_start(
    segment: SegmentOption,
) -> Callable[[Stage, otel_context.Context, tuple[Any, ...], dict[str, Any]], None]:
    """The pipeline decorator's start hook: segment, source and sampling on the root,
    read from ``parent``, the context the run starts in."""

    def start(
        stage: Stage, parent: otel_context.Context, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        labels = parent.get(LABELS_KEY)  # None but in labelled (offline) runs
        if labels is not None and isinstance(labels, RunLabels) and labels.segment is not None:
            name: str | None = labels.segment
        else:
            name = None if segment is None else _segment_of(segment, args, kwargs)
        # run_source() puts a checked name into the context, nothing else does
        source = parent.get(SOURCE_KEY)
        if source is None:
            source = STATE.run_source
            if source is None:
                source = _environment_source()
        rate = STATE.sample_rate
        sampled = (rate > 0.0 or STATE.sample_rates) and should_sample(
            stage.span.get_span_context().trace_id, rate, name, STATE.sample_rates
        )
        if name is None and source is None and not sampled:
            return
        facts: dict[str, Any] = {}
        if name is not None:
            facts[A.SEGMENT] = name
        if source is not None:
            facts[A.RUN_SOURCE] = source
        if sampled:
            facts[A.EVALUATION_SAMPLED] = True
            STATE.sampled_runs.add(stage.span)
            STATE.runs_sampled = True
        stage.span.set_attributes(facts)

    return start


def run_sampled(run_span: Span | None) -> bool:
    """Whether the run of ``run_span`` was sampled for evaluation (its stages then
    record the content a judge needs even when content capture is off)."""
    return run_span is not None and run_span in STATE.sampled_runs


def set_segment(segment: str) -> None:
    """Name the segment of the current pipeline run (``llmspans.segment`` on its root);
    wins over the decorator's ``segment=``."""
    try:
        span = current_run_span()
        if span is None:
            warn_once(
                "outside.set_segment",
                "llmspans.set_segment() was called outside a pipeline; nothing was recorded",
            )
            return
        if span.is_recording():
            span.set_attribute(A.SEGMENT, str(segment)[:_MAX_SEGMENT_CHARS])
    except Exception as exc:
        log_internal_error("set_segment", exc)
