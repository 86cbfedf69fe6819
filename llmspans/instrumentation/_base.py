"""What every instrumentor shares: one client call, the span it reports to, the wrappers.

A client call either *owns* a new stage span or *enriches* the span of an enclosing
stage of the same kind (the no-duplicate rule, docs/auto-instrumentation.md):

- inside a decorated (or instrumented) stage of the same kind --
  ``llmspans._context.enclosing_stage(stage)`` is not ``None`` -- the call writes
  its facts (model, tokens, cost, document ids) through that stage's
  :class:`~llmspans._context.Stage` and starts no span of its own; token counts
  and cost are *added* to what the stage already holds, so a stage that calls the
  client twice reports the sum (a call that reports totals for calls nested in it
  replaces their share: ``_summed``);
- otherwise it starts its own stage span, with a ``Stage`` of its own, and puts
  that stage into the context while the client call runs, so nested instrumented
  calls (a LangChain retriever querying chromadb) enrich it instead of starting a
  second span of the same stage.

Errors raised by the client propagate unchanged; an owned span gets status ERROR,
``error.type`` and an exception event. Errors of ours are caught here, logged once
per kind on the ``llmspans`` logger, and the client call goes on untraced.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider
from opentelemetry.util.types import AttributeValue

from llmspans import _attributes as attr
from llmspans._content import capture_enabled, captured_for_evaluation, prepare_content
from llmspans._context import (
    KEPT_BY_ENCLOSING,
    STAGE_KEY,
    Stage,
    current_stage,
    enclosing_stage,
)
from llmspans._logging import log_internal_error
from llmspans._version import VERSION
from llmspans.instrumentation._metrics import METRIC_ATTRIBUTES, METRIC_FACTS, ClientMetrics

TRACER_NAME: Final = "llmspans.instrumentation"

#: Numeric attributes that add up when several client calls enrich one span.
SUMMED_ATTRIBUTES: Final = frozenset(
    {
        attr.GEN_AI_USAGE_INPUT_TOKENS,
        attr.GEN_AI_USAGE_OUTPUT_TOKENS,
        attr.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
        attr.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
        attr.COST_USD,
    }
)

#: Attributes a decorator derives from its function's return value even when a
#: client call enriched the span: the stage's own result is the truth for them
#: (a retrieval function may filter what the vector store returned).
_DERIVED_BY_DECORATOR: Final = ("llmspans.retrieval.", "llmspans.context.")


#: Attributes that name the enclosing stage itself: an enriching call fills them in
#: only where the stage has none (a decorated retrieval's data source is not the
#: name of the collection it queries underneath).


# The instrumented call running in the current context (nested calls account to it).
_CALL_KEY: Final = otel_context.create_key("llmspans.instrumentation.call")

# Guards every Stage's ``totals`` and every StageCall's _own/_nested: the running totals
# of the summed attributes of a stage, shared by the calls (possibly concurrent) that
# enrich it.
_TOTALS_LOCK: Final = threading.Lock()


def get_tracer(tracer_provider: TracerProvider | None) -> Tracer:
    """The instrumentation tracer, from the given provider or the global one."""
    return trace.get_tracer(TRACER_NAME, VERSION, tracer_provider=tracer_provider)


class Deferred:
    """Content built only when it will be recorded: ``build()`` runs after the capture
    check (content is off by default, and converting a long conversation costs)."""

    __slots__ = ("build",)

    def __init__(self, build: Callable[[], object]) -> None:
        self.build = build


@dataclass(frozen=True, slots=True)
class Request:
    """What an instrumentor reads from a call before it runs."""

    stage: str | None
    """The stage the call belongs to; ``None`` for a plain span (embeddings)."""
    name: str
    kind: SpanKind
    attributes: Mapping[str, AttributeValue | None] = field(default_factory=dict)
    content: Mapping[str, object] = field(default_factory=dict)
    """Content attributes (prompts, queries): recorded only as ``prepare_content`` allows;
    a :class:`Deferred` value is built only then."""


class StageCall:
    """One instrumented client call and the stage it reports to.

    ``owned`` calls started their span (and its :class:`Stage`) and end it exactly
    once through ``end``; enriching calls only write through the enclosing stage.
    ``span`` is the stage's span either way.
    """

    __slots__ = (
        "_ended",
        "_lock",
        "_nested",
        "_own",
        "_parent",
        "deferred",
        "facts",
        "instance",
        "metrics",
        "owned",
        "span",
        "stage",
        "started",
        "target",
    )

    def __init__(self, target: Stage, *, owned: bool) -> None:
        self.target = target
        self.span: Span = target.span
        self.stage: str = target.stage
        self.owned = owned
        self.deferred = False
        """Set by a stream proxy that takes over ending the call."""
        self.instance: Any = None
        """The client object the wrapped method was called on."""
        self._ended = False
        # Token and cost accounting (see _summed): this call's own share of each summed
        # attribute, the share of the calls nested in it on the same stage, and the
        # call it is nested in.
        self._own: dict[str, float] = {}
        self._nested: dict[str, float] = {}
        self._parent: StageCall | None = None
        self._lock = threading.Lock()  # guards _ended: a stream may end from a finalizer thread
        self.metrics: ClientMetrics | None = None
        """Where the call records its ``gen_ai.client.*`` metrics when it ends (``None``: not)."""
        self.facts: dict[str, AttributeValue] = {}
        """What the metrics need of the call (``METRIC_FACTS``), as this call reported it."""
        self.started = 0
        """``time.perf_counter_ns()`` when the call started."""

    @classmethod
    def start(
        cls, tracer: Tracer, request: Request, metrics: ClientMetrics | None = None
    ) -> StageCall:
        """Enrich the enclosing stage of the same kind, or start a new span.

        With ``metrics``, the call records the client metrics when it ends, unless
        nothing would record them (no meter provider: the call then keeps no facts
        for them) or it runs inside another instrumented call that records them
        (LiteLLM calling ``openai`` is one operation).
        """
        started = time.perf_counter_ns()
        parent = otel_context.get_current()
        call = cls._start(tracer, request, parent)
        call.started = started
        if metrics is not None and metrics.live:
            outer = parent.get(_CALL_KEY)
            if not (isinstance(outer, StageCall) and outer.metrics is not None):
                call.metrics = metrics
                call.facts = {
                    key: value
                    for key, value in request.attributes.items()
                    if value is not None and key in METRIC_ATTRIBUTES
                }
        return call

    @classmethod
    def _start(cls, tracer: Tracer, request: Request, parent: otel_context.Context) -> StageCall:
        if request.stage is not None:
            enclosing = enclosing_stage(request.stage, parent)
            if enclosing is not None:
                call = cls(enclosing, owned=False)
                outer = parent.get(_CALL_KEY)
                if isinstance(outer, StageCall) and outer.target is enclosing:
                    call._parent = outer
                call.adopt(enclosing, request)
                # What the enclosing stage already holds (its own options wait in
                # ``pending`` until its span ends) is not overwritten by a nested call.
                existing = {
                    *enclosing.recorded,
                    *enclosing.pending,
                    *(enclosing.reported or {}),
                }
                call.set_many(
                    {
                        k: v
                        for k, v in request.attributes.items()
                        if k != attr.GEN_AI_OPERATION_NAME
                        and not (k in KEPT_BY_ENCLOSING and k in existing)
                    }
                )
                call.set_content(request.content)
                return call
        attributes = {k: v for k, v in request.attributes.items() if v is not None}
        if request.stage is not None:
            attributes[attr.STAGE] = request.stage
        around = current_stage(parent)
        pipeline = None if around is None else around.pipeline
        if pipeline is not None:
            attributes[attr.PIPELINE] = pipeline
        span = tracer.start_span(
            request.name, context=parent, kind=request.kind, attributes=attributes
        )
        stage = Stage(
            request.stage or "",
            span,
            pipeline,
            None if around is None else around.run_span,
        )
        call = cls(stage, owned=True)
        call.set_content(request.content)
        return call

    @contextmanager
    def activate(self) -> Iterator[None]:
        """Make this call the current one while the client runs.

        An owned span also becomes the current span; its stage, when it has one,
        the active stage.
        """
        ctx = otel_context.set_value(_CALL_KEY, self)
        if self.owned:
            ctx = trace.set_span_in_context(self.span, ctx)
            if self.target.stage:
                ctx = otel_context.set_value(STAGE_KEY, self.target, ctx)
        token = otel_context.attach(ctx)
        try:
            yield
        finally:
            otel_context.detach(token)

    def set(self, key: str, value: AttributeValue | None, *, keep_empty: bool = False) -> None:
        """Set one attribute; ``None`` and empty sequences are skipped; counts add up.

        ``keep_empty`` writes an empty sequence too (an empty result is a fact).
        Nothing is written to a span that no longer records: an enclosing stage
        span may have ended before a stream it returned was consumed. What the client
        metrics need is kept either way (an unsampled call is still an operation).
        """
        if value is None:
            return
        if key in METRIC_FACTS and self.metrics is not None:
            self.facts[key] = value
        if not self.span.is_recording():
            return
        if (
            not keep_empty
            and isinstance(value, Sequence)
            and not isinstance(value, str)
            and not value
        ):
            return
        if key in SUMMED_ATTRIBUTES and isinstance(value, int | float):
            value = self._summed(key, value)
        target = self.target
        target.report(key, value)
        if not self.owned and not key.startswith(_DERIVED_BY_DECORATOR):
            # What the client reported counts as recorded: the decorator does not
            # re-derive it from its function's return value.
            target.recorded[key] = value

    def set_many(self, attributes: Mapping[str, AttributeValue | None]) -> None:
        for key, value in attributes.items():
            self.set(key, value)

    def adopt(self, active: Stage | None, request: Request) -> None:
        """Join the enclosing stage: complete its span name with the requested model.

        A decorated generation span still named ``chat`` (no model given to the
        decorator) is completed to ``chat {model}``, as ``record_generation`` does.
        """
        if active is None:
            return
        model = request.attributes.get(attr.GEN_AI_REQUEST_MODEL)
        if isinstance(model, str) and attr.GEN_AI_REQUEST_MODEL not in active.recorded:
            active.rename(model)

    def set_content(self, content: Mapping[str, object]) -> None:
        """Content attributes, only when capture is on and the span records.

        A :class:`Deferred` value is built here; one that fails to build is left out
        (and logged): content is never worth the call.
        """
        if not content or not self.span.is_recording() or not capture_enabled():
            return
        recorded = False
        for key, given in content.items():
            value = given
            if isinstance(given, Deferred):
                try:
                    value = given.build()
                except Exception as exc:
                    log_internal_error(f"content.{key}", exc)
                    continue
            if value is not None:
                text = prepare_content(value)
                if text is not None:
                    self.set(key, text)
                    recorded = True
        if recorded and captured_for_evaluation():
            self.set(attr.EVALUATION_SAMPLED_CONTENT, True)

    def _summed(self, key: str, value: float) -> float:
        """The stage's new total of ``key`` when this call reports ``value`` for it.

        ``value`` is what this call accounts for, including the calls nested in it
        on the same stage: a LangChain chat model reporting the usage of the
        ``openai`` call it made replaces that call's share instead of adding to it.
        Calls one after the other, or concurrent ones, add up. Reporting again
        (cumulative stream usage) replaces this call's previous report. On a stage
        that writes at once, the total starts from what was recorded on it before
        (a deferred stage keeps reports and records apart until it ends).
        """
        target = self.target
        with _TOTALS_LOCK:
            totals = target.totals
            if totals is None:
                totals = target.totals = {}
            if key not in totals:
                existing = None if target.deferred else target.recorded.get(key)
                totals[key] = as_float(existing) or 0.0
            delta = value - self._own.get(key, 0.0) - self._nested.get(key, 0.0)
            self._own[key] = self._own.get(key, 0.0) + delta
            parent = self._parent
            while parent is not None:
                parent._nested[key] = parent._nested.get(key, 0.0) + delta
                parent = parent._parent
            totals[key] += delta
            total = totals[key]
        return int(total) if isinstance(value, int) and total.is_integer() else total

    def end(self, error: BaseException | None = None) -> None:
        """End an owned span exactly once (ERROR and an exception event when ``error``)."""
        with self._lock:
            if self._ended:
                return
            self._ended = True
        metrics = self.metrics
        if metrics is not None:
            seconds = (time.perf_counter_ns() - self.started) / 1e9
            try:
                metrics.record(self.facts, seconds, error)
            except Exception as exc:
                log_internal_error("metrics.record", exc)
        if not self.owned:
            return
        self.target.ended = True
        if error is not None:
            self.span.set_attribute(attr.ERROR_TYPE, type(error).__qualname__)
            self.span.record_exception(error)
            self.span.set_status(Status(StatusCode.ERROR, str(error) or type(error).__name__))
        self.span.end()

    @property
    def ended(self) -> bool:
        return self._ended


RequestReader = Callable[[Any, tuple[Any, ...], dict[str, Any]], Request]
"""Reads the call (instance, args, kwargs) before it runs."""
Applies = Callable[[Any, tuple[Any, ...], dict[str, Any]], bool]
"""Whether a call (instance, args, kwargs) is one to trace."""
ResponseReader = Callable[[StageCall, Any], Any]
"""Writes the result's facts onto the call; returns the result to hand back (maybe proxied)."""


def _begin(
    tracer: Tracer,
    kind: str,
    read: RequestReader,
    metrics: ClientMetrics | None,
    *,
    instance: Any,
    args: Any,
    kwargs: Any,
) -> StageCall | None:
    try:
        call = StageCall.start(tracer, read(instance, args, kwargs), metrics)
    except Exception as exc:
        log_internal_error(f"{kind}.request", exc)
        return None
    call.instance = instance
    return call


def _finish(kind: str, call: StageCall, respond: ResponseReader, result: Any) -> Any:
    if not call.span.is_recording() and call.metrics is None:
        # An unsampled span keeps no attributes: skip reading the response (and
        # proxying a stream) altogether, unless the client metrics need its tokens.
        # A sampler's RECORD_ONLY spans do record.
        call.end()
        return result
    try:
        returned = respond(call, result)
    except Exception as exc:
        log_internal_error(f"{kind}.response", exc)
        call.end()
        return result
    if not call.deferred:
        call.end()
    return returned


def sync_wrapper(
    tracer: Tracer,
    kind: str,
    read: RequestReader,
    respond: ResponseReader,
    *,
    metrics: ClientMetrics | None = None,
    applies: Applies | None = None,
) -> Callable[..., Any]:
    """A ``wrapt`` wrapper for a synchronous client method.

    ``metrics``: where the call's client metrics go; ``applies``: which calls are
    traced at all (the others run untouched).
    """

    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if applies is not None and not applies(instance, args, kwargs):
            return wrapped(*args, **kwargs)
        call = _begin(tracer, kind, read, metrics, instance=instance, args=args, kwargs=kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        with call.activate():
            try:
                result = wrapped(*args, **kwargs)
            except BaseException as error:
                call.end(error)
                raise
        return _finish(kind, call, respond, result)

    return wrapper


def async_wrapper(
    tracer: Tracer,
    kind: str,
    read: RequestReader,
    respond: ResponseReader,
    *,
    metrics: ClientMetrics | None = None,
    applies: Applies | None = None,
) -> Callable[..., Any]:
    """A ``wrapt`` wrapper for a coroutine client method (arguments as ``sync_wrapper``)."""

    async def wrapper(
        wrapped: Callable[..., Awaitable[Any]],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        if applies is not None and not applies(instance, args, kwargs):
            return await wrapped(*args, **kwargs)
        call = _begin(tracer, kind, read, metrics, instance=instance, args=args, kwargs=kwargs)
        if call is None:
            return await wrapped(*args, **kwargs)
        with call.activate():
            try:
                result = await wrapped(*args, **kwargs)
            except BaseException as error:
                call.end(error)
                raise
        return _finish(kind, call, respond, result)

    return wrapper


def field_of(value: Any, name: str) -> Any:
    """``value.name`` or ``value[name]``: provider responses come as models or as dicts."""
    if value is None:
        return None
    if type(value) is dict:
        return value.get(name)
    found = getattr(value, name, None)
    if found is None and isinstance(value, Mapping):
        return value.get(name)
    return found


def as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


#: The "argument not given" sentinel types of the client SDKs, as (module, public name).
CLIENT_SENTINELS: Final = (
    ("openai", "NotGiven"),
    ("openai", "Omit"),
    ("anthropic", "NotGiven"),
    ("anthropic", "Omit"),
)


def _sentinel_types() -> tuple[type, ...]:
    """The sentinel types of the client SDKs loaded so far (a client not loaded passes none)."""
    found: list[type] = []
    for module_name, name in CLIENT_SENTINELS:
        module = sys.modules.get(module_name)
        sentinel = getattr(module, name, None) if module is not None else None
        if isinstance(sentinel, type):
            found.append(sentinel)
    return tuple(found)


def given(kwargs: Mapping[str, Any], name: str) -> Any:
    """A keyword argument, or ``None`` when absent or a client's "not given" sentinel."""
    value = kwargs.get(name)
    if value is None or isinstance(value, _sentinel_types()):
        return None
    return value
