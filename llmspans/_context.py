"""Context keys shared by the decorators and the auto-instrumentors.

The decorators put the active pipeline name and the active stage (its name and
span) into the OpenTelemetry context. An auto-instrumented client call reads
them: inside a decorated stage of the same kind it *enriches* that stage's span
instead of starting a second span for the same stage (SPEC section 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from opentelemetry import context as otel_context
from opentelemetry.trace import Span

PIPELINE_KEY: Final = otel_context.create_key("llmspans.pipeline")
STAGE_KEY: Final = otel_context.create_key("llmspans.stage")


@dataclass(frozen=True, slots=True)
class ActiveStage:
    """The innermost stage span opened by a decorator (or an instrumentor)."""

    stage: str
    span: Span


def current_pipeline(ctx: otel_context.Context | None = None) -> str | None:
    """Name of the pipeline the caller runs in, or ``None`` outside any pipeline."""
    value = otel_context.get_value(PIPELINE_KEY, ctx)
    return value if isinstance(value, str) else None


def current_stage(ctx: otel_context.Context | None = None) -> ActiveStage | None:
    """The innermost active stage, or ``None``."""
    value = otel_context.get_value(STAGE_KEY, ctx)
    return value if isinstance(value, ActiveStage) else None


def enclosing_stage_span(stage: str, ctx: otel_context.Context | None = None) -> Span | None:
    """The recording span of an enclosing decorated ``stage``, if the caller is inside one.

    Auto-instrumentors call this first: a non-``None`` result means "enrich this
    span, do not start another span of the same stage".
    """
    active = current_stage(ctx)
    if active is None or active.stage != stage or not active.span.is_recording():
        return None
    return active.span
