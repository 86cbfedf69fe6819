"""The stage in the OpenTelemetry context: one :class:`Stage` object per stage span.

Decorators, the ``record_*`` helpers and the auto-instrumentors all write a
stage's facts through its :class:`Stage`: the decorator (or instrumentor) that
starts a stage span creates it and puts it into the context under
:data:`STAGE_KEY`, next to the span itself (``trace.set_span_in_context``); code
running inside the stage finds it with :func:`current_stage`. An
auto-instrumented client call inside a decorated stage of the same kind
*enriches* that stage instead of starting a second span for it (docs/conventions.md section 2).

The stage also carries the pipeline it runs in (name and root span), inherited
from the enclosing stage, so one context entry answers "which stage, which
pipeline, which run".
"""

from __future__ import annotations

from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

from llmspans import _attributes as A

STAGE_KEY: Final = otel_context.create_key("llmspans.stage")


#: Facts a client call enriching a stage never overwrites when the stage has them
#: already (its decorator's options included): a nested vector-store query must not
#: rename the data source of the retrieval it runs in.
KEPT_BY_ENCLOSING: Final = frozenset({A.GEN_AI_DATA_SOURCE_ID})


class Stage:
    """One stage span and what is known about it.

    - ``stage``, ``span``: the stage's name (``retrieval``, ...) and its span.
    - ``pipeline``, ``run_span``: the pipeline the stage runs in and that run's root
      span (``None`` outside a pipeline); a pipeline stage is its own run.
    - ``recorded``: facts set explicitly (by a ``record_*`` helper, a decorator
      option, or a client call enriching the stage). Extraction from arguments and
      return values skips these names: what is recorded explicitly wins.
    - ``pending`` and ``reported``: attributes not yet on the span. A *deferred*
      stage (a decorated call) puts them on the span in one ``set_attributes``
      call when it ends: one lock round and one validation pass instead of one per
      fact. ``reported`` holds what client calls enriching the stage reported,
      ``pending`` what the stage's own code recorded or what was extracted from
      it; when both hold a name, ``pending`` wins (docs/conventions.md: explicit facts win), and
      both win over the decorator's static options. A stage that is not deferred
      (started by an instrumentor) writes each fact at once.
    - ``rename_prefix``: the operation name while the span name still lacks the
      model (``chat`` instead of ``chat gpt-4o``), so a model recorded later
      completes it.
    - ``recording``: ``span.is_recording()`` as of the start; extraction runs only
      for a recording span.
    - ``totals``: running totals of the summed attributes (tokens, cost) that
      client calls enriching this stage reported (see
      ``llmspans.instrumentation._base.StageCall``); ``None`` until the first.
    - ``capture``: whether content is captured in this stage's run, as of its start
      (set by the decorators whose hooks record content; ``False`` otherwise).

    One is made per stage call: a plain slotted class, compared by identity (it is
    the record of one call, not a value).
    """

    __slots__ = (
        "capture",
        "deferred",
        "ended",
        "pending",
        "pipeline",
        "recorded",
        "recording",
        "rename_prefix",
        "reported",
        "run_span",
        "span",
        "stage",
        "totals",
    )

    stage: str
    span: Span
    pipeline: str | None
    run_span: Span | None
    recorded: dict[str, object]
    pending: dict[str, Any]
    reported: dict[str, Any] | None
    rename_prefix: str | None
    recording: bool
    deferred: bool
    ended: bool
    totals: dict[str, float] | None
    capture: bool

    # Positional parameters: one is made per stage call, and a call with keywords
    # costs more instructions.
    def __init__(  # noqa: PLR0917
        self,
        stage: str,
        span: Span,
        pipeline: str | None = None,
        run_span: Span | None = None,
        pending: dict[str, Any] | None = None,
        recorded: dict[str, object] | None = None,
        rename_prefix: str | None = None,
        deferred: bool = False,
    ) -> None:
        self.stage = stage
        self.span = span
        self.pipeline = pipeline
        self.run_span = run_span
        self.pending = {} if pending is None else pending
        self.recorded = {} if recorded is None else recorded
        self.rename_prefix = rename_prefix
        self.recording = span.is_recording()
        self.deferred = deferred
        self.ended = False
        self.reported = None
        self.totals = None
        self.capture = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(stage={self.stage!r}, span={self.span!r})"

    def report(self, key: str, value: AttributeValue) -> None:
        """A fact reported by a client call: on the span now, or when a deferred stage ends."""
        if not self.deferred:
            self.span.set_attribute(key, value)
        elif not self.ended:
            reported = self.reported
            if reported is None:
                reported = self.reported = {}
            reported[key] = value

    def record(self, facts: dict[str, Any]) -> None:
        """Facts set explicitly: they win over extraction, and reach the span."""
        if not facts:
            return
        self.recorded.update(facts)
        if self.deferred:
            if not self.ended:
                self.pending.update(facts)
        else:
            self.span.set_attributes(facts)

    def rename(self, model: str) -> None:
        """Complete a span name still lacking the model (``chat`` to ``chat gpt-4o``)."""
        if self.rename_prefix is not None:
            self.span.update_name(f"{self.rename_prefix} {model}")


def current_stage(ctx: otel_context.Context | None = None) -> Stage | None:
    """The innermost active stage, or ``None``."""
    value = otel_context.get_value(STAGE_KEY, ctx)
    return value if isinstance(value, Stage) else None


def current_pipeline(ctx: otel_context.Context | None = None) -> str | None:
    """Name of the pipeline the caller runs in, or ``None`` outside any pipeline."""
    stage = current_stage(ctx)
    return None if stage is None else stage.pipeline


def current_run_span(ctx: otel_context.Context | None = None) -> Span | None:
    """The root span of the pipeline run the caller is in, or ``None``."""
    stage = current_stage(ctx)
    return None if stage is None else stage.run_span


def enclosing_stage(stage: str, ctx: otel_context.Context | None = None) -> Stage | None:
    """The enclosing ``stage`` with a recording span, if the caller is inside one.

    Auto-instrumentors call this first: a non-``None`` result means "enrich this
    stage, do not start another span of the same stage".
    """
    active = current_stage(ctx)
    if active is None or active.stage != stage or not active.span.is_recording():
        return None
    return active
