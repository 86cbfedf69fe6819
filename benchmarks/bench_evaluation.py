"""Continuous evaluation does not slow ingestion: the collector's own CPU per span
with and without evaluation at 1 % sampling, behind a judge that takes seconds.

In process (no network): the collector's ``Processor`` takes the same OTLP
requests (6-span runs, 1 % of roots marked ``llmspans.evaluation.sampled``) and
finalises every trace, once with evaluation off and once with an evaluator that
sleeps ``--judge-s`` seconds per run (4 at once, a queue of 100). Reported: CPU
microseconds per span of accept + finalise for each, their ratio, how many runs
were judged, dropped and still queued when ingestion ended, the longest accept
call, and the main (event-loop) thread's CPU alone: the judge's threads sleep.

    python benchmarks/bench_evaluation.py [--spans 120000] [--judge-s 2] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result
from _otlp import LoadShape, RequestBuilder
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from llmspans import _attributes as A
from llmspans.collector.config import CollectorSettings
from llmspans.collector.forwarding import Forwarder
from llmspans.collector.metrics import MetricsStore
from llmspans.collector.processor import Processor
from llmspans.evaluation import Judgment, Run

#: seconds the judge takes per run (set from --judge-s)
JUDGE: dict[str, float] = {"seconds": 2.0}


def slow_judge(run: Run) -> Judgment:
    """A judge that takes seconds (a remote LLM) and then says the answer was right."""
    time.sleep(JUDGE["seconds"])
    return Judgment(correct=True, score=1.0)


def _pass(settings: CollectorSettings, raw: list[bytes]) -> dict[str, float]:
    clock = [0.0]
    metrics = MetricsStore()
    processor = Processor(settings, metrics, Forwarder([]), clock=lambda: clock[0])
    requests = [ExportTraceServiceRequest.FromString(data) for data in raw]
    longest = 0.0
    started = time.process_time()
    main_started = time.thread_time()
    for request, data in zip(requests, raw, strict=True):
        before = time.perf_counter()
        processor.accept(request, data)
        longest = max(longest, time.perf_counter() - before)
        clock[0] += 0.01
        processor.safe_sweep()
    clock[0] += 1e6
    while processor.safe_sweep():
        pass
    cpu = time.process_time() - started
    main_cpu = time.thread_time() - main_started
    store = metrics.store
    return {
        "cpu_s": cpu,
        "main_thread_cpu_s": main_cpu,
        "longest_accept_s": longest,
        "judged": store.counter(A.METRIC_EVALUATIONS),
        "dropped": store.counter(A.METRIC_EVALUATION_DROPPED),
        "queued_at_end": float(
            len(processor.evaluation.runner._queue) if processor.evaluation else 0
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=120_000)
    parser.add_argument("--share", type=float, default=0.01)
    parser.add_argument("--judge-s", type=float, default=2.0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    JUDGE["seconds"] = args.judge_s
    spans = 12_000 if args.quick else args.spans
    builder = RequestBuilder(LoadShape(sampled_share=args.share), seed=7)
    raw = [data for data, _ in builder.batches(spans)]
    sent = sum(ExportTraceServiceRequest.FromString(d).ByteSize() > 0 for d in raw)
    off = _pass(CollectorSettings(), raw)
    on = _pass(
        CollectorSettings(
            evaluation={
                "evaluators": ["bench_evaluation:slow_judge"],
                "concurrency": 4,
                "queue_size": 100,
                "timeout_s": 10 * args.judge_s,
                "forward_content": True,
            }
        ),
        raw,
    )
    total = sum(
        len(ss.spans)
        for d in raw
        for rs in ExportTraceServiceRequest.FromString(d).resource_spans
        for ss in rs.scope_spans
    )
    result = {
        "benchmark": "evaluation",
        "spans": total,
        "requests": sent,
        "sampled_share": args.share,
        "judge_s": args.judge_s,
        "us_per_span_off": off["cpu_s"] / total * 1e6,
        "us_per_span_on": on["cpu_s"] / total * 1e6,
        "spans_per_cpu_s_off": total / off["cpu_s"],
        "spans_per_cpu_s_on": total / on["cpu_s"],
        "ratio_on_off": on["cpu_s"] / off["cpu_s"],
        "longest_accept_s": {"off": off["longest_accept_s"], "on": on["longest_accept_s"]},
        "evaluation": {k: on[k] for k in ("judged", "dropped", "queued_at_end")},
        "main_thread_cpu_s": {"off": off["main_thread_cpu_s"], "on": on["main_thread_cpu_s"]},
    }
    print(
        f"{total} spans: {result['spans_per_cpu_s_off']:,.0f} spans per CPU-second without "
        f"evaluation, {result['spans_per_cpu_s_on']:,.0f} with ({result['ratio_on_off']:.3f}x "
        f"the CPU); judged {on['judged']:.0f}, dropped {on['dropped']:.0f}, still queued "
        f"{on['queued_at_end']:.0f}; longest accept {off['longest_accept_s'] * 1e3:.1f} ms / "
        f"{on['longest_accept_s'] * 1e3:.1f} ms"
    )
    print(write_result("evaluation", result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
