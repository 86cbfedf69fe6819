"""The collector's per-span work, step by step, in one process (no network).

    python benchmarks/bench_core.py [--spans 60000] [--quick]

The same batches the load generator sends are pushed through the collector's own
``Processor`` (admission, conversion, assembly, evaluation, metrics, enrichment)
with no exporter attached, then each step is timed on its own:

- ``parse``: ``ExportTraceServiceRequest.ParseFromString`` (upb);
- ``convert``: ``record_from_otlp_span`` on every span (``parse + convert``: both);
- ``slim parse + SlimDecoder``: what the collector runs, the same records without
  building a message per attribute (checked equal to the above);
- ``naive walk``: every attribute of every span into a dict (the comparison point);
- ``evaluate``: ``evaluate_trace`` per trace (runs assembled and attributed);
- ``observations``: ``observations`` per evaluated trace;
- ``metrics record``: the shared store's ``MetricStore.record`` (what the collector
  and the embedded mode do with each evaluated trace);
- ``serialize``: re-encoding each request (what forwarding a modified request costs);
- ``processor accept`` / ``processor finalise``: the real thing end to end.

Microseconds of process CPU time per span (wall time would count the waits of a
shared machine), best of ``--repeat`` passes.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from _common import machine, write_result
from _otlp import LoadShape, RequestBuilder
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from sink import naive_walk


def _best(fn: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def run(spans: int, repeat: int) -> dict[str, Any]:
    from llmspans.collector._protobuf import record_from_otlp_span
    from llmspans.core.evaluate import evaluate_trace
    from llmspans.core.metrics import observations
    from llmspans.core.model import Thresholds

    batches = [data for data, _ in RequestBuilder(LoadShape()).batches(spans)]
    requests = [ExportTraceServiceRequest.FromString(b) for b in batches]
    total = sum(len(ss.spans) for r in requests for rs in r.resource_spans for ss in rs.scope_spans)
    all_spans = [
        s for r in requests for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans
    ]
    thresholds = Thresholds()
    steps: dict[str, float] = {}

    steps["parse"] = _best(
        lambda: [ExportTraceServiceRequest.FromString(b) for b in batches], repeat
    )
    steps["convert"] = _best(lambda: [record_from_otlp_span(s) for s in all_spans], repeat)
    steps["parse + convert"] = _best(
        lambda: [
            record_from_otlp_span(sp)
            for b in batches
            for rs in ExportTraceServiceRequest.FromString(b).resource_spans
            for ss in rs.scope_spans
            for sp in ss.spans
        ],
        repeat,
    )
    from llmspans.collector._protobuf import SLIM_EXPORT_REQUEST, SlimDecoder

    def slim_records(decoder: SlimDecoder) -> list[Any]:
        return [
            decoder.record(sp)
            for b in batches
            for rs in SLIM_EXPORT_REQUEST.FromString(b).resource_spans
            for ss in rs.scope_spans
            for sp in ss.spans
        ]

    full_records = [record_from_otlp_span(sp) for sp in all_spans]
    slim_equal = slim_records(SlimDecoder()) == full_records
    decoder = SlimDecoder()
    steps["slim parse + SlimDecoder"] = _best(lambda: slim_records(decoder), repeat)
    steps["naive walk"] = _best(lambda: [naive_walk(r) for r in requests], repeat)
    steps["serialize"] = _best(lambda: [r.SerializeToString() for r in requests], repeat)

    records = [record_from_otlp_span(s) for s in all_spans]
    by_trace: dict[bytes, list[Any]] = {}

    def group() -> None:
        by_trace.clear()
        for rec in records:
            by_trace.setdefault(rec.trace_id, []).append(rec)

    steps["group by trace"] = _best(group, repeat)
    traces = list(by_trace.values())
    steps["evaluate"] = _best(lambda: [evaluate_trace(t, thresholds) for t in traces], repeat)
    results = [evaluate_trace(t, thresholds) for t in traces]
    steps["observations"] = _best(lambda: [observations(r) for r in results], repeat)
    found = [(r, t[0].trace_id) for r, t in zip(results, traces, strict=True)]

    skipped: dict[str, str] = {}
    try:
        from llmspans.collector.config import CollectorSettings
        from llmspans.collector.forwarding import Forwarder
        from llmspans.collector.metrics import MetricsStore
        from llmspans.collector.processor import Processor
    except ImportError as exc:
        skipped["processor"] = f"collector not importable: {exc}"
    else:

        def record() -> None:
            store = MetricsStore()
            for result, trace_id in found:
                store.record(result, trace_id)

        steps["metrics record"] = _best(record, repeat)

        def processor_pass() -> tuple[float, float]:
            clock = [0.0]
            proc = Processor(
                CollectorSettings(), MetricsStore(), Forwarder([]), clock=lambda: clock[0]
            )
            raw = [d for d, _ in RequestBuilder(LoadShape()).batches(spans)]
            fresh = [ExportTraceServiceRequest.FromString(b) for b in raw]
            t0 = time.process_time()
            for req, data in zip(fresh, raw, strict=True):
                proc.accept(req, data)
            t1 = time.process_time()
            clock[0] = 1e9
            # A sweep may finalise a bounded number of traces: sweep until none is left.
            while proc.sweep():
                pass
            return t1 - t0, time.process_time() - t1

        passes = [processor_pass() for _ in range(repeat)]
        steps["processor accept"] = min(a for a, _ in passes)
        steps["processor finalise"] = min(f for _, f in passes)

    rows = [
        {
            "step": name,
            "us_per_span": round(1e6 * seconds / total, 2),
            "spans_per_s_one_core": round(total / seconds) if seconds else None,
        }
        for name, seconds in steps.items()
    ]
    return {
        "spans": total,
        "traces": len(traces),
        "rows": rows,
        "slim_decoder_equal_records": slim_equal,
        "skipped": skipped,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=60_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.spans, args.repeat = 3000, 1
    result = {
        "benchmark": "core",
        "machine": machine(),
        "quick": args.quick,
        **run(args.spans, args.repeat),
    }
    for row in result["rows"]:
        print(
            f"{row['step']:>20} {row['us_per_span']:8.2f} us/span "
            f"{row['spans_per_s_one_core'] or 0:>12,} spans/s",
            file=sys.stderr,
        )
    print(write_result("core", result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
