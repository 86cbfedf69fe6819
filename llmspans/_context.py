"""Context keys shared by the decorators and the auto-instrumentors.

The decorators put the active pipeline name and the active stage (its name and
span) into the OpenTelemetry context. An auto-instrumented client call reads
them: inside a decorated stage of the same kind it *enriches* that stage's span
instead of starting a second span for the same stage (SPEC section 2).
"""

from __future__ import annotations

from typing import Final

from opentelemetry import context as otel_context
from opentelemetry.trace import Span

PIPELINE_KEY: Final = otel_context.create_key("llmspans.pipeline")
STAGE_KEY: Final = otel_context.create_key("llmspans.stage")


class ActiveStage:
    """The innermost stage span opened by a decorator (or an instrumentor).

    Read-only by contract: nothing reassigns ``stage`` or ``span`` after
    construction. A plain slotted class rather than a frozen dataclass: one is made
    per stage call, and a frozen dataclass's ``__init__`` pays an
    ``object.__setattr__`` call per field.
    """

    __slots__ = ("span", "stage")

    stage: str
    span: Span

    def __init__(self, stage: str, span: Span) -> None:
        self.stage = stage
        self.span = span

    def __repr__(self) -> str:
        return f"{type(self).__name__}(stage={self.stage!r}, span={self.span!r})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, ActiveStage)
        return (self.stage, self.span) == (other.stage, other.span)

    def __hash__(self) -> int:
        return hash((self.stage, self.span))


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
