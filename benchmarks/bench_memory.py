"""Collector memory: resident memory against spans in flight, and under steady load.

    python benchmarks/bench_memory.py [--levels 10000 100000 1000000] [--soak 60] [--quick]

In-flight: the collector runs with ``trace_idle_s`` and ``trace_timeout_s`` of an
hour, so every trace sent stays assembled in memory. After each level is reached
(the collector's own received counter says so) the resident set size of the
collector process is read; bytes per in-flight span = (RSS - RSS before the load)
/ spans in flight. The spans are the benchmark's runs of 6 (about 360 bytes each
on the wire).

Soak: the collector runs with short assembly times and a load generator sends
fresh traces at a steady rate (5,000 spans/s by default, well below saturation)
for ``--soak`` seconds (600 for the full ten-minute profile); RSS is sampled
every second, and probe runs measure the metric delay under that steady load.
Flat means the growth over the second half of the run stays within noise.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from typing import Any

from _common import HERE, PYTHON, machine, wait_until, write_result
from _otlp import LoadShape
from _targets import MEMORY_BYTES_PER_INFLIGHT_SPAN, LlmspansCollector, collector_available
from bench_collector import ProbeThread, delays

RECEIVED = "llmspans_collector_spans_received_total"
INFLIGHT_TRACES = "llmspans_collector_traces_inflight"
FORWARD_QUEUE = "llmspans_collector_forward_queue_spans"


def _settle(coll: LlmspansCollector, expected: float) -> None:
    """Waits until every span is in and the forwarding queue has drained."""
    wait_until(
        lambda: coll.metrics().get(RECEIVED, 0.0) >= expected,
        300,
        interval=0.2,
        what=f"{expected:.0f} spans received",
    )
    wait_until(
        lambda: coll.metrics().get(FORWARD_QUEUE, 0.0) == 0.0,
        300,
        interval=0.2,
        what="forwarding queue drained",
    )
    time.sleep(1.0)


def inflight(levels: list[int]) -> dict[str, Any]:
    from _common import run_loadgen

    top = max(levels)
    coll = LlmspansCollector(
        "llmspans-collector-memory",
        trace_idle_s=3600,
        trace_timeout_s=3600,
        max_inflight_spans=int(top * 1.5) + 10_000,
        finalized_cache_size=100_000,
        # The default byte budgets hold about 200,000 such spans; this measures more.
        max_memory_bytes=max(384 << 20, top * MEMORY_BYTES_PER_INFLIGHT_SPAN),
    )
    rows: list[dict[str, Any]] = []
    try:
        time.sleep(1.0)
        base_rss = coll.proc.rss()
        received = 0.0
        for level in sorted(levels):
            need = level - int(received)
            if need > 0:
                load = run_loadgen(
                    [
                        "--protocol",
                        "http",
                        "--endpoint",
                        coll.http_endpoint(),
                        "--spans",
                        str(need),
                        "--concurrency",
                        "2",
                    ]
                )
                if load["errors"]:
                    raise RuntimeError(f"load rejected: {load['error_samples']}")
                received += load["spans_accepted"]
            _settle(coll, received)
            coll.proc.check_alive()
            rss = coll.proc.rss()
            metrics = coll.metrics()
            rows.append(
                {
                    "spans_in_flight": int(received),
                    "traces_in_flight": metrics.get(INFLIGHT_TRACES),
                    "rss_mib": round(rss / 2**20, 1),
                    "bytes_per_span": round((rss - base_rss) / received, 1),
                }
            )
            print(f"   {rows[-1]}", file=sys.stderr, flush=True)
    finally:
        coll.stop()
    return {"base_rss_mib": round(base_rss / 2**20, 1), "rows": rows}


def soak(seconds: float, rate: float) -> dict[str, Any]:
    # The cache of finalised trace ids (late-span detection) fills up first and then
    # stays at its bound; a short soak uses a smaller one so that the run reaches the
    # steady state it is meant to show.
    cache = 100_000 if seconds >= 300 else 10_000
    coll = LlmspansCollector(
        "llmspans-collector-soak",
        trace_idle_s=0.5,
        trace_timeout_s=30,
        finalized_cache_size=cache,
    )
    samples: list[tuple[float, float]] = []
    try:
        load = subprocess.Popen(
            [
                PYTHON,
                str(HERE / "loadgen.py"),
                "--protocol",
                "http",
                "--endpoint",
                coll.http_endpoint(),
                "--duration",
                str(seconds),
                "--rate",
                str(rate),
                "--concurrency",
                "2",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        prober = ProbeThread(coll)
        t0 = time.perf_counter()
        prober.start()
        while load.poll() is None:
            coll.proc.check_alive()
            samples.append((round(time.perf_counter() - t0, 1), round(coll.proc.rss() / 2**20, 2)))
            time.sleep(1.0)
        out = load.stdout.read() if load.stdout else ""
        result_line = [ln for ln in out.splitlines() if ln.startswith("{")]
        import json

        sent = json.loads(result_line[-1]) if result_line else {}
        prober.stop_event.set()
        prober.join(timeout=60)
        metrics = coll.metrics()
    finally:
        coll.stop()
    half = [rss for t, rss in samples if t >= seconds / 2]
    first_half = [rss for t, rss in samples if 0.1 * seconds <= t < seconds / 2]
    slope = _slope([(t, rss) for t, rss in samples if t >= seconds / 2])
    return {
        "seconds": seconds,
        "finalized_cache_size": cache,
        "rate_spans_per_s": rate,
        "spans_sent": sent.get("spans_accepted"),
        "errors": sent.get("errors"),
        "spans_received": metrics.get(RECEIVED),
        "rss_mib_first_half_max": max(first_half) if first_half else None,
        "rss_mib_second_half_max": max(half) if half else None,
        "rss_mib_end": samples[-1][1] if samples else None,
        "slope_mib_per_min_second_half": round(slope * 60, 3) if slope is not None else None,
        "metric_delay_s": delays(prober.delays),
        "probe_errors": prober.errors,
        "samples": samples[:: max(1, len(samples) // 60)],
    }


def _slope(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    den = sum((t - mx) ** 2 for t, _ in points)
    return sum((t - mx) * (v - my) for t, v in points) / den if den else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--soak", type=float, default=60.0, help="seconds of steady load")
    parser.add_argument("--soak-rate", type=float, default=5_000.0, help="spans/s")
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.levels, args.soak, args.soak_rate = [1000, 5000], 4.0, 2000.0
    result: dict[str, Any] = {
        "benchmark": "memory",
        "machine": machine(),
        "quick": args.quick,
        "load": {"spans_per_trace": LoadShape().spans_per_trace},
    }
    if not collector_available():
        result["skipped"] = "collector package has no __main__ yet"
    else:
        print("-- in-flight", file=sys.stderr, flush=True)
        result["inflight"] = inflight(args.levels)
        print("-- soak", file=sys.stderr, flush=True)
        result["soak"] = soak(args.soak, args.soak_rate)
    print(write_result("memory", result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
