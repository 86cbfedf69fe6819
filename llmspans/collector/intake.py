"""Taking a decoded-size-bounded protobuf request without stalling the event loop.

A small protobuf body (up to :data:`PIECEWISE_BYTES`) is parsed and handed to the
processor in one step, as always. A larger one would hold the event loop for as
long as its spans take to parse and assemble (about 20 us a span: a 20 MB request
of 100,000 spans is two seconds in which ``/healthz``, ``/metrics`` and every other
sender wait). So a large body is

1. **reserved** in the receive budget once more (its pieces are a copy of it), or
   refused (503 / UNAVAILABLE with a retry delay) before anything is decoded;
2. **cut and validated on a worker thread**: the request is cut, by its protobuf
   framing, into pieces of at most :data:`PIECE_SPANS` spans (each piece an
   ``ExportTraceServiceRequest`` with its resource and scope), and every piece is
   parsed with the full schema. At most :data:`DECODE_THREADS` bodies are decoded at
   once; the parser does not release the GIL during a call, but one call per piece
   lets the event loop run between pieces. A malformed body is refused whole (400)
   before any of its spans is taken;
3. **admitted whole** (the same bounds and answers as a small request: 429 / 503
   with a retry delay, 413 when it could never fit), then **taken a piece at a
   time** on the event loop, letting the other requests and ``/healthz`` in
   between pieces.

Should another request take the room between two pieces, the next piece waits for
room (retrying after ``retry_after_s``) until ``connections.body_timeout_s`` has
passed since the body arrived; then the request is answered with backpressure and
the sender retries it whole: the spans taken before are delivered twice (OTLP is
at least once), never lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Final

from llmspans.collector._wire import RequestError, parse_request
from llmspans.collector.processor import Accepted, Backpressure, Processor, TooLarge

__all__ = ["DECODE_THREADS", "PIECEWISE_BYTES", "PIECE_SPANS", "Intake", "split_request"]

#: Protobuf bodies larger than this are decoded on a worker thread and taken in pieces.
PIECEWISE_BYTES: Final = 256 * 1024
#: Spans per piece: about 20 ms of the event loop's time each.
PIECE_SPANS: Final = 1000
#: Seconds the event loop is left to other work between two pieces: long enough for
#: a request waiting meanwhile (``/healthz``, a small export) to finish all its steps.
PIECE_PAUSE_S: Final = 0.002
#: Large bodies decoded at the same time (more wait for a slot).
DECODE_THREADS: Final = 2
#: Bytes of each large body reserved in the receive budget besides the body itself.
PIECES_EXPANSION: Final = 1

_MAX_ERRORS: Final = 5


class Intake:
    """Hands protobuf request bodies to the processor; large ones in pieces."""

    def __init__(self, processor: Processor, body_timeout_s: float = 30.0) -> None:
        self.processor = processor
        self.body_timeout_s = body_timeout_s
        self._slots: asyncio.Semaphore | None = None

    async def take(self, body: bytes) -> Accepted:
        """Parse and take one protobuf body; raises what ``Processor.accept`` raises,
        and :class:`RequestError` (400) when the body is malformed.

        The caller has reserved ``len(body) * (1 + PIECES_EXPANSION)`` bytes for a
        body larger than :data:`PIECEWISE_BYTES` (:func:`reserve_for`).
        """
        processor = self.processor
        if len(body) <= PIECEWISE_BYTES:
            return processor.accept(parse_request(body), body)
        if self._slots is None:
            self._slots = asyncio.Semaphore(DECODE_THREADS)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout_s
        async with self._slots:
            pieces, spans = await asyncio.to_thread(_decode_pieces, body)
        if len(pieces) <= 1:
            return processor.accept(parse_request(body), body)
        _admit_whole(processor, spans, len(body))
        taken: list[Accepted] = []
        for index, piece in enumerate(pieces):
            if index:
                await asyncio.sleep(PIECE_PAUSE_S)  # other requests and /healthz run here
            taken.append(await self._take_piece(piece, deadline))
        return _merged(taken)

    async def _take_piece(self, piece: bytes, deadline: float) -> Accepted:
        loop = asyncio.get_running_loop()
        while True:
            try:
                return self.processor.accept(parse_request(piece), piece)
            except Backpressure as refusal:
                # Room taken by another request since this one was admitted.
                if loop.time() + refusal.retry_after > deadline:
                    raise
                await asyncio.sleep(refusal.retry_after)


def reserve_for(size: int) -> int:
    """Bytes a protobuf body of ``size`` bytes holds in the receive budget while it
    is decoded and taken."""
    return size * (1 + PIECES_EXPANSION) if size > PIECEWISE_BYTES else size


def _admit_whole(processor: Processor, spans: int, size: int) -> None:
    """Admission of the whole request before its first piece is taken, with the
    processor's bounds and the same counting as a refused request."""
    try:
        processor._admit(spans, size)
    except Backpressure as refusal:
        processor.metrics.count("llmspans_collector_spans_received", spans)
        processor.reject(refusal.reason, spans)
        raise
    except TooLarge:
        processor.metrics.count("llmspans_collector_spans_received", spans)
        processor.reject("too_large", spans)
        raise


def _merged(taken: list[Accepted]) -> Accepted:
    messages = [accepted.message for accepted in taken if accepted.message]
    return Accepted(
        sum(accepted.spans for accepted in taken),
        sum(accepted.rejected for accepted in taken),
        "; ".join(messages[:_MAX_ERRORS]),
    )


def _decode_pieces(body: bytes) -> tuple[list[bytes], int]:
    """Cut ``body`` into pieces and parse each (validation); runs on a worker thread.

    Returns ``([], 0)`` when the body cannot be cut (group fields, which OTLP never
    uses): the caller then takes it whole.
    """
    try:
        cut = split_request(body, PIECE_SPANS)
    except ValueError as error:
        raise RequestError(400, "malformed", f"malformed OTLP protobuf: {error}") from None
    if cut is None:
        return [], 0
    pieces, spans = cut
    for piece in pieces:
        parse_request(piece)  # RequestError 400 when a piece is malformed
    return pieces, spans


# --- cutting a request by its protobuf framing ------------------------------------------

_LEN: Final = 2
#: ExportTraceServiceRequest.resource_spans, ResourceSpans.scope_spans, ScopeSpans.spans
_CHILD: Final = 1, 2, 2


def _varint(data: bytes, position: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= end or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7


def _fields(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """(field number, wire type, record start, value start, record end) of each field
    of the message in ``data[start:end]``; ValueError on broken framing, ``wire type
    3/4`` (groups) reported as is for the caller to give up on."""
    position = start
    while position < end:
        record = position
        key, position = _varint(data, position, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire == 0:
            _, position = _varint(data, position, end)
            value = position
        elif wire == 1:
            value, position = position, position + 8
        elif wire == _LEN:
            length, value = _varint(data, position, end)
            position = value + length
        elif wire == 5:
            value, position = position, position + 4
        elif wire in (3, 4):
            yield number, wire, record, position, position
            return
        else:
            raise ValueError(f"invalid wire type {wire}")
        if position > end:
            raise ValueError("a field runs past the end of its message")
        yield number, wire, record, value, position


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | _LEN) + _encode_varint(len(payload)) + payload


def split_request(body: bytes, max_spans: int) -> tuple[list[bytes], int] | None:
    """Cut an encoded ``ExportTraceServiceRequest`` into requests of at most
    ``max_spans`` spans each (every one with its resource and scope fields); returns
    ``(pieces, span count)``, or None when the body holds group fields.

    Only the framing is read (field keys and lengths, three levels deep); the
    pieces are parsed by the caller. Fields other than the nested lists are kept
    with their message; the order of distinct fields may change, which protobuf
    ignores. ValueError on broken framing.
    """
    pieces: list[bytes] = []
    current: list[bytes] = []
    current_spans = 0
    total = 0

    def flush() -> None:
        nonlocal current, current_spans
        if current:
            pieces.append(b"".join(current))
        current, current_spans = [], 0

    for number, wire, record, value, end in _fields(body, 0, len(body)):
        if wire in (3, 4):
            return None
        if number != _CHILD[0] or wire != _LEN:
            current.append(body[record:end])  # unknown top-level field: kept as it is
            continue
        resource_rest: list[bytes] = []
        scopes: list[tuple[int, int]] = []
        for number2, wire2, record2, value2, end2 in _fields(body, value, end):
            if wire2 in (3, 4):
                return None
            if number2 == _CHILD[1] and wire2 == _LEN:
                scopes.append((value2, end2))
            else:
                resource_rest.append(body[record2:end2])
        resource_head = b"".join(resource_rest)
        if not scopes:
            current.append(_len_field(_CHILD[0], resource_head))
            continue
        for scope_start, scope_end in scopes:
            scope_rest: list[bytes] = []
            spans: list[bytes] = []
            for number3, wire3, record3, _, end3 in _fields(body, scope_start, scope_end):
                if wire3 in (3, 4):
                    return None
                if number3 == _CHILD[2] and wire3 == _LEN:
                    spans.append(body[record3:end3])
                else:
                    scope_rest.append(body[record3:end3])
            scope_head = b"".join(scope_rest)
            total += len(spans)
            offset = 0
            while True:
                room = max_spans - current_spans
                chunk = spans[offset : offset + room]
                scope = _len_field(_CHILD[1], scope_head + b"".join(chunk))
                current.append(_len_field(_CHILD[0], resource_head + scope))
                current_spans += len(chunk)
                offset += len(chunk)
                if current_spans >= max_spans:
                    flush()
                if offset >= len(spans):
                    break
    flush()
    return pieces, total
