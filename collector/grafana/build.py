"""Build the Grafana dashboards of the llmspans stack as JSON, from the panel lists below.

The dashboards are code so that every query is written once, checked by the tests
(each one is run against a live Prometheus fed by a real collector) and kept in
step with the metric names of docs/conventions.md. Run::

    python -m collector.grafana.build            # writes collector/grafana/dashboards/*.json
    python -m collector.grafana.build --check    # exit 1 when a file is stale

Dashboard variables: ``$pipeline`` and ``$stage`` (label values), ``$window`` (the
window of quality ratios), ``$service`` and ``$jaeger_url`` (where the trace links
point). Panels whose series carry a ``stage`` link to the traces behind them: a
Grafana Explore search of the Jaeger data source and a Jaeger UI search, both by
the root-span attribute ``llmspans.failure.stage`` that the collector sets; time
series panels also request Prometheus exemplars, whose ``trace_id`` opens the trace
in Jaeger (datasource setting ``exemplarTraceIdDestinations``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

HERE: Final = Path(__file__).resolve().parent
DASHBOARDS_DIR: Final = HERE / "dashboards"
PROMETHEUS_UID: Final = "prometheus"
JAEGER_UID: Final = "jaeger"
PROMETHEUS: Final = {"type": "prometheus", "uid": PROMETHEUS_UID}

P: Final = 'pipeline=~"$pipeline"'
PS: Final = 'pipeline=~"$pipeline", stage=~"$stage"'
RI: Final = "$__rate_interval"


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False


@dataclass(frozen=True)
class Panel:
    title: str
    kind: str  # timeseries | stat | table | heatmap | barchart
    targets: Sequence[Target]
    unit: str = "short"
    description: str = ""
    width: int = 12
    height: int = 8
    trace_links: bool = False  # series carry `stage` (and maybe `reason`)
    exemplars: bool = False
    stack: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _explore_link(tags: str) -> str:
    query = {
        "datasource": JAEGER_UID,
        "queries": [
            {
                "refId": "A",
                "datasource": {"type": "jaeger", "uid": JAEGER_UID},
                "queryType": "search",
                "service": "$service",
                "tags": tags,
                "limit": 20,
            }
        ],
        "range": {"from": "${__from}", "to": "${__to}"},
    }
    return "/explore?schemaVersion=1&panes=" + json.dumps({"traces": query}, separators=(",", ":"))


def _trace_links(with_reason: bool) -> list[dict[str, Any]]:
    tags = "llmspans.failure.stage=${__field.labels.stage}"
    jaeger_tags = '{"llmspans.failure.stage":"${__field.labels.stage}"'
    if with_reason:
        tags += " llmspans.failure.reason=${__field.labels.reason}"
        jaeger_tags += ',"llmspans.failure.reason":"${__field.labels.reason}"'
    jaeger_tags += "}"
    return [
        {
            "title": "Traces failed in ${__field.labels.stage} (Explore, Jaeger)",
            "url": _explore_link(tags),
            "targetBlank": False,
        },
        {
            "title": "Traces failed in ${__field.labels.stage} (Jaeger UI)",
            "url": "${jaeger_url}/search?service=${service}&limit=20&tags="
            + quote(jaeger_tags, safe="${}_.:,"),
            "targetBlank": True,
        },
    ]


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    targets = []
    for index, target in enumerate(panel.targets):
        body: dict[str, Any] = {
            "refId": chr(ord("A") + index),
            "datasource": PROMETHEUS,
            "expr": target.expr,
            "legendFormat": target.legend or "__auto",
            "range": not target.instant,
            "instant": target.instant,
        }
        if panel.exemplars and not target.instant:
            body["exemplar"] = True
        if target.table:
            body["format"] = "table"
        if panel.kind == "heatmap":
            body["format"] = "heatmap"
        targets.append(body)
    defaults: dict[str, Any] = {"unit": panel.unit}
    if panel.trace_links:
        with_reason = any("reason" in t.expr and "by (" in t.expr for t in panel.targets)
        defaults["links"] = _trace_links(with_reason)
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 20 if panel.stack else 0,
            "stacking": {"mode": "normal" if panel.stack else "none", "group": "A"},
            "showPoints": "never",
        }
    options: dict[str, Any] = {}
    if panel.kind == "timeseries":
        options = {
            "legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull"]}
        }
    elif panel.kind == "stat":
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    elif panel.kind == "heatmap":
        options = {"calculate": False, "yAxis": {"unit": panel.unit}}
    options.update(panel.extra)
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": PROMETHEUS,
        "gridPos": {"x": x, "y": y, "w": panel.width, "h": panel.height},
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
    }


def _variables(with_stage: bool) -> list[dict[str, Any]]:
    def label_values(name: str, metric: str) -> dict[str, Any]:
        definition = f"label_values({metric}, {name})"
        return {
            "name": name,
            "label": name,
            "type": "query",
            "datasource": PROMETHEUS,
            "definition": definition,
            "query": {"query": definition, "refId": f"{name}-values", "qryType": 1},
            "refresh": 2,
            "includeAll": True,
            "multi": True,
            "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "sort": 1,
        }

    found = [label_values("pipeline", "llmspans_stage_calls_total")]
    if with_stage:
        found.append(label_values("stage", "llmspans_stage_calls_total"))
    found += [
        {
            "name": "window",
            "label": "ratio window",
            "type": "custom",
            "query": "5m,15m,1h,6h,1d",
            "current": {"selected": True, "text": "1h", "value": "1h"},
            "options": [
                {"selected": w == "1h", "text": w, "value": w}
                for w in ("5m", "15m", "1h", "6h", "1d")
            ],
        },
        {
            "name": "service",
            "label": "service (Jaeger)",
            "type": "textbox",
            "query": "support-bot",
            "current": {"text": "support-bot", "value": "support-bot"},
        },
        {
            "name": "jaeger_url",
            "label": "Jaeger UI",
            "type": "textbox",
            "query": "http://localhost:16686",
            "current": {"text": "http://localhost:16686", "value": "http://localhost:16686"},
        },
    ]
    return found


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: Sequence[Panel]
    with_stage: bool = False

    def to_json(self) -> dict[str, Any]:
        panels = []
        x = y = row_height = 0
        for index, panel in enumerate(self.panels, start=1):
            if x + panel.width > 24:
                x, y, row_height = 0, y + row_height, 0
            panels.append(_panel_json(panel, index, x, y))
            x += panel.width
            row_height = max(row_height, panel.height)
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["llmspans"],
            "timezone": "browser",
            "editable": True,
            "schemaVersion": 39,
            "version": 1,
            "refresh": "30s",
            "time": {"from": "now-3h", "to": "now"},
            "templating": {"list": _variables(self.with_stage)},
            "annotations": {
                "list": [
                    {
                        "name": "llmspans alerts",
                        "datasource": PROMETHEUS,
                        "enable": True,
                        "iconColor": "red",
                        "expr": 'ALERTS{alertname=~"Llmspans.*", alertstate="firing"}',
                        "titleFormat": "{{alertname}}",
                        "textFormat": "{{pipeline}} {{stage}} {{reason}}",
                        "step": "60s",
                    }
                ]
            },
            "links": [
                {
                    "title": "llmspans",
                    "type": "dashboards",
                    "tags": ["llmspans"],
                    "asDropdown": True,
                }
            ],
            "panels": panels,
        }


def _runs(selector: str = P, window: str = RI, by: str = "pipeline") -> str:
    return f"sum by ({by}) (rate(llmspans_task_outcomes_total{{{selector}}}[{window}]))"


OVERVIEW: Final = Dashboard(
    uid="llmspans-overview",
    title="llmspans / Overview",
    description="Task completion, cost per successful outcome, feedback and alerts per pipeline.",
    panels=[
        Panel(
            "Task completion rate",
            "stat",
            [
                Target(
                    f'sum(rate(llmspans_task_outcomes_total{{{P}, outcome="success"}}[$window]))\n'
                    f"/ sum(rate(llmspans_task_outcomes_total{{{P}}}[$window]))"
                )
            ],
            unit="percentunit",
            width=6,
            height=5,
            description="Successful runs / all runs over $window (success needs evidence: "
            "a verified action or completed=True).",
        ),
        Panel(
            "Runs per second",
            "stat",
            [Target(f"sum(rate(llmspans_task_outcomes_total{{{P}}}[$window]))")],
            unit="reqps",
            width=6,
            height=5,
        ),
        Panel(
            "Cost per successful outcome",
            "stat",
            [
                Target(
                    f"sum(rate(llmspans_task_cost_usd_total{{{P}}}[$window]))\n"
                    f'/ sum(rate(llmspans_task_outcomes_total{{{P}, outcome="success"}}[$window]))'
                )
            ],
            unit="currencyUSD",
            width=6,
            height=5,
            description="All cost (failed runs included) / successful runs.",
        ),
        Panel(
            "Firing llmspans alerts",
            "stat",
            [Target('count(ALERTS{alertname=~"Llmspans.*", alertstate="firing"})', instant=True)],
            width=6,
            height=5,
        ),
        Panel(
            "Task completion rate by pipeline",
            "timeseries",
            [
                Target(
                    "sum by (pipeline) "
                    f'(rate(llmspans_task_outcomes_total{{{P}, outcome="success"}}'
                    f"[{RI}]))\n/ {_runs()}",
                    "{{pipeline}}",
                )
            ],
            unit="percentunit",
            exemplars=True,
        ),
        Panel(
            "Runs by outcome",
            "timeseries",
            [Target(_runs(by="pipeline, outcome"), "{{pipeline}} {{outcome}}")],
            unit="reqps",
            exemplars=True,
            stack=True,
        ),
        Panel(
            "Root-cause failures by stage",
            "timeseries",
            [
                Target(
                    f"sum by (pipeline, stage) (rate(llmspans_stage_failures_total{{{P}}}[{RI}]))",
                    "{{pipeline}} {{stage}}",
                )
            ],
            unit="reqps",
            trace_links=True,
            exemplars=True,
            stack=True,
            description="Each failed run counts once, in the stage that caused it. Click a "
            "series for its traces.",
        ),
        Panel(
            "Cost per successful outcome by pipeline",
            "timeseries",
            [
                Target(
                    f"sum by (pipeline) (rate(llmspans_task_cost_usd_total{{{P}}}[{RI}]))\n"
                    "/ sum by (pipeline) "
                    f'(rate(llmspans_task_outcomes_total{{{P}, outcome="success"}}'
                    f"[{RI}]))",
                    "{{pipeline}}",
                )
            ],
            unit="currencyUSD",
        ),
        Panel(
            "Edit and bypass rate",
            "timeseries",
            [
                Target(
                    "sum by (pipeline) "
                    f'(rate(llmspans_feedback_total{{{P}, kind="edit"}}[$window]))\n'
                    f"/ sum by (pipeline) (rate(llmspans_feedback_total{{{P}}}[$window]))",
                    "{{pipeline}} edit",
                ),
                Target(
                    f'sum by (pipeline) (rate(llmspans_feedback_total{{{P}, kind="bypass"}}'
                    f"[$window]))\n/ sum by (pipeline) (rate(llmspans_feedback_total{{{P}}}"
                    "[$window]))",
                    "{{pipeline}} bypass",
                ),
            ],
            unit="percentunit",
            description="Share of feedback events that edited or bypassed the output.",
        ),
        Panel(
            "Firing alerts",
            "table",
            [
                Target(
                    "sum by (alertname, severity, pipeline, stage, reason, instance) "
                    '(ALERTS{alertname=~"Llmspans.*", alertstate="firing"})',
                    instant=True,
                    table=True,
                )
            ],
            trace_links=False,
        ),
    ],
)

STAGES: Final = Dashboard(
    uid="llmspans-stages",
    title="llmspans / Stages",
    description="Per-stage calls, root-cause failures by reason, and latency.",
    with_stage=True,
    panels=[
        Panel(
            "Root-cause failure ratio by stage",
            "timeseries",
            [
                Target(
                    "sum by (pipeline, stage) "
                    f"(rate(llmspans_stage_failures_total{{{PS}}}[{RI}]))\n"
                    f"/ on (pipeline) group_left () {_runs()}",
                    "{{pipeline}} {{stage}}",
                )
            ],
            unit="percentunit",
            trace_links=True,
            exemplars=True,
            description="Runs whose root cause is the stage / all runs of the pipeline: what "
            "LlmspansStageFailureSpike watches.",
        ),
        Panel(
            "Root-cause failures by stage and reason",
            "timeseries",
            [
                Target(
                    f"sum by (pipeline, stage, reason) "
                    f"(rate(llmspans_stage_failures_total{{{PS}}}[{RI}]))",
                    "{{pipeline}} {{stage}} {{reason}}",
                )
            ],
            unit="reqps",
            trace_links=True,
            exemplars=True,
            stack=True,
        ),
        Panel(
            "Calls by stage and status",
            "timeseries",
            [
                Target(
                    f"sum by (pipeline, stage, status) "
                    f"(rate(llmspans_stage_calls_total{{{PS}}}[{RI}]))",
                    "{{pipeline}} {{stage}} {{status}}",
                )
            ],
            unit="reqps",
            exemplars=True,
        ),
        Panel(
            "Span errors by stage",
            "timeseries",
            [
                Target(
                    "sum by (pipeline, stage) "
                    f'(rate(llmspans_stage_calls_total{{{PS}, status="error"}}'
                    f"[{RI}]))\n/ sum by (pipeline, stage) "
                    f"(rate(llmspans_stage_calls_total{{{PS}}}[{RI}]))",
                    "{{pipeline}} {{stage}}",
                )
            ],
            unit="percentunit",
            trace_links=True,
            description="Share of stage spans with status ERROR (root cause or not).",
        ),
        Panel(
            "p95 latency by stage",
            "timeseries",
            [
                Target(
                    "histogram_quantile(0.95, sum by (pipeline, stage, le) "
                    f"(rate(llmspans_stage_duration_seconds_bucket{{{PS}}}[{RI}])))",
                    "{{pipeline}} {{stage}}",
                )
            ],
            unit="s",
            exemplars=True,
        ),
        Panel(
            "p50 latency by stage",
            "timeseries",
            [
                Target(
                    "histogram_quantile(0.5, sum by (pipeline, stage, le) "
                    f"(rate(llmspans_stage_duration_seconds_bucket{{{PS}}}[{RI}])))",
                    "{{pipeline}} {{stage}}",
                )
            ],
            unit="s",
        ),
        Panel(
            "End-to-end p95 by outcome",
            "timeseries",
            [
                Target(
                    "histogram_quantile(0.95, sum by (pipeline, outcome, le) "
                    f"(rate(llmspans_task_duration_seconds_bucket{{{P}}}[{RI}])))",
                    "{{pipeline}} {{outcome}}",
                )
            ],
            unit="s",
        ),
        Panel(
            "Top root causes in the range",
            "table",
            [
                Target(
                    "topk(10, sum by (pipeline, stage, reason) "
                    f"(increase(llmspans_stage_failures_total{{{PS}}}[$__range])))",
                    instant=True,
                    table=True,
                )
            ],
            trace_links=True,
        ),
    ],
)


def _cal(metric: str, by: str, window: str, extra: str = "") -> str:
    """``sum by (BY) (rate|increase(llmspans_calibration_METRIC_total{...}[WINDOW]))``."""
    fn = "increase" if window == "$__range" else "rate"
    selector = f"{P}, {extra}" if extra else P
    return f"sum by ({by}) ({fn}(llmspans_calibration_{metric}_total{{{selector}}}[{window}]))"


_CORRECT: Final = 'correct="true"'
_ECE: Final = (
    "sum by (pipeline) (\n  abs(\n    (\n"
    f"      {_cal('runs', 'pipeline, bin', '$window', _CORRECT)}\n"
    f"      or 0 * {_cal('runs', 'pipeline, bin', '$window')}\n"
    "    )\n"
    f"    - {_cal('confidence', 'pipeline, bin', '$window')}\n"
    "  )\n)\n"
    f"/ {_cal('runs', 'pipeline', '$window')}"
)
_ACCURACY_BY_BIN: Final = (
    f"(\n  {_cal('runs', 'bin', '$__range', _CORRECT)}\n"
    f"  or 0 * {_cal('runs', 'bin', '$__range')}\n)\n"
    f"/ {_cal('runs', 'bin', '$__range')}"
)
_CONFIDENCE_BY_BIN: Final = (
    f"{_cal('confidence', 'bin', '$__range')}\n/ {_cal('runs', 'bin', '$__range')}"
)
QUALITY: Final = Dashboard(
    uid="llmspans-quality",
    title="llmspans / Quality",
    description="Retrieval and citation quality, and calibration of the stated confidence.",
    panels=[
        Panel(
            "Context precision (rank-weighted, mean)",
            "timeseries",
            [
                Target(
                    f"sum by (pipeline) (rate(llmspans_retrieval_context_precision_sum{{{P}}}"
                    f"[$window]))\n/ sum by (pipeline) "
                    f"(rate(llmspans_retrieval_context_precision_count{{{P}}}[$window]))",
                    "{{pipeline}}",
                )
            ],
            unit="percentunit",
            width=8,
        ),
        Panel(
            "Context recall (mean)",
            "timeseries",
            [
                Target(
                    f"sum by (pipeline) (rate(llmspans_retrieval_context_recall_sum{{{P}}}"
                    f"[$window]))\n/ sum by (pipeline) "
                    f"(rate(llmspans_retrieval_context_recall_count{{{P}}}[$window]))",
                    "{{pipeline}}",
                )
            ],
            unit="percentunit",
            width=8,
        ),
        Panel(
            "Citation precision (mean)",
            "timeseries",
            [
                Target(
                    f"sum by (pipeline) (rate(llmspans_generation_citation_precision_sum{{{P}}}"
                    f"[$window]))\n/ sum by (pipeline) "
                    f"(rate(llmspans_generation_citation_precision_count{{{P}}}[$window]))",
                    "{{pipeline}}",
                )
            ],
            unit="percentunit",
            width=8,
        ),
        Panel(
            "Context precision distribution",
            "heatmap",
            [
                Target(
                    "sum by (le) "
                    f"(increase(llmspans_retrieval_context_precision_bucket{{{P}}}[{RI}]))",
                    "{{le}}",
                )
            ],
            unit="percentunit",
            exemplars=True,
        ),
        Panel(
            "Expected calibration error (exact over $window)",
            "timeseries",
            [
                Target(
                    _ECE,
                    "{{pipeline}} over $window",
                ),
                Target(
                    f"max by (pipeline) (llmspans_calibration_ece{{{P}}})",
                    "{{pipeline}} collector window",
                ),
            ],
            unit="percentunit",
            description="Sum over confidence bins of |correct runs - sum of confidences| / runs; "
            "the second series is the collector's own gauge over its recent runs.",
        ),
        Panel(
            "Reliability: accuracy and mean confidence by bin",
            "barchart",
            [
                Target(
                    _ACCURACY_BY_BIN,
                    "accuracy",
                    instant=True,
                    table=True,
                ),
                Target(
                    _CONFIDENCE_BY_BIN,
                    "mean confidence",
                    instant=True,
                    table=True,
                ),
            ],
            unit="percentunit",
            extra={"xField": "bin"},
        ),
        Panel(
            "Runs with a confidence, by bin",
            "barchart",
            [
                Target(
                    _cal("runs", "bin", "$__range"),
                    "runs",
                    instant=True,
                    table=True,
                )
            ],
            extra={"xField": "bin"},
        ),
    ],
)

_JOB = 'job=~"llmspans-collector.*"'
COLLECTOR: Final = Dashboard(
    uid="llmspans-collector",
    title="llmspans / Collector health",
    description="The llmspans collector replicas: intake, refusals, assembly and forwarding.",
    panels=[
        Panel(
            "Replicas up", "stat", [Target(f"sum(up{{{_JOB}}})", instant=True)], width=6, height=5
        ),
        Panel(
            "Spans received per second",
            "stat",
            [Target("sum(rate(llmspans_collector_spans_received_total[$__rate_interval]))")],
            unit="cps",
            width=6,
            height=5,
        ),
        Panel(
            "Traces in flight",
            "stat",
            [Target("sum(llmspans_collector_traces_inflight)")],
            width=6,
            height=5,
        ),
        Panel(
            "Spans in flight",
            "stat",
            [Target("sum(llmspans_collector_spans_inflight)")],
            width=6,
            height=5,
        ),
        Panel(
            "Spans received by replica",
            "timeseries",
            [
                Target(
                    "sum by (instance) "
                    "(rate(llmspans_collector_spans_received_total[$__rate_interval]))",
                    "{{instance}}",
                )
            ],
            unit="cps",
            description="Balanced replicas receive similar rates; the gateway routes by trace id.",
        ),
        Panel(
            "Spans rejected by reason",
            "timeseries",
            [
                Target(
                    "sum by (instance, reason) "
                    "(rate(llmspans_collector_spans_rejected_total[$__rate_interval]))",
                    "{{instance}} {{reason}}",
                )
            ],
            unit="cps",
            description="inflight_limit and queue_full are backpressure (senders retry); the "
            "rest is bad input.",
        ),
        Panel(
            "Requests rejected by reason",
            "timeseries",
            [
                Target(
                    "sum by (instance, reason) "
                    "(rate(llmspans_collector_requests_rejected_total[$__rate_interval]))",
                    "{{instance}} {{reason}}",
                )
            ],
            unit="reqps",
        ),
        Panel(
            "Traces finalised by reason",
            "timeseries",
            [
                Target(
                    "sum by (instance, reason) "
                    "(rate(llmspans_collector_traces_finalized_total[$__rate_interval]))",
                    "{{instance}} {{reason}}",
                )
            ],
            unit="cps",
            stack=True,
        ),
        Panel(
            "Evicted traces and late spans",
            "timeseries",
            [
                Target(
                    "sum by (instance) "
                    "(rate(llmspans_collector_traces_evicted_total[$__rate_interval]))",
                    "{{instance}} evicted traces",
                ),
                Target(
                    "sum by (instance) "
                    "(rate(llmspans_collector_late_spans_total[$__rate_interval]))",
                    "{{instance}} late spans",
                ),
            ],
            unit="cps",
        ),
        Panel(
            "Known attributes with the wrong type",
            "timeseries",
            [
                Target(
                    "sum by (instance) "
                    "(rate(llmspans_collector_bad_attributes_total[$__rate_interval]))",
                    "{{instance}}",
                )
            ],
            unit="cps",
        ),
        Panel(
            "Forward queue by exporter",
            "timeseries",
            [
                Target(
                    "sum by (instance, exporter) (llmspans_collector_forward_queue_spans)",
                    "{{instance}} {{exporter}}",
                )
            ],
        ),
        Panel(
            "Spans forwarded and dropped by exporter",
            "timeseries",
            [
                Target(
                    "sum by (instance, exporter) "
                    "(rate(llmspans_collector_spans_forwarded_total[$__rate_interval]))",
                    "{{instance}} {{exporter}} forwarded",
                ),
                Target(
                    "sum by (instance, exporter) "
                    "(rate(llmspans_collector_spans_dropped_total[$__rate_interval]))",
                    "{{instance}} {{exporter}} dropped",
                ),
            ],
            unit="cps",
        ),
    ],
)

DASHBOARDS: Final = (OVERVIEW, STAGES, QUALITY, COLLECTOR)


def render(dashboard: Dashboard) -> str:
    return json.dumps(dashboard.to_json(), indent=2, ensure_ascii=False) + "\n"


def files() -> dict[Path, str]:
    """Every dashboard file and its content."""
    return {DASHBOARDS_DIR / f"{d.uid}.json": render(d) for d in DASHBOARDS}


def queries(dashboard: dict[str, Any]) -> Iterable[tuple[str, str]]:
    """``(panel title, expr)`` of every query of a dashboard's JSON."""
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m collector.grafana.build")
    parser.add_argument("--check", action="store_true", help="exit 1 when a file is stale")
    args = parser.parse_args(argv)
    stale = []
    for path, text in files().items():
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current == text:
            continue
        if args.check:
            stale.append(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        names = ", ".join(str(p) for p in stale)
        print(f"stale dashboards: {names}; run python -m collector.grafana.build", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
