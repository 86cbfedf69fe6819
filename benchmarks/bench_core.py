"""The collector's per-span work, step by step, in one process (no network).

    python benchmarks/bench_core.py [--spans 60000] [--quick]
    python benchmarks/bench_core.py --conventions [--spans 60000] [--repeat 9] [--instructions]

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

``--conventions`` measures instead what reading the other conventions (``gen_ai.*``,
OpenInference, OpenLLMetry: :mod:`llmspans.core.conventions`) and folding calls seen
twice cost spans that carry none of them (the load is llmspans' own spans): the
collector's path (slim parse, ``SlimDecoder``, ``evaluate_trace``) and the full
converter's (``record_from_otlp_span``, ``evaluate_trace``), each with the
conventions read and with them bypassed (the converters' table of foreign keys
emptied, ``apply`` and the stacked-call check made no-ops), in alternating rounds:
median CPU ns per span of each and of the difference. ``--instructions`` counts
the same two paths in CPU instructions under ``valgrind --tool=cachegrind`` (one
child per variant plus a baseline child that only builds the input; the garbage
collector off during the pass), which a shared machine's noise does not move.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _common import count_instructions, machine, write_result
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


@contextmanager
def conventions_bypassed() -> Iterator[None]:
    """The core with the other conventions not read: what a span without them would
    cost if the converters knew nothing of them (and assembly folded nothing)."""
    from llmspans.collector import _protobuf
    from llmspans.core import convert, runs

    saved = (_protobuf._FOREIGN_CODES, convert.FOREIGN_FIELDS, convert.apply, runs._stacked)
    _protobuf._FOREIGN_CODES = {}  # type: ignore[misc]
    convert.FOREIGN_FIELDS = {}  # type: ignore[misc]
    convert.apply = lambda record, collected: None
    runs._stacked = lambda spans, by_key, runs_by_root: None
    try:
        yield
    finally:
        (_protobuf._FOREIGN_CODES, convert.FOREIGN_FIELDS, convert.apply, runs._stacked) = saved  # type: ignore[misc]


_PATHS = ("slim + evaluate", "convert + evaluate")


def _conventions_input(spans: int) -> tuple[list[bytes], int]:
    batches = [data for data, _ in RequestBuilder(LoadShape(), seed=7).batches(spans)]
    total = sum(
        len(ss.spans)
        for b in batches
        for rs in ExportTraceServiceRequest.FromString(b).resource_spans
        for ss in rs.scope_spans
    )
    return batches, total


def _conventions_pass(path: str, batches: list[bytes]) -> None:
    """One pass of ``path`` over every span: records, grouped by trace, evaluated."""
    from llmspans.collector._protobuf import (
        SLIM_EXPORT_REQUEST,
        SlimDecoder,
        record_from_otlp_span,
    )
    from llmspans.core.evaluate import evaluate_trace
    from llmspans.core.model import Thresholds

    thresholds = Thresholds()
    by_trace: dict[bytes, list[Any]] = {}
    if path == _PATHS[0]:
        decoder = SlimDecoder()
        for b in batches:
            for rs in SLIM_EXPORT_REQUEST.FromString(b).resource_spans:
                for ss in rs.scope_spans:
                    for sp in ss.spans:
                        rec = decoder.record(sp)
                        by_trace.setdefault(rec.trace_id, []).append(rec)
    else:
        for b in batches:
            for rs in ExportTraceServiceRequest.FromString(b).resource_spans:
                for ss in rs.scope_spans:
                    for sp in ss.spans:
                        rec = record_from_otlp_span(sp)
                        by_trace.setdefault(rec.trace_id, []).append(rec)
    for records in by_trace.values():
        evaluate_trace(records, thresholds)


def conventions_cost(spans: int, repeat: int) -> dict[str, Any]:
    """CPU ns per span of both paths with the conventions read and bypassed, in
    alternating rounds (the order flips every round), medians over ``repeat``."""
    batches, total = _conventions_input(spans)
    for path in _PATHS:  # warm up: imports, caches, the allocator
        _conventions_pass(path, batches)
        with conventions_bypassed():
            _conventions_pass(path, batches)
    rows = []
    for path in _PATHS:
        on: list[float] = []
        off: list[float] = []
        for round_ in range(repeat):
            for bypass in (round_ % 2 == 1, round_ % 2 == 0):
                gc.collect()
                start = time.process_time()
                if bypass:
                    with conventions_bypassed():
                        _conventions_pass(path, batches)
                else:
                    _conventions_pass(path, batches)
                (off if bypass else on).append(1e9 * (time.process_time() - start) / total)
        differences = [a - b for a, b in zip(on, off, strict=True)]
        rows.append(
            {
                "path": path,
                "ns_per_span_read": round(statistics.median(on)),
                "ns_per_span_bypassed": round(statistics.median(off)),
                "difference_ns_median": round(statistics.median(differences)),
                "difference_ns_min": round(min(differences)),
                "difference_ns_max": round(max(differences)),
            }
        )
    return {"spans": total, "repeat": repeat, "rows": rows}


def _child(variant: str, spans: int) -> int:
    """One valgrind child: build the input, then run one variant (or none)."""
    batches, _ = _conventions_input(spans)
    if variant == "none":
        from llmspans.collector import _protobuf  # noqa: F401
        from llmspans.core import convert, evaluate, runs  # noqa: F401

        return 0
    path, _, mode = variant.partition("|")
    # A full collection lands wherever the allocation count says: off, so that the
    # two variants differ by their own work only.
    gc.collect()
    gc.disable()
    if mode == "bypassed":
        with conventions_bypassed():
            _conventions_pass(path, batches)
    else:
        _conventions_pass(path, batches)
    return 0


def conventions_instructions(spans: int) -> dict[str, Any]:
    """Instructions per span of both paths, read and bypassed, under cachegrind."""
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    if shutil.which("valgrind") is None:
        return {"skipped": "valgrind not installed"}
    _, total = _conventions_input(spans)
    # "read again": the same child twice, whose difference is the method's noise floor
    variants = ["none"] + [
        f"{p}|{m}" for p in _PATHS for m in ("read", "read again", "bypassed")
    ]

    def count(variant: str) -> int:
        return count_instructions(
            [str(Path(__file__).resolve()), "--child", variant, "--spans", str(spans)],
            timeout=1800,
        )

    with ThreadPoolExecutor(max_workers=2) as pool:
        counts = dict(zip(variants, pool.map(count, variants), strict=True))
    rows = []
    for path in _PATHS:
        read = (counts[f"{path}|read"] - counts["none"]) / total
        again = (counts[f"{path}|read again"] - counts["none"]) / total
        bypassed = (counts[f"{path}|bypassed"] - counts["none"]) / total
        rows.append(
            {
                "path": path,
                "instructions_per_span_read": round(read),
                "instructions_per_span_bypassed": round(bypassed),
                "difference": round(read - bypassed),
                "difference_share": round((read - bypassed) / bypassed, 4),
                "noise_floor": round(abs(again - read)),
            }
        )
    return {"spans": total, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=60_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument(
        "--conventions",
        action="store_true",
        help="what reading the other conventions costs spans without them",
    )
    parser.add_argument(
        "--instructions", action="store_true", help="with --conventions: count instructions too"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.child, args.spans)
    if args.conventions:
        if args.quick:
            args.spans, args.repeat = 3000, 3
        found: dict[str, Any] = {
            "benchmark": "core_conventions",
            "machine": machine(),
            "quick": args.quick,
            "cpu": conventions_cost(args.spans, args.repeat),
        }
        if args.instructions:
            found["instructions"] = conventions_instructions(min(args.spans, 6000))
        for row in found["cpu"]["rows"]:
            print(
                f"{row['path']:>20}: {row['ns_per_span_read']} ns/span read, "
                f"{row['ns_per_span_bypassed']} bypassed, difference median "
                f"{row['difference_ns_median']} (from {row['difference_ns_min']} "
                f"to {row['difference_ns_max']})",
                file=sys.stderr,
            )
        for row in found.get("instructions", {}).get("rows", []):
            print(
                f"{row['path']:>20}: {row['instructions_per_span_read']} instructions/span "
                f"read, {row['instructions_per_span_bypassed']} bypassed "
                f"({row['difference_share']:+.2%}; the same child twice differs by "
                f"{row['noise_floor']})",
                file=sys.stderr,
            )
        print(write_result("core_conventions", found))
        return 0
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
