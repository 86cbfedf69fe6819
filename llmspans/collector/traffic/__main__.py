"""``python -m collector.traffic``: steady runs, then a spike of one stage's failures, over OTLP.

Examples::

    # the compose stack: 10 runs/s through the gateway, a retrieval spike every 40 min
    python -m collector.traffic --endpoint http://gateway:4318 \\
        --phase steady=2400 --phase spike=900 --loop

    # a reference collector gets every span; a pair of replicas shares the traces
    python -m collector.traffic --endpoint http://127.0.0.1:4318 \\
        --shard http://127.0.0.1:5318,http://127.0.0.1:6318 --phase steady=60

Each phase prints one line when it starts (``phase spike started``) and one
summary line when it ends, so a caller can follow along.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

import llmspans
from llmspans.collector.traffic.pipeline import (
    FAULT_MODES,
    STEADY_FAULTS,
    FaultMix,
    SupportPipeline,
)
from llmspans.collector.traffic.shard import TraceShardingExporter

FEEDBACK_SHARE = 0.4
FEEDBACK_KINDS = (("accept", 0.6), ("edit", 0.3), ("bypass", 0.1))


def _traces_url(endpoint: str) -> str:
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces"


def _exporters(endpoints: Sequence[str], shards: Sequence[str]) -> list[SpanExporter]:
    exporters: list[SpanExporter] = [
        OTLPSpanExporter(endpoint=_traces_url(e), timeout=10) for e in endpoints
    ]
    for group in shards:
        members = [m for m in group.split(",") if m]
        exporters.append(
            TraceShardingExporter(
                [OTLPSpanExporter(endpoint=_traces_url(m), timeout=10) for m in members]
            )
        )
    if not exporters:
        raise SystemExit("give at least one --endpoint or --shard")
    return exporters


def _phase(value: str) -> tuple[str, float]:
    name, _, seconds = value.partition("=")
    if name not in ("steady", "spike") or not seconds:
        raise argparse.ArgumentTypeError(f"{value!r}: expected steady=SECONDS or spike=SECONDS")
    return name, float(seconds)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m collector.traffic", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--endpoint",
        action="append",
        default=[],
        help="OTLP/HTTP endpoint; every span goes to each",
    )
    parser.add_argument(
        "--shard",
        action="append",
        default=[],
        help="comma-separated OTLP/HTTP endpoints that share the traces by trace id",
    )
    parser.add_argument("--rate", type=float, default=10.0, help="runs per second")
    parser.add_argument(
        "--phase",
        type=_phase,
        action="append",
        default=[],
        help="steady=SECONDS or spike=SECONDS, in order (default: steady=60 spike=60)",
    )
    parser.add_argument("--loop", action="store_true", help="repeat the phases until stopped")
    parser.add_argument("--spike-stage", default="retrieval", choices=sorted(FAULT_MODES))
    parser.add_argument("--spike-mode", default="error")
    parser.add_argument(
        "--spike-share", type=float, default=0.6, help="share of runs with the spike's fault"
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=None,
        help="steady fault mix, stage:mode=share (repeatable; default: a few %% per stage)",
    )
    parser.add_argument("--latency-scale", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--service-name", default="support-bot")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.spike_mode not in FAULT_MODES[args.spike_stage]:
        modes = ", ".join(FAULT_MODES[args.spike_stage])
        raise SystemExit(f"--spike-mode for {args.spike_stage}: one of {modes}")
    steady = FaultMix.parse(args.fault) if args.fault is not None else FaultMix(dict(STEADY_FAULTS))
    spike_shares = {
        fault: share * (1.0 - args.spike_share) for fault, share in steady.shares.items()
    }
    spike_fault = (args.spike_stage, args.spike_mode)
    spike_shares[spike_fault] = spike_shares.get(spike_fault, 0.0) + args.spike_share
    mixes = {"steady": steady, "spike": FaultMix(spike_shares)}
    phases: list[tuple[str, float]] = args.phase or [("steady", 60.0), ("spike", 60.0)]

    provider = TracerProvider(resource=Resource.create({"service.name": args.service_name}))
    for exporter in _exporters(args.endpoint, args.shard):
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=200))
    configuration = llmspans.configure(tracer_provider=provider, set_global=False)

    pipeline = SupportPipeline(latency_scale=args.latency_scale)
    rng_lock = threading.Lock()
    master = random.Random(args.seed)
    counter = 0

    def one_run(mix: FaultMix) -> bool:
        nonlocal counter
        with rng_lock:
            counter += 1
            ticket = f"T-{counter}"
            rng = random.Random(master.getrandbits(64))
        fault = mix.draw(rng)
        result = pipeline.run(ticket, fault, rng)
        if result.posted and result.run is not None and rng.random() < FEEDBACK_SHARE:
            kind = rng.choices([k for k, _ in FEEDBACK_KINDS], [w for _, w in FEEDBACK_KINDS])[0]
            edit_ratio = round(rng.uniform(0.05, 0.6), 3) if kind == "edit" else None
            llmspans.feedback(result.run, kind, edit_ratio=edit_ratio)
        return fault is not None

    try:
        with ThreadPoolExecutor(max_workers=max(1, args.workers)) as pool:
            while True:
                for name, seconds in phases:
                    print(f"phase {name} started", flush=True)
                    mix = mixes[name]
                    started = time.monotonic()
                    runs = 0
                    pending: list[Future[bool]] = []
                    while (elapsed := time.monotonic() - started) < seconds:
                        due = int(elapsed * args.rate) + 1
                        while runs < due:
                            pending.append(pool.submit(one_run, mix))
                            runs += 1
                        time.sleep(min(0.05, 1.0 / args.rate))
                    faulty = sum(1 for f in pending if f.result())
                    print(f"phase {name} ended runs={runs} faulty={faulty}", flush=True)
                if not args.loop:
                    break
    except KeyboardInterrupt:
        pass
    finally:
        configuration.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
