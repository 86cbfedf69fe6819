"""LiteLLM: ``completion`` / ``acompletion`` / ``embedding`` -> spans, whatever the provider.

One instrumentor for every provider LiteLLM routes to: the span is opened around
LiteLLM's own entry points, so a model served through LiteLLM's HTTP handlers
(Anthropic, Bedrock, Vertex, ... called without their SDKs) is traced the same
as one served through an SDK. Wrapped public functions of the ``litellm``
package: ``completion`` and ``acompletion`` (a ``generation`` stage span ``chat
{model}``, also with ``stream=True``), ``embedding`` and ``aembedding`` (a plain
``embeddings {model}`` span).

``gen_ai.provider.name`` is LiteLLM's provider for the model (``openai/gpt-4o``,
``anthropic/claude-...``, or ``custom_llm_provider``) in the conventions'
spelling (``aws.bedrock``, ``gcp.vertex_ai``, ...). Responses are OpenAI-shaped
``ModelResponse`` objects: model, id, finish reasons, tokens (cached ones
included) and cost are read as for OpenAI; where the price table does not know
the model, the cost is LiteLLM's own (``_hidden_params["response_cost"]``, as
LiteLLM documents it).

Where LiteLLM calls a provider through an SDK that is instrumented too (its
OpenAI path calls ``openai`` with ``with_raw_response``), that call enriches the
LiteLLM span rather than adding a second one, and LiteLLM's totals replace its
share: tokens and cost are counted once.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
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
    given,
)
from llmspans.instrumentation._genai import embeddings_request, record_embeddings_response
from llmspans.instrumentation._patching import Patch
from llmspans.instrumentation._semconv import (
    output_type,
    sampling_parameters,
    server_attributes,
    stop_sequences,
)
from llmspans.instrumentation._streams import AsyncStreamProxy, Ending, SyncStreamProxy
from llmspans.instrumentation._versions import VersionedInstrumentor
from llmspans.instrumentation.openai import ChatChunks, record_chat_completion

_KIND = "litellm.completion"

#: LiteLLM provider -> ``gen_ai.provider.name`` where the conventions spell it differently.
PROVIDER_NAMES: Final[dict[str, str]] = {
    "text-completion-openai": "openai",
    "azure": "azure.ai.openai",
    "azure_text": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "bedrock": attr.PROVIDER_AWS_BEDROCK,
    "bedrock_converse": attr.PROVIDER_AWS_BEDROCK,
    "vertex_ai": attr.PROVIDER_GCP_VERTEX_AI,
    "vertex_ai_beta": attr.PROVIDER_GCP_VERTEX_AI,
    "gemini": attr.PROVIDER_GCP_GEMINI,
    "cohere_chat": "cohere",
    "mistral": "mistral_ai",
    "xai": "x_ai",
    "watsonx": "ibm.watsonx.ai",
}


def _provider(model: str | None, kwargs: dict[str, Any]) -> tuple[str | None, str | None]:
    """(model without its provider prefix, provider in the conventions' spelling)."""
    provider = as_str(kwargs.get("custom_llm_provider"))
    bare = model
    litellm = sys.modules.get("litellm")
    if model is not None and litellm is not None:
        try:
            bare, found, *_ = litellm.get_llm_provider(model, custom_llm_provider=provider)
            provider = as_str(found) or provider
        except Exception:  # an unknown model: LiteLLM itself will say so to the caller
            if provider is None and "/" in model:
                provider, _, bare = model.partition("/")
    if provider is None:
        return bare, None
    return bare, PROVIDER_NAMES.get(provider, provider)


def _completion_request(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request:
    model = as_str(kwargs.get("model")) or (as_str(args[0]) if args else None)
    history = kwargs.get("messages", args[1] if len(args) > 1 else None)
    bare, provider = _provider(model, kwargs)
    max_tokens = kwargs.get("max_completion_tokens") or kwargs.get("max_tokens")
    api_base = as_str(kwargs.get("api_base")) or as_str(kwargs.get("base_url"))
    return Request(
        stage=attr.STAGE_GENERATION,
        name=attr.span_name(attr.STAGE_GENERATION, bare),
        kind=SpanKind.CLIENT,
        attributes={
            attr.GEN_AI_OPERATION_NAME: attr.OP_CHAT,
            attr.GEN_AI_PROVIDER_NAME: provider,
            attr.GEN_AI_REQUEST_MODEL: bare,
            attr.GEN_AI_REQUEST_MAX_TOKENS: as_int(max_tokens),
            **sampling_parameters(kwargs),
            attr.GEN_AI_REQUEST_STOP_SEQUENCES: stop_sequences(given(kwargs, "stop")),
            attr.GEN_AI_OUTPUT_TYPE: output_type(given(kwargs, "response_format")),
            attr.GEN_AI_REQUEST_STREAM: kwargs.get("stream") is True,
            **(server_attributes(api_base) if api_base else {}),
        },
        content={attr.GEN_AI_INPUT_MESSAGES: Deferred(lambda: messages.openai_chat_input(history))},
    )


def _embedding_request(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request:
    model = as_str(kwargs.get("model")) or (as_str(args[0]) if args else None)
    bare, provider = _provider(model, kwargs)
    api_base = as_str(kwargs.get("api_base"))
    return embeddings_request(provider, bare, server_attributes(api_base) if api_base else None)


def _litellm_cost(call: StageCall, response: Any) -> None:
    """LiteLLM's own cost of the call, where the price table had none."""
    attributes = getattr(call.span, "attributes", None) or {}
    if attr.COST_USD in attributes and call.owned:
        return
    hidden = getattr(response, "_hidden_params", None)
    cost = as_float(hidden.get("response_cost")) if isinstance(hidden, dict) else None
    if cost is not None and attr.COST_USD not in attributes:
        call.set(attr.COST_USD, cost)


def _is_stream(value: Any) -> bool:
    return type(value).__name__ == "CustomStreamWrapper"


def _completion_result(call: StageCall, result: Any) -> Any:
    if _is_stream(result):
        chunks = ChatChunks(call)
        return SyncStreamProxy(result, Ending(call, _KIND, chunks.on_end), chunks.observe)
    record_chat_completion(call, result)
    _litellm_cost(call, result)
    return result


def _acompletion_result(call: StageCall, result: Any) -> Any:
    """``acompletion(stream=True)`` returns the same wrapper class, iterated asynchronously."""
    if _is_stream(result):
        chunks = ChatChunks(call)
        return AsyncStreamProxy(result, Ending(call, _KIND, chunks.on_end), chunks.observe)
    return _completion_result(call, result)


class LiteLLMInstrumentor(VersionedInstrumentor):
    """Traces LiteLLM's completion and embedding functions (every provider behind them)."""

    library: ClassVar[str] = "litellm"
    requirement: ClassVar[str] = "litellm >= 1.50"
    tested: ClassVar[str] = "< 2"
    records_client_metrics: ClassVar[bool] = True

    def patches(self, tracer: Tracer) -> Sequence[Patch]:
        return (
            Patch("litellm", "completion", _KIND, _completion_request, _completion_result),
            Patch(
                "litellm",
                "acompletion",
                _KIND,
                _completion_request,
                _acompletion_result,
                is_async=True,
            ),
            Patch(
                "litellm",
                "embedding",
                "litellm.embedding",
                _embedding_request,
                record_embeddings_response,
            ),
            Patch(
                "litellm",
                "aembedding",
                "litellm.embedding",
                _embedding_request,
                record_embeddings_response,
                is_async=True,
            ),
        )
