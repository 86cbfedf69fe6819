"""OTLP/gRPC receiver: ``opentelemetry.proto.collector.trace.v1.TraceService/Export``.

A ``grpc.aio`` server on the collector's event loop. The method is registered with
no deserializer, so the handler gets the request bytes: it parses them itself
(upb), which lets it answer malformed bodies with INVALID_ARGUMENT and count them,
check the size limit, and forward the original bytes untouched when no span is
taken out. Backpressure answers UNAVAILABLE with a ``RetryInfo`` delay, both in
``grpc-status-details-bin`` (the standard place) and in
``google.rpc.retryinfo-bin`` (where the OpenTelemetry SDK exporters look).

The method is registered as a client-streaming handler (the wire format of a unary
call is the same: one message, then half-close). That way the handler runs even
when the gRPC runtime refuses the message for its size (above the message limit,
checked on the message's length prefix before its body is read): the runtime
answers RESOURCE_EXHAUSTED itself and the handler sees a call without a message,
which it counts as ``too_large``. A unary OTLP client always sends exactly one
message, so a call without one is such a refusal (or a client
that is not an OTLP exporter: it is refused too).

Connections and memory: the runtime caps the connections (``max_connections``), the
calls in progress (``max_streams``; more get RESOURCE_EXHAUSTED from the runtime),
the handshake (``header_timeout_s``) and idle connections (``idle_timeout_s``).

Memory: what the runtime buffers is counted in the receive budget before it is
buffered. The message limit is ``max_request_bytes`` or a quarter of the receive
budget (:data:`GRPC_LARGE_CALLS`), whichever is smaller, and set as the runtime's
``grpc.max_receive_message_length``. When a call starts, before its message is read,
the handler reserves that limit in the budget (waiting up to ``retry_after_s`` for
room); no room: RESOURCE_EXHAUSTED with ``RetryInfo``, and the sender's message is
never read. Once the message is in, only its size stays reserved (twice its size
while a large one is decoded, see :mod:`llmspans.collector.intake`); no room for
that: UNAVAILABLE with ``RetryInfo``. So the messages in memory at once never exceed
the receive budget, whatever the number of calls (``max_streams``) in progress.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, Final

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc import code_pb2, error_details_pb2, status_pb2  # type: ignore[import-untyped]  # no type stubs published
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)

from llmspans.collector._wire import RequestError
from llmspans.collector.budget import ByteBudget, Held
from llmspans.collector.config import ConfigError, Connections
from llmspans.collector.intake import Intake, reserve_for
from llmspans.collector.processor import Backpressure, Processor, TooLarge
from llmspans.collector.receivers import token_matches

__all__ = ["GrpcReceiver"]

_log = logging.getLogger("llmspans.collector.receivers.grpc")

_SERVICE: Final = "opentelemetry.proto.collector.trace.v1.TraceService"
_INT32_MAX: Final = 2**31 - 1
#: Calls whose largest message fits in the receive budget at once: a message is at
#: most this fraction of the budget (``max_request_bytes`` if smaller).
GRPC_LARGE_CALLS: Final = 4


class GrpcReceiver:
    """Owns the gRPC server; :meth:`start` binds it, :meth:`stop` drains it."""

    def __init__(
        self,
        processor: Processor,
        endpoint: str,
        max_request_bytes: int,
        bearer_token: str | None = None,
        credentials: grpc.ServerCredentials | None = None,
        *,
        budget: ByteBudget | None = None,
        connections: Connections | None = None,
    ) -> None:
        self.processor = processor
        self.budget = budget if budget is not None else ByteBudget("receive", 2**62)
        self.connections = connections if connections is not None else Connections()
        self.endpoint = endpoint
        self.max_request_bytes = max_request_bytes
        self.bearer_token = bearer_token
        self.credentials = credentials
        #: the largest message taken: it is reserved in the receive budget while a
        #: call's message arrives, so at most GRPC_LARGE_CALLS arrive at once
        self.message_limit = min(
            _INT32_MAX, max_request_bytes, max(64 * 1024, self.budget.limit // GRPC_LARGE_CALLS)
        )
        self.intake = Intake(processor, self.connections.body_timeout_s)
        self.port = 0
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        # Larger requests the gRPC runtime refuses by itself, on their length prefix,
        # without reading them (the handler still counts them, see _receive).
        receive_limit = self.message_limit
        connections = self.connections
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", receive_limit),
                ("grpc.so_reuseport", 0),
                ("grpc.max_allowed_incoming_connections", connections.max_connections),
                ("grpc.max_concurrent_streams", connections.max_streams),
                ("grpc.server_handshake_timeout_ms", int(connections.header_timeout_s * 1000)),
                ("grpc.max_connection_idle_ms", int(connections.idle_timeout_s * 1000)),
            ],
            maximum_concurrent_rpcs=connections.max_streams,
        )
        handler = grpc.stream_unary_rpc_method_handler(
            self._export, request_deserializer=None, response_serializer=None
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(_SERVICE, {"Export": handler}),)
        )
        try:
            if self.credentials is not None:
                self.port = server.add_secure_port(self.endpoint, self.credentials)
            else:
                self.port = server.add_insecure_port(self.endpoint)
        except RuntimeError:  # grpc's "Failed to bind to address"
            self.port = 0
        if not self.port:
            raise ConfigError(f"receivers.grpc.endpoint {self.endpoint}: cannot listen")
        await server.start()
        self._server = server

    async def stop(self, grace: float) -> None:
        """Stop taking calls; calls in progress get ``grace`` seconds to finish."""
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    async def _receive(
        self, messages: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        """The one request message of an Export call; aborts the call without one."""
        body: bytes | None = None
        async for message in messages:
            if body is not None:
                self.processor.reject("malformed")
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "Export is a unary call: one ExportTraceServiceRequest per call",
                )
            body = message
        if body is None:
            # The gRPC runtime refused the message for its size and answered
            # RESOURCE_EXHAUSTED already; the status below only reaches a client
            # that sent no message at all.
            self.processor.reject("too_large")
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "no request message arrived: larger than the receive limit of "
                f"{self.message_limit} bytes, or none was sent",
            )
            raise AssertionError("abort raises")  # pragma: no cover
        return body

    async def _export(
        self, messages: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        processor = self.processor
        if self.bearer_token is not None:
            metadata = dict(context.invocation_metadata() or ())
            presented = metadata.get("authorization")
            if not token_matches(
                presented if isinstance(presented, str) else None, self.bearer_token
            ):
                processor.reject("unauthenticated")
                await context.abort(
                    grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token"
                )
        # Admission before the message is read: the largest message the runtime
        # would buffer for this call is reserved while it arrives (waiting a little
        # for room), then only what arrived is held.
        budget = self.budget
        held = Held(budget, processor.retry_after)
        if not await budget.wait_reserve(self.message_limit, processor.retry_after):
            processor.reject("memory_limit")
            message = (
                f"requests in progress hold {budget.used} of {budget.limit} bytes; retry later"
            )
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                message,
                trailing_metadata=_retry_metadata(
                    message, processor.retry_after, code_pb2.RESOURCE_EXHAUSTED
                ),
            )
        held.size = self.message_limit
        try:
            body = await self._receive(messages, context)
            size = len(body)
            if size > self.message_limit:
                processor.reject("too_large")
                await context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"request of {size} bytes exceeds {self.message_limit} bytes",
                )
            held.shrink(size)
            try:
                held.grow(reserve_for(size))
                accepted = await self.intake.take(body)
            except RequestError as error:
                processor.reject(error.reason)
                if error.retry_after is not None:
                    await context.abort(
                        grpc.StatusCode.UNAVAILABLE,
                        error.message,
                        trailing_metadata=_retry_metadata(error.message, error.retry_after),
                    )
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, error.message)
            except TooLarge as error:
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error))
            except Backpressure as refusal:
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE,
                    refusal.message,
                    trailing_metadata=_retry_metadata(refusal.message, refusal.retry_after),
                )
            except Exception as error:
                # The boundary for faults of ours: counted, logged once per kind, answered.
                processor.internal_error("receive_grpc", error)
                await context.abort(
                    grpc.StatusCode.INTERNAL, f"internal error: {type(error).__name__}"
                )
        finally:
            held.release()
        processor.sweep_if_overdue()
        response = ExportTraceServiceResponse()
        if accepted.rejected or accepted.message:
            response.partial_success.rejected_spans = accepted.rejected
            response.partial_success.error_message = accepted.message
        return response.SerializeToString()


def _retry_metadata(
    message: str, delay: float, code: int = code_pb2.UNAVAILABLE
) -> tuple[tuple[str, bytes], ...]:
    seconds = int(delay)
    info = error_details_pb2.RetryInfo(
        retry_delay=Duration(seconds=seconds, nanos=int((delay - seconds) * 1e9))
    )
    status = status_pb2.Status(code=code, message=message)
    status.details.add().Pack(info)
    return (
        ("grpc-status-details-bin", status.SerializeToString()),
        ("google.rpc.retryinfo-bin", info.SerializeToString()),
    )
