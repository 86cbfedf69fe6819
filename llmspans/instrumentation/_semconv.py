"""GenAI semantic-convention facts the model-client instrumentors share.

The endpoint a client talks to (``server.address`` / ``server.port``), the
request parameters the conventions name, and the time to the first chunk of a
streamed response. Each helper reads plain values and never raises on a shape it
does not know; it returns ``None`` (or leaves the attribute out) instead.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.util.types import AttributeValue

from llmspans import _attributes as attr
from llmspans.instrumentation._base import StageCall, as_float, as_int, as_str, given

_DEFAULT_PORTS = {"https": 443, "http": 80}


def server_attributes(base_url: Any) -> dict[str, AttributeValue]:
    """``server.address`` and ``server.port`` of a base URL (an ``httpx``-style URL or a string)."""
    host: Any
    port: Any
    scheme: Any
    if isinstance(base_url, str):
        parts = urlsplit(base_url)
        host, port, scheme = parts.hostname, parts.port, parts.scheme
    else:
        host = getattr(base_url, "host", None)
        port = getattr(base_url, "port", None)
        scheme = getattr(base_url, "scheme", None)
    if not isinstance(host, str) or not host:
        return {}
    found: dict[str, AttributeValue] = {attr.SERVER_ADDRESS: host}
    if not isinstance(port, int):
        port = _DEFAULT_PORTS.get(str(scheme))
    if port is not None:
        found[attr.SERVER_PORT] = port
    return found


def sdk_server_attributes(resource: Any) -> dict[str, AttributeValue]:
    """The endpoint of an openai / anthropic resource (``client.chat.completions``, ...).

    Resources hold their client as ``_client``; OpenTelemetry's own openai
    instrumentation reads it the same way. Absent on an unknown shape.
    """
    client = getattr(resource, "_client", None)
    return server_attributes(getattr(client, "base_url", None))


def stop_sequences(value: Any) -> list[str] | None:
    """``stop`` as a list of strings (the APIs take one string or a list)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence):
        found = [item for item in value if isinstance(item, str)]
        return found or None
    return None


def output_type(response_format: Any) -> str | None:
    """``gen_ai.output.type`` of a ``response_format`` / ``text.format``: ``text`` or ``json``."""
    if response_format is None:
        return None
    if isinstance(response_format, type):  # a pydantic model given to parse()
        return "json"
    kind = as_str(response_format.get("type")) if isinstance(response_format, Mapping) else None
    if kind in {"json_object", "json_schema"}:
        return "json"
    return kind


def sampling_parameters(kwargs: Mapping[str, Any]) -> dict[str, AttributeValue | None]:
    """The sampling parameters common to the chat APIs, as the conventions name them."""
    choices = as_int(given(kwargs, "n"))
    return {
        attr.GEN_AI_REQUEST_TEMPERATURE: as_float(given(kwargs, "temperature")),
        attr.GEN_AI_REQUEST_TOP_P: as_float(given(kwargs, "top_p")),
        attr.GEN_AI_REQUEST_SEED: as_int(given(kwargs, "seed")),
        attr.GEN_AI_REQUEST_FREQUENCY_PENALTY: as_float(given(kwargs, "frequency_penalty")),
        attr.GEN_AI_REQUEST_PRESENCE_PENALTY: as_float(given(kwargs, "presence_penalty")),
        attr.GEN_AI_REQUEST_CHOICE_COUNT: choices if choices is not None and choices != 1 else None,
    }


class FirstChunk:
    """Records ``gen_ai.response.time_to_first_chunk`` once, on the first chunk seen.

    Measured from the start of the call's own span (an enriched stage span
    started earlier than the call, so nothing is recorded there).
    """

    __slots__ = ("_seen", "_start")

    def __init__(self, call: StageCall) -> None:
        start = getattr(call.span, "start_time", None) if call.owned else None
        self._start = start if isinstance(start, int) else None
        self._seen = False

    def seen(self, call: StageCall) -> None:
        if self._seen:
            return
        self._seen = True
        if self._start is not None:
            call.set(attr.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, (time.time_ns() - self._start) / 1e9)


def retrieval_documents(ids: Sequence[str], scores: Sequence[float] | None) -> str:
    """``gen_ai.retrieval.documents``: ``[{"id": ..., "score": ...}]`` as a JSON string."""
    documents: list[dict[str, object]] = [{"id": i} for i in ids]
    if scores is not None and len(scores) == len(ids):
        for document, score in zip(documents, scores, strict=True):
            if math.isfinite(score):
                document["score"] = score
    return json.dumps(documents)


def query_text(query: object) -> str | None:
    """``gen_ai.retrieval.query.text``: the query string (or the one string of a batch of one)."""
    if isinstance(query, str):
        return query or None
    if isinstance(query, Sequence) and len(query) == 1 and isinstance(query[0], str):
        return query[0] or None
    return None
