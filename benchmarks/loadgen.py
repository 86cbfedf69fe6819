"""OTLP load generator: sends pre-built trace batches to one receiver, in its own process.

    python benchmarks/loadgen.py --protocol http --endpoint http://127.0.0.1:4318/v1/traces \
        --spans 200000 [--concurrency 4] [--rate SPANS_PER_S] [--spans-per-trace 6] \
        [--payload-bytes 0] [--sampled-share 0.01] [--duration S]

All requests are serialized before the clock starts, so what is measured is the
receiver, not the generator. Closed loop by default (``--concurrency`` requests in
flight, each sent as soon as the previous answer arrives); with ``--rate`` the
batches are paced to that many spans per second. Backpressure answers (HTTP
429/503, gRPC UNAVAILABLE/RESOURCE_EXHAUSTED) are retried after a short pause and
counted. Prints one JSON object on stdout; ``ready`` on stderr once the batches
are built, then waits for a line on stdin when ``--wait-go`` is given (so the
caller can start its own clocks at the same moment).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field

from _otlp import LoadShape, RequestBuilder

RETRY_PAUSE_S = 0.02


@dataclass
class SendStats:
    spans_accepted: int = 0
    requests: int = 0
    retries: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    t_start: float = 0.0
    t_end: float = 0.0

    @property
    def elapsed_s(self) -> float:
        return max(self.t_end - self.t_start, 1e-9)


Sender = Callable[[bytes], Awaitable[tuple[bool, bool, str]]]
"""Sends one request: (accepted, retry, error text)."""


async def _http_sender(
    endpoint: str, concurrency: int
) -> tuple[Sender, Callable[[], Awaitable[None]]]:
    import aiohttp

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        headers={"Content-Type": "application/x-protobuf"},
    )

    async def send(data: bytes) -> tuple[bool, bool, str]:
        async with session.post(endpoint, data=data) as resp:
            body = await resp.read()
            if resp.status == 200:
                return True, False, ""
            if resp.status in (429, 502, 503, 504):
                return False, True, ""
            return False, False, f"HTTP {resp.status}: {body[:200]!r}"

    return send, session.close


async def _grpc_sender(endpoint: str) -> tuple[Sender, Callable[[], Awaitable[None]]]:
    import grpc
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    target = endpoint.removeprefix("http://")
    channel = grpc.aio.insecure_channel(
        target, options=[("grpc.max_send_message_length", 128 << 20)]
    )
    # Send the pre-serialized bytes as they are: an identity serializer.
    call = channel.unary_unary(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        request_serializer=lambda b: b,
        response_deserializer=ExportTraceServiceResponse.FromString,
    )
    retry_codes = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED}

    async def send(data: bytes) -> tuple[bool, bool, str]:
        try:
            await call(data, timeout=30)
        except grpc.aio.AioRpcError as err:
            if err.code() in retry_codes:
                return False, True, ""
            return False, False, f"gRPC {err.code().name}: {err.details()}"
        return True, False, ""

    async def close() -> None:
        await channel.close()

    return send, close


async def send_all(  # noqa: PLR0917
    protocol: str,
    endpoint: str,
    batches: Iterator[tuple[bytes, int]],
    concurrency: int,
    rate: float | None,
    duration: float | None,
) -> SendStats:
    """Sends the batches (until they run out, or until ``duration`` when given)."""
    if protocol == "http":
        send, close = await _http_sender(endpoint, concurrency)
    elif protocol == "grpc":
        send, close = await _grpc_sender(endpoint)
    else:
        raise ValueError(f"unknown protocol {protocol!r}")
    stats = SendStats()
    source = batches
    lock = asyncio.Lock()
    stats.t_start = time.perf_counter()
    deadline = stats.t_start + duration if duration else None
    sent_spans = 0

    async def next_batch() -> tuple[bytes, int] | None:
        nonlocal sent_spans
        async with lock:
            now = time.perf_counter()
            if deadline is not None and now >= deadline:
                return None
            item = next(source, None)
            if item is None:
                return None
            if rate:
                due = stats.t_start + sent_spans / rate
                if due > now:
                    await asyncio.sleep(due - now)
            sent_spans += item[1]
            return item

    async def worker() -> None:
        while (item := await next_batch()) is not None:
            data, count = item
            while True:
                stats.requests += 1
                try:
                    ok, retry, error = await send(data)
                except Exception as exc:  # connection refused, reset: count and go on
                    ok, retry, error = False, False, f"{type(exc).__name__}: {exc}"
                if ok:
                    stats.spans_accepted += count
                    break
                if retry:
                    stats.retries += 1
                    await asyncio.sleep(RETRY_PAUSE_S)
                    continue
                stats.errors += 1
                if len(stats.error_samples) < 5:
                    stats.error_samples.append(error)
                break

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        stats.t_end = time.perf_counter()
        await close()
    return stats


def build_batches(args: argparse.Namespace) -> tuple[Iterator[tuple[bytes, int]], float]:
    """The batches to send, and the serialized bytes per span."""
    shape = LoadShape(
        spans_per_trace=args.spans_per_trace,
        payload_bytes=args.payload_bytes,
        sampled_share=args.sampled_share,
    )
    builder = RequestBuilder(shape, seed=args.seed)
    if args.duration:
        # Endless fresh trace ids; each batch costs one bytes.replace while sending.
        sample = next(RequestBuilder(shape).batches(1, args.batch_spans))
        return builder.batches(1 << 62, args.batch_spans), len(sample[0]) / sample[1]
    built = list(builder.batches(args.spans, args.batch_spans))
    return iter(built), sum(len(d) for d, _ in built) / max(sum(c for _, c in built), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--protocol", choices=("http", "grpc"), default="http")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--spans", type=int, default=100_000, help="spans to build")
    parser.add_argument("--batch-spans", type=int, default=512)
    parser.add_argument("--spans-per-trace", type=int, default=6)
    parser.add_argument("--payload-bytes", type=int, default=0)
    parser.add_argument(
        "--sampled-share",
        type=float,
        default=0.0,
        help="share of runs whose root is marked llmspans.evaluation.sampled",
    )
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--rate", type=float, default=None, help="spans/s (default: as fast as possible)"
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="send fresh traces for this long instead of --spans",
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--wait-go", action="store_true")
    args = parser.parse_args(argv)

    batches, bytes_per_span = build_batches(args)
    print("ready", file=sys.stderr, flush=True)
    if args.wait_go:
        sys.stdin.readline()
    stats = asyncio.run(
        send_all(args.protocol, args.endpoint, batches, args.concurrency, args.rate, args.duration)
    )
    out = asdict(stats)
    out["elapsed_s"] = stats.elapsed_s
    out["spans_per_s"] = stats.spans_accepted / stats.elapsed_s
    out["bytes_per_span"] = bytes_per_span
    print(json.dumps(out), flush=True)
    return 0 if stats.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
