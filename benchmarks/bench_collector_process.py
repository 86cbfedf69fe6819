"""The whole collector process in CPU instructions per span: receiver, intake,
processing, forwarding and the event loop, under ``bench_collector.py``'s load.

    python benchmarks/bench_collector_process.py [--spans 3072] [--protocols http grpc]
        [--trace-idle-s 2] [--other DIR]

``bench_collector.py`` reports spans per CPU second, which moves by tens of percent
between identical runs on a shared 2-core VM; ``bench_collector_instructions.py``
counts the processor alone, without the receivers, the intake and the forwarding.
This one counts everything the collector process executes:

- the collector (``python -m llmspans.collector`` with ``bench_collector.py``'s
  configuration, forwarding to the counting sink) runs under
  ``valgrind --tool=cachegrind --cache-sim=no`` with ``PYTHONHASHSEED`` fixed;
- ``loadgen.py`` sends N spans (batches of 512 spans in runs of 6, 4 requests in
  flight) over the chosen protocol;
- the sink is polled (not the collector) until every span arrived and every run's
  root came back with its verdict; then the collector gets SIGTERM and the count is
  read from valgrind's summary at its exit. The collector's /metrics is not scraped
  after start-up, so the count holds no polling.

With a long ``--trace-idle-s`` every run stays assembled until the load is over, so
the count includes what grows with the spans in flight (the garbage collector's
passes over them, the sweeps). Each count holds start-up and shutdown too. Done
for N and 2N spans: per span = (I(2N) - I(N)) / N, in which they cancel. What
still depends on the
wall clock (timers: the sweeper's tick, the forwarder's flush) is small and is
paid by both trees alike; the wall seconds of each run are printed with it.

``--other DIR`` counts another checkout the same way (an older one, where the
collector was the top-level package ``collector``, is run as that); a ratio is
printed. All counts run one after another: two valgrind processes at once would
still count the same, but each would take twice as long. Skipped when valgrind is
missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path
from typing import Any

from _common import (
    OUT,
    ROOT,
    cachegrind_prefix,
    machine,
    parse_instructions,
    run_loadgen,
    wait_until,
    write_result,
)
from _otlp import LoadShape
from _targets import LlmspansCollector
from bench_collector import loadgen_args

#: Under valgrind the collector starts in about a minute and runs some 50x slower.
READY_TIMEOUT_S = 900.0
DONE_TIMEOUT_S = 1800.0
STOP_TIMEOUT_S = 600.0


def count(tree: Path, protocol: str, spans: int, trace_idle_s: float = 2.0) -> dict[str, Any]:
    """One collector process under cachegrind, ``spans`` spans sent to it."""
    tag = f"{tree.name}-{protocol}-{spans}"
    log = OUT / f"cachegrind-{tag}.log"
    log.unlink(missing_ok=True)
    shape = LoadShape()
    t0 = time.perf_counter()
    coll = LlmspansCollector(
        name=f"process-{tag}",
        tree=tree,
        wrapper=cachegrind_prefix(log),
        ready_timeout_s=READY_TIMEOUT_S,
        trace_idle_s=trace_idle_s,
        extra_env={"PYTHONHASHSEED": "0"},
    )
    sink = coll.sink
    assert sink is not None
    try:
        t_ready = time.perf_counter()
        load = run_loadgen(
            loadgen_args(coll, protocol, spans, shape, 4), timeout=DONE_TIMEOUT_S
        )
        accepted = int(load["spans_accepted"])
        runs = accepted // shape.spans_per_trace

        def delivered() -> bool:
            stats = sink.stats()
            return stats["spans"] >= accepted and stats["roots_with_verdict"] >= runs

        wait_until(delivered, DONE_TIMEOUT_S, interval=0.5, what="every span at the sink")
        t_done = time.perf_counter()
        stats = sink.stats()
    finally:
        coll.stop(timeout=STOP_TIMEOUT_S)
    code = coll.proc.popen.returncode
    instructions = parse_instructions(log.read_text(errors="replace")) if log.exists() else None
    if code != 0 or instructions is None:
        raise RuntimeError(
            f"{tag}: the collector exited with {code} under valgrind; log {coll.proc.log_path}:\n"
            f"{coll.proc.log_tail()}"
        )
    return {
        "spans": accepted,
        "instructions": instructions,
        "retries": load["retries"],
        "errors": load["errors"],
        "forwarded_spans": stats["spans"],
        "roots_with_verdict": stats["roots_with_verdict"],
        "start_s": round(t_ready - t0, 1),
        "load_s": round(t_done - t_ready, 1),
    }


def measure(tree: Path, protocol: str, spans: int, trace_idle_s: float = 2.0) -> dict[str, Any]:
    small = count(tree, protocol, spans, trace_idle_s)
    large = count(tree, protocol, 2 * spans, trace_idle_s)
    extra = large["spans"] - small["spans"]
    return {
        "tree": str(tree),
        "protocol": protocol,
        "trace_idle_s": trace_idle_s,
        "counts": [small, large],
        "per_span": round((large["instructions"] - small["instructions"]) / extra),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=3072, help="N: counts at N and 2N spans")
    parser.add_argument("--protocols", nargs="+", choices=("http", "grpc"), default=["http"])
    parser.add_argument("--other", type=Path, help="another checkout, counted the same way")
    parser.add_argument(
        "--trace-idle-s",
        type=float,
        default=2.0,
        help="the collector's assembly.trace_idle_s: longer keeps more spans in flight",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 1,024 spans, HTTP")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        write_result("collector_process", {"skipped": "valgrind is not installed"})
        print("valgrind is not installed: skipped")
        return 0
    spans = 1024 if args.quick else args.spans
    protocols = ["http"] if args.quick else args.protocols
    trees = [ROOT] + ([args.other.resolve()] if args.other is not None else [])
    rows = []
    for protocol in protocols:
        for tree in trees:
            row = measure(tree, protocol, spans, args.trace_idle_s)
            rows.append(row)
            walls = ", ".join(f"{c['spans']} spans in {c['load_s']} s" for c in row["counts"])
            print(
                f"{tree} {protocol}: {row['per_span']:,} instructions per span ({walls})",
                flush=True,
            )
        if len(trees) == 2:
            ratio = rows[-2]["per_span"] / rows[-1]["per_span"]
            print(f"{protocol}: ratio this tree / other: {ratio:.3f}", flush=True)
    path = write_result(
        "collector_process",
        {"machine": machine(), "quick": args.quick, "cpus": os.cpu_count(), "rows": rows},
    )
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
