"""Amazon Bedrock (boto3 ``bedrock-runtime``): converse and invoke_model -> generation spans.

Traced operations of a ``bedrock-runtime`` client: ``converse``,
``converse_stream``, ``invoke_model`` and ``invoke_model_with_response_stream``;
each is a ``generation`` stage span ``chat {modelId}`` with
``gen_ai.provider.name = aws.bedrock``.

- ``converse``: tokens from ``usage`` (``gen_ai.usage.input_tokens`` counts the
  cache reads and writes Bedrock reports apart, as the conventions define it),
  ``stopReason``, and the request's ``inferenceConfig``.
- ``converse_stream``: the response's ``stream`` is proxied; the span ends with it
  and carries what its ``messageStop`` and ``metadata`` events reported.
- ``invoke_model``: the body is the model's own format and is left unread (it is
  a stream the application reads); tokens come from the
  ``x-amzn-bedrock-input-token-count`` / ``-output-token-count`` response headers,
  which Bedrock sends for every model. Request parameters are read from the JSON
  body where it names them (``max_tokens``, ``temperature``, ``top_p``, at the top
  level or in ``inferenceConfig`` / ``textGenerationConfig``).
- ``invoke_model_with_response_stream``: the ``body`` event stream is proxied;
  tokens come from the ``amazon-bedrock-invocationMetrics`` of its last chunk.

The cost is looked up with the model id stripped of its region and vendor
prefixes (``us.anthropic.claude-...`` is priced as ``claude-...``).

Why ``BaseClient._make_api_call``: botocore generates each client's methods at
run time, per service, so there is no public function per operation to wrap.
Every generated method calls this one; OpenTelemetry's botocore instrumentation
wraps it for the same reason. The wrapper returns at once for any other service
or operation.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Final

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
    record_finish_reasons,
    record_usage,
    request_model,
    usage_with_cache,
)
from llmspans.instrumentation._patching import Patch
from llmspans.instrumentation._semconv import FirstChunk, server_attributes, stop_sequences
from llmspans.instrumentation._streams import Ending, SyncStreamProxy
from llmspans.instrumentation._versions import VersionedInstrumentor

SERVICE: Final = "bedrock-runtime"
_KIND = "bedrock.runtime"
_STREAMING: Final = frozenset({"ConverseStream", "InvokeModelWithResponseStream"})
_OPERATIONS: Final = frozenset({"Converse", "InvokeModel", *_STREAMING})
_REGION_PREFIXES: Final = ("us.", "eu.", "apac.", "global.", "us-gov.", "jp.", "au.", "ca.")


def _pricing_model(model_id: str | None) -> str | None:
    """``us.anthropic.claude-3-5-sonnet-...`` -> ``claude-3-5-sonnet-...`` (for the price table)."""
    if model_id is None:
        return None
    name = model_id.rsplit("/", 1)[-1]  # an inference-profile or model ARN
    for prefix in _REGION_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    vendor, dot, rest = name.partition(".")
    return rest if dot and vendor.isalpha() else name


def _service(client: Any) -> str | None:
    return as_str(
        getattr(getattr(getattr(client, "meta", None), "service_model", None), "service_name", None)
    )


def _body_content(body: Mapping[str, Any]) -> dict[str, object]:
    """The content of an ``invoke_model`` body: Anthropic-style ``system`` and ``messages``,
    or a plain ``prompt`` / ``inputText``."""
    history = body.get("messages")
    prompt = body.get("prompt", body.get("inputText"))
    return {
        attr.GEN_AI_SYSTEM_INSTRUCTIONS: Deferred(
            lambda: messages.system_instructions(body.get("system"))
        ),
        attr.GEN_AI_INPUT_MESSAGES: Deferred(
            lambda: (
                messages.anthropic_input(history)
                if history is not None
                else messages.prompt_messages(prompt)
            )
        ),
    }


def _body_parameters(body: Any) -> dict[str, Any]:
    """The generation parameters of an ``invoke_model`` JSON body, wherever the model puts them."""
    if isinstance(body, bytes | bytearray):
        body = bytes(body).decode("utf-8", "replace")
    if not isinstance(body, str):
        return {}
    try:
        decoded = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(decoded, dict):
        return {}
    found: dict[str, Any] = {}
    for section in (decoded, decoded.get("inferenceConfig"), decoded.get("textGenerationConfig")):
        if isinstance(section, dict):
            for key, value in section.items():
                found.setdefault(key, value)
    return found


def _request(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request:
    operation = args[0] if args else kwargs.get("operation_name")
    params = args[1] if len(args) > 1 else kwargs.get("api_params") or {}
    model = as_str(field_of(params, "modelId"))
    if operation in {"Converse", "ConverseStream"}:
        config = field_of(params, "inferenceConfig") or {}
        max_tokens = field_of(config, "maxTokens")
        temperature = field_of(config, "temperature")
        top_p = field_of(config, "topP")
        stop = field_of(config, "stopSequences")
        history = field_of(params, "messages")
        system = field_of(params, "system")
        content: dict[str, object] = {
            attr.GEN_AI_SYSTEM_INSTRUCTIONS: Deferred(lambda: messages.system_instructions(system)),
            attr.GEN_AI_INPUT_MESSAGES: Deferred(lambda: messages.converse_input(history)),
        }
    else:
        body = _body_parameters(field_of(params, "body"))
        max_tokens = (
            body.get("max_tokens") or body.get("maxTokenCount") or body.get("max_new_tokens")
        )
        temperature = body.get("temperature")
        top_p = body.get("top_p", body.get("topP"))
        stop = body.get("stop_sequences", body.get("stopSequences"))
        content = _body_content(body)
    endpoint = getattr(getattr(instance, "meta", None), "endpoint_url", None)
    return Request(
        stage=attr.STAGE_GENERATION,
        name=attr.span_name(attr.STAGE_GENERATION, model),
        kind=SpanKind.CLIENT,
        attributes={
            attr.GEN_AI_OPERATION_NAME: attr.OP_CHAT,
            attr.GEN_AI_PROVIDER_NAME: attr.PROVIDER_AWS_BEDROCK,
            attr.GEN_AI_REQUEST_MODEL: model,
            attr.GEN_AI_REQUEST_MAX_TOKENS: as_int(max_tokens),
            attr.GEN_AI_REQUEST_TEMPERATURE: as_float(temperature),
            attr.GEN_AI_REQUEST_TOP_P: as_float(top_p),
            attr.GEN_AI_REQUEST_STOP_SEQUENCES: stop_sequences(stop),
            attr.GEN_AI_REQUEST_STREAM: operation in _STREAMING,
            **(server_attributes(endpoint) if isinstance(endpoint, str) else {}),
        },
        content=content,
    )


def _converse_usage(usage: Any) -> Usage:
    return usage_with_cache(
        as_int(field_of(usage, "inputTokens")),
        as_int(field_of(usage, "outputTokens")),
        as_int(field_of(usage, "cacheReadInputTokens")),
        as_int(field_of(usage, "cacheWriteInputTokens")),
    )


class _Converse:
    """Reads a Converse response, or folds the events of a ConverseStream."""

    def __init__(self, call: StageCall, model: str | None) -> None:
        self.model = model
        self.text = StreamedText()
        self.stop: str | None = None
        self.first = FirstChunk(call)

    def record(self, call: StageCall, response: Any) -> None:
        stop = as_str(field_of(response, "stopReason"))
        if stop:
            record_finish_reasons(call, [stop])
        usage = field_of(response, "usage")
        if usage is not None:
            record_usage(call, self.model, _converse_usage(usage))
        message = field_of(field_of(response, "output"), "message")
        if message is not None:
            call.set_content(
                {
                    attr.GEN_AI_OUTPUT_MESSAGES: Deferred(
                        lambda: messages.converse_output(message, stop)
                    )
                }
            )

    def observe(self, call: StageCall, event: Any) -> None:
        self.first.seen(call)
        if not isinstance(event, Mapping):
            return
        if "messageStop" in event:
            stop = as_str(field_of(event["messageStop"], "stopReason"))
            if stop:
                self.stop = stop
                record_finish_reasons(call, [stop])
        elif "metadata" in event:
            usage = field_of(event["metadata"], "usage")
            if usage is not None:
                record_usage(call, self.model, _converse_usage(usage))
        elif "contentBlockDelta" in event:
            self.text.add(as_str(field_of(field_of(event["contentBlockDelta"], "delta"), "text")))

    def on_end(self, call: StageCall, subject: Any) -> None:
        self.text.record(call, self.stop)


class _InvokeStream:
    """Folds the chunks of an InvokeModelWithResponseStream body."""

    def __init__(self, call: StageCall, model: str | None) -> None:
        self.model = model
        self.first = FirstChunk(call)

    def observe(self, call: StageCall, event: Any) -> None:
        self.first.seen(call)
        data = field_of(field_of(event, "chunk"), "bytes")
        if not isinstance(data, bytes | bytearray):
            return
        try:
            decoded = json.loads(bytes(data))
        except ValueError:
            return
        metrics = field_of(decoded, "amazon-bedrock-invocationMetrics")
        if metrics is not None:
            record_usage(
                call,
                self.model,
                Usage(
                    input_tokens=as_int(field_of(metrics, "inputTokenCount")),
                    output_tokens=as_int(field_of(metrics, "outputTokenCount")),
                ),
            )
        stop = as_str(field_of(decoded, "stop_reason")) or as_str(
            field_of(field_of(decoded, "delta"), "stop_reason")
        )
        if stop:
            record_finish_reasons(call, [stop])


class _EventStreamProxy(SyncStreamProxy):
    """botocore's ``EventStream`` is iterable, not an iterator: step its own iterator."""

    def __init__(self, wrapped: Any, ending: Ending, observe: Callable[[StageCall, Any], None]):
        super().__init__(wrapped, ending, observe)
        self._self_iterator = iter(wrapped)

    def _step(self) -> Any:
        return next(self._self_iterator)


def _header_int(response: Any, name: str) -> int | None:
    headers = field_of(field_of(response, "ResponseMetadata"), "HTTPHeaders") or {}
    value = headers.get(name) if isinstance(headers, Mapping) else None
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _respond(call: StageCall, response: Any) -> Any:
    model = _pricing_model(request_model(call))
    if not isinstance(response, dict):
        return response
    if "stream" in response:  # ConverseStream
        converse = _Converse(call, model)
        response["stream"] = _EventStreamProxy(
            response["stream"], Ending(call, _KIND, converse.on_end), converse.observe
        )
    elif "output" in response or "usage" in response:  # Converse
        _Converse(call, model).record(call, response)
    elif _is_event_stream(response.get("body")):
        chunks = _InvokeStream(call, model)
        response["body"] = _EventStreamProxy(response["body"], Ending(call, _KIND), chunks.observe)
    else:  # InvokeModel: the body is the application's to read
        input_tokens = _header_int(response, "x-amzn-bedrock-input-token-count")
        output_tokens = _header_int(response, "x-amzn-bedrock-output-token-count")
        if input_tokens is not None or output_tokens is not None:
            record_usage(call, model, Usage(input_tokens=input_tokens, output_tokens=output_tokens))
    return response


def _is_event_stream(body: Any) -> bool:
    return type(body).__name__ == "EventStream"


def _applies(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """A traced operation of a ``bedrock-runtime`` client (every other call runs untouched)."""
    operation = args[0] if args else kwargs.get("operation_name")
    return operation in _OPERATIONS and _service(instance) == SERVICE


class BedrockInstrumentor(VersionedInstrumentor):
    """Traces the ``bedrock-runtime`` operations of boto3 / botocore clients."""

    library: ClassVar[str] = "botocore"
    requirement: ClassVar[str] = "botocore >= 1.34"
    tested: ClassVar[str] = "< 2"
    records_client_metrics: ClassVar[bool] = True

    def patches(self, tracer: Tracer) -> Sequence[Patch]:
        return (
            Patch(
                "botocore.client",
                "BaseClient._make_api_call",
                _KIND,
                _request,
                _respond,
                applies=_applies,
            ),
        )
