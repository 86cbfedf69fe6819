"""Anthropic client: messages (sync, async, streaming) -> generation spans.

Wrapped public methods: ``messages.create`` (also with ``stream=True``),
``messages.parse`` and ``messages.stream`` on ``Anthropic`` and ``AsyncAnthropic``,
and the same methods of ``beta.messages``.

Token counts follow the GenAI semantic conventions: ``gen_ai.usage.input_tokens``
is *all* input tokens (Anthropic's ``input_tokens`` plus the cache reads and cache
writes it reports separately); the cache shares are also recorded on their own.
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
    as_float,
    as_int,
    as_str,
    field_of,
    given,
)
from llmspans.instrumentation._genai import (
    StreamedText,
    Usage,
    managed_stream,
    record_finish_reasons,
    record_usage,
    stream_proxy,
    unique,
    usage_with_cache,
)
from llmspans.instrumentation._patching import Patch
from llmspans.instrumentation._raw import raw_aware
from llmspans.instrumentation._semconv import (
    FirstChunk,
    output_type,
    sdk_server_attributes,
    stop_sequences,
)
from llmspans.instrumentation._streams import Ending
from llmspans.instrumentation._versions import VersionedInstrumentor

PROVIDER = "anthropic"
_MESSAGES = "anthropic.resources.messages.messages"
_BETA_MESSAGES = "anthropic.resources.beta.messages.messages"  # client.beta.messages
_KIND = "anthropic.messages"


def _request(
    instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any], *, stream: bool = False
) -> Request:
    model = as_str(given(kwargs, "model"))
    system = given(kwargs, "system")
    history = given(kwargs, "messages")
    return Request(
        stage=attr.STAGE_GENERATION,
        name=attr.span_name(attr.STAGE_GENERATION, model),
        kind=SpanKind.CLIENT,
        attributes={
            attr.GEN_AI_OPERATION_NAME: attr.OP_CHAT,
            attr.GEN_AI_PROVIDER_NAME: PROVIDER,
            attr.GEN_AI_REQUEST_MODEL: model,
            attr.GEN_AI_REQUEST_MAX_TOKENS: as_int(given(kwargs, "max_tokens")),
            attr.GEN_AI_REQUEST_TEMPERATURE: as_float(given(kwargs, "temperature")),
            attr.GEN_AI_REQUEST_TOP_P: as_float(given(kwargs, "top_p")),
            attr.GEN_AI_REQUEST_TOP_K: as_int(given(kwargs, "top_k")),
            attr.GEN_AI_REQUEST_STOP_SEQUENCES: stop_sequences(given(kwargs, "stop_sequences")),
            attr.GEN_AI_OUTPUT_TYPE: output_type(
                given(kwargs, "output_format") or field_of(given(kwargs, "output_config"), "format")
            ),
            attr.GEN_AI_REQUEST_STREAM: stream or given(kwargs, "stream") is True,
            attr.GEN_AI_CONVERSATION_ID: _conversation_id(instance),
            **sdk_server_attributes(instance),
        },
        content={
            attr.GEN_AI_SYSTEM_INSTRUCTIONS: Deferred(lambda: messages.system_instructions(system)),
            attr.GEN_AI_INPUT_MESSAGES: Deferred(lambda: messages.anthropic_input(history)),
        },
    )


def _stream_request(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request:
    return _request(instance, args, kwargs, stream=True)


def _conversation_id(resource: Any) -> str | None:
    """The ``conversation_id`` of the client's ``open_telemetry`` option (anthropic >= 2)."""
    options = getattr(getattr(resource, "_client", None), "open_telemetry", None)
    return as_str(options.get("conversation_id")) if isinstance(options, dict) else None


def _usage(usage: Any) -> Usage:
    return usage_with_cache(
        as_int(field_of(usage, "input_tokens")),
        as_int(field_of(usage, "output_tokens")),
        as_int(field_of(usage, "cache_read_input_tokens")),
        as_int(field_of(usage, "cache_creation_input_tokens")),
    )


def _citation_id(citation: Any) -> str | None:
    return (
        as_str(field_of(citation, "url"))
        or as_str(field_of(citation, "source"))
        or as_str(field_of(citation, "document_title"))
    )


def _record_message(call: StageCall, message: Any) -> None:
    model = as_str(field_of(message, "model"))
    call.set(attr.GEN_AI_RESPONSE_MODEL, model)
    call.set(attr.GEN_AI_RESPONSE_ID, as_str(field_of(message, "id")))
    stop_reason = as_str(field_of(message, "stop_reason"))
    if stop_reason:
        record_finish_reasons(call, [stop_reason])
        if stop_reason == "refusal":
            call.set(attr.GENERATION_REFUSED, True)
    blocks = field_of(message, "content") or ()
    cited = [
        cid
        for block in blocks
        for citation in (field_of(block, "citations") or ())
        if (cid := _citation_id(citation)) is not None
    ]
    call.set(attr.GENERATION_CITATIONS, unique(cited))
    usage = field_of(message, "usage")
    if usage is not None:
        record_usage(call, model, _usage(usage))
    if blocks:
        call.set_content(
            {
                attr.GEN_AI_OUTPUT_MESSAGES: Deferred(
                    lambda: messages.anthropic_output(blocks, stop_reason)
                )
            }
        )


class _Events:
    """Folds raw message-stream events into the call as they arrive."""

    def __init__(self, call: StageCall) -> None:
        self.model: str | None = None
        self.usage: dict[str, int] = {}
        self.text = StreamedText()
        self.stop_reason: str | None = None
        self.first = FirstChunk(call)

    def observe(self, call: StageCall, event: Any) -> None:
        self.first.seen(call)
        kind = field_of(event, "type")
        if kind == "message_start":
            message = field_of(event, "message")
            self.model = as_str(field_of(message, "model"))
            call.set(attr.GEN_AI_RESPONSE_MODEL, self.model)
            call.set(attr.GEN_AI_RESPONSE_ID, as_str(field_of(message, "id")))
            self._fold(call, field_of(message, "usage"))
        elif kind == "message_delta":
            stop_reason = as_str(field_of(field_of(event, "delta"), "stop_reason"))
            if stop_reason:
                self.stop_reason = stop_reason
                record_finish_reasons(call, [stop_reason])
                if stop_reason == "refusal":
                    call.set(attr.GENERATION_REFUSED, True)
            self._fold(call, field_of(event, "usage"))
        elif kind == "content_block_delta":
            self.text.add(as_str(field_of(field_of(event, "delta"), "text")))

    def _fold(self, call: StageCall, usage: Any) -> None:
        """Usage counts in later events are cumulative: the latest value of each wins."""
        for key in (
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        ):
            value = as_int(field_of(usage, key))
            if value is not None:
                self.usage[key] = value
        record_usage(call, self.model, _usage(self.usage))

    def on_end(self, call: StageCall, subject: Any) -> None:
        self.text.record(call, self.stop_reason)


def _record_snapshot(call: StageCall, stream: Any) -> None:
    """At the end of a ``messages.stream()`` block: the message as accumulated so far."""
    if stream is None:
        return
    try:
        snapshot = stream.current_message_snapshot
    except AssertionError:  # no message_start arrived: nothing to record
        return
    _record_message(call, snapshot)


class AnthropicInstrumentor(VersionedInstrumentor):
    """Traces the ``anthropic`` client (``Anthropic`` and ``AsyncAnthropic``)."""

    library: ClassVar[str] = "anthropic"
    requirement: ClassVar[str] = "anthropic >= 0.34"
    tested: ClassVar[str] = "< 3"
    records_client_metrics: ClassVar[bool] = True

    def patches(self, tracer: Tracer) -> Sequence[Patch]:

        def read_message(call: StageCall, value: Any) -> Any:
            proxy = stream_proxy(value, "anthropic")
            if proxy is not None:
                events = _Events(call)
                return proxy(value, Ending(call, _KIND, events.on_end), events.observe)
            _record_message(call, value)
            return value

        # with_raw_response calls reach the same methods and return the HTTP response.
        result = raw_aware(_KIND, read_message)
        sync_manager = managed_stream(_KIND, _record_snapshot, is_async=False)
        async_manager = managed_stream(_KIND, _record_snapshot, is_async=True)

        return tuple(
            patch
            for module in (_MESSAGES, _BETA_MESSAGES)
            for patch in (
                Patch(module, "Messages.create", _KIND, _request, result),
                Patch(module, "AsyncMessages.create", _KIND, _request, result, is_async=True),
                Patch(module, "Messages.parse", _KIND, _request, result),
                Patch(module, "AsyncMessages.parse", _KIND, _request, result, is_async=True),
                Patch(module, "Messages.stream", _KIND, _stream_request, sync_manager),
                Patch(module, "AsyncMessages.stream", _KIND, _stream_request, async_manager),
            )
        )
