"""The demo's terminal report: what happened, which stage broke, where to look next."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from llmspans import _attributes as A
from llmspans._demo.forward import Delivery
from llmspans._demo.scrape import (
    CITATION_PRECISION,
    CONTEXT_PRECISION,
    CONTEXT_RECALL,
    ScrapedMetrics,
)
from llmspans._demo.summary import Agreement, Comparison
from llmspans.core.report import Report

NONE = "-"
_STAGES = (*A.PIPELINE_ORDER, A.STAGE_UNATTRIBUTED)


def _pct(value: float | None) -> str:
    return NONE if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 2) -> str:
    return NONE if value is None else f"{value:.{digits}f}"


def _usd(value: float | None) -> str:
    return NONE if value is None else f"${value:.6f}"


def _ms(value: float | None) -> str:
    return NONE if value is None else f"{1000 * value:.1f}"


def _table(title: str) -> Table:
    return Table(title=title, title_justify="left", title_style="bold")


def outcomes_table(metrics: ScrapedMetrics, pipelines: Sequence[str]) -> Table:
    table = _table("Outcomes (llmspans_task_outcomes_total, llmspans_task_cost_usd_total)")
    table.add_column("pipeline")
    for column in ("runs", "success", "failure", "unverified", "completion", "cost / success"):
        table.add_column(column, justify="right")
    for name in pipelines:
        counts = {o: metrics.outcomes.get((name, o), 0.0) for o in A.OUTCOMES}
        runs = sum(counts.values())
        success = counts[A.OUTCOME_SUCCESS]
        cost = metrics.cost_usd.get(name)
        table.add_row(
            name,
            f"{runs:.0f}",
            f"[green]{success:.0f}[/green]",
            f"[red]{counts[A.OUTCOME_FAILURE]:.0f}[/red]",
            f"{counts[A.OUTCOME_UNVERIFIED]:.0f}",
            _pct(success / runs if runs else None),
            _usd(cost / success if cost is not None and success else None),
        )
    return table


def quality_table(metrics: ScrapedMetrics, pipelines: Sequence[str]) -> Table:
    table = _table("Quality (means of the histograms; ECE from the calibration counters)")
    table.add_column("pipeline")
    for column in ("context precision", "context recall", "citation precision", "ECE"):
        table.add_column(column, justify="right")
    for name in pipelines:
        table.add_row(
            name,
            _num(metrics.mean(CONTEXT_PRECISION, name)),
            _num(metrics.mean(CONTEXT_RECALL, name)),
            _num(metrics.mean(CITATION_PRECISION, name)),
            _num(metrics.ece(name), 3),
        )
    return table


def feedback_table(metrics: ScrapedMetrics, pipelines: Sequence[str]) -> Table | None:
    with_feedback = [p for p in pipelines if any(k[0] == p for k in metrics.feedback)]
    if not with_feedback:
        return None
    table = _table("User feedback (llmspans_feedback_total)")
    table.add_column("pipeline")
    for kind in A.FEEDBACK_KINDS:
        table.add_column(kind, justify="right")
    table.add_column("edit rate", justify="right")
    table.add_column("bypass rate", justify="right")
    for name in with_feedback:
        counts = {k: metrics.feedback.get((name, k), 0.0) for k in A.FEEDBACK_KINDS}
        total = sum(counts.values())
        table.add_row(
            name,
            *(f"{counts[k]:.0f}" for k in A.FEEDBACK_KINDS),
            _pct(counts["edit"] / total if total else None),
            _pct(counts["bypass"] / total if total else None),
        )
    return table


def failures_table(metrics: ScrapedMetrics, pipelines: Sequence[str]) -> Table:
    table = _table("Root-cause failures by stage and reason (llmspans_stage_failures_total)")
    table.add_column("stage")
    table.add_column("reason")
    for name in pipelines:
        table.add_column(name, justify="right")
    table.add_column("total", justify="right", style="bold")
    order = {s: i for i, s in enumerate(_STAGES)}
    keys = sorted(
        {(stage, reason) for (_, stage, reason), v in metrics.failures.items() if v},
        key=lambda k: (order.get(k[0], len(order)), k[1]),
    )
    for stage, reason in keys:
        cells = [metrics.failures.get((p, stage, reason), 0.0) for p in pipelines]
        table.add_row(
            stage, reason, *(f"{c:.0f}" if c else "." for c in cells), f"{sum(cells):.0f}"
        )
    if not keys:
        table.add_row(NONE, "no failures", *("." for _ in pipelines), "0")
    return table


def latency_table(offline: Report, pipelines: Sequence[str]) -> Table:
    table = _table("Stage latency p50 / p95 in ms (exact, over the recorded spans)")
    table.add_column("pipeline")
    for stage in A.PIPELINE_ORDER:
        table.add_column(stage, justify="right")
    for name in pipelines:
        report = offline.pipelines.get(name)
        cells = []
        for stage in A.PIPELINE_ORDER:
            found = None if report is None else report.stages.get(stage)
            if found is None or not found.calls:
                cells.append(".")
            else:
                cells.append(f"{_ms(found.p50)} / {_ms(found.p95)}")
        table.add_row(name, *cells)
    return table


def judged_table(judged: Mapping[str, Any]) -> Table | None:
    """Judged figures next to the app-labelled ones, per pipeline with judged runs."""
    pipelines = {name: p for name, p in judged.get("pipelines", {}).items() if p.get("judged_runs")}
    if not pipelines:
        return None
    all_runs = sorted(s for s, r in judged.get("segment_rates", {}).items() if r >= 1.0)
    table = _table(
        f"Judged on sampled runs ({judged['sample_rate']:g} of the runs"
        + (f", every {', '.join(all_runs)} run" if all_runs else "")
        + "): app labels | judge"
    )
    table.caption = (
        "judged recall is the share of judged runs whose retrieval found a relevant "
        "document (the judge cannot see what was never retrieved); citation support: "
        "cited documents that say what they are cited for (docs/evaluation.md)"
    )
    table.caption_justify = "left"
    table.add_column("pipeline")
    for column in (
        "judged runs",
        "context precision",
        "context recall",
        "citation precision | support",
    ):
        table.add_column(column, justify="right")
    for name, p in sorted(pipelines.items()):
        precision, recall = p["context_precision"], p["context_recall"]
        table.add_row(
            name,
            str(p["judged_runs"]),
            f"{_num(precision['labels'])} | {_num(precision['judge'])}",
            f"{_num(recall['labels'])} | {_num(recall['judge'])}",
            f"{_num(p['citation_precision'])} | {_num(p['citation_support'])}",
        )
    return table


def judged_failures_table(judged: Mapping[str, Any]) -> Table | None:
    """Root causes by the app's signals (all runs) and once judged (sampled runs)."""
    rows = [r for r in judged.get("failures", ()) if r["judged"] or r["judged_app_success"]]
    if not judged.get("pipelines"):
        return None
    table = _table(
        "Judged root causes (llmspans_judged_failures_total) next to the app's "
        "(llmspans_stage_failures_total)"
    )
    table.caption = (
        "app: all runs, from the app's own signals; judged: sampled runs once the judge's "
        "labels are applied; looked successful: judged runs the app counted as a success"
    )
    table.caption_justify = "left"
    for column in ("pipeline", "stage", "reason"):
        table.add_column(column, no_wrap=True)
    for column in ("app", "judged", "looked successful"):
        table.add_column(column, justify="right")
    for r in judged.get("failures", ()):
        if not (r["app"] or r["judged"]):
            continue
        looked = r["judged_app_success"]
        table.add_row(
            r["pipeline"],
            r["stage"],
            r["reason"],
            str(r["app"]) if r["app"] else ".",
            str(r["judged"]) if r["judged"] else ".",
            f"[bold red]{looked}[/bold red]" if looked else ".",
        )
    if not rows:
        table.add_row(NONE, NONE, "no judged failures", ".", ".", ".")
    return table


def _sig(value: float | None) -> str:
    """Three significant digits: rates and means as well as costs of a few micro-dollars."""
    return NONE if value is None else f"{value:.3g}"


def _interval(value: Sequence[float] | None) -> str:
    return NONE if not value else f"[{value[0]:+.3g}, {value[1]:+.3g}]"


def divergence_table(divergence: Mapping[str, Any], pipeline: str) -> Table:
    """The significant rows of ``llmspans diverge``: offline set against production."""
    table = _table(
        f"Offline set vs production ({pipeline}): significant divergences "
        f"(llmspans diverge; at least {divergence['min_runs']} runs on each side)"
    )
    table.caption = (
        f"{divergence['compared']} rows compared, {len(divergence['significant'])} significant"
        + (
            f"; too few runs to test in: {', '.join(divergence['too_few_runs'])}"
            if divergence["too_few_runs"]
            else ""
        )
    )
    table.caption_justify = "left"
    for column in ("segment", "metric"):
        table.add_column(column, no_wrap=True)
    for column in ("offline", "production", "difference"):
        table.add_column(column, justify="right")
    table.add_column("interval", justify="right", no_wrap=True)
    table.add_column("runs", justify="right", no_wrap=True)
    for r in divergence["significant"]:
        table.add_row(
            r["segment"],
            r["metric"],
            _sig(r["offline"]),
            _sig(r["production"]),
            f"[red]{r['difference']:+.3g}[/red]" if r["difference"] is not None else NONE,
            _interval(r["interval"]),
            f"{r['offline_runs']} / {r['production_runs']}",
        )
    if not divergence["significant"]:
        table.add_row(NONE, "no significant difference", *(["."] * 5))
    return table


def coverage_table(divergence: Mapping[str, Any], pipeline: str) -> Table:
    """Each segment's share of production against its share of the offline set."""
    table = _table(
        f"Segment coverage of the offline set ({pipeline}): segments production serves "
        "and the set lacks first"
    )
    for column in ("segment",):
        table.add_column(column, no_wrap=True)
    for column in ("offline share", "production share", "runs off / prod", "verdict"):
        table.add_column(column, justify="right")
    for r in divergence["coverage"]:
        verdict = r["verdict"]
        table.add_row(
            r["segment"],
            _pct(r["offline"]),
            _pct(r["production"]),
            f"{r['offline_runs']} / {r['production_runs']}",
            f"[bold red]{verdict}[/bold red]" if r["uncovered"] else verdict,
        )
    return table


def injected_table(comparison: Comparison) -> Table:
    table = _table("Injected faults vs attributed root causes")
    table.caption = (
        "runs: runs of pipelines that have the stage; expected: the configured rate after "
        "earlier stages took precedence; blamed: runs whose root cause the collector put "
        "here; matched: injected here and blamed here; natural: blamed here, not injected"
    )
    table.caption_justify = "left"
    table.add_column("stage", no_wrap=True)
    for column in ("runs", "expected", "injected", "observed", "blamed", "matched", "natural"):
        table.add_column(column, justify="right")
    for stage in A.PIPELINE_ORDER:
        c = comparison.stages[stage]
        style = "green" if c.matched == c.injected else "red"
        table.add_row(
            stage,
            str(c.eligible_runs),
            _pct(c.expected_rate),
            str(c.injected),
            _pct(c.observed_rate),
            str(c.attributed),
            f"[{style}]{c.matched}/{c.injected}[/{style}]",
            str(c.natural),
        )
    return table


def verdict_lines(comparison: Comparison, agreement: Agreement) -> Text:
    text = Text()
    if comparison.exact:
        text.append("OK ", style="bold green")
        text.append(
            f"all {comparison.injected} injected faults were attributed to the stage "
            "they were injected into\n"
        )
    else:
        text.append("MISMATCH ", style="bold red")
        text.append(
            f"{len(comparison.mismatches)} of {comparison.injected} injected faults were "
            f"attributed elsewhere; {len(comparison.missing_verdicts)} runs have no verdict\n"
        )
        for m in comparison.mismatches[:10]:
            text.append(
                f"    run {m.seq} ({m.pipeline}, trace {m.trace_id}): injected {m.injected}, "
                f"got {m.outcome} / {m.failure_stage} / {m.failure_reason}\n",
                style="red",
            )
    if agreement.ok:
        text.append("OK ", style="bold green")
        text.append(
            "the collector's /metrics, the verdicts on the root spans and "
            "`llmspans analyze` over the recorded traces agree"
        )
    else:
        text.append("DISAGREE ", style="bold red")
        text.append("the sources disagree:")
        for d in agreement.differences[:10]:
            text.append(f"\n    {d}", style="red")
    return text


def next_steps(
    metrics_url: str | None,
    traces_path: str,
    forward: Delivery | None,
    keep_running: bool,
    offline_path: str | None = None,
) -> str:
    """Where to look next, as plain lines (commands stay on one line, ready to copy)."""
    lines = ["[bold]Where to look next[/bold]"]
    if keep_running and metrics_url:
        lines.append(f"  Prometheus metrics, live:  {metrics_url}   (Ctrl-C stops the collector)")
    lines.append(f"  the recorded traces:       llmspans analyze {traces_path}")
    if offline_path:
        lines.append(
            f"  offline vs production:     llmspans diverge --offline {offline_path} "
            f"--production {traces_path}"
        )
    if not keep_running:
        lines.append("  live /metrics endpoint:    rerun with --keep-running")
    if forward is not None:
        style = "green" if forward.complete else "bold yellow"
        lines.append(f"  [{style}]{escape(forward.line())}[/{style}]")
    else:
        lines.append(
            "  Phoenix or Jaeger:         rerun with --forward http://127.0.0.1:6006/v1/traces"
        )
    lines.append(
        "  how to read this report:   docs/quickstart.md, docs/evaluation.md, docs/divergence.md"
    )
    return "\n".join(lines)


def render(
    console: Console,
    *,
    header: str,
    metrics: ScrapedMetrics,
    offline: Report,
    comparison: Comparison,
    agreement: Agreement,
    metrics_url: str | None,
    traces_path: str,
    forward: Delivery | None,
    keep_running: bool,
    offline_path: str | None = None,
    judged: Mapping[str, Any] | None = None,
    divergence: Mapping[str, Any] | None = None,
    evaluated_pipeline: str = "support_rag",
) -> None:
    """Print the whole report."""
    pipelines = sorted({p for p, _ in metrics.outcomes} | set(offline.pipelines))
    console.print(Panel(header, title="llmspans demo", title_align="left"))
    for table in (
        outcomes_table(metrics, pipelines),
        failures_table(metrics, pipelines),
        injected_table(comparison),
        quality_table(metrics, pipelines),
        judged_table(judged) if judged else None,
        judged_failures_table(judged) if judged else None,
        divergence_table(divergence, evaluated_pipeline) if divergence else None,
        coverage_table(divergence, evaluated_pipeline) if divergence else None,
        feedback_table(metrics, pipelines),
        latency_table(offline, pipelines),
    ):
        if table is None:
            continue
        console.print(table)
        console.print()
    console.print(verdict_lines(comparison, agreement))
    console.print()
    if judged:
        console.print(judged_lines(judged))
        console.print()
    console.print(
        next_steps(metrics_url, traces_path, forward, keep_running, offline_path), soft_wrap=True
    )


def judged_lines(judged: Mapping[str, Any]) -> Text:
    """The runs the app counted as successes that the judge found wrong."""
    looked = judged["looked_successful_judged_wrong"]
    text = Text()
    if looked["runs"]:
        text.append("JUDGED WRONG ", style="bold red")
        reasons = ", ".join(f"{n} {reason}" for reason, n in looked["reasons"].items())
        text.append(
            f"{looked['runs']} runs looked successful to the app and were judged wrong: {reasons}"
        )
        if looked["traces"]:
            text.append(f"\n    e.g. trace {looked['traces'][0]}", style="dim")
    else:
        text.append("OK ", style="bold green")
        text.append(
            "no run that looked successful was judged wrong "
            f"({judged['sampled_runs']} runs sampled)"
        )
    return text
