"""The demo from start to finish: collector up, requests through the examples, report.

I/O lives here; the decisions (plan, comparison, agreement) are pure functions in
the sibling modules.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
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
from llmspans._demo.collector import DEMO_JUDGE, LocalCollector
from llmspans._demo.examples import load_examples, submodule
from llmspans._demo.faults import parse_faults
from llmspans._demo.forward import EXPORTER_NAME, Delivery, probe
from llmspans._demo.plan import Example, PlannedRun, make_plan, shape_of
from llmspans._demo.render import render
from llmspans._demo.scrape import ScrapedMetrics, parse_metrics
from llmspans._demo.summary import (
    LedgerEntry,
    agreement,
    compare,
    divergence,
    judged,
    to_json,
)
from llmspans._demo.traces import (
    RootVerdict,
    count_feedback_spans,
    iter_judged_runs,
    iter_root_verdicts,
)
from llmspans._demo.users import simulated_feedback
from llmspans._tracefiles import bounded_lines
from llmspans.analyze import analyze_lines
from llmspans.core.model import Thresholds
from llmspans.cost import ModelPrice, get_price_table, set_price_table
from llmspans.diverge import compare as diverge_compare
from llmspans.diverge import coverage, read_sides
from llmspans.evaluation import should_sample
from llmspans.offline import read_dataset, record_dataset

#: share of the requests each example gets
WEIGHTS = {"support_rag": 0.4, "sql_analyst": 0.35, "booking_agent": 0.25}

#: The support example's live traffic, besides the planned requests: one run per this
#: many planned requests, billing questions in customers' own words, without labels.
LIVE_EVERY = 10
#: The segment the offline set lacks: every run of it is judged, whatever the rate.
UNCOVERED_SEGMENT = "billing"
#: Runs of the offline set at once (its service latencies are simulated like production's).
OFFLINE_CONCURRENCY = 8
#: Runs needed on each side before a divergence is flagged (``llmspans diverge``'s default).
DIVERGE_MIN_RUNS = 30
#: the example whose offline set and judge the demo ships
EVALUATED_PIPELINE = "support_rag"

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
    #: share of the support bot's runs judged by the demo's judge (of the segment the
    #: offline set lacks: all); the other examples have no judge and are not sampled
    evaluation_rate: float = 0.25

    @property
    def segment_rates(self) -> dict[str, float]:
        """The sample rate of each segment of the support bot (``evaluation_sample_rates``)."""
        if self.evaluation_rate <= 0:
            return {}
        segments = submodule(f"{EVALUATED_PIPELINE}.segments").SEGMENTS
        rates = dict.fromkeys(segments, self.evaluation_rate)
        rates[UNCOVERED_SEGMENT] = 1.0
        return rates


@dataclass(frozen=True, slots=True)
class Sent:
    """What the demo sent to the collector: the planned requests and the live traffic."""

    ledger: list[LedgerEntry]
    live: list[LedgerEntry]
    elapsed_s: float


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


def live_questions(requests: int) -> list[Any]:
    """The live traffic of a demo of ``requests`` planned requests: the support example's
    live questions in file order, round after round, one per :data:`LIVE_EVERY`."""
    questions = submodule("support_rag.knowledge").load_live_questions()
    return [questions[i % len(questions)] for i in range(requests // LIVE_EVERY)]


def execute(
    plan: list[PlannedRun],
    examples: Mapping[str, Example],
    console: Console,
    seed: int,
    live: Sequence[Any] = (),
) -> tuple[list[LedgerEntry], list[LedgerEntry]]:
    """Run every planned request through its example, with its fault injected, then the
    ``live`` questions through the support example (no fault, no labels).

    The support bot's simulated users send feedback on each reply, linked to its run.
    """
    faults = submodule("_faults")
    users = random.Random(f"users-{seed}")
    ledger: list[LedgerEntry] = []
    live_ledger: list[LedgerEntry] = []
    with Progress(
        TextColumn("[bold]requests"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[last]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("requests", total=len(plan) + len(live), last="")
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
        # The support example's live traffic: SupportRag.serve (no labels, no fault).
        serve: Any = getattr(examples.get(EVALUATED_PIPELINE), "serve", None)
        for number, question in enumerate(live if serve is not None else ()):
            seq = len(plan) + number
            error = None
            trace_id = ""
            kind = None
            try:
                reply = serve(question, f"T-{question.id}-{number}")
            except Exception as exc:
                error = type(exc).__name__
            else:
                trace_id = reply.trace_id
                kind, edit_ratio = simulated_feedback(users, reply.reply_id is not None)
                llmspans.feedback(reply.run, kind, edit_ratio=edit_ratio)
            live_ledger.append(
                LedgerEntry(seq, EVALUATED_PIPELINE, number, None, trace_id, error, feedback=kind)
            )
            progress.update(task, advance=1, last=f"{EVALUATED_PIPELINE} live {question.id}")
    return ledger, live_ledger


def run_offline_set() -> list[str]:
    """The support example's labelled offline set through ``llmspans eval``'s code
    (``source=offline``); its spans as OTLP JSON lines."""
    evaluation = submodule("support_rag.evaluation")
    skipped: list[tuple[int, str]] = []
    limit = 1 << 20
    with evaluation.OFFLINE_SET.open("rb") as raw:
        lines = list(read_dataset(bounded_lines(raw, limit), limit, skipped))
    if skipped:
        raise OSError(f"{evaluation.OFFLINE_SET}: bad lines {skipped[:3]}")
    errors: list[str] = []
    outcome, recorded = record_dataset(
        lines,
        evaluation.answer,
        check=evaluation.cites_expected,
        concurrency=OFFLINE_CONCURRENCY,
        errors=errors,
        service_name="llmspans-demo-offline",
    )
    if outcome.raised:
        raise OSError(f"the offline set raised in {outcome.raised} runs: {errors[:3]}")
    return recorded


class OfflineSetRun:
    """The offline set running in a thread of its own while the demo reads the collector's
    numbers; ``restore`` (the price table, the simulated latency) runs when it is done."""

    def __init__(self, restore: Callable[[], None]) -> None:
        self.elapsed_s = 0.0
        self._restore = restore
        self._lines: list[str] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="llmspans-demo-offline", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        started = time.monotonic()
        try:
            self._lines = run_offline_set()
        except BaseException as error:  # handed to the caller by result()
            self._error = error
        finally:
            self.elapsed_s = time.monotonic() - started
            self._restore()

    def wait(self) -> None:
        self._thread.join()

    def result(self) -> list[str]:
        """The offline set's spans as OTLP JSON lines, once it has run (its error if not)."""
        self.wait()
        if self._error is not None:
            raise self._error
        return self._lines


def send_requests(
    plan: list[PlannedRun],
    examples: Mapping[str, Example],
    endpoint: str,
    options: DemoOptions,
    console: Console,
) -> tuple[Sent, OfflineSetRun]:
    """Trace the planned requests and the live traffic to ``endpoint`` (OTLP/HTTP), then
    start the offline set in the background; what was sent, and the offline set's run.

    llmspans traces through a provider of the demo's own for the duration (the global
    one stays untouched); the examples' models are priced and their service latencies
    simulated for the production traffic and the offline set alike, and both are put
    back once the offline set is done.
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
        tracer_provider=provider,
        set_global=False,
        propagate_context=False,
        # Runs without a segment (the other examples) are not sampled.
        evaluation_sample_rate=0.0,
        evaluation_sample_rates=options.segment_rates or None,
    )
    previous_prices = get_price_table()
    prices: dict[str, ModelPrice | dict[str, float]] = dict(load_examples().MODEL_PRICES)
    set_price_table(previous_prices.with_prices(prices))
    latency = submodule("_latency")
    latency.set_scale(options.latency, seed=options.seed)

    def restore() -> None:
        latency.set_scale(0.0)
        set_price_table(previous_prices)

    started = time.monotonic()
    try:
        live = live_questions(options.requests)
        ledger, live_ledger = execute(plan, examples, console, options.seed, live)
        elapsed = time.monotonic() - started
    except BaseException:
        restore()
        raise
    finally:
        # Every production span is flushed to the collector before the offline set runs.
        configuration.shutdown()
        provider.shutdown()
    return Sent(ledger, live_ledger, elapsed), OfflineSetRun(restore)


def _wait_for_metrics(
    collector: LocalCollector, runs: int, feedback: int, timeout_s: float, evaluations: int = 0
) -> ScrapedMetrics:
    """Scrape until the collector has finalised ``runs`` runs and ``feedback`` feedback
    traces and made ``evaluations`` evaluator calls (or the timeout passes: the
    comparison then shows what is missing)."""
    deadline = time.monotonic() + timeout_s
    while True:
        metrics = parse_metrics(collector.scrape())
        done = (
            metrics.runs() >= runs
            and sum(metrics.feedback.values()) >= feedback
            and sum(metrics.evaluations.values()) + sum(metrics.evaluation_dropped.values())
            >= evaluations
        )
        if done or time.monotonic() > deadline:
            return metrics
        time.sleep(0.2)


def _read_verdicts(
    path: Path, runs: int, feedback: int, timeout_s: float, evaluations: int = 0
) -> dict[str, RootVerdict]:
    """The root verdicts in ``path``, once it holds every run, feedback and evaluation span."""
    deadline = time.monotonic() + timeout_s
    while True:
        verdicts = {v.trace_id: v for v in iter_root_verdicts(path)} if path.exists() else {}
        complete = (
            len(verdicts) >= runs
            and count_feedback_spans(path) >= feedback
            and (not evaluations or sum(1 for _ in iter_judged_runs(path)) >= evaluations)
        )
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
            spans=int(metrics.spans_to_forward()),
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


def _sampled(sent: Sent, examples: Mapping[str, Example], options: DemoOptions) -> int:
    """How many of the sent runs were sampled for evaluation: decided from the trace id
    and the segment, as the library decided at each run's start."""
    if options.evaluation_rate <= 0:
        return 0
    support = examples.get(EVALUATED_PIPELINE)
    questions = getattr(support, "questions", [])
    count = 0
    for entry in sent.ledger:
        if not entry.trace_id:
            continue
        segment = None
        if entry.pipeline == EVALUATED_PIPELINE and entry.index < len(questions):
            segment = questions[entry.index].segment
        count += should_sample(int(entry.trace_id, 16), 0.0, segment, options.segment_rates)
    for entry in sent.live:
        if entry.trace_id:
            count += should_sample(
                int(entry.trace_id, 16), 0.0, UNCOVERED_SEGMENT, options.segment_rates
            )
    return count


def _diverge(offline_lines: list[str], traces_path: Path) -> dict[str, Any]:
    """``llmspans diverge --offline`` the offline set ``--production`` the collector's
    traces, for the evaluated pipeline."""
    with traces_path.open(encoding="utf-8") as production:
        sides = read_sides([("offline set", offline_lines), (str(traces_path), production)])

    def side(source: str) -> dict[tuple[str, str], Any]:
        return {k: v for k, v in sides.get(source, {}).items() if k[0] == EVALUATED_PIPELINE}

    offline_side, production_side = side("offline"), side("production")
    rows = diverge_compare(offline_side, production_side, min_runs=DIVERGE_MIN_RUNS)
    coverage_rows = coverage(offline_side, production_side, min_runs=DIVERGE_MIN_RUNS)
    found = divergence(rows, coverage_rows, min_runs=DIVERGE_MIN_RUNS)
    found["offline_runs"] = sum(s.runs for s in offline_side.values())
    found["production_runs"] = sum(s.runs for s in production_side.values())
    return found


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
    collector = LocalCollector(
        out_dir,
        forward=forward,
        trace_idle_s=options.trace_idle_s,
        evaluators=[DEMO_JUDGE] if options.evaluation_rate > 0 else None,
    )
    # The file exporter appends: traces of an earlier demo in DIR would mix into this one.
    collector.traces_path.unlink(missing_ok=True)
    progress_console.print(
        f"[dim]starting the llmspans collector (config {collector.config_path})[/dim]"
    )
    collector.launch()
    offline_run: OfflineSetRun | None = None
    try:
        # The examples load while the collector starts up.
        examples = {e.name: e for e in build_examples()}
        shapes = [shape_of(e, WEIGHTS.get(name, 1.0)) for name, e in examples.items()]
        plan = make_plan(shapes, options.requests, rates, options.seed)
        collector.wait_ready()
        sent, offline_run = send_requests(
            plan, examples, collector.traces_endpoint, options, progress_console
        )
        ledger, elapsed = sent.ledger, sent.elapsed_s
        runs = len(plan) + len(sent.live)
        feedback = sum(1 for entry in (*ledger, *sent.live) if entry.feedback)
        sampled = _sampled(sent, examples, options)
        metrics = _wait_for_metrics(
            collector, runs, feedback, timeout_s=30.0 + options.trace_idle_s, evaluations=sampled
        )
        delivery: Delivery | None = None
        if options.forward and unreachable:
            spans = int(metrics.spans_to_forward())
            delivery = Delivery(options.forward, spans, 0, 0, skipped=unreachable)
        elif options.forward:
            delivery = _wait_for_delivery(
                collector, options.forward, progress_console, timeout_s=FORWARD_WAIT_S
            )
        if not options.keep_running:
            collector.stop()
        verdicts = _read_verdicts(
            collector.traces_path, runs, feedback, timeout_s=30.0, evaluations=sampled
        )
        with collector.traces_path.open(encoding="utf-8") as lines:
            offline = analyze_lines(lines, Thresholds())
        offline_lines = offline_run.result()
        (out_dir / "offline.jsonl").write_text(
            "".join(line + "\n" for line in offline_lines), "utf-8"
        )
        judged_summary = judged(
            metrics,
            list(iter_judged_runs(collector.traces_path)),
            verdicts,
            sample_rate=options.evaluation_rate,
            segment_rates=options.segment_rates,
            sampled=sampled,
        )
        diverged = _diverge(offline_lines, collector.traces_path)
        pipeline_stages = {name: tuple(e.stages) for name, e in examples.items()}
        comparison = compare(ledger, verdicts, pipeline_stages, rates)
        agreed = agreement(metrics, list(verdicts.values()), offline)
        settings = {
            "requests": options.requests,
            "faults": rates,
            "seed": options.seed,
            "out_dir": str(out_dir),
            "elapsed_s": round(elapsed, 3),
            "offline_elapsed_s": round(offline_run.elapsed_s, 3),
            "evaluation_rate": options.evaluation_rate,
            "live_requests": len(sent.live),
        }
        summary = to_json(
            comparison, agreed, ledger=ledger, verdicts=verdicts, offline=offline, settings=settings
        )
        summary["live"] = [
            {
                **asdict(e),
                "outcome": v.outcome if v else None,
                "failure_stage": v.failure_stage if v else None,
                "failure_reason": v.failure_reason if v else None,
            }
            for e in sent.live
            for v in (verdicts.get(e.trace_id),)
        ]
        summary["judged"] = judged_summary
        summary["divergence"] = diverged
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
                f"{len(plan)} requests through 3 example pipelines and {len(sent.live)} live "
                f"{UNCOVERED_SEGMENT} questions to {EVALUATED_PIPELINE} in {elapsed:.1f} s, "
                f"seed {options.seed}, faults {faults}\n"
                f"offline set: {diverged['offline_runs']} runs in "
                f"{offline_run.elapsed_s:.1f} s; judged: {sampled} sampled runs\n"
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
                offline_path=str(out_dir / "offline.jsonl"),
                judged=judged_summary,
                divergence=diverged,
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
        if offline_run is not None:
            offline_run.wait()
