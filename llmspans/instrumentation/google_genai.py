"""Google Gen AI SDK (``google-genai``): generate_content -> generation spans.

Wrapped public methods of ``client.models`` and ``client.aio.models``
(``Models`` / ``AsyncModels``): ``generate_content`` and
``generate_content_stream`` (a ``generation`` stage span ``chat {model}``; the
stream is proxied and the span ends with it), and ``embed_content`` (a plain
``embeddings {model}`` span).

``gen_ai.provider.name`` is ``gcp.vertex_ai`` for a Vertex AI client and
``gcp.gemini`` for the Gemini Developer API. Tokens follow the conventions:
``prompt_token_count`` (cached content included) is the input,
``cached_content_token_count`` the cache reads, and the output is
``candidates_token_count`` plus ``thoughts_token_count`` (thinking is billed as
output). Finish reasons are the candidates' ``finish_reason`` in lower case.
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
)
from llmspans.instrumentation._genai import (
    StreamedText,
    Usage,
    embeddings_request,
    record_finish_reasons,
    record_usage,
    request_model,
)
from llmspans.instrumentation._patching import Patch, sync_and_async
from llmspans.instrumentation._semconv import (
    FirstChunk,
    sampling_parameters,
    server_attributes,
    stop_sequences,
)
from llmspans.instrumentation._streams import AsyncStreamProxy, Ending, SyncStreamProxy
from llmspans.instrumentation._versions import VersionedInstrumentor

_MODELS = "google.genai.models"
_KIND = "google_genai.generate"


def _provider(models: Any) -> str:
    """Vertex AI or the Gemini Developer API, as the client was set up (a ``None`` is Gemini)."""
    api_client = getattr(models, "_api_client", None)
    if api_client is None:
        return attr.PROVIDER_GCP_GEN_AI
    vertex = getattr(models, "vertexai", None) or getattr(api_client, "vertexai", None)
    return attr.PROVIDER_GCP_VERTEX_AI if vertex is True else attr.PROVIDER_GCP_GEMINI


def _server(models: Any) -> dict[str, Any]:
    """The endpoint of the client's HTTP options (read as the SDK keeps them)."""
    options = getattr(getattr(models, "_api_client", None), "_http_options", None)
    return server_attributes(getattr(options, "base_url", None))


def _output_type(config: Any) -> str | None:
    mime = as_str(field_of(config, "response_mime_type"))
    if mime is None:
        return None
    return "json" if mime == "application/json" else "text" if mime.startswith("text/") else mime


def _whole(value: Any) -> int | None:
    """``top_k`` (a float in this SDK's config) as the integer it is."""
    number = as_float(value)
    return int(number) if number is not None and number.is_integer() else None


def _request(
    instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any], *, stream: bool = False
) -> Request:
    model = as_str(kwargs.get("model"))
    if model is not None:
        model = model.removeprefix("models/")
    config = kwargs.get("config")
    parameters = {
        key: field_of(config, key)
        for key in ("temperature", "top_p", "seed", "frequency_penalty", "presence_penalty")
    }
    parameters["n"] = field_of(config, "candidate_count")
    return Request(
        stage=attr.STAGE_GENERATION,
        name=attr.span_name(attr.STAGE_GENERATION, model),
        kind=SpanKind.CLIENT,
        attributes={
            attr.GEN_AI_OPERATION_NAME: attr.OP_CHAT,
            attr.GEN_AI_PROVIDER_NAME: _provider(instance),
            attr.GEN_AI_REQUEST_MODEL: model,
            attr.GEN_AI_REQUEST_MAX_TOKENS: as_int(field_of(config, "max_output_tokens")),
            **sampling_parameters(parameters),
            attr.GEN_AI_REQUEST_TOP_K: _whole(field_of(config, "top_k")),
            attr.GEN_AI_REQUEST_STOP_SEQUENCES: stop_sequences(field_of(config, "stop_sequences")),
            attr.GEN_AI_OUTPUT_TYPE: _output_type(config),
            attr.GEN_AI_REQUEST_STREAM: stream,
            **_server(instance),
        },
        content={
            attr.GEN_AI_SYSTEM_INSTRUCTIONS: Deferred(
                lambda: messages.gemini_system_instructions(field_of(config, "system_instruction"))
            ),
            attr.GEN_AI_INPUT_MESSAGES: Deferred(
                lambda: messages.gemini_input(kwargs.get("contents"))
            ),
        },
    )


def _stream_request(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request:
    return _request(instance, args, kwargs, stream=True)


def _embed_request(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request:
    model = as_str(kwargs.get("model"))
    if model is not None:
        model = model.removeprefix("models/")
    return embeddings_request(_provider(instance), model, _server(instance))


def _usage(metadata: Any) -> Usage:
    output = as_int(field_of(metadata, "candidates_token_count"))
    thoughts = as_int(field_of(metadata, "thoughts_token_count"))
    if output is not None or thoughts is not None:
        output = (output or 0) + (thoughts or 0)
    return Usage(
        input_tokens=as_int(field_of(metadata, "prompt_token_count")),
        output_tokens=output,
        cache_read_input_tokens=as_int(field_of(metadata, "cached_content_token_count")),
    )


def _reason(candidate: Any) -> str | None:
    reason = field_of(candidate, "finish_reason")
    value = getattr(reason, "value", reason)
    return value.lower() if isinstance(value, str) and value else None


class _Responses:
    """Reads a response, or the chunks of a stream as they arrive (each a partial response)."""

    def __init__(self, call: StageCall, model: str | None) -> None:
        self.model = model
        self.text = StreamedText()
        self.reason: str | None = None
        self.first = FirstChunk(call)

    def record(self, call: StageCall, response: Any) -> None:
        model = as_str(field_of(response, "model_version")) or self.model
        if model:
            self.model = model
            call.set(attr.GEN_AI_RESPONSE_MODEL, model)
        call.set(attr.GEN_AI_RESPONSE_ID, as_str(field_of(response, "response_id")))
        candidates = field_of(response, "candidates") or ()
        reasons = [reason for c in candidates if (reason := _reason(c)) is not None]
        if reasons:
            self.reason = reasons[0]
            record_finish_reasons(call, reasons)
        metadata = field_of(response, "usage_metadata")
        if metadata is not None:
            record_usage(call, self.model, _usage(metadata))

    def observe(self, call: StageCall, chunk: Any) -> None:
        """A chunk of a stream: its facts, and the text of its first candidate."""
        self.first.seen(call)
        self.record(call, chunk)
        candidates = field_of(chunk, "candidates") or ()
        if candidates:
            for part in field_of(field_of(candidates[0], "content"), "parts") or ():
                if field_of(part, "thought") is not True:
                    self.text.add(as_str(field_of(part, "text")))

    def on_end(self, call: StageCall, subject: Any) -> None:
        self.text.record(call, self.reason)


def _respond(call: StageCall, response: Any) -> Any:
    responses = _Responses(call, request_model(call))
    responses.record(call, response)
    candidates = field_of(response, "candidates") or ()
    if candidates:
        call.set_content(
            {
                attr.GEN_AI_OUTPUT_MESSAGES: Deferred(
                    lambda: messages.gemini_output(candidates, _reason)
                )
            }
        )
    return response


def _respond_stream(call: StageCall, stream: Any) -> Any:
    responses = _Responses(call, request_model(call))
    return SyncStreamProxy(stream, Ending(call, _KIND, responses.on_end), responses.observe)


def _respond_async_stream(call: StageCall, stream: Any) -> Any:
    responses = _Responses(call, request_model(call))
    return AsyncStreamProxy(stream, Ending(call, _KIND, responses.on_end), responses.observe)


def _respond_embed(call: StageCall, response: Any) -> Any:
    return response


class GoogleGenAIInstrumentor(VersionedInstrumentor):
    """Traces the Google Gen AI SDK (``google-genai``), sync and async."""

    library: ClassVar[str] = "google.genai"
    requirement: ClassVar[str] = "google-genai >= 1.0"
    tested: ClassVar[str] = "< 3"
    records_client_metrics: ClassVar[bool] = True

    def patches(self, tracer: Tracer) -> Sequence[Patch]:
        embed = "google_genai.embed"
        owners = ("Models", "AsyncModels")
        return (
            *sync_and_async(
                _MODELS, owners, "generate_content", kind=_KIND, read=_request, respond=_respond
            ),
            *sync_and_async(
                _MODELS,
                owners,
                "generate_content_stream",
                kind=_KIND,
                read=_stream_request,
                respond=_respond_stream,
                async_respond=_respond_async_stream,
            ),
            *sync_and_async(
                _MODELS,
                owners,
                "embed_content",
                kind=embed,
                read=_embed_request,
                respond=_respond_embed,
            ),
        )
