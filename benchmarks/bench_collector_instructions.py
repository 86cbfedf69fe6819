"""The collector's processor path in CPU instructions per span, for this tree and,
optionally, another checkout of the project measured in the same run.

    python benchmarks/bench_collector_instructions.py [--spans 3000] [--other DIR]

Spans per CPU second (``bench_collector.py``) moves by tens of percent between
identical runs on a shared 2-core VM; instruction counts repeat within 0.1 %. Each
count runs a child under ``valgrind --tool=cachegrind --cache-sim=no`` with
``PYTHONHASHSEED`` fixed. A child builds the collector's ``Processor`` (default
settings, no exporter) and the load generator's requests (runs of 6 spans), warms
up on 600 spans, then stops after one of three steps over ``--spans`` spans:

With the garbage collector set as the service sets it (start-up objects frozen,
the young generation's threshold raised) and a clock read without a Python frame,
as ``time.monotonic`` is.

- ``setup``: requests built, nothing processed (the baseline);
- ``accept``: every request through ``Processor.accept`` (slim parse, admission,
  conversion, assembly, in-flight accounting);
- ``all``: then every trace finalised (attribution, metrics, verdicts written).

accept per span = (I(accept) - I(setup)) / spans; finalise per span =
(I(all) - I(accept)) / spans. ``--other DIR`` counts a second tree the same way
(an older checkout: the collector was the top-level package ``collector`` there,
``llmspans.collector`` now; both are found). Skipped when valgrind is missing.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from operator import getitem
from pathlib import Path
from typing import Any

from _common import count_instructions, machine, write_result

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STEPS = ("setup", "accept", "all")


def _child(step: str, spans: int) -> int:
    """One counted child: build, warm up, run up to ``step``."""
    from _otlp import LoadShape, RequestBuilder
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    try:
        from llmspans.collector.config import CollectorSettings
        from llmspans.collector.forwarding import Forwarder
        from llmspans.collector.metrics import MetricsStore
        from llmspans.collector.processor import Processor
        from llmspans.collector.service import GC_YOUNG_THRESHOLD
    except ImportError:  # a checkout from before the collector moved into llmspans
        from collector.config import CollectorSettings  # type: ignore[import-not-found,no-redef]
        from collector.forwarding import Forwarder  # type: ignore[import-not-found,no-redef]
        from collector.metrics import MetricsStore  # type: ignore[import-not-found,no-redef]
        from collector.processor import Processor  # type: ignore[import-not-found,no-redef]
        from collector.service import (  # type: ignore[import-not-found,no-redef]
            GC_YOUNG_THRESHOLD,
        )

    clock = [0.0]
    # A clock called without a Python frame, as the service's time.monotonic is.
    read_clock = partial(getitem, clock, 0)

    def one(count: int, stop: str) -> None:
        processor = Processor(
            CollectorSettings(), MetricsStore(), Forwarder([]), clock=read_clock
        )
        clock[0] = 0.0
        raw = [data for data, _ in RequestBuilder(LoadShape()).batches(count)]
        requests = [ExportTraceServiceRequest.FromString(data) for data in raw]
        if stop == "setup":
            return
        for request, data in zip(requests, raw, strict=True):
            processor.accept(request, data)
        if stop == "accept":
            return
        clock[0] = 1e9
        while processor.sweep():
            pass

    one(600, "all")
    # The service's collector settings (llmspans.collector.service): what was alive
    # at start-up frozen out of the collections, the young generation's threshold
    # raised. Each tree is counted with its own.
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, oldest)
    one(spans, step)
    return 0


def count(tree: Path, step: str, spans: int) -> int:
    """Instructions of one child run over ``tree``."""
    return count_instructions(
        [str(Path(__file__).resolve()), "--child", step, str(spans)],
        env={"PYTHONPATH": f"{tree}{os.pathsep}{HERE}"},
        cwd=tree,
    )


def measure(tree: Path, spans: int) -> dict[str, Any]:
    with ThreadPoolExecutor(max_workers=len(STEPS)) as pool:
        counts = dict(zip(STEPS, pool.map(lambda s: count(tree, s, spans), STEPS), strict=True))
    # the load generator rounds up to whole requests of whole runs
    from _otlp import LoadShape, RequestBuilder

    sent = sum(n for _, n in RequestBuilder(LoadShape()).batches(spans))
    return {
        "tree": str(tree),
        "spans": sent,
        "accept_per_span": round((counts["accept"] - counts["setup"]) / sent),
        "finalise_per_span": round((counts["all"] - counts["accept"]) / sent),
        "total_per_span": round((counts["all"] - counts["setup"]) / sent),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=3000)
    parser.add_argument("--other", type=Path, help="another checkout, counted the same way")
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer spans")
    parser.add_argument("--child", nargs=2, metavar=("STEP", "SPANS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.child[0], int(args.child[1]))
    if shutil.which("valgrind") is None:
        write_result("collector_instructions", {"skipped": "valgrind is not installed"})
        print("valgrind is not installed: skipped")
        return 0
    spans = 600 if args.quick else args.spans
    rows = [measure(ROOT, spans)]
    if args.other is not None:
        rows.append(measure(args.other.resolve(), spans))
    for row in rows:
        print(
            f"{row['tree']}: accept {row['accept_per_span']:,} + finalise "
            f"{row['finalise_per_span']:,} = {row['total_per_span']:,} instructions per span"
        )
    if len(rows) == 2:
        ratio = rows[0]["total_per_span"] / rows[1]["total_per_span"]
        print(f"ratio this tree / other: {ratio:.3f}")
    path = write_result(
        "collector_instructions", {"machine": machine(), "quick": args.quick, "rows": rows}
    )
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
