"""Generation facts shared by the model-client instrumentors: usage, cost, content, streams."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue

from llmspans import _attributes as attr
from llmspans._content import capture_enabled, max_length
from llmspans.cost import cost_usd
from llmspans.instrumentation import _messages as messages
from llmspans.instrumentation._base import Deferred, Request, StageCall, as_int, as_str, field_of
from llmspans.instrumentation._streams import (
    AsyncManagerProxy,
    AsyncStreamProxy,
    Ending,
    OnEnd,
    SyncManagerProxy,
    SyncStreamProxy,
)


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one call; ``input_tokens`` includes cached input (GenAI semconv)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None


def usage_with_cache(
    uncached: int | None,
    output: int | None,
    cache_read: int | None,
    cache_write: int | None,
) -> Usage:
    """Usage of a provider that counts cache reads and writes apart from the input
    (Anthropic, Bedrock): ``input_tokens`` is their sum, as the conventions define it."""
    total = None if uncached is None else uncached + (cache_read or 0) + (cache_write or 0)
    return Usage(
        input_tokens=total,
        output_tokens=output,
        cache_read_input_tokens=cache_read,
        cache_creation_input_tokens=cache_write,
    )


def request_model(call: StageCall) -> str | None:
    """The ``gen_ai.request.model`` the call's span was started with."""
    return as_str((getattr(call.span, "attributes", None) or {}).get(attr.GEN_AI_REQUEST_MODEL))


def embeddings_request(
    provider: str | None,
    model: str | None,
    attributes: Mapping[str, AttributeValue | None] | None = None,
) -> Request:
    """A plain ``embeddings {model}`` span (an embedding is part of whatever stage calls it)."""
    return Request(
        stage=None,
        name=f"{attr.OP_EMBEDDINGS} {model}" if model else attr.OP_EMBEDDINGS,
        kind=SpanKind.CLIENT,
        attributes={
            attr.GEN_AI_OPERATION_NAME: attr.OP_EMBEDDINGS,
            attr.GEN_AI_PROVIDER_NAME: provider,
            attr.GEN_AI_REQUEST_MODEL: model,
            **(attributes or {}),
        },
    )


class StreamedText:
    """The text of a streamed answer, for ``gen_ai.output.messages`` when the stream ends.

    Gathered only while content capture is on, and only up to what can be recorded
    (``max_length()`` characters): a long stream holds no more than that.
    """

    __slots__ = ("chunks", "limit", "size")

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self.size = 0
        self.limit: int | None = None

    def add(self, text: str | None) -> None:
        if not text or not capture_enabled():
            return
        if self.limit is None:
            self.limit = max_length()
        if self.size > self.limit:
            return
        self.chunks.append(text)
        self.size += len(text)

    def record(self, call: StageCall, finish_reason: str | None) -> None:
        """One assistant message of the text gathered (nothing when there is none)."""
        if not self.chunks:
            return
        chunks = self.chunks
        call.set_content(
            {
                attr.GEN_AI_OUTPUT_MESSAGES: Deferred(
                    lambda: [
                        messages.message(
                            messages.ASSISTANT,
                            messages.text_parts("".join(chunks), messages.Budget()),
                            finish_reason,
                        )
                    ]
                )
            }
        )


def record_usage(call: StageCall, model: str | None, usage: Usage) -> None:
    """Write tokens and, when the price table knows ``model``, ``llmspans.cost.usd``.

    Called again on the same call with newer counts (streams), it overwrites the
    call's share; on an enriched span the counts add to what other calls reported.
    """
    call.set(attr.GEN_AI_USAGE_INPUT_TOKENS, usage.input_tokens)
    call.set(attr.GEN_AI_USAGE_OUTPUT_TOKENS, usage.output_tokens)
    call.set(attr.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, usage.cache_read_input_tokens)
    call.set(attr.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, usage.cache_creation_input_tokens)
    if model is None or (usage.input_tokens is None and usage.output_tokens is None):
        return
    cost = cost_usd(
        model,
        usage.input_tokens or 0,
        usage.output_tokens or 0,
        cache_read_input_tokens=usage.cache_read_input_tokens or 0,
        cache_creation_input_tokens=usage.cache_creation_input_tokens or 0,
    )
    call.set(attr.COST_USD, cost)


def record_embeddings_response(call: StageCall, result: Any) -> Any:
    """An OpenAI-shaped embeddings response (OpenAI, and LiteLLM for every provider):
    its model and input tokens (an embedding has no output tokens)."""
    model = as_str(field_of(result, "model"))
    call.set(attr.GEN_AI_RESPONSE_MODEL, model)
    usage = field_of(result, "usage")
    if usage is not None:
        record_usage(
            call,
            model,
            Usage(input_tokens=as_int(field_of(usage, "prompt_tokens")), output_tokens=0),
        )
    return result


def record_finish_reasons(call: StageCall, reasons: Iterable[object]) -> None:
    values = [reason for reason in reasons if isinstance(reason, str) and reason]
    call.set(attr.GEN_AI_RESPONSE_FINISH_REASONS, values)


def unique(values: Iterable[str]) -> list[str]:
    """Values in first-seen order, without repeats."""
    return list(dict.fromkeys(values))


def stream_proxy(value: Any, client: str) -> type[SyncStreamProxy | AsyncStreamProxy] | None:
    """The proxy for ``value`` when it is a ``Stream`` or ``AsyncStream`` of ``client``.

    ``client`` is the package (``"openai"``, ``"anthropic"``); it is loaded by the
    time its call returns a value, so the look-up is a dictionary read.
    """
    module = sys.modules.get(client) or importlib.import_module(client)
    if isinstance(value, module.Stream):
        return SyncStreamProxy
    if isinstance(value, module.AsyncStream):
        return AsyncStreamProxy
    return None


def managed_stream(
    kind: str, on_end: OnEnd | None = None, *, is_async: bool
) -> Callable[[StageCall, Any], Any]:
    """The response reader of a ``.stream(...)`` method: its manager, proxied."""
    proxy = AsyncManagerProxy if is_async else SyncManagerProxy

    def respond(call: StageCall, manager: Any) -> Any:
        return proxy(manager, Ending(call, kind, on_end))

    return respond
