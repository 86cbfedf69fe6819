"""OpenAI client: chat completions, the Responses API, completions, embeddings -> spans.

Wrapped public methods (sync and async clients alike):

- ``chat.completions.create`` / ``parse`` / ``stream`` and ``responses.create`` /
  ``parse`` / ``stream``: a ``generation`` stage span ``chat {model}`` (or the
  enclosing generation stage, enriched);
- legacy ``completions.create``: the same, as ``text_completion {model}``;
- ``embeddings.create``: a plain ``embeddings {model}`` span (no stage: an
  embedding is part of whatever stage calls it), with tokens and cost.

``create(stream=True)`` returns a proxied stream whose span ends once the stream
is exhausted, closed, left (``with``) or garbage-collected; usage comes from the
final chunk when the request asked for it (``stream_options={"include_usage":
True}`` for chat completions; the user's request is never changed). The
``stream()`` helpers return a proxied manager: the span covers the ``with`` block.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from opentelemetry.trace import SpanKind, Tracer

from llmspans import _attributes as attr
from llmspans.instrumentation import _messages as messages
from llmspans.instrumentation._base import (
    Deferred,
    Request,
    StageCall,
    as_int,
    as_str,
    field_of,
    given,
)
from llmspans.instrumentation._genai import (
    StreamedText,
    Usage,
    embeddings_request,
    managed_stream,
    record_embeddings_response,
    record_finish_reasons,
    record_usage,
    stream_proxy,
    unique,
)
from llmspans.instrumentation._patching import Patch, sync_and_async
from llmspans.instrumentation._raw import raw_aware
from llmspans.instrumentation._semconv import (
    FirstChunk,
    output_type,
    sampling_parameters,
    sdk_server_attributes,
    stop_sequences,
)
from llmspans.instrumentation._streams import Ending
from llmspans.instrumentation._versions import VersionedInstrumentor

PROVIDER = "openai"
_CHAT = "openai.resources.chat.completions.completions"
_RESPONSES = "openai.resources.responses.responses"
_EMBEDDINGS = "openai.resources.embeddings"
_COMPLETIONS = "openai.resources.completions"


def _chat_content(kwargs: dict[str, Any]) -> dict[str, object]:
    return {
        attr.GEN_AI_INPUT_MESSAGES: Deferred(
            lambda: messages.openai_chat_input(given(kwargs, "messages"))
        )
    }


def _completion_content(kwargs: dict[str, Any]) -> dict[str, object]:
    return {
        attr.GEN_AI_INPUT_MESSAGES: Deferred(
            lambda: messages.prompt_messages(given(kwargs, "prompt"))
        )
    }


def _responses_content(kwargs: dict[str, Any]) -> dict[str, object]:
    return {
        attr.GEN_AI_SYSTEM_INSTRUCTIONS: Deferred(
            lambda: messages.system_instructions(given(kwargs, "instructions"))
        ),
        attr.GEN_AI_INPUT_MESSAGES: Deferred(
            lambda: messages.responses_input(given(kwargs, "input"))
        ),
    }


def _generation_request(
    instance: Any,
    kwargs: dict[str, Any],
    *,
    content: dict[str, object],
    operation: str = attr.OP_CHAT,
    stream: bool = False,
) -> Request:
    model = as_str(given(kwargs, "model"))
    max_tokens = (
        given(kwargs, "max_completion_tokens")
        or given(kwargs, "max_output_tokens")
        or given(kwargs, "max_tokens")
    )
    response_format = given(kwargs, "response_format")
    if response_format is None:
        response_format = field_of(given(kwargs, "text"), "format")
    conversation = given(kwargs, "conversation")
    return Request(
        stage=attr.STAGE_GENERATION,
        name=f"{operation} {model}" if model else operation,
        kind=SpanKind.CLIENT,
        attributes={
            attr.GEN_AI_OPERATION_NAME: operation,
            attr.GEN_AI_PROVIDER_NAME: PROVIDER,
            attr.GEN_AI_REQUEST_MODEL: model,
            attr.GEN_AI_REQUEST_MAX_TOKENS: as_int(max_tokens),
            **sampling_parameters(kwargs),
            attr.GEN_AI_REQUEST_STOP_SEQUENCES: stop_sequences(given(kwargs, "stop")),
            attr.GEN_AI_OUTPUT_TYPE: output_type(response_format),
            attr.GEN_AI_REQUEST_STREAM: stream or given(kwargs, "stream") is True,
            attr.GEN_AI_CONVERSATION_ID: as_str(conversation)
            or as_str(field_of(conversation, "id")),
            **sdk_server_attributes(instance),
        },
        content=content,
    )


def _chat_request(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request:
    return _generation_request(instance, kwargs, content=_chat_content(kwargs))


def _chat_stream_request(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request:
    return _generation_request(instance, kwargs, content=_chat_content(kwargs), stream=True)


def _completions_request(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request:
    return _generation_request(
        instance, kwargs, content=_completion_content(kwargs), operation=attr.OP_TEXT_COMPLETION
    )


def _responses_request(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request:
    return _generation_request(instance, kwargs, content=_responses_content(kwargs))


def _responses_stream_request(
    instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Request:
    return _generation_request(instance, kwargs, content=_responses_content(kwargs), stream=True)


def _embeddings_request(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request:
    encoding = as_str(given(kwargs, "encoding_format"))
    return embeddings_request(
        PROVIDER,
        as_str(given(kwargs, "model")),
        {
            attr.GEN_AI_REQUEST_ENCODING_FORMATS: [encoding] if encoding else None,
            **sdk_server_attributes(instance),
        },
    )


# --- chat completions ------------------------------------------------------------


def _chat_usage(usage: Any) -> Usage:
    details = field_of(usage, "prompt_tokens_details")
    return Usage(
        input_tokens=as_int(field_of(usage, "prompt_tokens")),
        output_tokens=as_int(field_of(usage, "completion_tokens")),
        cache_read_input_tokens=as_int(field_of(details, "cached_tokens")),
    )


def _citations(annotations: Any) -> list[str]:
    """Cited sources: URLs of ``url_citation`` and file ids of ``file_citation`` annotations."""
    cited: list[str] = []
    for annotation in annotations or ():
        url = as_str(field_of(field_of(annotation, "url_citation"), "url")) or as_str(
            field_of(annotation, "url")
        )
        file_id = as_str(field_of(annotation, "file_id"))
        if url or file_id:
            cited.append(url or file_id or "")
    return cited


def record_chat_completion(call: StageCall, completion: Any) -> None:
    model = as_str(field_of(completion, "model"))
    call.set(attr.GEN_AI_RESPONSE_MODEL, model)
    call.set(attr.GEN_AI_RESPONSE_ID, as_str(field_of(completion, "id")))
    choices = field_of(completion, "choices") or ()
    record_finish_reasons(call, (field_of(choice, "finish_reason") for choice in choices))
    replies = [field_of(choice, "message") for choice in choices]
    if any(as_str(field_of(reply, "refusal")) for reply in replies):
        call.set(attr.GENERATION_REFUSED, True)
    citations: list[str] = []
    for reply in replies:
        citations.extend(_citations(field_of(reply, "annotations")))
    call.set(attr.GENERATION_CITATIONS, unique(citations))
    usage = field_of(completion, "usage")
    if usage is not None:
        record_usage(call, model, _chat_usage(usage))
    call.set_content(
        {attr.GEN_AI_OUTPUT_MESSAGES: Deferred(lambda: messages.openai_chat_output(choices))}
    )


class ChatChunks:
    """Folds chat-completion chunks into the call, as they arrive."""

    def __init__(self, call: StageCall) -> None:
        self.reasons: dict[int, str] = {}
        self.text = StreamedText()
        self.citations: list[str] = []
        self.first = FirstChunk(call)

    def observe(self, call: StageCall, chunk: Any) -> None:
        self.first.seen(call)
        model = as_str(field_of(chunk, "model"))
        if model:
            call.set(attr.GEN_AI_RESPONSE_MODEL, model)
        call.set(attr.GEN_AI_RESPONSE_ID, as_str(field_of(chunk, "id")))
        for choice in field_of(chunk, "choices") or ():
            reason = as_str(field_of(choice, "finish_reason"))
            index = as_int(field_of(choice, "index")) or 0
            if reason:
                self.reasons[index] = reason
                record_finish_reasons(call, (self.reasons[i] for i in sorted(self.reasons)))
            delta = field_of(choice, "delta")
            if as_str(field_of(delta, "refusal")):
                call.set(attr.GENERATION_REFUSED, True)
            cited = _citations(field_of(delta, "annotations"))
            if cited:
                self.citations.extend(cited)
                call.set(attr.GENERATION_CITATIONS, unique(self.citations))
            if index == 0:  # the answer recorded is the first choice's
                self.text.add(
                    as_str(field_of(delta, "content")) or as_str(field_of(choice, "text"))
                )
        usage = field_of(chunk, "usage")
        if usage is not None:
            record_usage(call, model, _chat_usage(usage))

    def on_end(self, call: StageCall, subject: Any) -> None:
        self.text.record(call, self.reasons.get(0))


# --- Responses API -----------------------------------------------------------------


def _record_response(call: StageCall, response: Any) -> None:
    model = as_str(field_of(response, "model"))
    call.set(attr.GEN_AI_RESPONSE_MODEL, model)
    call.set(attr.GEN_AI_RESPONSE_ID, as_str(field_of(response, "id")))
    status = as_str(field_of(response, "status"))
    reason = as_str(field_of(field_of(response, "incomplete_details"), "reason"))
    if status and status not in {"in_progress", "queued"}:
        record_finish_reasons(call, [reason or status])
    citations: list[str] = []
    for item in field_of(response, "output") or ():
        for part in field_of(item, "content") or ():
            kind = field_of(part, "type")
            if kind == "refusal":
                call.set(attr.GENERATION_REFUSED, True)
            elif kind == "output_text":
                citations.extend(_citations(field_of(part, "annotations")))
    call.set(attr.GENERATION_CITATIONS, unique(citations))
    usage = field_of(response, "usage")
    if usage is not None:
        details = field_of(usage, "input_tokens_details")
        record_usage(
            call,
            model,
            Usage(
                input_tokens=as_int(field_of(usage, "input_tokens")),
                output_tokens=as_int(field_of(usage, "output_tokens")),
                cache_read_input_tokens=as_int(field_of(details, "cached_tokens")),
            ),
        )
    if field_of(response, "output"):
        finish = reason or status
        call.set_content(
            {
                attr.GEN_AI_OUTPUT_MESSAGES: Deferred(
                    lambda: messages.responses_output(response, finish)
                )
            }
        )


class _ResponseEvents:
    """Folds Responses API stream events into the call, as they arrive."""

    def __init__(self, call: StageCall) -> None:
        self.first = FirstChunk(call)

    def observe(self, call: StageCall, event: Any) -> None:
        self.first.seen(call)
        _observe_response_event(call, event)


def _observe_response_event(call: StageCall, event: Any) -> None:
    kind = as_str(field_of(event, "type")) or ""
    if kind.startswith("response.refusal"):
        call.set(attr.GENERATION_REFUSED, True)
    response = field_of(event, "response")
    if response is not None and kind.startswith("response."):
        _record_response(call, response)


class OpenAIInstrumentor(VersionedInstrumentor):
    """Traces the ``openai`` client (``OpenAI`` and ``AsyncOpenAI``; Azure clients share them)."""

    library: ClassVar[str] = "openai"
    requirement: ClassVar[str] = "openai >= 1.40"
    tested: ClassVar[str] = "< 4"
    records_client_metrics: ClassVar[bool] = True

    def patches(self, tracer: Tracer) -> Sequence[Patch]:

        def read_chat(call: StageCall, result: Any) -> Any:
            proxy = stream_proxy(result, "openai")
            if proxy is not None:
                chunks = ChatChunks(call)
                return proxy(result, Ending(call, "openai.chat", chunks.on_end), chunks.observe)
            record_chat_completion(call, result)
            return result

        def read_responses(call: StageCall, result: Any) -> Any:
            proxy = stream_proxy(result, "openai")
            if proxy is not None:
                events = _ResponseEvents(call)
                return proxy(result, Ending(call, "openai.responses"), events.observe)
            _record_response(call, result)
            return result

        chat, responses = "openai.chat", "openai.responses"
        legacy = "openai.completions"
        # with_raw_response calls reach the same methods and return the HTTP response.
        chat_result = raw_aware(chat, read_chat)
        responses_result = raw_aware(responses, read_responses)
        embeddings_result = raw_aware("openai.embeddings", record_embeddings_response)
        completions = ("Completions", "AsyncCompletions")
        return (
            *sync_and_async(
                _COMPLETIONS,
                completions,
                "create",
                kind=legacy,
                read=_completions_request,
                respond=chat_result,
            ),
            *(
                patch
                for method in ("create", "parse")
                for patch in sync_and_async(
                    _CHAT, completions, method, kind=chat, read=_chat_request, respond=chat_result
                )
            ),
            *sync_and_async(
                _CHAT,
                completions,
                "stream",
                kind=chat,
                read=_chat_stream_request,
                respond=managed_stream(chat, is_async=False),
                async_respond=managed_stream(chat, is_async=True),
                coroutine=False,
            ),
            *(
                patch
                for method in ("create", "parse")
                for patch in sync_and_async(
                    _RESPONSES,
                    ("Responses", "AsyncResponses"),
                    method,
                    kind=responses,
                    read=_responses_request,
                    respond=responses_result,
                )
            ),
            *sync_and_async(
                _RESPONSES,
                ("Responses", "AsyncResponses"),
                "stream",
                kind=responses,
                read=_responses_stream_request,
                respond=managed_stream(responses, is_async=False),
                async_respond=managed_stream(responses, is_async=True),
                coroutine=False,
            ),
            *sync_and_async(
                _EMBEDDINGS,
                ("Embeddings", "AsyncEmbeddings"),
                "create",
                kind="openai.embeddings",
                read=_embeddings_request,
                respond=embeddings_result,
            ),
        )
