"""LangChain (``langchain-core``): retrievers, chat models and tools -> stage spans.

Wrapped public methods of the base classes every integration inherits from, so
any retriever, chat model or tool is covered without knowing its package:

- ``BaseRetriever.invoke`` / ``ainvoke`` -> ``retrieval {name}`` with the ids (and
  scores, where the documents carry them) of the returned ``Document`` objects;
- ``BaseChatModel.generate`` / ``agenerate`` (behind ``invoke``, ``ainvoke``,
  ``batch``) and ``stream`` / ``astream`` -> ``chat {model}`` with tokens
  (``usage_metadata``), finish reasons and cost;
- ``BaseTool.run`` / ``arun`` (behind ``invoke`` / ``ainvoke``) -> ``execute_tool {name}``.

A chain (``RunnableSequence``: ``invoke`` / ``ainvoke`` / ``stream`` / ``astream``)
or a LangGraph graph (``Pregel``, what ``StateGraph.compile()`` returns; same
methods) invoked outside any decorated ``@llmspans.pipeline`` opens a pipeline root
``invoke_workflow {run_name or chain name}``, so the retriever, model and tool
spans of one invocation form one attributed run; a ``thread_id``,
``conversation_id`` or ``session_id`` in the config's ``configurable`` or
``metadata`` becomes ``gen_ai.conversation.id`` on it.

Why wrapping rather than a callback handler: a wrapped call runs inside the
caller's OpenTelemetry context, so the span it starts is the parent of what the
integration does underneath, and the provider client's own instrumentor (a
``ChatOpenAI`` calling ``openai``) sees the active generation stage and enriches
that span instead of adding a second one. Callback handlers cannot make their span
current for the code between ``on_*_start`` and ``on_*_end``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from opentelemetry.trace import SpanKind, Tracer

from llmspans import _attributes as attr
from llmspans.instrumentation._base import (
    Deferred,
    Request,
    StageCall,
    as_float,
    as_int,
    as_str,
    field_of,
)
from llmspans.instrumentation._genai import Usage, record_finish_reasons, record_usage
from llmspans.instrumentation._messages import langchain_input, langchain_output
from llmspans.instrumentation._patching import Patch
from llmspans.instrumentation._retrieval import (
    record_retrieved,
    retrieval_request,
)
from llmspans.instrumentation._roots import RootInfo, root_patches
from llmspans.instrumentation._semconv import stop_sequences
from llmspans.instrumentation._streams import AsyncStreamProxy, Ending, SyncStreamProxy
from llmspans.instrumentation._versions import VersionedInstrumentor

_RETRIEVERS = "langchain_core.retrievers"
_CHAT_MODELS = "langchain_core.language_models.chat_models"
_TOOLS = "langchain_core.tools.base"
_RUNNABLES = "langchain_core.runnables.base"
_LANGGRAPH = "langgraph.pregel.main"  # compiled graphs (StateGraph.compile()) are Pregel


# --- retrievers ------------------------------------------------------------------


def _retriever_name(retriever: Any) -> str:
    name = as_str(getattr(retriever, "name", None))
    if name:
        return name
    vectorstore = getattr(retriever, "vectorstore", None)
    if vectorstore is not None:
        return type(vectorstore).__name__
    return type(retriever).__name__


def _retriever_request(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request:
    search_kwargs = getattr(instance, "search_kwargs", None)
    top_k = as_int(field_of(search_kwargs, "k")) if isinstance(search_kwargs, dict) else None
    if top_k is None:
        top_k = as_int(getattr(instance, "k", None))
    query = args[0] if args else kwargs.get("input")
    return retrieval_request(
        _retriever_name(instance), kind=SpanKind.INTERNAL, top_k=top_k, query=query
    )


# --- chat models -----------------------------------------------------------------


def _model_name(model: Any) -> str | None:
    for name in ("model_name", "model", "model_id"):
        value = as_str(getattr(model, name, None))
        if value:
            return value
    return None


def _ls_params(model: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """LangChain's own description of the call (``ls_provider``, ``ls_temperature``, ...)."""
    params = getattr(model, "_get_ls_params", None)
    if not callable(params):
        return {}
    try:
        found = params(stop=kwargs.get("stop"))
    except Exception:  # an integration's parameter hook failing must not lose the span
        return {}
    return found if isinstance(found, dict) else {}


def _chat_request(
    instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any], *, stream: bool = False
) -> Request:
    model = _model_name(instance)
    messages = args[0] if args else kwargs.get("messages", kwargs.get("input"))
    params = _ls_params(instance, kwargs)
    return Request(
        stage=attr.STAGE_GENERATION,
        name=attr.span_name(attr.STAGE_GENERATION, model),
        kind=SpanKind.CLIENT,
        attributes={
            attr.GEN_AI_OPERATION_NAME: attr.OP_CHAT,
            attr.GEN_AI_PROVIDER_NAME: as_str(params.get("ls_provider")),
            attr.GEN_AI_REQUEST_MODEL: model,
            attr.GEN_AI_REQUEST_TEMPERATURE: as_float(params.get("ls_temperature")),
            attr.GEN_AI_REQUEST_MAX_TOKENS: as_int(params.get("ls_max_tokens")),
            attr.GEN_AI_REQUEST_STOP_SEQUENCES: stop_sequences(params.get("ls_stop")),
            attr.GEN_AI_REQUEST_STREAM: stream,
        },
        content={attr.GEN_AI_INPUT_MESSAGES: Deferred(lambda: langchain_input(messages))},
    )


def _chat_stream_request(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request:
    return _chat_request(instance, args, kwargs, stream=True)


def _finish_reason(metadata: Any) -> str | None:
    """The finish reason of a message (``finish_reason``, ``stop_reason``)."""
    return as_str(field_of(metadata, "finish_reason")) or as_str(field_of(metadata, "stop_reason"))


class _Tally:
    """Token counts and finish reasons summed over the messages (or chunks) of one call."""

    def __init__(self, request_model: str | None) -> None:
        self.model = request_model
        self.input = self.output = self.cache_read = self.cache_creation = 0
        self.seen_usage = False
        self.reasons: list[str] = []

    def add(self, message: Any) -> None:
        metadata = field_of(message, "response_metadata") or {}
        model = as_str(field_of(metadata, "model_name")) or as_str(field_of(metadata, "model"))
        if model:
            self.model = model
        reason = _finish_reason(metadata)
        if reason:
            self.reasons.append(reason)
        usage = field_of(message, "usage_metadata")
        if usage:
            self.seen_usage = True
            details = field_of(usage, "input_token_details") or {}
            self.input += as_int(field_of(usage, "input_tokens")) or 0
            self.output += as_int(field_of(usage, "output_tokens")) or 0
            self.cache_read += as_int(field_of(details, "cache_read")) or 0
            self.cache_creation += as_int(field_of(details, "cache_creation")) or 0

    def record(self, call: StageCall) -> None:
        if self.model:
            call.set(attr.GEN_AI_RESPONSE_MODEL, self.model)
        record_finish_reasons(call, self.reasons)
        if self.seen_usage:
            record_usage(
                call,
                self.model,
                Usage(
                    input_tokens=self.input,
                    output_tokens=self.output,
                    cache_read_input_tokens=self.cache_read or None,
                    cache_creation_input_tokens=self.cache_creation or None,
                ),
            )


def _messages_of(result: Any) -> Iterable[Any]:
    for generations in field_of(result, "generations") or ():
        for generation in generations or ():
            message = field_of(generation, "message")
            if message is not None:
                yield message


def _generate_result(call: StageCall, result: Any) -> Any:
    tally = _Tally(_model_name(call.instance))
    messages = list(_messages_of(result))
    for message in messages:
        tally.add(message)
    tally.record(call)
    if messages:
        reasons = [_finish_reason(field_of(message, "response_metadata")) for message in messages]
        call.set_content(
            {attr.GEN_AI_OUTPUT_MESSAGES: Deferred(lambda: langchain_output(messages, reasons))}
        )
    return result


class _ChunkTally(_Tally):
    def observe(self, call: StageCall, chunk: Any) -> None:
        self.add(chunk)
        self.record(call)


def _stream_result(call: StageCall, generator: Any) -> Any:
    tally = _ChunkTally(_model_name(call.instance))
    return SyncStreamProxy(
        generator, Ending(call, "langchain.stream"), tally.observe, activate=True
    )


def _astream_result(call: StageCall, generator: Any) -> Any:
    tally = _ChunkTally(_model_name(call.instance))
    return AsyncStreamProxy(
        generator, Ending(call, "langchain.stream"), tally.observe, activate=True
    )


# --- tools -----------------------------------------------------------------------


def _tool_request(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request:
    name = as_str(getattr(instance, "name", None)) or type(instance).__name__
    tool_input = args[0] if args else kwargs.get("tool_input")
    return Request(
        stage=attr.STAGE_ACTION,
        name=attr.span_name(attr.STAGE_ACTION, name),
        kind=SpanKind.INTERNAL,
        attributes={
            attr.GEN_AI_OPERATION_NAME: attr.OP_EXECUTE_TOOL,
            attr.GEN_AI_TOOL_NAME: name,
            attr.GEN_AI_TOOL_CALL_ID: as_str(kwargs.get("tool_call_id")),
        },
        content={attr.GEN_AI_TOOL_CALL_ARGUMENTS: tool_input},
    )


def _tool_result(call: StageCall, result: Any) -> Any:
    if call.span.is_recording():
        content = field_of(result, "content") if type(result).__name__ == "ToolMessage" else result
        call.set_content({attr.GEN_AI_TOOL_CALL_RESULT: content})
    return result


# --- top-level chains --------------------------------------------------------------

_CONVERSATION_KEYS = ("thread_id", "conversation_id", "session_id")


def _conversation_id(config: Any) -> str | None:
    """``thread_id`` / ``conversation_id`` / ``session_id`` of the run's config, if any."""
    for section in ("configurable", "metadata"):
        values = field_of(config, section)
        if not isinstance(values, Mapping):
            continue
        for key in _CONVERSATION_KEYS:
            value = values.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
                return str(value)
    return None


def _chain_root(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> RootInfo:
    config = args[1] if len(args) > 1 else kwargs.get("config")
    if not isinstance(config, Mapping):
        config = None
    name = (
        as_str(field_of(config, "run_name"))
        or as_str(getattr(instance, "name", None))
        or type(instance).__name__
    )
    return RootInfo(name, {attr.GEN_AI_CONVERSATION_ID: _conversation_id(config)})


class LangChainInstrumentor(VersionedInstrumentor):
    """Traces LangChain retrievers, chat models and tools (any integration package)."""

    library: ClassVar[str] = "langchain_core"
    requirement: ClassVar[str] = "langchain-core >= 0.3"
    tested: ClassVar[str] = "< 2"

    def patches(self, tracer: Tracer) -> Sequence[Patch]:
        return (
            *root_patches(
                _RUNNABLES,
                "RunnableSequence",
                {"invoke": "sync", "ainvoke": "async", "stream": "stream", "astream": "astream"},
                framework="langchain",
                kind="langchain.chain",
                namer=_chain_root,
            ),
            *root_patches(
                _LANGGRAPH,
                "Pregel",
                {"invoke": "sync", "ainvoke": "async", "stream": "stream", "astream": "astream"},
                framework="langgraph",
                kind="langgraph.graph",
                namer=_chain_root,
            ),
            Patch(
                _RETRIEVERS,
                "BaseRetriever.invoke",
                "langchain.retriever",
                _retriever_request,
                record_retrieved,
            ),
            Patch(
                _RETRIEVERS,
                "BaseRetriever.ainvoke",
                "langchain.retriever",
                _retriever_request,
                record_retrieved,
                is_async=True,
            ),
            Patch(
                _CHAT_MODELS,
                "BaseChatModel.generate",
                "langchain.chat",
                _chat_request,
                _generate_result,
            ),
            Patch(
                _CHAT_MODELS,
                "BaseChatModel.agenerate",
                "langchain.chat",
                _chat_request,
                _generate_result,
                is_async=True,
            ),
            Patch(
                _CHAT_MODELS,
                "BaseChatModel.stream",
                "langchain.chat",
                _chat_stream_request,
                _stream_result,
            ),
            Patch(
                _CHAT_MODELS,
                "BaseChatModel.astream",
                "langchain.chat",
                _chat_stream_request,
                _astream_result,
            ),
            Patch(_TOOLS, "BaseTool.run", "langchain.tool", _tool_request, _tool_result),
            Patch(
                _TOOLS,
                "BaseTool.arun",
                "langchain.tool",
                _tool_request,
                _tool_result,
                is_async=True,
            ),
        )
