"""Collector scaling: throughput against spans per trace, attribute payload, traces in flight.

    python benchmarks/bench_scaling.py [--spans 60000] [--quick]

OTLP/HTTP into the llmspans collector (attribution, metrics and forwarding on), as
in ``bench_collector.py``:

- spans per trace 6, 60, 600 (6: the standard run with its feedback trace; 60 and
  600: one pipeline root with 59 or 599 stage spans, an agent loop);
- an opaque content attribute of 0, 1 KiB and 8 KiB on every span (what content
  capture adds: the collector forwards it, the core never reads it);
- spans already in flight: the same load sent three times to one collector whose
  traces stay assembled (``trace_idle_s`` 120 s), so the second and third loads
  run with hundreds of thousands of spans in flight. CPU per span while
  receiving should not grow with them.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from _common import machine, run_loadgen, write_result
from _otlp import LoadShape
from _targets import MEMORY_BYTES_PER_INFLIGHT_SPAN, LlmspansCollector, collector_available
from bench_collector import loadgen_args, measure_llmspans

SHAPES = ((6, 0), (60, 0), (600, 0), (6, 1024), (6, 8192))


def shapes_rows(spans: int, trace_idle_s: float, quick: bool) -> list[dict[str, Any]]:
    """One fresh collector per shape, warmed up first; ``quick``: one collector for all."""
    rows = []
    shared = (
        LlmspansCollector("llmspans-collector-scaling", trace_idle_s=trace_idle_s)
        if quick
        else None
    )
    try:
        for spt, payload in SHAPES:
            shape = LoadShape(spans_per_trace=spt, payload_bytes=payload)
            n = spans if payload <= 1024 else spans // 3
            if shared is not None:
                row = measure_llmspans(shared, "http", n, shape, probes=False)
            else:
                with LlmspansCollector(
                    f"llmspans-collector-scaling-{spt}-{payload}", trace_idle_s=trace_idle_s
                ) as coll:
                    measure_llmspans(coll, "http", 2048, shape, probes=False)
                    row = measure_llmspans(coll, "http", n, shape, probes=False)
            rows.append(row)
            print(
                f"   spt={spt} payload={payload}: {row['accepted_spans_per_s']} spans/s accepted, "
                f"{row['spans_per_cpu_s']} spans/cpu-s",
                file=sys.stderr,
                flush=True,
            )
    finally:
        if shared is not None:
            shared.stop()
    return rows


def inflight_rows(spans: int) -> list[dict[str, Any]]:
    rows = []
    shape = LoadShape()
    with LlmspansCollector(
        "llmspans-collector-scaling-inflight",
        trace_idle_s=120,
        trace_timeout_s=300,
        max_inflight_spans=spans * 4 + 10_000,
        # room in the byte budgets for every load held at once
        max_memory_bytes=max(384 << 20, (spans * 4 + 10_000) * MEMORY_BYTES_PER_INFLIGHT_SPAN),
    ) as coll:
        in_flight = 0
        for _ in range(3):
            marks: dict[str, float] = {}

            def go(marks: dict[str, float] = marks) -> None:
                marks["cpu0"] = coll.proc.cpu_s()

            load = run_loadgen(loadgen_args(coll, "http", spans, shape, 4), on_go=go)
            cpu = coll.proc.cpu_s() - marks["cpu0"]
            rows.append(
                {
                    "spans_in_flight_before": in_flight,
                    "accepted_spans_per_s": round(load["spans_per_s"]),
                    "cpu_s_while_sending": round(cpu, 3),
                    "spans_per_cpu_s_receiving": round(load["spans_accepted"] / cpu)
                    if cpu
                    else None,
                    "errors": load["errors"],
                    "retries": load["retries"],
                }
            )
            in_flight += load["spans_accepted"]
            print(f"   in flight {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=60_000)
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.spans = 3000
    result: dict[str, Any] = {
        "benchmark": "scaling",
        "machine": machine(),
        "quick": args.quick,
        "spans_per_load": args.spans,
    }
    if not collector_available():
        result["skipped"] = "collector package has no __main__ yet"
    else:
        result["shapes"] = shapes_rows(args.spans, 0.3 if args.quick else 1.0, args.quick)
        result["inflight"] = inflight_rows(args.spans)
    print(write_result("scaling", result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
