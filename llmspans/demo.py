"""``llmspans demo``: the whole story on one machine, in well under a minute.

Starts a real llmspans collector on free loopback ports, sends a few hundred
requests through the three example pipelines of :mod:`llmspans.examples` (support
RAG, SQL analyst, booking agent) with faults injected per stage at the given rates,
and live billing questions to the support bot without labels, then prints the
per-stage report the collector derived, compares every injected fault with the
root cause the collector attributed, and checks that ``/metrics``, the verdicts on
the recorded root spans and ``llmspans analyze`` agree. The collector judges a
sample of the support bot's runs with the example's deterministic judge (judged
figures and root causes next to the app's, runs that looked successful and were
wrong), and the support bot's labelled offline set runs through ``llmspans eval``'s
code and is compared with production by ``llmspans diverge``'s (significant
differences, segment coverage).

Exit status: 0 when every injected fault was attributed to its stage, the sources
agree and (with ``--forward``) every span reached the target; 1 when not; 2 when
the demo could not run.
"""

from __future__ import annotations

import argparse
import importlib.util
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from llmspans._argtypes import non_negative, positive_int, probability
from llmspans._demo.faults import DEFAULT_FAULTS, parse_faults
from llmspans._demo.forward import check_url

__all__ = ["add_arguments", "missing_modules", "run"]


def _faults(text: str) -> str:
    try:
        parse_faults(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _url(text: str) -> str:
    try:
        return check_url(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Start a local llmspans collector, send requests through three example pipelines "
        "with faults injected per stage, and print the per-stage report: which stage "
        "broke, why, and whether the injected faults were blamed on the right stage."
    )
    parser.add_argument(
        "--requests",
        metavar="N",
        type=positive_int,
        default=300,
        help="requests to send (default: 300)",
    )
    parser.add_argument(
        "--faults",
        metavar="SPEC",
        type=_faults,
        default=DEFAULT_FAULTS,
        help="fault probability per stage as STAGE=RATE,... with STAGE one of retrieval, "
        "context_selection (or selection), generation, action; 'none' for a clean run "
        "(default: %(default)s)",
    )
    parser.add_argument("--seed", metavar="S", type=int, default=7, help="random seed (default: 7)")
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        default=None,
        help="directory for traces.jsonl, demo.json and the collector's config and log "
        "(default: a new temporary directory)",
    )
    parser.add_argument(
        "--forward",
        metavar="URL",
        type=_url,
        default=None,
        help="also forward every span over OTLP/HTTP to URL, e.g. Phoenix or Jaeger at "
        "http://127.0.0.1:6006/v1/traces; the URL is checked once before the run (without "
        "an answer the demo runs without forwarding) and the report says what was delivered",
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="keep the collector and its /metrics endpoint running after the report, until Ctrl-C",
    )
    parser.add_argument(
        "--latency",
        type=non_negative,
        default=1.0,
        metavar="SCALE",
        help="scale of the simulated service latencies of the examples; 0 turns them off "
        "(default: 1)",
    )
    parser.add_argument(
        "--evaluation-sample-rate",
        type=probability,
        default=0.25,
        metavar="RATE",
        help="share of the support bot's runs the collector has judged by the example's "
        "deterministic judge (every run of the billing segment, which the offline set "
        "lacks, is judged); 0 turns evaluation off (default: %(default)s)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the demo's result as JSON instead of tables"
    )


#: What the demo imports beyond the library: its report, and the collector it starts.
_DEMO_MODULES = ("rich", "aiohttp", "grpc", "pydantic_settings")


def missing_modules() -> list[str]:
    """The modules of the ``demo`` extra that are not installed."""
    return [name for name in _DEMO_MODULES if importlib.util.find_spec(name) is None]


def run(args: argparse.Namespace) -> int:
    missing = missing_modules()
    if missing:
        print(
            f"llmspans demo: {', '.join(missing)} not installed; the demo needs the demo "
            "extra: pip install 'llmspans[demo]' (or bash scripts/setup.sh demo)",
            file=sys.stderr,
        )
        return 2

    from rich.console import Console

    from llmspans._demo.collector import CollectorError
    from llmspans._demo.runner import DemoOptions, run_demo

    out_dir = args.out or Path(tempfile.mkdtemp(prefix="llmspans-demo-"))
    options = DemoOptions(
        requests=args.requests,
        faults=args.faults,
        seed=args.seed,
        out_dir=out_dir,
        forward=args.forward,
        keep_running=args.keep_running,
        json_output=args.json,
        latency=args.latency,
        evaluation_rate=args.evaluation_sample_rate,
    )
    # A report piped to a file or a pager keeps its tables readable.
    console = Console() if sys.stdout.isatty() else Console(width=120)
    progress_console = Console(stderr=True)
    # SIGTERM unwinds like Ctrl-C does, so the collector is stopped and flushed, not orphaned.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if in_main_thread else None
    try:
        result = run_demo(options, console, progress_console)
    except (CollectorError, OSError) as error:
        print(f"llmspans demo: {error}", file=sys.stderr)
        return 2
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 0 if result.exact and result.agree and result.forwarded else 1


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
