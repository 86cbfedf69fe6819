"""Stage decorators: one span per pipeline stage (docs/conventions.md section 2).

``@pipeline``, ``@retrieval``, ``@context_selection``, ``@generation`` and
``@action`` wrap any callable shape (functions, coroutine functions, generators,
async generators, methods, classmethods, staticmethods) with :mod:`wrapt`, so
signatures, ``__wrapped__`` and the ``inspect`` predicates stay those of the
decorated function. Each works bare (``@retrieval``), with options
(``@retrieval(data_source="faq")``), or with its detail as the one positional
argument (``@retrieval("faq")``, ``@generation("gpt-4o")``, ``@pipeline("name")``).

Everything about a decorated function that can be known in advance (span name,
kind, static attributes, which extraction runs) is computed once, at decoration;
a call starts the span, puts it and the stage into the context, runs the function,
and reads the result only when the span is recording.

Errors: an exception of the decorated function is recorded on the span (status
ERROR, ``error.type``, an exception event) and re-raised unchanged. A failure of
ours is logged once per kind and the call proceeds, untraced if need be.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterator
from contextlib import contextmanager
from contextvars import Token, copy_context
from typing import Any, Final, TypeVar, cast, overload

import wrapt
from opentelemetry.context import Context, attach, detach, get_current
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.util.types import AttributeValue

from llmspans import _attributes as A
from llmspans import _content
from llmspans._context import KEPT_BY_ENCLOSING, STAGE_KEY, Stage
from llmspans._documents import document_texts, extract_documents
from llmspans._logging import log_internal_error
from llmspans._recording import computed_cost, usage_from_response
from llmspans._runs import (
    LABELS_KEY,
    SOURCE_KEY,
    RunLabels,
    SegmentOption,
    pipeline_result,
    pipeline_start,
)
from llmspans._state import STATE
from llmspans._tracing import resolve_global_tracer

F = TypeVar("F", bound=Callable[..., Any])

#: ``verify(result, *args, **kwargs)`` of ``@action``: ``bool`` or ``(bool, reason)``.
Verifier = Callable[..., "bool | tuple[bool, str] | Awaitable[bool | tuple[bool, str]]"]

# Items a decorated generator yields that are kept to read documents from.
_MAX_COLLECTED: Final = 10_000

# Extraction hooks write what they find into ``state.pending``; it reaches the span
# in one ``set_attributes`` call when the stage ends.
# ``on_start`` gets the context the stage starts in, ``on_result`` the stage's own
# context (current while it runs): what they read from the context is one dict
# lookup there, instead of finding the current context again.
_OnStart = Callable[[Stage, Context, tuple[Any, ...], dict[str, Any]], None]
_OnResult = Callable[[Stage, Context, object, tuple[Any, ...], dict[str, Any]], None]


# When a stage's result hook is called (_Spec.result_gate): always; only in a
# labelled (offline) run, whose labels the pipeline's hook reads; only when content
# is captured or the usage is not recorded yet (a generation's hook reads nothing else).
_RESULT_ALWAYS, _RESULT_LABELLED, _RESULT_UNLESS_USAGE = range(3)


class _Spec:
    """What is known about a decorated function before it is called."""

    __slots__ = (
        "attributes",
        "collect",
        "content_start",
        "kind",
        "name",
        "on_result",
        "on_start",
        "pipeline",
        "recorded",
        "rename_prefix",
        "result_gate",
        "root_gated",
        "stage",
        "verify",
    )

    def __init__(
        self,
        stage: str,
        name: str,
        kind: SpanKind,
        attributes: dict[str, AttributeValue],
        *,
        pipeline: str | None = None,
        on_start: _OnStart | None = None,
        on_result: _OnResult | None = None,
        verify: Verifier | None = None,
        recorded: dict[str, object] | None = None,
        rename_prefix: str | None = None,
        content_start: bool = False,
        root_gated: bool = False,
        result_gate: int = _RESULT_ALWAYS,
    ) -> None:
        self.stage = stage
        self.name = name
        self.kind = kind
        self.attributes = attributes
        self.pipeline = pipeline
        self.on_start = on_start
        self.on_result = on_result
        self.verify = verify
        self.recorded = recorded
        self.rename_prefix = rename_prefix
        #: ``on_start`` records content only: it is called only when content is captured
        self.content_start = content_start
        #: a pipeline without ``segment=``: its start hook records only run-level
        #: facts, and is skipped when none can apply (see _start)
        self.root_gated = root_gated
        #: when ``on_result`` can have something to read (_RESULT_*, see _end)
        self.result_gate = result_gate
        self.collect = stage in (A.STAGE_RETRIEVAL, A.STAGE_CONTEXT_SELECTION)


_new_stage: Final = object.__new__

# Puts a value into a dict in place (a Context, whatever its own ``__setitem__`` says).
_put: Final = dict.__setitem__

# A started stage: its state (which holds its span) and the context to attach around
# its code.
_Entered = tuple[Stage, Context]


def _start(spec: _Spec, parent: Context, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Entered:
    # The span starts bare and gets all its attributes in one call when it ends:
    # with the SDK that is markedly cheaper than attributes at start plus more later.
    # The decorator's static options are added when it ends (see _end).
    pending: dict[str, Any] = {}
    # get_tracer(), inlined: one Python call less per stage.
    tracer = resolve_global_tracer() if STATE.tracer_proxied else STATE.tracer
    span = tracer.start_span(spec.name, parent, spec.kind)
    pipeline = spec.pipeline
    if pipeline is None:
        enclosing = parent.get(STAGE_KEY)
        if isinstance(enclosing, Stage) and enclosing.pipeline is not None:
            pipeline = pending[A.PIPELINE] = enclosing.pipeline
            run_span = enclosing.run_span
        else:
            run_span = None
    else:
        run_span = span
    # Stage(...) field by field: a class with an __init__ costs about as much again
    # to call as these stores (keep in step with Stage.__init__; a test checks that
    # every slot is set).
    stage = _new_stage(Stage)
    stage.stage = spec.stage
    stage.span = span
    stage.pipeline = pipeline
    stage.run_span = run_span
    stage.pending = pending
    recorded = spec.recorded
    stage.recorded = {} if recorded is None else recorded.copy()
    stage.rename_prefix = spec.rename_prefix
    stage.recording = recording = span.is_recording()
    stage.deferred = True
    stage.ended = False
    stage.reported = None
    stage.totals = None
    capture = False
    if recording and spec.content_start:
        # _content.capture_enabled_in(run_span), asked only when the settings do not
        # answer already (capture off and no run sampled: the common case).
        setting = STATE.capture_setting
        if setting is None or (not setting and STATE.runs_sampled):
            capture = _content.capture_enabled_in(run_span)
        else:
            capture = setting
    stage.capture = capture
    # The stage's context: the parent's, with the span (``set_span_in_context``) and
    # the stage in it. ``set_span_in_context`` returns a new Context that nothing else
    # holds yet: the stage goes into it in place, as ``context.set_value`` would put
    # it into a copy, sparing two more copies of the whole context per stage.
    ctx = set_span_in_context(span, parent)
    _put(ctx, STAGE_KEY, stage)
    if (
        spec.on_start is not None
        and recording
        and (capture or not spec.content_start)
        # A pipeline's run-level facts (source, sampling, labels) apply only when set
        # up somewhere: the settings (one flag) or the context the run starts in.
        and (
            not spec.root_gated
            or STATE.run_facts
            or LABELS_KEY in parent
            or SOURCE_KEY in parent
        )
    ):
        try:
            spec.on_start(stage, parent, args, kwargs)
        except Exception as exc:
            log_internal_error(f"{spec.stage}.arguments", exc)
    return stage, ctx


def _attach(ctx: Context) -> Token[Context] | None:
    try:
        return attach(ctx)
    except Exception as exc:
        log_internal_error("context.attach", exc)
        return None


def _detach(token: Token[Context] | None) -> None:
    # ``detach`` logs a failure of its own and never raises.
    if token is not None:
        detach(token)


def _record_error(span: Span, exc: BaseException, state: Stage) -> None:
    try:
        if span.is_recording():
            if state.stage == A.STAGE_GENERATION:
                cost = computed_cost(state.recorded)  # a failed call may still be billed
                if cost is not None:
                    state.pending[A.COST_USD] = cost
            state.pending[A.ERROR_TYPE] = type(exc).__qualname__
            span.record_exception(exc)
            try:
                description = f"{type(exc).__name__}: {exc}"
            except Exception:
                description = type(exc).__name__
            span.set_status(Status(StatusCode.ERROR, description))
    except Exception as internal:
        log_internal_error("span.error", internal)


# The keyword arguments of a call that has none (never written to).
_NO_KWARGS: Final[dict[str, Any]] = {}


# Positional parameters: called once per stage, and a call with keywords costs more.
def _end(  # noqa: PLR0917
    spec: _Spec,
    state: Stage,
    ctx: Context | None = None,
    result: object = None,
    args: tuple[Any, ...] = (),
    kwargs: dict[str, Any] = _NO_KWARGS,
    verdict: tuple[bool, str | None] | None = None,
) -> None:
    """Read the result into the stage's facts, put its attributes on the span in one
    call, and end it.

    With ``ctx`` (the stage's context: the stage returned), the verdict of ``verify``
    and what ``on_result`` extracts from the result are read first, when the span
    records; without (the stage failed or was closed early), nothing is read.

    Later sources win: the decorator's static options, then what client calls
    enriching the stage reported (the model actually called, say), then what the
    stage's code recorded and what was extracted from it (``pending``). A fact of
    ``KEPT_BY_ENCLOSING`` that the options set is never replaced by a client's.
    """
    if ctx is not None and state.recording:
        try:
            if verdict is not None:
                _record_verdict(state, verdict)
            gate = spec.result_gate
            if spec.on_result is not None and (
                gate == _RESULT_ALWAYS
                or (gate == _RESULT_LABELLED and LABELS_KEY in ctx)
                or (
                    gate == _RESULT_UNLESS_USAGE
                    and (state.capture or A.GEN_AI_USAGE_INPUT_TOKENS not in state.recorded)
                )
            ):
                spec.on_result(state, ctx, result, args, kwargs)
        except Exception as exc:
            log_internal_error(f"{spec.stage}.result", exc)
    state.ended = True
    span = state.span
    if state.recording:
        reported = state.reported
        try:
            if reported is None:
                span.set_attributes({**spec.attributes, **state.pending})
            else:
                merged = {**spec.attributes, **reported}
                for key in KEPT_BY_ENCLOSING:
                    if key in spec.attributes:
                        merged[key] = spec.attributes[key]
                span.set_attributes({**merged, **state.pending})
        except Exception as exc:
            log_internal_error("span.attributes", exc)
    try:
        span.end()
    except Exception as exc:
        log_internal_error("span.end", exc)


def _fail(spec: _Spec, state: Stage, exc: BaseException) -> None:
    """Record the user's exception on the span and end it (the caller re-raises)."""
    _record_error(state.span, exc, state)
    _end(spec, state)


# --- verification of actions ------------------------------------------------------
def _verdict_of(outcome: object) -> tuple[bool, str | None]:
    if isinstance(outcome, tuple) and len(outcome) == 2:
        ok, reason = outcome
        return bool(ok), (None if reason is None else str(reason))
    return bool(outcome), None


def _verify_failed(exc: BaseException) -> tuple[bool, str | None]:
    return False, f"verify raised {type(exc).__qualname__}: {exc}"


def _needs_verify(spec: _Spec, state: Stage) -> bool:
    return spec.verify is not None and state.recording and A.ACTION_VERIFIED not in state.recorded


def _verify_sync(
    spec: _Spec, result: object, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[bool, str | None]:
    assert spec.verify is not None
    try:
        outcome = spec.verify(result, *args, **kwargs)
        if inspect.isawaitable(outcome):
            close = getattr(outcome, "close", None)
            if callable(close):
                close()
            return False, "verify returned an awaitable on a synchronous action"
        # Inside the try: bool() of what verify returned runs the user's __bool__.
        return _verdict_of(outcome)
    except Exception as exc:
        return _verify_failed(exc)


async def _verify_async(
    spec: _Spec, result: object, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[bool, str | None]:
    assert spec.verify is not None
    try:
        outcome = spec.verify(result, *args, **kwargs)
        if inspect.isawaitable(outcome):
            outcome = await outcome
        return _verdict_of(outcome)
    except Exception as exc:
        return _verify_failed(exc)


def _record_verdict(state: Stage, verdict: tuple[bool, str | None]) -> None:
    if A.ACTION_VERIFIED in state.recorded:
        return
    ok, reason = verdict
    state.pending[A.ACTION_VERIFIED] = ok
    if not ok and reason and A.ACTION_VERIFICATION not in state.recorded:
        state.pending[A.ACTION_VERIFICATION] = reason


# --- the wrappers, one per callable shape --------------------------------------------
def _sync_wrapper(spec: _Spec) -> Callable[..., Any]:
    # The hot path: _enter, _attach and _detach inlined (one Python call each, per call).
    def wrapper(
        wrapped: Callable[..., Any], instance: object, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        try:
            entered: _Entered | None = _start(spec, get_current(), args, kwargs)
        except Exception as exc:
            log_internal_error("span.start", exc)
            entered = None
        if entered is None:
            return wrapped(*args, **kwargs)
        state, ctx = entered
        try:
            token: Token[Context] | None = attach(ctx)
        except Exception as exc:
            log_internal_error("context.attach", exc)
            token = None
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            _fail(spec, state, exc)
            _detach(token)
            raise
        try:
            if spec.verify is not None and _needs_verify(spec, state):
                verdict = _verify_sync(spec, result, args, kwargs)
                _end(spec, state, ctx, result, args, kwargs, verdict)
            else:
                _end(spec, state, ctx, result, args, kwargs)
        finally:
            if token is not None:
                detach(token)
        return result

    return wrapper


def _async_wrapper(spec: _Spec) -> Callable[..., Any]:
    # As in _sync_wrapper: _enter, _attach and _detach inlined.
    async def run(
        wrapped: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        try:
            entered: _Entered | None = _start(spec, get_current(), args, kwargs)
        except Exception as exc:
            log_internal_error("span.start", exc)
            entered = None
        if entered is None:
            return await wrapped(*args, **kwargs)
        state, ctx = entered
        try:
            token: Token[Context] | None = attach(ctx)
        except Exception as exc:
            log_internal_error("context.attach", exc)
            token = None
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            _fail(spec, state, exc)
            _detach(token)
            raise
        try:
            if spec.verify is not None and _needs_verify(spec, state):
                verdict = await _verify_async(spec, result, args, kwargs)
                _end(spec, state, ctx, result, args, kwargs, verdict)
            else:
                _end(spec, state, ctx, result, args, kwargs)
        finally:
            if token is not None:
                detach(token)
        return result

    def wrapper(
        wrapped: Callable[..., Awaitable[Any]],
        instance: object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        return run(wrapped, args, kwargs)

    return wrapper


# A started generator stage: its state, context, and the items kept to read
# documents from (None when the stage reads none or the span is not recording).
_Iterating = tuple[Stage, Context, list[Any] | None]


def _start_iteration(
    spec: _Spec, parent: Context, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> _Iterating | None:
    try:
        state, ctx = _start(spec, parent, args, kwargs)
    except Exception as exc:
        log_internal_error("span.start", exc)
        return None
    return state, ctx, [] if spec.collect and state.recording else None


@contextmanager
def _closing(spec: _Spec, state: Stage, ctx: Context) -> Iterator[None]:
    """Around closing the inner generator early: the stage context attached, the span ended."""
    token = _attach(ctx)
    try:
        yield
    except BaseException as exc:
        _record_error(state.span, exc, state)
        raise
    finally:
        _detach(token)
        _end(spec, state)


def _finish_iteration(
    spec: _Spec,
    iterating: _Iterating,
    result: object,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    """End a generator stage that ran out: extraction reads the kept items, else its result."""
    state, ctx, collected = iterating
    token = _attach(ctx)
    try:
        _end(spec, state, ctx, collected if collected is not None else result, args, kwargs)
    finally:
        _detach(token)


def _generator_wrapper(spec: _Spec) -> Callable[..., Any]:
    def iterate(
        inner: Generator[Any, Any, Any],
        parent: Context,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Generator[Any, Any, Any]:
        # The span starts when iteration starts (a generator never iterated has no span)
        # and the stage context is current only while the generator's own code runs,
        # never across a yield into the consumer's code: the generator's steps run in
        # a context of their own (as an asyncio task's do), with the stage context
        # attached there once, instead of an attach and a detach around every step.
        iterating = _start_iteration(spec, parent, args, kwargs)
        if iterating is None:
            return (yield from inner)
        state, ctx, collected = iterating
        own = copy_context()
        try:
            own.run(attach, ctx)
        except Exception as exc:
            log_internal_error("context.attach", exc)
        run = own.run
        to_send: Any = None
        to_throw: BaseException | None = None
        try:
            while True:
                try:
                    if to_throw is None:
                        item = run(inner.send, to_send)
                    else:
                        thrown, to_throw = to_throw, None
                        item = run(inner.throw, thrown)
                except StopIteration as stop:
                    result = stop.value
                    break
                if collected is not None and len(collected) < _MAX_COLLECTED:
                    collected.append(item)
                try:
                    to_send = yield item
                except GeneratorExit:
                    raise
                except BaseException as exc:
                    to_throw = exc
        except GeneratorExit:
            with _closing(spec, state, ctx):
                run(inner.close)
            raise
        except BaseException as exc:
            _fail(spec, state, exc)
            raise
        run(
            _end,
            spec,
            state,
            ctx,
            collected if collected is not None else result,
            args,
            kwargs,
        )
        return result

    def wrapper(
        wrapped: Callable[..., Generator[Any, Any, Any]],
        instance: object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Generator[Any, Any, Any]:
        return iterate(wrapped(*args, **kwargs), get_current(), args, kwargs)

    return wrapper


def _async_generator_wrapper(spec: _Spec) -> Callable[..., Any]:
    async def iterate(
        inner: AsyncGenerator[Any, Any],
        parent: Context,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> AsyncGenerator[Any, Any]:
        iterating = _start_iteration(spec, parent, args, kwargs)
        if iterating is None:
            async for item in inner:
                yield item
            return
        state, ctx, collected = iterating
        to_send: Any = None
        to_throw: BaseException | None = None
        try:
            while True:
                token = _attach(ctx)
                try:
                    if to_throw is None:
                        item = await inner.asend(to_send)
                    else:
                        thrown, to_throw = to_throw, None
                        item = await inner.athrow(thrown)
                except StopAsyncIteration:
                    break
                finally:
                    _detach(token)
                if collected is not None and len(collected) < _MAX_COLLECTED:
                    collected.append(item)
                try:
                    to_send = yield item
                except GeneratorExit:
                    raise
                except BaseException as exc:
                    to_throw = exc
        except GeneratorExit:
            with _closing(spec, state, ctx):
                await inner.aclose()
            raise
        except BaseException as exc:
            _fail(spec, state, exc)
            raise
        _finish_iteration(spec, iterating, None, args, kwargs)

    def wrapper(
        wrapped: Callable[..., AsyncGenerator[Any, Any]],
        instance: object,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> AsyncGenerator[Any, Any]:
        return iterate(wrapped(*args, **kwargs), get_current(), args, kwargs)

    return wrapper


def _target(func: object) -> object:
    """The plain function behind a classmethod, staticmethod or other wrapper."""
    inner = getattr(func, "__func__", func)
    return inspect.unwrap(inner) if callable(inner) else inner


def _wrap(func: F, spec: _Spec) -> F:
    target = _target(func)
    if inspect.isasyncgenfunction(target):
        wrapper = _async_generator_wrapper(spec)
    elif inspect.iscoroutinefunction(target):
        wrapper = _async_wrapper(spec)
    elif inspect.isgeneratorfunction(target):
        wrapper = _generator_wrapper(spec)
    else:
        wrapper = _sync_wrapper(spec)
    return cast(F, wrapt.FunctionWrapper(func, wrapper))


def _function_name(func: object) -> str:
    target = _target(func)
    return str(getattr(target, "__name__", None) or type(target).__name__)


def _decorate(func: F, build: Callable[[F], _Spec]) -> F:
    try:
        spec = build(func)
    except Exception as exc:
        log_internal_error("decorate", exc)
        return func
    return _wrap(func, spec)


def _apply(func: Any, build: Callable[[Any], _Spec]) -> Any:
    """``func`` decorated (bare ``@decorator``), or the decorator (``@decorator(...)``)."""
    if func is not None:
        return _decorate(func, build)
    return lambda target: _decorate(target, build)


# --- extraction run per stage ------------------------------------------------------
def _call_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> object:
    if not kwargs and len(args) == 1:
        return args[0]
    if not kwargs:
        return list(args)
    return {"args": list(args), "kwargs": kwargs} if args else kwargs


def _put_content(state: Stage, key: str, value: object) -> None:
    text = _content.prepare_content(value)
    if text is not None:
        state.pending[key] = text
        if _content.captured_for_evaluation():
            state.pending[A.EVALUATION_SAMPLED_CONTENT] = True


def _retrieval_start(
    state: Stage, parent: Context, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    query = kwargs.get("query", kwargs.get("question"))
    if query is None:
        query = next((arg for arg in args if isinstance(arg, str)), None)
    if query is not None:
        _put_content(state, A.RETRIEVAL_QUERY, query)


def _retrieval_result(
    state: Stage, ctx: Context, result: object, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    recorded = state.recorded
    if A.RETRIEVAL_DOCUMENT_IDS not in recorded:
        found = extract_documents(result)
        if found is not None:
            ids, scores = found
            state.pending[A.RETRIEVAL_DOCUMENT_IDS] = ids
            if scores is not None and A.RETRIEVAL_SCORES not in recorded:
                state.pending[A.RETRIEVAL_SCORES] = scores
    labels = ctx.get(LABELS_KEY)  # None but in labelled (offline) runs
    if (
        labels is not None
        and isinstance(labels, RunLabels)
        and labels.relevant_ids is not None
        and A.RETRIEVAL_RELEVANT_IDS not in recorded
    ):
        state.pending[A.RETRIEVAL_RELEVANT_IDS] = list(labels.relevant_ids)
    if state.capture and A.RETRIEVAL_DOCUMENTS_CONTENT not in recorded:
        texts = document_texts(result)
        if texts is not None:
            _put_content(state, A.RETRIEVAL_DOCUMENTS_CONTENT, texts)


def _selection_start(
    state: Stage, parent: Context, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, list | tuple):
            found = extract_documents(value)
            if found is not None:
                state.pending[A.CONTEXT_INPUT_IDS] = found[0]
                return


def _selection_result(
    state: Stage, ctx: Context, result: object, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    if A.CONTEXT_SELECTED_IDS not in state.recorded:
        found = extract_documents(result)
        if found is not None:
            state.pending[A.CONTEXT_SELECTED_IDS] = found[0]


def _generation_start(
    state: Stage, parent: Context, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    _put_content(state, A.GEN_AI_INPUT_MESSAGES, _call_arguments(args, kwargs))


def _generation_result(
    state: Stage, ctx: Context, result: object, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    recorded = state.recorded
    if A.GEN_AI_USAGE_INPUT_TOKENS not in recorded:
        usage = usage_from_response(result)
        if usage is not None:
            for key, name in (
                (A.GEN_AI_USAGE_INPUT_TOKENS, "input_tokens"),
                (A.GEN_AI_USAGE_OUTPUT_TOKENS, "output_tokens"),
                (A.GEN_AI_RESPONSE_MODEL, "response_model"),
            ):
                value = usage.get(name)
                if value is not None and key not in recorded:
                    state.pending[key] = recorded[key] = value
            cost = computed_cost(recorded)
            if cost is not None:
                state.pending[A.COST_USD] = cost
    if state.capture and result is not None and A.GEN_AI_OUTPUT_MESSAGES not in recorded:
        _put_content(state, A.GEN_AI_OUTPUT_MESSAGES, result)


def _action_start(
    state: Stage, parent: Context, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    _put_content(state, A.GEN_AI_TOOL_CALL_ARGUMENTS, _call_arguments(args, kwargs))


def _action_result(
    state: Stage, ctx: Context, result: object, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    if state.capture and result is not None and A.GEN_AI_TOOL_CALL_RESULT not in state.recorded:
        _put_content(state, A.GEN_AI_TOOL_CALL_RESULT, result)


# --- public decorators ----------------------------------------------------------------
@overload
def pipeline(func: F, /) -> F: ...
@overload
def pipeline(
    name: str | None = None, /, *, segment: SegmentOption = None
) -> Callable[[F], F]: ...
@overload
def pipeline(*, name: str | None = None, segment: SegmentOption = None) -> Callable[[F], F]: ...
def pipeline(
    func: Any = None, /, *, name: str | None = None, segment: SegmentOption = None
) -> Any:
    """Mark the root of one task run: ``@pipeline("support_answer")`` or bare ``@pipeline``.

    Span ``invoke_workflow {name}`` (INTERNAL); every stage span inside carries
    ``llmspans.pipeline = name``. Use :func:`llmspans.current_run` inside it to get a
    reference for later feedback and :func:`llmspans.set_outcome` to record the outcome.
    ``segment``: the class of input the run served (``llmspans.segment``), a name or a
    function of the pipeline's arguments (``segment=lambda question: classify(question)``);
    :func:`llmspans.set_segment` inside the run wins over it. The root also records the
    run's source and whether it was sampled for evaluation (see :mod:`llmspans._runs`).
    """
    if isinstance(func, str):
        name, func = func, None

    def build(target: Any) -> _Spec:
        pipeline_name = name or _function_name(target)
        return _Spec(
            A.STAGE_PIPELINE,
            A.span_name(A.STAGE_PIPELINE, pipeline_name),
            SpanKind.INTERNAL,
            {
                A.STAGE: A.STAGE_PIPELINE,
                A.GEN_AI_OPERATION_NAME: A.OP_INVOKE_WORKFLOW,
                A.PIPELINE: pipeline_name,
            },
            pipeline=pipeline_name,
            on_start=pipeline_start(segment),
            on_result=pipeline_result,
            root_gated=segment is None,
            result_gate=_RESULT_LABELLED,
        )

    return _apply(func, build)


@overload
def retrieval(func: F, /) -> F: ...
@overload
def retrieval(
    data_source: str | None = None,
    /,
    *,
    top_k: int | None = None,
    name: str | None = None,
) -> Callable[[F], F]: ...
@overload
def retrieval(
    *, data_source: str | None = None, top_k: int | None = None, name: str | None = None
) -> Callable[[F], F]: ...
def retrieval(
    func: Any = None,
    /,
    *,
    data_source: str | None = None,
    top_k: int | None = None,
    name: str | None = None,
) -> Any:
    """Mark a retrieval: span ``retrieval {data_source}`` (CLIENT).

    Document ids (rank order) and scores are read from the return value; see
    :func:`llmspans.record_retrieval` for what cannot be read, and for labels.
    """
    if isinstance(func, str):
        data_source, func = func, None

    def build(target: Any) -> _Spec:
        attributes: dict[str, AttributeValue] = {
            A.STAGE: A.STAGE_RETRIEVAL,
            A.GEN_AI_OPERATION_NAME: A.OP_RETRIEVAL,
        }
        if data_source is not None:
            attributes[A.GEN_AI_DATA_SOURCE_ID] = data_source
        if top_k is not None:
            attributes[A.GEN_AI_REQUEST_TOP_K] = int(top_k)
        detail = data_source or name or _function_name(target)
        return _Spec(
            A.STAGE_RETRIEVAL,
            A.span_name(A.STAGE_RETRIEVAL, detail),
            SpanKind.CLIENT,
            attributes,
            on_start=_retrieval_start,
            content_start=True,
            on_result=_retrieval_result,
        )

    return _apply(func, build)


@overload
def context_selection(func: F, /) -> F: ...
@overload
def context_selection(
    name: str | None = None, /, *, token_budget: int | None = None
) -> Callable[[F], F]: ...
@overload
def context_selection(
    *, name: str | None = None, token_budget: int | None = None
) -> Callable[[F], F]: ...
def context_selection(
    func: Any = None,
    /,
    *,
    name: str | None = None,
    token_budget: int | None = None,
) -> Any:
    """Mark a context selection (rerank, filter, pack): span ``context_selection {name}``.

    Candidate ids come from the first argument that is a list of documents, selected
    ids from the return value; :func:`llmspans.record_context` sets them explicitly.
    """
    if isinstance(func, str):
        name, func = func, None

    def build(target: Any) -> _Spec:
        attributes: dict[str, AttributeValue] = {A.STAGE: A.STAGE_CONTEXT_SELECTION}
        if token_budget is not None:
            attributes[A.CONTEXT_TOKEN_BUDGET] = int(token_budget)
        return _Spec(
            A.STAGE_CONTEXT_SELECTION,
            A.span_name(A.STAGE_CONTEXT_SELECTION, name or _function_name(target)),
            SpanKind.INTERNAL,
            attributes,
            on_start=_selection_start,
            on_result=_selection_result,
        )

    return _apply(func, build)


@overload
def generation(func: F, /) -> F: ...
@overload
def generation(
    model: str | None = None,
    /,
    *,
    provider: str | None = None,
    operation: str = A.OP_CHAT,
    name: str | None = None,
) -> Callable[[F], F]: ...
@overload
def generation(
    *,
    model: str | None = None,
    provider: str | None = None,
    operation: str = A.OP_CHAT,
    name: str | None = None,
) -> Callable[[F], F]: ...
def generation(
    func: Any = None,
    /,
    *,
    model: str | None = None,
    provider: str | None = None,
    operation: str = A.OP_CHAT,
    name: str | None = None,
) -> Any:
    """Mark a model call: span ``{operation} {model}`` (CLIENT), ``operation`` ``chat`` or
    ``text_completion``.

    Token usage is read from an OpenAI- or Anthropic-style response returned by the
    function; :func:`llmspans.record_generation` records tokens, citations,
    confidence, refusal and validity explicitly. ``llmspans.cost.usd`` follows from
    the model and the tokens through the price table. Without ``model`` or ``name``
    the span is named ``chat`` until ``record_generation(model=...)`` completes it.
    """
    if isinstance(func, str):
        model, func = func, None
    if operation not in (A.OP_CHAT, A.OP_TEXT_COMPLETION):
        raise ValueError(
            f"generation(operation=...) must be {A.OP_CHAT!r} or {A.OP_TEXT_COMPLETION!r}, "
            f"got {operation!r}"
        )

    def build(target: Any) -> _Spec:
        attributes: dict[str, AttributeValue] = {
            A.STAGE: A.STAGE_GENERATION,
            A.GEN_AI_OPERATION_NAME: operation,
        }
        recorded: dict[str, object] = {}
        if model is not None:
            attributes[A.GEN_AI_REQUEST_MODEL] = model
            recorded[A.GEN_AI_REQUEST_MODEL] = model
        if provider is not None:
            attributes[A.GEN_AI_PROVIDER_NAME] = provider
        detail = model or name
        return _Spec(
            A.STAGE_GENERATION,
            f"{operation} {detail}" if detail else operation,
            SpanKind.CLIENT,
            attributes,
            on_start=_generation_start,
            content_start=True,
            on_result=_generation_result,
            result_gate=_RESULT_UNLESS_USAGE,
            recorded=recorded or None,
            rename_prefix=None if detail else operation,
        )

    return _apply(func, build)


@overload
def action(func: F, /) -> F: ...
@overload
def action(name: str | None = None, /, *, verify: Verifier | None = None) -> Callable[[F], F]: ...
@overload
def action(*, name: str | None = None, verify: Verifier | None = None) -> Callable[[F], F]: ...
def action(
    func: Any = None,
    /,
    *,
    name: str | None = None,
    verify: Verifier | None = None,
) -> Any:
    """Mark a downstream action (tool call, write, booking): span ``execute_tool {name}``.

    ``verify(result, *args, **kwargs)`` checks the downstream state after a successful
    call and returns ``bool`` or ``(bool, reason)`` (awaitable for async actions): it
    sets ``llmspans.action.verified`` and, on failure, ``llmspans.action.verification``.
    A verify that raises records ``verified=false`` with the exception as the reason;
    it never changes the action's result. It runs only when the span is recorded.
    """
    if isinstance(func, str):
        name, func = func, None

    def build(target: Any) -> _Spec:
        tool = name or _function_name(target)
        return _Spec(
            A.STAGE_ACTION,
            A.span_name(A.STAGE_ACTION, tool),
            SpanKind.INTERNAL,
            {
                A.STAGE: A.STAGE_ACTION,
                A.GEN_AI_OPERATION_NAME: A.OP_EXECUTE_TOOL,
                A.GEN_AI_TOOL_NAME: tool,
            },
            on_start=_action_start,
            content_start=True,
            on_result=_action_result,
            verify=verify,
        )

    return _apply(func, build)
