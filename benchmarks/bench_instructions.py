"""Decorator overhead in CPU instructions: the same variants as ``bench_decorators.py``,
counted instead of timed, so a 5 % difference is visible on a busy machine.

    python benchmarks/bench_instructions.py [--calls 600] [--jobs 2] [--quick] [--only GROUPS]

Another checkout is counted by the same script with ``PYTHONPATH=<checkout>``.

Timing a few microseconds per call on a shared 2-core machine moves by 10-50 %
between identical runs; the 1.10x targets need better than that. Each variant
here runs in a child process under ``valgrind --tool=cachegrind --cache-sim=no``,
which counts the instructions the CPU executes, whatever else the machine does
(the same binary and inputs give the same count to within 0.1 %). Every child
builds the variants exactly as ``bench_decorators.py`` does, warms every one of
them up (50 calls each), then runs ``--calls`` calls of its own variant; a child
that runs no call gives the baseline, so

    instructions per call = (I(child) - I(baseline)) / calls.

``PYTHONHASHSEED`` is fixed so that dict and set layouts are the same in every
child. OpenInference and Langfuse are left out (their imports would cost a
minute each under valgrind and no target names them); OpenLLMetry's ``@task`` is
counted when installed, against a baseline child that imports it too. The
embedded mode's processor is built only in the child that counts it and in a
baseline child of its own: its sweeper thread and metric reader wake by the
clock, so in any other child they would add instructions that depend on how long
the child ran under valgrind (the machine's load), not on what it ran. Skipped
entirely, with the reason in the results, when valgrind is not installed (Debian
package ``valgrind``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import bench_decorators as bd
from _common import count_instructions, machine, write_result

HERE = Path(__file__).resolve().parent

#: the variants counted (group|name as in bench_decorators.py)
KEYS = (
    "retrieval|raw span",
    "retrieval|raw span + attrs",
    "retrieval|llmspans",
    "generation|raw span + attrs",
    "generation|llmspans",
    "generator|raw span + attrs",
    "generator|llmspans",
    "async retrieval|raw span + attrs",
    "async retrieval|llmspans",
    "pipeline run|raw span + attrs",
    "pipeline run|llmspans",
    "pipeline run|llmspans + embedded metrics",
    "retrieval|OpenLLMetry @task",
)
TASK = "retrieval|OpenLLMetry @task"
EMBEDDED = "pipeline run|llmspans + embedded metrics"
#: the children that run no call: plain, with OpenLLMetry imported, with the
#: embedded mode's processor built
BASELINE, BASELINE_TASK, BASELINE_EMBEDDED = "", "+task", "+embedded"
#: the baseline of each variant that has one of its own
BASELINE_OF = {TASK: BASELINE_TASK, EMBEDDED: BASELINE_EMBEDDED}
WARMUP_CALLS = 50


def child(key: str, calls: int) -> int:
    """Builds the variants, warms them up, runs ``calls`` calls of ``key``."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    def left_out(*_: Any) -> Any:
        raise ImportError(name="left out of the instruction count")

    bd._openinference_variant = left_out  # type: ignore[assignment]
    bd._langfuse_variant = left_out  # type: ignore[assignment]
    if key not in (TASK, BASELINE_TASK):
        # OpenLLMetry's import alone is worth a minute under valgrind: only the
        # children that compare with it pay for it (with a baseline of their own).
        bd._traceloop_variant = left_out  # type: ignore[assignment]
    if key not in (EMBEDDED, BASELINE_EMBEDDED):
        # Wakes by the clock (see the module's docstring): the variant that would run
        # through it gets the shared exporter's plain provider, and is not counted here.
        bd._embedded_provider = _plain_provider  # type: ignore[assignment]
    for name in ("opentelemetry.exporter", "opentelemetry.sdk._shared_internal"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    exporter = bd.CountingExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    loop = asyncio.new_event_loop()
    variants, _ = bd.build_variants(provider, exporter, loop)
    by_key = {f"{v.group}|{v.name}": v for v in variants}
    for variant in variants:
        variant.block(WARMUP_CALLS)
    bd.check_llmspans_spans(exporter)
    gc.collect()
    # Objects alive now (imports, variants) are left out of every later collection:
    # what a collection costs then depends on what the calls allocate, not on how
    # many objects the tree under test happens to import.
    gc.freeze()
    if key not in (BASELINE, BASELINE_TASK, BASELINE_EMBEDDED):
        if key not in by_key:
            print(f"missing variant: {key}", file=sys.stderr)
            return 3
        by_key[key].block(calls)
    return 0


def _plain_provider(exporter: Any) -> Any:
    """A provider with the shared exporter only: the embedded variant, left out."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def _count(key: str, calls: int) -> int:
    """Instructions executed by one child (valgrind's ``I refs``)."""
    return count_instructions(
        [str(HERE / "bench_instructions.py"), "--child", key, str(calls)], timeout=900
    )


def _installed(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def measure(calls: int, jobs: int, only: frozenset[str] | None = None) -> dict[str, Any]:
    keys = [k for k in KEYS if k != TASK or _installed("traceloop.sdk")]
    if only is not None:
        # the groups asked for, with the raw baseline each ratio needs
        keys = [k for k in keys if k.split("|", 1)[0] in only]
    children = [BASELINE, *keys] + [BASELINE_OF[key] for key in keys if key in BASELINE_OF]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        counts = dict(zip(children, pool.map(lambda k: _count(k, calls), children), strict=True))
    per_call = {
        key: (counts[key] - counts[BASELINE_OF.get(key, BASELINE)]) / calls
        for key in keys
    }
    rows = []
    for key in keys:
        group, name = key.split("|", 1)
        same = per_call.get(f"{group}|raw span + attrs")
        rows.append(
            {
                "group": group,
                "variant": name,
                "instructions_per_call": round(per_call[key]),
                "x_raw_span_same_attrs": round(per_call[key] / same, 3) if same else None,
            }
        )
    return {"baseline_instructions": counts[BASELINE], "rows": rows, "ratios": bd.ratios(per_call)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--jobs", type=int, default=2, help="children counted at once")
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer calls")
    parser.add_argument("--output", default="instructions", help="results name (out/NAME.json)")
    parser.add_argument(
        "--only",
        help="comma-separated groups (retrieval, generation, generator, 'async retrieval', "
        "'pipeline run'): these rows only, with their raw baselines",
    )
    parser.add_argument("--child", nargs=2, metavar=("KEY", "CALLS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child[0], int(args.child[1]))
    if args.quick:
        args.calls = 50
    result: dict[str, Any] = {
        "benchmark": "instructions",
        "machine": machine(),
        "calls": args.calls,
        "quick": args.quick,
    }
    if shutil.which("valgrind") is None:
        result["skipped"] = "valgrind is not installed (Debian package valgrind)"
    else:
        only = None if args.only is None else frozenset(g.strip() for g in args.only.split(","))
        result.update(measure(args.calls, args.jobs, only))
        for row in result["rows"]:
            print(
                f"{row['group']:>16} {row['variant']:<34} {row['instructions_per_call']:>9,} "
                f"instr  x{row['x_raw_span_same_attrs'] or 0:.3f}",
                file=sys.stderr,
            )
        print(result["ratios"], file=sys.stderr)
    print(write_result(args.output, result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
