"""Raw responses (``with_raw_response``, ``with_streaming_response``) of openai and anthropic.

``client.chat.completions.with_raw_response.create(...)`` calls the same wrapped
``create``, but it returns the HTTP response object rather than the parsed
result, so a response reader finds no model, tokens or cost on it. LiteLLM's
OpenAI path always calls it this way. ``raw_aware`` makes any response reader
read these results too:

- a response whose body was already read (a non-streamed ``with_raw_response``
  call) is read from its JSON body at once, as the parsed result would be, and the
  span ends with the call; the application's own ``parse()`` is untouched;
- otherwise (a streamed call, or ``with_streaming_response``) the response object
  is returned behind a transparent proxy whose ``parse()`` hands the parsed value
  to the reader: a stream comes back proxied (its span ends with the stream, as
  for ``create(stream=True)``), a model is read and the span ends. A response that
  is never parsed ends its span when it is garbage-collected, without response
  facts.
"""

from __future__ import annotations

import inspect
from typing import Any

import wrapt

from llmspans._logging import log_internal_error
from llmspans.instrumentation._base import ResponseReader, StageCall


def _is_raw(value: Any) -> bool:
    """Duck-typed: the raw response classes of both SDKs have ``http_response`` and ``parse``."""
    return hasattr(value, "http_response") and callable(getattr(value, "parse", None))


def _read_body(http_response: Any) -> Any:
    """The decoded JSON body of a response that was read already, else ``None``."""
    if not getattr(http_response, "is_closed", False):
        return None
    headers = getattr(http_response, "headers", None) or {}
    content_type = str(headers.get("content-type", "")).split(";")[0].strip().lower()
    if content_type != "application/json":
        return None
    return http_response.json()


def raw_aware(kind: str, respond: ResponseReader) -> ResponseReader:
    """``respond``, extended to raw-response results (see the module docstring)."""

    def read(call: StageCall, result: Any) -> Any:
        if not _is_raw(result):
            return respond(call, result)
        body = _read_body(result.http_response)
        if body is not None:
            respond(call, body)
            return result
        proxy = _AsyncRawProxy if inspect.iscoroutinefunction(result.parse) else _SyncRawProxy
        return proxy(result, call, kind, respond)

    return read


class _RawProxy(wrapt.ObjectProxy[Any]):
    """A raw response whose first ``parse()`` result is read into the call's span."""

    def __init__(self, wrapped: Any, call: StageCall, kind: str, respond: ResponseReader) -> None:
        super().__init__(wrapped)
        call.deferred = True
        self._self_call = call
        self._self_kind = kind
        self._self_respond = respond
        # (parsed, returned) of the first parse(): later parses of the same object
        # hand back the same (maybe proxied) value.
        self._self_first: tuple[Any, Any] | None = None

    def _after_parse(self, parsed: Any) -> Any:
        first = self._self_first
        if first is not None:
            return first[1] if parsed is first[0] else parsed
        call = self._self_call
        call.deferred = False
        returned = parsed
        try:
            returned = self._self_respond(call, parsed)
        except Exception as exc:
            log_internal_error(f"{self._self_kind}.raw_response", exc)
            returned = parsed
        if not call.deferred:  # a stream proxy takes over ending the call
            call.end()
        self._self_first = (parsed, returned)
        return returned

    def __del__(self) -> None:
        call = getattr(self, "_self_call", None)
        if call is not None and getattr(self, "_self_first", None) is None:
            call.end()


class _SyncRawProxy(_RawProxy):
    def parse(self, *args: Any, **kwargs: Any) -> Any:
        return self._after_parse(self.__wrapped__.parse(*args, **kwargs))


class _AsyncRawProxy(_RawProxy):
    async def parse(self, *args: Any, **kwargs: Any) -> Any:
        return self._after_parse(await self.__wrapped__.parse(*args, **kwargs))
