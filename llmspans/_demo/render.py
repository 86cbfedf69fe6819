"""The demo's terminal report: what happened, which stage broke, where to look next."""

from __future__ import annotations

from collections.abc import Sequence

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
    metrics_url: str | None, traces_path: str, forward: Delivery | None, keep_running: bool
) -> str:
    """Where to look next, as plain lines (commands stay on one line, ready to copy)."""
    lines = ["[bold]Where to look next[/bold]"]
    if keep_running and metrics_url:
        lines.append(f"  Prometheus metrics, live:  {metrics_url}   (Ctrl-C stops the collector)")
    lines.append(f"  the recorded traces:       llmspans analyze {traces_path}")
    if not keep_running:
        lines.append("  live /metrics endpoint:    rerun with --keep-running")
    if forward is not None:
        style = "green" if forward.complete else "bold yellow"
        lines.append(f"  [{style}]{escape(forward.line())}[/{style}]")
    else:
        lines.append(
            "  Phoenix or Jaeger:         rerun with --forward http://127.0.0.1:6006/v1/traces"
        )
    lines.append("  how to read this report:   docs/quickstart.md")
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
) -> None:
    """Print the whole report."""
    pipelines = sorted({p for p, _ in metrics.outcomes} | set(offline.pipelines))
    console.print(Panel(header, title="llmspans demo", title_align="left"))
    for table in (
        outcomes_table(metrics, pipelines),
        failures_table(metrics, pipelines),
        injected_table(comparison),
        quality_table(metrics, pipelines),
        feedback_table(metrics, pipelines),
        latency_table(offline, pipelines),
    ):
        if table is None:
            continue
        console.print(table)
        console.print()
    console.print(verdict_lines(comparison, agreement))
    console.print()
    console.print(next_steps(metrics_url, traces_path, forward, keep_running), soft_wrap=True)
