"""The demo from start to finish: collector up, requests through the examples, report.

I/O lives here; the decisions (plan, comparison, agreement) are pure functions in
the sibling modules.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import llmspans
from llmspans._demo.collector import LocalCollector
from llmspans._demo.examples import load_examples, submodule
from llmspans._demo.faults import parse_faults
from llmspans._demo.forward import EXPORTER_NAME, Delivery, probe
from llmspans._demo.plan import Example, PlannedRun, make_plan, shape_of
from llmspans._demo.render import render
from llmspans._demo.scrape import ScrapedMetrics, parse_metrics
from llmspans._demo.summary import LedgerEntry, agreement, compare, to_json
from llmspans._demo.traces import RootVerdict, count_feedback_spans, iter_root_verdicts
from llmspans._demo.users import simulated_feedback
from llmspans.analyze import analyze_lines
from llmspans.core.model import Thresholds
from llmspans.cost import ModelPrice, get_price_table, set_price_table

#: share of the requests each example gets
WEIGHTS = {"support_rag": 0.4, "sql_analyst": 0.35, "booking_agent": 0.25}

#: Longest wait, after the report's numbers are in, for the spans to reach ``--forward``:
#: a live backend takes well under a second, a dead one is given up on after the
#: exporter's retries (5 s in the demo's collector configuration).
FORWARD_WAIT_S = 15.0


@dataclass(frozen=True, slots=True)
class DemoOptions:
    requests: int
    faults: str
    seed: int
    out_dir: Path
    forward: str | None = None
    keep_running: bool = False
    json_output: bool = False
    trace_idle_s: float = 0.5
    latency: float = 1.0


@dataclass(frozen=True, slots=True)
class DemoResult:
    exact: bool
    agree: bool
    summary: dict[str, Any]
    #: every span reached the ``--forward`` target (``True`` without one)
    forwarded: bool = True


def build_examples() -> list[Example]:
    """One instance of each example pipeline, with fresh in-memory databases."""
    return [
        submodule("support_rag").SupportRag(),
        submodule("sql_analyst").SqlAnalyst(),
        submodule("booking_agent").BookingAgent(),
    ]


def execute(
    plan: list[PlannedRun], examples: Mapping[str, Example], console: Console, seed: int
) -> list[LedgerEntry]:
    """Run every planned request through its example, with its fault injected.

    The support bot's simulated users send feedback on each reply, linked to its run.
    """
    faults = submodule("_faults")
    users = random.Random(f"users-{seed}")
    ledger: list[LedgerEntry] = []
    with Progress(
        TextColumn("[bold]requests"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[last]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("requests", total=len(plan), last="")
        for run in plan:
            fault = (run.fault.stage, run.fault.mode) if run.fault else None
            error: str | None = None
            trace_id = ""
            kind: str | None = None
            with faults.injecting(fault):
                try:
                    result = examples[run.pipeline].run(run.index)
                except Exception as exc:  # an example that lets an error escape: still a run
                    error = type(exc).__name__
                else:
                    trace_id = str(getattr(result, "trace_id", ""))
                    if run.pipeline == "support_rag":
                        served = getattr(result, "reply_id", None) is not None
                        kind, edit_ratio = simulated_feedback(users, served)
                        llmspans.feedback(getattr(result, "run", None), kind, edit_ratio=edit_ratio)
            fault_text = str(run.fault) if run.fault else None
            ledger.append(
                LedgerEntry(
                    run.seq, run.pipeline, run.index, fault_text, trace_id, error, feedback=kind
                )
            )
            progress.update(task, advance=1, last=f"{run.pipeline} {fault_text or ''}")
    return ledger


def send_requests(
    plan: list[PlannedRun],
    examples: Mapping[str, Example],
    endpoint: str,
    options: DemoOptions,
    console: Console,
) -> tuple[list[LedgerEntry], float]:
    """Trace the planned requests to ``endpoint`` (OTLP/HTTP); the ledger and the seconds taken.

    llmspans traces through a provider of the demo's own for the duration (the global
    one stays untouched); the examples' models are priced and their service latencies
    simulated, and both are put back afterwards.
    """
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": "llmspans-demo", "openinference.project.name": "llmspans-demo"}
        )
    )
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=endpoint),
            max_queue_size=max(2048, 20 * len(plan)),
            schedule_delay_millis=200,
        )
    )
    configuration = llmspans.configure(
        tracer_provider=provider, set_global=False, propagate_context=False
    )
    previous_prices = get_price_table()
    prices: dict[str, ModelPrice | dict[str, float]] = dict(load_examples().MODEL_PRICES)
    set_price_table(previous_prices.with_prices(prices))
    latency = submodule("_latency")
    latency.set_scale(options.latency, seed=options.seed)
    started = time.monotonic()
    try:
        ledger = execute(plan, examples, console, options.seed)
    finally:
        elapsed = time.monotonic() - started
        latency.set_scale(0.0)
        configuration.shutdown()
        provider.shutdown()
        set_price_table(previous_prices)
    return ledger, elapsed


def _wait_for_metrics(
    collector: LocalCollector, runs: int, feedback: int, timeout_s: float
) -> ScrapedMetrics:
    """Scrape until the collector has finalised ``runs`` runs and ``feedback`` feedback
    traces (or the timeout passes: the comparison then shows what is missing)."""
    deadline = time.monotonic() + timeout_s
    while True:
        metrics = parse_metrics(collector.scrape())
        done = metrics.runs() >= runs and sum(metrics.feedback.values()) >= feedback
        if done or time.monotonic() > deadline:
            return metrics
        time.sleep(0.2)


def _read_verdicts(
    path: Path, runs: int, feedback: int, timeout_s: float
) -> dict[str, RootVerdict]:
    """The root verdicts in ``path``, once it holds every run and feedback span."""
    deadline = time.monotonic() + timeout_s
    while True:
        verdicts = {v.trace_id: v for v in iter_root_verdicts(path)} if path.exists() else {}
        complete = len(verdicts) >= runs and count_feedback_spans(path) >= feedback
        if complete or time.monotonic() > deadline:
            return verdicts
        time.sleep(0.2)


def _wait_for_delivery(
    collector: LocalCollector, url: str, console: Console, timeout_s: float
) -> Delivery:
    """Scrape until the forwarding exporter has delivered or given up on every span the
    collector received, saying on ``console`` what it waits for; the delivery then."""
    deadline = time.monotonic() + timeout_s
    announced = False
    while True:
        metrics = parse_metrics(collector.scrape())
        delivery = Delivery(
            url,
            spans=int(metrics.spans_received),
            forwarded=int(metrics.forwarded.get(EXPORTER_NAME, 0.0)),
            dropped=int(metrics.dropped.get(EXPORTER_NAME, 0.0)),
        )
        if delivery.pending == 0 or time.monotonic() > deadline:
            return delivery
        if not announced:
            console.print(
                f"[dim]waiting up to {timeout_s:.0f} s for the collector to forward "
                f"{delivery.pending} more spans to {url}[/dim]"
            )
            announced = True
        time.sleep(0.2)


def run_demo(options: DemoOptions, console: Console, progress_console: Console) -> DemoResult:
    """The whole demo; prints the report on ``console`` and writes ``DIR/demo.json``."""
    rates = parse_faults(options.faults)
    out_dir = options.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    unreachable = probe(options.forward) if options.forward else None
    if options.forward and unreachable:
        progress_console.print(
            f"[bold yellow]llmspans demo: --forward {options.forward}: {unreachable}; "
            "the demo runs without forwarding[/bold yellow]",
            soft_wrap=True,
        )
    forward = None if unreachable else options.forward
    collector = LocalCollector(out_dir, forward=forward, trace_idle_s=options.trace_idle_s)
    # The file exporter appends: traces of an earlier demo in DIR would mix into this one.
    collector.traces_path.unlink(missing_ok=True)
    progress_console.print(
        f"[dim]starting the llmspans collector (config {collector.config_path})[/dim]"
    )
    collector.launch()
    try:
        # The examples load while the collector starts up.
        examples = {e.name: e for e in build_examples()}
        shapes = [shape_of(e, WEIGHTS.get(name, 1.0)) for name, e in examples.items()]
        plan = make_plan(shapes, options.requests, rates, options.seed)
        collector.wait_ready()
        ledger, elapsed = send_requests(
            plan, examples, collector.traces_endpoint, options, progress_console
        )
        feedback = sum(1 for entry in ledger if entry.feedback)
        metrics = _wait_for_metrics(
            collector, len(plan), feedback, timeout_s=30.0 + options.trace_idle_s
        )
        delivery: Delivery | None = None
        if options.forward and unreachable:
            spans = int(metrics.spans_received)
            delivery = Delivery(options.forward, spans, 0, 0, skipped=unreachable)
        elif options.forward:
            delivery = _wait_for_delivery(
                collector, options.forward, progress_console, timeout_s=FORWARD_WAIT_S
            )
        if not options.keep_running:
            collector.stop()
        verdicts = _read_verdicts(collector.traces_path, len(plan), feedback, timeout_s=30.0)
        with collector.traces_path.open(encoding="utf-8") as lines:
            offline = analyze_lines(lines, Thresholds())
        pipeline_stages = {name: tuple(e.stages) for name, e in examples.items()}
        comparison = compare(ledger, verdicts, pipeline_stages, rates)
        agreed = agreement(metrics, list(verdicts.values()), offline)
        settings = {
            "requests": options.requests,
            "faults": rates,
            "seed": options.seed,
            "out_dir": str(out_dir),
            "elapsed_s": round(elapsed, 3),
        }
        summary = to_json(
            comparison, agreed, ledger=ledger, verdicts=verdicts, offline=offline, settings=settings
        )
        if delivery is not None:
            summary["forward"] = delivery.to_json()
        (out_dir / "demo.json").write_text(json.dumps(summary, indent=1), "utf-8")
        with (out_dir / "injected.jsonl").open("w", encoding="utf-8") as f:
            for entry in ledger:
                f.write(json.dumps(asdict(entry)) + "\n")
        if options.json_output:
            # Plain text: a terminal renderer could wrap long lines inside strings.
            console.file.write(json.dumps(summary, indent=1) + "\n")
        else:
            faults = ", ".join(f"{s}={r:g}" for s, r in rates.items() if r) or "none"
            header = (
                f"{len(plan)} requests through 3 example pipelines in {elapsed:.1f} s, "
                f"seed {options.seed}, faults {faults}\n"
                f"collector: {collector.traces_endpoint} -> {collector.traces_path}"
            )
            render(
                console,
                header=header,
                metrics=metrics,
                offline=offline,
                comparison=comparison,
                agreement=agreed,
                metrics_url=collector.metrics_url if collector.running else None,
                traces_path=str(collector.traces_path),
                forward=delivery,
                keep_running=options.keep_running,
            )
        if options.keep_running and collector.running:
            try:
                while collector.running:
                    time.sleep(0.5)
            except KeyboardInterrupt:
                pass
        forwarded = delivery is None or delivery.complete
        return DemoResult(comparison.exact, agreed.ok, summary, forwarded)
    finally:
        collector.stop()
