"""OTLP/HTTP receiver: ``POST /v1/traces`` with protobuf or JSON bodies, gzip or not.

Served by aiohttp on the collector's event loop (see docs/collector.md for why).
The body is read in chunks and decompressed in a streaming way with a hard cap, so
neither a large body nor a gzip bomb ever occupies more than ``max_request_bytes``.
What is read is held against the collector's receive budget
(:mod:`llmspans.collector.budget`): the decompressed size as it grows; an OTLP/JSON body is reserved
:data:`~llmspans.collector.budget.JSON_EXPANSION` times over before it is parsed,
and parsed on a worker thread when large, so the event loop keeps serving; a large
protobuf body is cut, validated on a worker thread and taken in pieces
(:mod:`llmspans.collector.intake`). A body must arrive whole within
``body_timeout_s`` (a stalled upload holds nothing longer).

Answers follow the OTLP/HTTP specification: 200 with an
``ExportTraceServiceResponse`` (partial success when some spans were refused),
400 / 413 / 415 / 401 with a ``google.rpc.Status`` body, 429 / 503 with
``Retry-After`` under backpressure. Responses use the encoding of the request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from typing import Final

from aiohttp import web
from google.rpc import code_pb2, status_pb2  # type: ignore[import-untyped]  # no type stubs published
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from llmspans.collector._wire import RequestError, json_to_protobuf
from llmspans.collector.budget import JSON_EXPANSION, ByteBudget, Held
from llmspans.collector.intake import Intake, reserve_for
from llmspans.collector.processor import (
    Accepted,
    Backpressure,
    Processor,
    TooLarge,
    retry_after_header,
)
from llmspans.collector.receivers import token_matches

__all__ = ["TRACES_PATH", "HttpReceiver"]

_log = logging.getLogger("llmspans.collector.receivers.http")

TRACES_PATH: Final = "/v1/traces"
_PROTOBUF: Final = "application/x-protobuf"
_JSON: Final = "application/json"
#: OTLP/JSON bodies larger than this are parsed on a worker thread.
_JSON_INLINE_BYTES: Final = 256 * 1024
_GRPC_CODES: Final = {
    400: code_pb2.INVALID_ARGUMENT,
    401: code_pb2.UNAUTHENTICATED,
    408: code_pb2.DEADLINE_EXCEEDED,
    413: code_pb2.RESOURCE_EXHAUSTED,
    415: code_pb2.INVALID_ARGUMENT,
    429: code_pb2.UNAVAILABLE,
    500: code_pb2.INTERNAL,
    503: code_pb2.UNAVAILABLE,
}


class HttpReceiver:
    """The aiohttp handler of ``POST /v1/traces``."""

    def __init__(
        self,
        processor: Processor,
        max_request_bytes: int,
        bearer_token: str | None,
        *,
        budget: ByteBudget | None = None,
        body_timeout_s: float = 30.0,
    ) -> None:
        self.processor = processor
        self.max_request_bytes = max_request_bytes
        self.bearer_token = bearer_token
        self.budget = budget if budget is not None else ByteBudget("receive", 2**62)
        self.body_timeout_s = body_timeout_s
        self.intake = Intake(processor, body_timeout_s)

    def routes(self) -> list[web.RouteDef]:
        return [web.post(TRACES_PATH, self.handle)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        content_type = request.content_type
        is_json = content_type == _JSON
        if self.bearer_token is not None and not token_matches(
            request.headers.get("Authorization"), self.bearer_token
        ):
            self.processor.reject("unauthenticated")
            response = _error(401, "missing or wrong bearer token", is_json)
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        if content_type not in (_PROTOBUF, _JSON):
            self.processor.reject("unsupported_media_type")
            return _error(
                415,
                f"unsupported content type {content_type!r}: OTLP/HTTP takes "
                f"{_PROTOBUF} or {_JSON}",
                True,  # neither protobuf nor JSON was asked for: answer readable JSON
            )
        held = Held(self.budget, self.processor.retry_after)
        try:
            if is_json and request.content_length:
                # Refused before it is read when it could never be parsed in the budget.
                held.check_fits(request.content_length * JSON_EXPANSION, json_body=True)
            try:
                async with asyncio.timeout(self.body_timeout_s):
                    body = await self._read_body(request, held)
            except TimeoutError:
                raise RequestError(
                    408,
                    "body_timeout",
                    f"the request body did not arrive within {self.body_timeout_s:g} s",
                ) from None
            if is_json:
                # Refused before parsing when it could never fit, retried when not now.
                held.grow(len(body) * JSON_EXPANSION, json_body=True)
                if len(body) > _JSON_INLINE_BYTES:
                    raw, rejected, errors = await asyncio.to_thread(_decode_json, body)
                else:
                    raw, rejected, errors = _decode_json(body)
                message = ExportTraceServiceRequest.FromString(raw)
                accepted = self.processor.accept(message, None, rejected=rejected, errors=errors)
            else:
                # A large body: reserved for its decoding too, or refused before it.
                held.grow(reserve_for(len(body)))
                accepted = await self.intake.take(body)
        except RequestError as error:
            self.processor.reject(error.reason)
            response = _error(error.status, error.message, is_json)
            if error.retry_after is not None:
                response.headers["Retry-After"] = retry_after_header(error.retry_after)
            if error.status in (408, 413, 503):
                # The rest of the body is not worth reading (nor waiting for).
                response.force_close()
            return response
        except TooLarge as error:
            return _error(413, str(error), is_json)
        except Backpressure as refusal:
            response = _error(refusal.status, refusal.message, is_json)
            response.headers["Retry-After"] = retry_after_header(refusal.retry_after)
            return response
        except Exception as error:
            # The boundary for faults of ours: counted, logged once per kind, answered.
            self.processor.internal_error("receive_http", error)
            return _error(500, f"internal error: {type(error).__name__}", is_json)
        finally:
            held.release()
        self.processor.sweep_if_overdue()
        return _success(accepted, is_json)

    async def _read_body(self, request: web.Request, held: Held) -> bytes:
        limit = self.max_request_bytes
        length = request.content_length
        if length is not None and length > limit:
            raise RequestError(
                413, "too_large", f"request body of {length} bytes exceeds {limit} bytes"
            )
        # Bytes are reserved as they arrive, not as declared: a sender that only
        # declares a large body holds nothing, one that sends it holds what it sent.
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding in ("", "identity"):
            decompressor = None
        elif encoding in ("gzip", "x-gzip"):
            decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            decompressor = zlib.decompressobj()
        else:
            raise RequestError(
                415, "unsupported_encoding", f"unsupported Content-Encoding {encoding!r}"
            )
        parts: list[bytes] = []
        size = 0
        compressed = 0
        try:
            async for chunk in request.content.iter_any():
                compressed += len(chunk)
                if compressed > limit:
                    raise RequestError(413, "too_large", f"request body exceeds {limit} bytes")
                if decompressor is None:
                    parts.append(chunk)
                    size += len(chunk)
                    held.grow(size)
                else:
                    data = chunk
                    while data:
                        out = decompressor.decompress(data, limit - size + 1)
                        parts.append(out)
                        size += len(out)
                        if size > limit:
                            break
                        held.grow(size)
                        data = decompressor.unconsumed_tail
                if size > limit:
                    raise RequestError(
                        413, "too_large", f"request body exceeds {limit} bytes after decompression"
                    )
            if decompressor is not None and not decompressor.eof:
                raise RequestError(400, "malformed", f"truncated {encoding} body")
        except zlib.error as error:
            raise RequestError(400, "malformed", f"invalid {encoding} body: {error}") from None
        return b"".join(parts)


def _decode_json(body: bytes) -> tuple[bytes, int, list[str]]:
    """OTLP/JSON body -> (protobuf bytes, rejected spans, messages); pure, so it can
    run on a worker thread."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RequestError(400, "malformed", f"malformed JSON: {error}") from None
    except RecursionError:
        raise RequestError(400, "malformed", "malformed JSON: nested too deeply") from None
    return json_to_protobuf(document)


def _success(accepted: Accepted, is_json: bool) -> web.Response:
    if is_json:
        document: dict[str, object] = {}
        if accepted.rejected or accepted.message:
            partial: dict[str, object] = {"errorMessage": accepted.message}
            if accepted.rejected:
                partial["rejectedSpans"] = str(accepted.rejected)
            document["partialSuccess"] = partial
        return web.Response(body=json.dumps(document).encode(), content_type=_JSON)
    response = ExportTraceServiceResponse()
    if accepted.rejected or accepted.message:
        response.partial_success.rejected_spans = accepted.rejected
        response.partial_success.error_message = accepted.message
    return web.Response(body=response.SerializeToString(), content_type=_PROTOBUF)


def _error(status: int, message: str, is_json: bool) -> web.Response:
    code = _GRPC_CODES.get(status, code_pb2.UNKNOWN)
    if is_json:
        body = json.dumps({"code": code, "message": message}).encode()
        return web.Response(status=status, body=body, content_type=_JSON)
    payload = status_pb2.Status(code=code, message=message).SerializeToString()
    return web.Response(status=status, body=payload, content_type=_PROTOBUF)
