"""Pipeline roots for framework runs that no decorated ``@llmspans.pipeline`` encloses.

A LangChain chain or a LlamaIndex query engine invoked at the top level is one
task run: its retriever, model and tool calls belong together. Without a root,
each of their spans would start a trace of its own, so the collector would see
no run and attribute nothing. The wrappers built here open an
``invoke_workflow {name}`` root (``llmspans.stage = pipeline``) around such an
invocation, with the pipeline name in the context as ``@pipeline`` puts it, so
every stage span inside carries ``llmspans.pipeline`` and the run is attributed.

Nothing is opened when the invocation already runs inside a pipeline (decorated,
or a framework root further out: a chain calling a chain) or inside a stage (a
chain used as a step of a decorated stage belongs to that stage).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.util.types import AttributeValue

from llmspans import _attributes as attr
from llmspans._context import Stage, current_pipeline, current_stage
from llmspans._logging import log_internal_error
from llmspans.instrumentation._base import StageCall
from llmspans.instrumentation._patching import Patch
from llmspans.instrumentation._streams import AsyncStreamProxy, Ending, SyncStreamProxy

RootNamer = Callable[[Any, tuple[Any, ...], dict[str, Any]], "RootInfo"]
"""Reads (instance, args, kwargs) of the invocation: the pipeline's name and extra attributes."""

Mode = Literal["sync", "async", "stream", "astream"]


class RootInfo:
    """What a framework invocation says about its run."""

    __slots__ = ("attributes", "name")

    def __init__(
        self, name: str, attributes: Mapping[str, AttributeValue | None] | None = None
    ) -> None:
        self.name = name
        self.attributes = attributes or {}


class _RootCall(StageCall):
    """The root span of a framework run: its stage is the pipeline, its own run, so
    activating it (``StageCall.activate``) puts the pipeline into the context too."""

    __slots__ = ("pipeline",)

    def __init__(self, span: Span, pipeline: str) -> None:
        super().__init__(Stage(attr.STAGE_PIPELINE, span, pipeline, span), owned=True)
        self.pipeline = pipeline


@dataclass(frozen=True, slots=True)
class _Root:
    framework: str
    kind: str
    namer: RootNamer


def _start(tracer: Tracer, root: _Root, instance: Any, args: Any, kwargs: Any) -> _RootCall | None:
    if current_pipeline() is not None or current_stage() is not None:
        return None
    try:
        info = root.namer(instance, args, kwargs)
        attributes: dict[str, AttributeValue] = {
            k: v for k, v in info.attributes.items() if v is not None
        }
        attributes.update(
            {
                attr.STAGE: attr.STAGE_PIPELINE,
                attr.GEN_AI_OPERATION_NAME: attr.OP_INVOKE_WORKFLOW,
                attr.PIPELINE: info.name,
                attr.GEN_AI_WORKFLOW_NAME: info.name,
                attr.PIPELINE_FRAMEWORK: root.framework,
            }
        )
        span = tracer.start_span(
            attr.span_name(attr.STAGE_PIPELINE, info.name),
            kind=SpanKind.INTERNAL,
            attributes=attributes,
        )
        return _RootCall(span, info.name)
    except Exception as exc:
        log_internal_error(f"{root.kind}.root", exc)
        return None


def root_patches(
    module: str,
    owner: str,
    methods: Mapping[str, Mode],
    *,
    framework: str,
    kind: str,
    namer: RootNamer,
) -> tuple[Patch, ...]:
    """Patches that open a pipeline root around ``module.owner.method`` when none is open."""
    root = _Root(framework, kind, namer)

    def patch(method: str, mode: Mode) -> Patch:
        def factory(tracer: Tracer) -> Callable[..., Any]:
            if mode == "async":
                return _async_wrapper(tracer, root)
            return _sync_wrapper(tracer, root, mode)

        return Patch(
            module, f"{owner}.{method}", kind, _unused_read, _unused_respond, wrapper=factory
        )

    return tuple(patch(method, mode) for method, mode in methods.items())


def _unused_read(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    raise NotImplementedError("root patches use their own wrapper")


def _unused_respond(call: StageCall, result: Any) -> Any:
    raise NotImplementedError("root patches use their own wrapper")


def _sync_wrapper(tracer: Tracer, root: _Root, mode: Mode) -> Callable[..., Any]:
    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        call = _start(tracer, root, instance, args, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        with call.activate():
            try:
                result = wrapped(*args, **kwargs)
            except BaseException as error:
                call.end(error)
                raise
        if mode == "sync":
            call.end()
            return result
        # A stream runs lazily: each step runs inside the run; the root ends with it.
        proxy = AsyncStreamProxy if mode == "astream" else SyncStreamProxy
        try:
            return proxy(result, Ending(call, f"{root.kind}.stream"), activate=True)
        except Exception as exc:
            log_internal_error(f"{root.kind}.root", exc)
            call.end()
            return result

    return wrapper


def _async_wrapper(tracer: Tracer, root: _Root) -> Callable[..., Any]:
    async def wrapper(
        wrapped: Callable[..., Awaitable[Any]],
        instance: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        call = _start(tracer, root, instance, args, kwargs)
        if call is None:
            return await wrapped(*args, **kwargs)
        with call.activate():
            try:
                result = await wrapped(*args, **kwargs)
            except BaseException as error:
                call.end(error)
                raise
        call.end()
        return result

    return wrapper
