"""Shadow runs cost the live call nothing measurable: live latency with and without
``llmspans.shadow`` at a 10 % rate.

The live pipeline and the candidate are the same small three-stage pipeline with
a 2 ms simulated model call; the candidate is slower (20 ms) so it queues up
behind. Each variant runs the live pipeline CALLS times in a loop, alternating
variants in rounds so both see the same machine; reported: p50 and p99 of the
live call and the with/without ratios, plus the shadow counts (sampled,
completed, dropped).

    python benchmarks/bench_shadow.py [--calls 2000] [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

import llmspans
from llmspans._tracing import use_tracer_provider


def _pipeline(name: str, delay_s: float) -> Any:
    @llmspans.retrieval("faq")
    def search(question: str) -> list[dict[str, Any]]:
        return [{"id": "d1", "score": 0.9}]

    @llmspans.generation("fake", provider="fake")
    def answer(question: str, docs: list[dict[str, Any]]) -> str:
        time.sleep(delay_s)
        return "ok"

    @llmspans.pipeline(name)
    def run(question: str) -> str:
        return answer(question, search(question))

    return run


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=0.1)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    calls = 200 if args.quick else args.calls
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    use_tracer_provider(provider)

    plain = _pipeline("live", 0.002)
    candidate = _pipeline("candidate", 0.02)
    shadowed = llmspans.shadow(candidate, rate=args.rate, backlog=64, seed=1)(
        _pipeline("live", 0.002)
    )
    latencies: dict[str, list[float]] = {"without": [], "with": []}
    for _ in range(args.rounds):
        for label, function in (("without", plain), ("with", shadowed)):
            for _ in range(calls):
                started = time.perf_counter()
                function("q")
                latencies[label].append(time.perf_counter() - started)
            exporter.clear()
    stats = shadowed.shadow_stats
    rows = {
        label: {"p50_ms": _quantile(v, 0.5) * 1e3, "p99_ms": _quantile(v, 0.99) * 1e3}
        for label, v in latencies.items()
    }
    result = {
        "benchmark": "shadow",
        "rate": args.rate,
        "calls": calls * args.rounds,
        "latency": rows,
        "ratio_p50": rows["with"]["p50_ms"] / rows["without"]["p50_ms"],
        "ratio_p99": rows["with"]["p99_ms"] / rows["without"]["p99_ms"],
        "shadow": {
            "sampled": stats.sampled,
            "completed": stats.completed,
            "dropped": stats.dropped,
            "failed": stats.failed,
        },
    }
    for label, row in rows.items():
        print(f"{label:>8} shadowing: p50 {row['p50_ms']:.3f} ms, p99 {row['p99_ms']:.3f} ms")
    print(f"ratios with/without: p50 {result['ratio_p50']:.3f}, p99 {result['ratio_p99']:.3f}")
    print(f"shadow: {result['shadow']}")
    print(write_result("shadow", result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
