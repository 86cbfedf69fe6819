"""Collector throughput: OTLP/HTTP and OTLP/gRPC load from a separate process.

    python benchmarks/bench_collector.py [--spans 150000] [--quick] [--targets ...]

For each receiver (the llmspans collector, rotel, a naive Python receiver, Arize
Phoenix) a load generator process (``loadgen.py``) sends pre-built batches of 512
spans (runs of 6 spans: pipeline, retrieval, context selection, generation, action,
feedback) as fast as the receiver accepts them, 4 requests in flight.

Measured per receiver and protocol:
- accepted spans/s (wall clock, at the sender: on a shared machine this moves
  with the neighbours);
- for llmspans: attributed spans/s (spans of runs whose outcome is on /metrics,
  over the wall time from the first request until the last outcome shows, minus
  ``trace_idle``), forwarded spans (what the sink received), and roots enriched;
- CPU seconds of the receiver process over the same interval, and spans per CPU
  second: the per-core rate (the collector's forwarding sink is a separate process
  and not counted). /metrics is polled only every 0.25 s meanwhile: one scrape
  costs the collector milliseconds of CPU;
- the metric delay with the collector otherwise idle: probe runs sent after the
  load, the time from a probe root span's end until its outcome is visible on
  /metrics (polled every 50 ms), minus ``trace_idle``. ``bench_memory.py``
  measures the same delay under a steady load below saturation.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from typing import Any

from _common import http_post, machine, median, run_loadgen, wait_until, write_result
from _otlp import LoadShape, RequestBuilder
from _targets import (
    CountingSink,
    LlmspansCollector,
    Phoenix,
    Rotel,
    Target,
    collector_available,
    rotel_binary,
)

OUTCOMES = "llmspans_task_outcomes_total"
FEEDBACK = "llmspans_feedback_total"
RECEIVED = "llmspans_collector_spans_received_total"
PROBE_PIPELINE = "probe"
#: How often a probe polls /metrics. A scrape of the collector's /metrics costs it
#: milliseconds of CPU, so polling faster would measure the polling.
PROBE_POLL_S = 0.05
#: How often the throughput measurement checks whether every run is attributed.
DONE_POLL_S = 0.25


def probe_count(coll: LlmspansCollector) -> float:
    total = 0.0
    for line in coll.metrics_text().splitlines():
        if line.startswith(OUTCOMES + "{") and f'pipeline="{PROBE_PIPELINE}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def probe_delay(coll: LlmspansCollector, builder: RequestBuilder, timeout: float = 30.0) -> float:
    """Seconds from a probe run's root end until its outcome is on /metrics, minus trace_idle."""
    before = probe_count(coll)
    data = builder.request(builder.run_spans(PROBE_PIPELINE)).SerializeToString()
    t_end = time.perf_counter()
    status, body = http_post(coll.http_endpoint(), data, "application/x-protobuf")
    if status != 200:
        raise RuntimeError(f"probe rejected: HTTP {status} {body[:200]!r}")
    wait_until(
        lambda: probe_count(coll) > before,
        coll.trace_idle_s + timeout,
        interval=PROBE_POLL_S,
        what="probe outcome on /metrics",
    )
    return time.perf_counter() - t_end - coll.trace_idle_s


class ProbeThread(threading.Thread):
    """Sends probe runs one after another while the load runs."""

    def __init__(self, coll: LlmspansCollector) -> None:
        super().__init__(daemon=True)
        self.coll = coll
        self.delays: list[float] = []
        self.errors: list[str] = []
        self.stop_event = threading.Event()
        self.builder = RequestBuilder(LoadShape())

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.delays.append(probe_delay(self.coll, self.builder))
            except Exception as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
                return
            self.stop_event.wait(0.1)


def loadgen_args(
    target: Target, protocol: str, spans: int, shape: LoadShape, concurrency: int
) -> list[str]:
    endpoint = target.http_endpoint() if protocol == "http" else target.grpc_endpoint()
    if endpoint is None:
        raise ValueError(f"{target.name} has no {protocol} endpoint")
    return [
        "--protocol",
        protocol,
        "--endpoint",
        endpoint,
        "--spans",
        str(spans),
        "--spans-per-trace",
        str(shape.spans_per_trace),
        "--payload-bytes",
        str(shape.payload_bytes),
        "--concurrency",
        str(concurrency),
    ]


def measure_passthrough(
    target: Target, protocol: str, spans: int, shape: LoadShape, concurrency: int = 4
) -> dict[str, Any]:
    """Accepted spans/s and CPU of a receiver that only accepts (rotel, naive sink)."""
    marks: dict[str, float] = {}

    def go() -> None:
        marks["cpu0"] = target.proc.cpu_s()

    load = run_loadgen(loadgen_args(target, protocol, spans, shape, concurrency), on_go=go)
    target.proc.check_alive()
    cpu = target.proc.cpu_s() - marks["cpu0"]
    accepted = load["spans_accepted"]
    return {
        "target": target.name,
        "protocol": protocol,
        "spans_sent": accepted,
        "spans_per_trace": shape.spans_per_trace,
        "payload_bytes": shape.payload_bytes,
        "bytes_per_span": round(load["bytes_per_span"], 1),
        "accepted_spans_per_s": round(load["spans_per_s"]),
        "cpu_s": round(cpu, 3),
        "spans_per_cpu_s": round(accepted / cpu) if cpu > 0 else None,
        "retries": load["retries"],
        "errors": load["errors"],
        "error_samples": load["error_samples"],
    }


def measure_llmspans(  # noqa: PLR0917
    coll: LlmspansCollector,
    protocol: str,
    spans: int,
    shape: LoadShape,
    concurrency: int = 4,
    probes: bool = True,
) -> dict[str, Any]:
    """Accepted and attributed spans/s, CPU per span, forwarding and metric delay."""
    before = coll.metrics()
    sink_before = coll.sink.stats() if coll.sink else None
    marks: dict[str, float] = {}
    prober = ProbeThread(coll) if probes else None

    def go() -> None:
        marks["cpu0"] = coll.proc.cpu_s()
        marks["t0"] = time.perf_counter()
        if prober is not None:
            prober.start()

    load = run_loadgen(loadgen_args(coll, protocol, spans, shape, concurrency), on_go=go)
    t_sent = time.perf_counter()
    cpu_sent = coll.proc.cpu_s() - marks["cpu0"]
    if prober is not None:
        prober.stop_event.set()
        prober.join(timeout=60)
    coll.proc.check_alive()
    accepted = load["spans_accepted"]
    runs = accepted // shape.spans_per_trace
    base_outcomes = before.get(OUTCOMES, 0.0)
    probe_runs = len(prober.delays) if prober else 0

    def attributed_runs() -> float:
        return coll.metrics().get(OUTCOMES, 0.0) - base_outcomes - probe_runs

    timed_out = False
    try:
        wait_until(
            lambda: attributed_runs() >= runs,
            coll.trace_idle_s + 120,
            interval=DONE_POLL_S,
            what="every run's outcome on /metrics",
        )
    except TimeoutError:
        timed_out = True
    t_attr = time.perf_counter()
    cpu_attr = coll.proc.cpu_s() - marks["cpu0"]
    after = coll.metrics()
    done_runs = after.get(OUTCOMES, 0.0) - base_outcomes - probe_runs
    feedback = after.get(FEEDBACK, 0.0) - before.get(FEEDBACK, 0.0)
    # Spans of finished runs: 6-span runs count their feedback span too.
    attributed_spans = done_runs * shape.spans_per_trace
    busy_s = max(t_attr - marks["t0"] - coll.trace_idle_s, 1e-9)
    forwarded: dict[str, Any] = {}
    if coll.sink is not None and sink_before is not None:
        expected = accepted + probe_runs * 6
        with contextlib.suppress(TimeoutError):
            wait_until(
                lambda: (
                    coll.sink.stats()["spans"] - sink_before["spans"] >= expected
                    if coll.sink
                    else True
                ),
                60,
                interval=0.1,
                what="forwarded spans at the sink",
            )
        stats = coll.sink.stats()
        forwarded = {
            "forwarded_spans": stats["spans"] - sink_before["spans"],
            "forwarded_roots_with_verdict": stats["roots_with_verdict"]
            - sink_before["roots_with_verdict"],
            "forwarded_roots": stats["roots"] - sink_before["roots"],
        }
    cpu_total = coll.proc.cpu_s() - marks["cpu0"]
    idle_delays = []
    if probes:
        builder = RequestBuilder(LoadShape())
        for _ in range(3):
            idle_delays.append(probe_delay(coll, builder))
    return {
        "target": coll.name,
        "protocol": protocol,
        "spans_sent": accepted,
        "spans_per_trace": shape.spans_per_trace,
        "payload_bytes": shape.payload_bytes,
        "bytes_per_span": round(load["bytes_per_span"], 1),
        "accepted_spans_per_s": round(load["spans_per_s"]),
        "received_counter": after.get(RECEIVED, 0.0) - before.get(RECEIVED, 0.0),
        "runs": runs,
        "runs_attributed": done_runs,
        "feedback_counted": feedback,
        "attribution_timed_out": timed_out,
        "attributed_spans_per_s": round(attributed_spans / busy_s),
        "cpu_s_while_sending": round(cpu_sent, 3),
        "cpu_s_until_attributed": round(cpu_attr, 3),
        "cpu_s_until_forwarded": round(cpu_total, 3),
        "spans_per_cpu_s": round(accepted / cpu_attr) if cpu_attr > 0 else None,
        "spans_per_cpu_s_with_forwarding": round(accepted / cpu_total) if cpu_total > 0 else None,
        "send_s": round(t_sent - marks["t0"], 3),
        "metric_delay_under_load_s": delays(prober.delays if prober else []),
        "metric_delay_idle_s": delays(idle_delays),
        "probe_errors": prober.errors if prober else [],
        "retries": load["retries"],
        "errors": load["errors"],
        "error_samples": load["error_samples"],
        "rss_mib": round(coll.proc.rss() / 2**20, 1),
        **forwarded,
    }


def delays(xs: list[float]) -> dict[str, float] | None:
    if not xs:
        return None
    return {"n": len(xs), "median": round(median(xs), 3), "max": round(max(xs), 3)}


def measure_phoenix(ph: Phoenix, spans: int, timeout: float) -> dict[str, Any]:
    """Spans stored per second: send, then poll the stored count."""
    base = ph.stored_spans()
    shape = LoadShape()
    marks: dict[str, float] = {}

    def go() -> None:
        marks["t0"] = time.perf_counter()
        marks["cpu0"] = ph.proc.cpu_s()

    load = run_loadgen(loadgen_args(ph, "http", spans, shape, 1), on_go=go)
    accepted = load["spans_accepted"]
    stored = 0
    samples: list[tuple[float, int]] = []
    deadline = marks["t0"] + timeout
    while time.perf_counter() < deadline:
        stored = ph.stored_spans() - base
        samples.append((round(time.perf_counter() - marks["t0"], 2), stored))
        if stored >= accepted:
            break
        time.sleep(0.5)
    elapsed = time.perf_counter() - marks["t0"]
    cpu = ph.proc.cpu_s() - marks["cpu0"]
    return {
        "target": "phoenix",
        "protocol": "http",
        "spans_sent": accepted,
        "spans_per_trace": 6,
        "payload_bytes": 0,
        "accepted_spans_per_s": round(load["spans_per_s"]),
        "stored_spans": stored,
        "stored_all": stored >= accepted,
        "stored_spans_per_s": round(stored / elapsed, 1),
        "cpu_s": round(cpu, 3),
        "spans_per_cpu_s": round(stored / cpu, 1) if cpu > 0 else None,
        "startup_s": round(ph.startup_s, 1),
        "stored_over_time": samples[-10:],
        "errors": load["errors"],
        "error_samples": load["error_samples"],
    }


def run(  # noqa: PLR0917
    targets: list[str],
    spans: int,
    phoenix_spans: int,
    phoenix_timeout: float,
    quick: bool,
    trace_idle_s: float,
) -> dict[str, Any]:
    shape = LoadShape()
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for name in targets:
        print(f"-- {name}", file=sys.stderr, flush=True)
        if name == "llmspans":
            if not collector_available():
                skipped[name] = "collector package has no __main__ yet"
                continue
            for protocol in ("http", "grpc"):
                with LlmspansCollector(
                    f"llmspans-collector-{protocol}", trace_idle_s=trace_idle_s
                ) as coll:
                    # A short warm-up (imports, first-call paths) before measuring.
                    if not quick:
                        measure_llmspans(coll, protocol, 2048, shape, probes=False)
                    rows.append(measure_llmspans(coll, protocol, spans, shape, probes=False))
                    rows[-1]["metric_delay_idle_s"] = delays(
                        [probe_delay(coll, RequestBuilder(LoadShape())) for _ in range(5)]
                    )
        elif name == "rotel":
            if rotel_binary() is None:
                skipped[name] = "rotel not installed"
                continue
            with Rotel() as rotel:
                for protocol in ("http", "grpc"):
                    if not quick:
                        measure_passthrough(rotel, protocol, 2048, shape)
                    rows.append(measure_passthrough(rotel, protocol, spans, shape))
        elif name == "python-naive":
            with CountingSink(naive=True) as sink:
                if not quick:
                    measure_passthrough(sink, "http", 2048, shape)
                rows.append(measure_passthrough(sink, "http", spans, shape))
        elif name == "phoenix":
            try:
                ph = Phoenix()
            except FileNotFoundError as exc:
                skipped[name] = str(exc)
                continue
            with ph:
                rows.append(measure_phoenix(ph, phoenix_spans, phoenix_timeout))
        else:
            raise SystemExit(f"unknown target {name}")
        print(f"   {rows[-1] if rows else ''}", file=sys.stderr, flush=True)
    return {
        "benchmark": "collector",
        "machine": machine(),
        "quick": quick,
        "trace_idle_s": trace_idle_s,
        "spans_per_load": spans,
        "batch_spans": 512,
        "concurrency": 4,
        "rows": rows,
        "skipped": skipped,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=150_000)
    parser.add_argument("--phoenix-spans", type=int, default=3072)
    parser.add_argument("--phoenix-timeout", type=float, default=60.0)
    parser.add_argument(
        "--targets", nargs="+", default=["llmspans", "rotel", "python-naive", "phoenix"]
    )
    parser.add_argument(
        "--trace-idle", type=float, default=2.0, help="the collector's trace_idle_s"
    )
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.spans, args.phoenix_spans, args.phoenix_timeout = 5000, 512, 10.0
        args.trace_idle = 0.3
    result = run(
        args.targets,
        args.spans,
        args.phoenix_spans,
        args.phoenix_timeout,
        args.quick,
        args.trace_idle,
    )
    path = write_result("collector", result)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
