"""Build the Grafana dashboards of the llmspans stack with grafana-foundation-sdk.

The dashboards are code so that every query is written once, checked by the tests
(each one is run against a live Prometheus fed by a real collector) and kept in
step with the metric names of docs/conventions.md. The panels, variables and links
are built with the builders of Grafana's ``grafana-foundation-sdk`` (the version
pinned in the ``dev`` extra, which follows the Grafana of docker-compose.yml) and
serialised by its JSON encoder. Run::

    python -m collector.grafana.build            # writes collector/grafana/dashboards/*.json
    python -m collector.grafana.build --check    # exit 1 when a file is stale

Dashboard variables: ``$pipeline`` and ``$stage`` (label values), ``$window`` (the
window of quality ratios), ``$service`` and ``$jaeger_url`` (where the trace links
point). A new label breakdown is a :func:`label_variable` in a dashboard's
``filters`` and its :func:`matchers` in the queries. Panels whose series carry a
``stage`` link to the traces behind them: a Grafana Explore search of the Jaeger
data source and a Jaeger UI search, both by the root-span attribute
``llmspans.failure.stage`` that the collector sets; time series panels also
request Prometheus exemplars, whose ``trace_id`` opens the trace in Jaeger
(datasource setting ``exemplarTraceIdDestinations``).

One piece is outside the SDK: :class:`PrometheusAnnotation`, because the SDK's
annotation model has no ``titleFormat``, ``textFormat`` or ``step``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import quote

from grafana_foundation_sdk.builders import (
    barchart,
    common,
    dashboard,
    heatmap,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_model
from grafana_foundation_sdk.models import dashboard as dashboard_model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from collector.prometheus.render import DIVERGENCE_Z

HERE: Final = Path(__file__).resolve().parent
DASHBOARDS_DIR: Final = HERE / "dashboards"
PROMETHEUS_UID: Final = "prometheus"
JAEGER_UID: Final = "jaeger"
PROMETHEUS: Final = dashboard_model.DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID)
RI: Final = "$__rate_interval"
#: the firing llmspans alerts: ``Llmspans*``, and ``LLMSpansOfflineProductionDivergence``,
#: which keeps the spelling its issue gave it
FIRING: Final = 'ALERTS{alertname=~"(Llmspans|LLMSpans).*", alertstate="firing"}'


# Label breakdowns: one dashboard variable per label, and its matcher in the queries.


def matchers(*labels: str) -> str:
    """The PromQL matchers of the dashboard variables of ``labels``: ``label=~"$label"``."""
    return ", ".join(f'{label}=~"${label}"' for label in labels)


P: Final = matchers("pipeline")
PS: Final = matchers("pipeline", "stage")
#: the run-level labels: pipeline, segment, source
R: Final = matchers("pipeline", "segment", "source")


def label_variable(
    label: str, metric: str = "llmspans_stage_calls_total"
) -> dashboard.QueryVariable:
    """The multi-value variable ``$label``: the values of ``label`` on ``metric``, All = ``.*``.

    A breakdown by a run-level label, e.g. ``segment``, is
    ``label_variable("segment", "llmspans_task_outcomes_total")`` in the dashboard's
    ``filters`` and ``matchers("pipeline", "segment")`` in its queries.
    """
    return (
        dashboard.QueryVariable(label)
        .label(label)
        .datasource(PROMETHEUS)
        .query(
            {"query": f"label_values({metric}, {label})", "refId": f"{label}-values", "qryType": 1}
        )
        .refresh(dashboard_model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .include_all(True)
        .multi(True)
        .all_value(".*")
        .current(dashboard_model.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .sort(dashboard_model.VariableSort.ALPHABETICAL_ASC)
    )


def _textbox(name: str, label: str, value: str) -> dashboard.TextBoxVariable:
    return (
        dashboard.TextBoxVariable(name)
        .label(label)
        .default_value(value)
        .current(dashboard_model.VariableOption(text=value, value=value))
    )


def _shared_variables() -> list[dashboard.CustomVariable | dashboard.TextBoxVariable]:
    windows = ("5m", "15m", "1h", "6h", "1d")
    return [
        dashboard.CustomVariable("window")
        .label("ratio window")
        .values(",".join(windows))
        .current(dashboard_model.VariableOption(selected=True, text="1h", value="1h"))
        .options(
            [dashboard_model.VariableOption(selected=w == "1h", text=w, value=w) for w in windows]
        ),
        _textbox("service", "service (Jaeger)", "support-bot"),
        _textbox("jaeger_url", "Jaeger UI", "http://localhost:16686"),
    ]


# Trace links.


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


def trace_links(with_reason: bool = False) -> list[dashboard.DashboardLink]:
    """Data links from a series with a ``stage`` (and ``reason``) to the traces that failed so."""
    tags = "llmspans.failure.stage=${__field.labels.stage}"
    jaeger_tags = '{"llmspans.failure.stage":"${__field.labels.stage}"'
    if with_reason:
        tags += " llmspans.failure.reason=${__field.labels.reason}"
        jaeger_tags += ',"llmspans.failure.reason":"${__field.labels.reason}"'
    jaeger_tags += "}"
    title = "Traces failed in ${__field.labels.stage}"
    return [
        dashboard.DashboardLink(f"{title} (Explore, Jaeger)")
        .url(_explore_link(tags))
        .target_blank(False),
        dashboard.DashboardLink(f"{title} (Jaeger UI)")
        .url(
            "${jaeger_url}/search?service=${service}&limit=20&tags="
            + quote(jaeger_tags, safe="${}_.:,")
        )
        .target_blank(True),
    ]


# Panels: each helper returns an SDK panel builder in the house style, to which a
# definition below may chain further SDK options.

PanelBuilder = timeseries.Panel | stat.Panel | table.Panel | heatmap.Panel | barchart.Panel
#: a panel, or :func:`row`: a row header that starts a new line of the grid
DashboardItem = PanelBuilder | dashboard.Row
_Panel = TypeVar("_Panel", timeseries.Panel, stat.Panel, table.Panel, heatmap.Panel, barchart.Panel)


def query(
    expr: str, legend: str = "", *, instant: bool = False, as_table: bool = False
) -> prometheus.Dataquery:
    """A Prometheus query of the panel's data source; range unless ``instant``."""
    target = (
        prometheus.Dataquery().datasource(PROMETHEUS).expr(expr).legend_format(legend or "__auto")
    )
    target = target.instant() if instant else target.range()
    if as_table:
        target.format(PromQueryFormat.TABLE)
    return target


def _panel(
    panel: _Panel,
    title: str,
    targets: Sequence[prometheus.Dataquery],
    *,
    unit: str,
    description: str,
    width: int,
    height: int,
    exemplars: bool = False,
    links: Sequence[dashboard.DashboardLink] = (),
) -> _Panel:
    panel.title(title).description(description).datasource(PROMETHEUS)
    panel.span(width).height(height).unit(unit)
    for index, target in enumerate(targets):
        target.ref_id(chr(ord("A") + index))
        if exemplars and not target.build().instant:
            target.exemplar(True)
        panel.with_target(target)
    if links:
        panel.data_links(list(links))
    return panel


def _tooltip() -> common.VizTooltipOptions:
    # Grafana's own default (the SDK's default sorts the tooltip ascending).
    return (
        common.VizTooltipOptions()
        .mode(common_model.TooltipDisplayMode.SINGLE)
        .sort(common_model.SortOrder.NONE)
    )


def timeseries_panel(
    title: str,
    targets: Sequence[prometheus.Dataquery],
    *,
    unit: str = "short",
    description: str = "",
    width: int = 12,
    height: int = 8,
    exemplars: bool = False,
    links: Sequence[dashboard.DashboardLink] = (),
    stack: bool = False,
) -> timeseries.Panel:
    """Lines, stacked and filled when ``stack``; legend as a table with the last value."""
    panel = _panel(
        timeseries.Panel(),
        title,
        targets,
        unit=unit,
        description=description,
        width=width,
        height=height,
        exemplars=exemplars,
        links=links,
    )
    stacking = common_model.StackingMode.NORMAL if stack else common_model.StackingMode.NONE
    return (
        panel.draw_style(common_model.GraphDrawStyle.LINE)
        .line_width(1)
        .fill_opacity(20 if stack else 0)
        .stacking(common.StackingConfig().mode(stacking).group("A"))
        .show_points(common_model.VisibilityMode.NEVER)
        .legend(
            common.VizLegendOptions()
            .show_legend(True)
            .display_mode(common_model.LegendDisplayMode.TABLE)
            .placement(common_model.LegendPlacement.RIGHT)
            .calcs(["lastNotNull"])
        )
        .tooltip(_tooltip())
    )


def stat_panel(
    title: str,
    targets: Sequence[prometheus.Dataquery],
    *,
    unit: str = "short",
    description: str = "",
    width: int = 6,
    height: int = 5,
) -> stat.Panel:
    """One number: the last value of the query."""
    panel = _panel(
        stat.Panel(),
        title,
        targets,
        unit=unit,
        description=description,
        width=width,
        height=height,
    )
    return panel.reduce_options(
        common.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)
    )


def table_panel(
    title: str,
    targets: Sequence[prometheus.Dataquery],
    *,
    unit: str = "short",
    width: int = 12,
    height: int = 8,
    links: Sequence[dashboard.DashboardLink] = (),
) -> table.Panel:
    return _panel(
        table.Panel(),
        title,
        targets,
        unit=unit,
        description="",
        width=width,
        height=height,
        links=links,
    )


def heatmap_panel(
    title: str,
    targets: Sequence[prometheus.Dataquery],
    *,
    unit: str = "short",
    width: int = 12,
    height: int = 8,
    exemplars: bool = False,
) -> heatmap.Panel:
    """Buckets already counted by Prometheus (``le``): the heatmap does not calculate."""
    for target in targets:
        target.format(PromQueryFormat.HEATMAP)
    panel = _panel(
        heatmap.Panel(),
        title,
        targets,
        unit=unit,
        description="",
        width=width,
        height=height,
        exemplars=exemplars,
    )
    return panel.calculate(False).y_axis(heatmap.YAxisConfig().unit(unit))


def barchart_panel(
    title: str,
    targets: Sequence[prometheus.Dataquery],
    *,
    unit: str = "short",
    width: int = 12,
    height: int = 8,
) -> barchart.Panel:
    panel = _panel(
        barchart.Panel(),
        title,
        targets,
        unit=unit,
        description="",
        width=width,
        height=height,
    )
    # Grafana's own default legend (the SDK's default hides it).
    legend = (
        common.VizLegendOptions()
        .show_legend(True)
        .display_mode(common_model.LegendDisplayMode.LIST)
        .placement(common_model.LegendPlacement.BOTTOM)
    )
    return panel.legend(legend).tooltip(_tooltip())


def row(title: str) -> dashboard.Row:
    """A row header: the panels that follow it in a dashboard's list are its panels."""
    return dashboard.Row(title).collapsed(False)


# The escape: the annotation of firing alerts.


class _PrometheusAnnotationModel(dashboard_model.AnnotationQuery):
    def __init__(self, title_format: str, text_format: str, step: str) -> None:
        super().__init__()
        self.title_format = title_format
        self.text_format = text_format
        self.step = step

    def to_json(self) -> dict[str, object]:
        return {
            **super().to_json(),
            "titleFormat": self.title_format,
            "textFormat": self.text_format,
            "step": self.step,
        }


class PrometheusAnnotation(dashboard.AnnotationQuery):
    """The SDK's annotation builder, plus the Prometheus fields its model lacks.

    ``dashboard_model.AnnotationQuery`` of grafana-foundation-sdk (Grafana 11.2 schema)
    has ``expr`` but no ``titleFormat``, ``textFormat`` or ``step``: the Prometheus
    data source reads the first two at the annotation's top level to title its
    markers (without them each marker has an empty title and text) and turns
    ``step`` into the query's minimum step.
    """

    def __init__(self, *, title_format: str, text_format: str, step: str) -> None:
        super().__init__()
        self._internal = _PrometheusAnnotationModel(title_format, text_format, step)


def _alerts_annotation() -> PrometheusAnnotation:
    return (
        PrometheusAnnotation(
            title_format="{{alertname}}",
            text_format="{{pipeline}} {{stage}} {{reason}}",
            step="60s",
        )
        .name("llmspans alerts")
        .datasource(PROMETHEUS)
        .enable(True)
        .icon_color("red")
        .expr(FIRING)
    )


# Dashboards.


def llmspans_dashboard(
    uid: str,
    title: str,
    description: str,
    panels: Sequence[DashboardItem],
    filters: Sequence[dashboard.QueryVariable] = (),
) -> dashboard.Dashboard:
    """A dashboard of ``panels``, laid out left to right in rows of 24 columns.

    A :func:`row` among them is a Grafana row header (expanded) that starts a new
    line; the panels after it belong to it until the next one.

    ``filters`` are the label variables (default: ``$pipeline``); ``$window``,
    ``$service`` and ``$jaeger_url``, the alert annotation and the links to the
    other llmspans dashboards are on every dashboard. Panel ids follow the order.
    """
    board = (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["llmspans"])
        .timezone("browser")
        .editable()
        .version(1)
        .refresh("30s")
        .time("now-3h", "now")
    )
    for variable in [*(filters or [label_variable("pipeline")]), *_shared_variables()]:
        board.with_variable(variable)
    board.annotation(_alerts_annotation())
    board.link(
        dashboard.DashboardLink("llmspans")
        .type(dashboard_model.DashboardLinkType.DASHBOARDS)
        .tags(["llmspans"])
        .as_dropdown(True)
    )
    for panel_id, panel in enumerate(panels, start=1):
        if isinstance(panel, dashboard.Row):
            board.with_row(panel.id(panel_id))
            continue
        board.with_panel(panel.id(panel_id))
        # The SDK starts a new row only once a row is full: a panel must not straddle two.
        position = panel.build().grid_pos
        if position is None or position.x + position.w > 24:
            raise ValueError(f"{uid}: {panel.build().title!r} does not fit in its row of 24")
    return board


def _runs(selector: str = P, window: str = RI, by: str = "pipeline") -> str:
    return f"sum by ({by}) (rate(llmspans_task_outcomes_total{{{selector}}}[{window}]))"


def _share(source: str) -> str:
    """Each segment's share of the runs of ``source`` in the range, over the selected pipelines."""
    runs = f'llmspans_task_outcomes_total{{{P}, source="{source}"}}'
    return (
        f"sum by (segment) (increase({runs}[$__range]))\n/ scalar(sum(increase({runs}[$__range])))"
    )


def _divergence_row() -> list[DashboardItem]:
    """Offline runs against production (docs/divergence.md), as the divergence alert sees them."""
    return [
        row("Divergence: offline and production (docs/divergence.md)"),
        timeseries_panel(
            "Offline-production divergence (z of the failure ratios)",
            [
                query(
                    f'{DIVERGENCE_Z}{{pipeline=~"$pipeline", segment=~"$segment"}}',
                    "{{pipeline}} {{segment}}",
                )
            ],
            description="Two-proportion z of the failure ratios of production runs and offline "
            "runs per pipeline and segment (recorded by the rules at the windows of "
            "LLMSpansOfflineProductionDivergence; positive: production fails more). Beyond "
            "the alert's threshold (2.58) with enough runs on each side, the alert fires; "
            "llmspans diverge gives the per-metric intervals.",
        ),
        barchart_panel(
            "Segment coverage: share of production and of offline runs",
            [
                query(_share("production"), "production", instant=True, as_table=True),
                query(_share("offline"), "offline", instant=True, as_table=True),
            ],
            unit="percentunit",
        ).x_field("segment"),
    ]


OVERVIEW: Final = llmspans_dashboard(
    uid="llmspans-overview",
    title="llmspans / Overview",
    description="Task completion, cost per successful outcome, feedback and alerts per pipeline.",
    filters=[
        label_variable("pipeline"),
        label_variable("segment", "llmspans_task_outcomes_total"),
        label_variable("source", "llmspans_task_outcomes_total"),
    ],
    panels=[
        stat_panel(
            "Task completion rate",
            [
                query(
                    f'sum(rate(llmspans_task_outcomes_total{{{R}, outcome="success"}}[$window]))\n'
                    f"/ sum(rate(llmspans_task_outcomes_total{{{R}}}[$window]))"
                )
            ],
            unit="percentunit",
            description="Successful runs / all runs over $window (success needs evidence: "
            "a verified action or completed=True).",
        ),
        stat_panel(
            "Runs per second",
            [query(f"sum(rate(llmspans_task_outcomes_total{{{R}}}[$window]))")],
            unit="reqps",
        ),
        stat_panel(
            "Cost per successful outcome",
            [
                query(
                    f"sum(rate(llmspans_task_cost_usd_total{{{R}}}[$window]))\n"
                    f'/ sum(rate(llmspans_task_outcomes_total{{{R}, outcome="success"}}[$window]))'
                )
            ],
            unit="currencyUSD",
            description="All cost (failed runs included) / successful runs.",
        ),
        stat_panel(
            "Firing llmspans alerts",
            [query(f"count({FIRING})", instant=True)],
        ),
        timeseries_panel(
            "Task completion rate by pipeline",
            [
                query(
                    "sum by (pipeline) "
                    f'(rate(llmspans_task_outcomes_total{{{R}, outcome="success"}}'
                    f"[{RI}]))\n/ {_runs(R)}",
                    "{{pipeline}}",
                )
            ],
            unit="percentunit",
            exemplars=True,
        ),
        timeseries_panel(
            "Runs by outcome",
            [query(_runs(R, by="pipeline, outcome"), "{{pipeline}} {{outcome}}")],
            unit="reqps",
            exemplars=True,
            stack=True,
        ),
        timeseries_panel(
            "Root-cause failures by stage",
            [
                query(
                    f"sum by (pipeline, stage) (rate(llmspans_stage_failures_total{{{R}}}[{RI}]))",
                    "{{pipeline}} {{stage}}",
                )
            ],
            unit="reqps",
            links=trace_links(),
            exemplars=True,
            stack=True,
            description="Each failed run counts once, in the stage that caused it. Click a "
            "series for its traces.",
        ),
        timeseries_panel(
            "Cost per successful outcome by pipeline",
            [
                query(
                    f"sum by (pipeline) (rate(llmspans_task_cost_usd_total{{{R}}}[{RI}]))\n"
                    "/ sum by (pipeline) "
                    f'(rate(llmspans_task_outcomes_total{{{R}, outcome="success"}}'
                    f"[{RI}]))",
                    "{{pipeline}}",
                )
            ],
            unit="currencyUSD",
        ),
        timeseries_panel(
            "Edit and bypass rate",
            [
                query(
                    "sum by (pipeline) "
                    f'(rate(llmspans_feedback_total{{{P}, kind="edit"}}[$window]))\n'
                    f"/ sum by (pipeline) (rate(llmspans_feedback_total{{{P}}}[$window]))",
                    "{{pipeline}} edit",
                ),
                query(
                    f'sum by (pipeline) (rate(llmspans_feedback_total{{{P}, kind="bypass"}}'
                    f"[$window]))\n/ sum by (pipeline) (rate(llmspans_feedback_total{{{P}}}"
                    "[$window]))",
                    "{{pipeline}} bypass",
                ),
            ],
            unit="percentunit",
            description="Share of feedback events that edited or bypassed the output.",
        ),
        timeseries_panel(
            "Task completion rate by segment",
            [
                query(
                    "sum by (pipeline, segment) "
                    f'(rate(llmspans_task_outcomes_total{{{R}, outcome="success"}}'
                    f"[{RI}]))\n/ {_runs(R, by='pipeline, segment')}",
                    "{{pipeline}} {{segment}}",
                )
            ],
            unit="percentunit",
            description="Failures cluster: a pipeline fine on average can be wrong on one "
            "segment (docs/divergence.md).",
        ),
        timeseries_panel(
            "Failure ratio by source (offline, shadow, production)",
            [
                query(
                    "sum by (pipeline, segment, source) "
                    f'(rate(llmspans_task_outcomes_total{{{R}, outcome="failure"}}[$window]))\n'
                    f"/ {_runs(R, '$window', 'pipeline, segment, source')}",
                    "{{pipeline}} {{segment}} {{source}}",
                )
            ],
            unit="percentunit",
            description="Failed runs / runs per segment and source: where the "
            "evaluation set stops predicting production (llmspans diverge tests it).",
        ),
        table_panel(
            "Firing alerts",
            [
                query(
                    f"sum by (alertname, severity, pipeline, stage, reason, instance) ({FIRING})",
                    instant=True,
                    as_table=True,
                )
            ],
        ),
        *_divergence_row(),
    ],
)

STAGES: Final = llmspans_dashboard(
    uid="llmspans-stages",
    title="llmspans / Stages",
    description="Per-stage calls, root-cause failures by reason, and latency.",
    filters=[label_variable("pipeline"), label_variable("stage")],
    panels=[
        timeseries_panel(
            "Root-cause failure ratio by stage",
            [
                query(
                    "sum by (pipeline, stage) "
                    f"(rate(llmspans_stage_failures_total{{{PS}}}[{RI}]))\n"
                    f"/ on (pipeline) group_left () {_runs()}",
                    "{{pipeline}} {{stage}}",
                )
            ],
            unit="percentunit",
            links=trace_links(),
            exemplars=True,
            description="Runs whose root cause is the stage / all runs of the pipeline: what "
            "LlmspansStageFailureSpike watches.",
        ),
        timeseries_panel(
            "Root-cause failures by stage and reason",
            [
                query(
                    f"sum by (pipeline, stage, reason) "
                    f"(rate(llmspans_stage_failures_total{{{PS}}}[{RI}]))",
                    "{{pipeline}} {{stage}} {{reason}}",
                )
            ],
            unit="reqps",
            links=trace_links(with_reason=True),
            exemplars=True,
            stack=True,
        ),
        timeseries_panel(
            "Calls by stage and status",
            [
                query(
                    f"sum by (pipeline, stage, status) "
                    f"(rate(llmspans_stage_calls_total{{{PS}}}[{RI}]))",
                    "{{pipeline}} {{stage}} {{status}}",
                )
            ],
            unit="reqps",
            exemplars=True,
        ),
        timeseries_panel(
            "Span errors by stage",
            [
                query(
                    "sum by (pipeline, stage) "
                    f'(rate(llmspans_stage_calls_total{{{PS}, status="error"}}'
                    f"[{RI}]))\n/ sum by (pipeline, stage) "
                    f"(rate(llmspans_stage_calls_total{{{PS}}}[{RI}]))",
                    "{{pipeline}} {{stage}}",
                )
            ],
            unit="percentunit",
            links=trace_links(),
            description="Share of stage spans with status ERROR (root cause or not).",
        ),
        timeseries_panel(
            "p95 latency by stage",
            [
                query(
                    "histogram_quantile(0.95, sum by (pipeline, stage, le) "
                    f"(rate(llmspans_stage_duration_seconds_bucket{{{PS}}}[{RI}])))",
                    "{{pipeline}} {{stage}}",
                )
            ],
            unit="s",
            exemplars=True,
        ),
        timeseries_panel(
            "p50 latency by stage",
            [
                query(
                    "histogram_quantile(0.5, sum by (pipeline, stage, le) "
                    f"(rate(llmspans_stage_duration_seconds_bucket{{{PS}}}[{RI}])))",
                    "{{pipeline}} {{stage}}",
                )
            ],
            unit="s",
        ),
        timeseries_panel(
            "End-to-end p95 by outcome",
            [
                query(
                    "histogram_quantile(0.95, sum by (pipeline, outcome, le) "
                    f"(rate(llmspans_task_duration_seconds_bucket{{{P}}}[{RI}])))",
                    "{{pipeline}} {{outcome}}",
                )
            ],
            unit="s",
        ),
        table_panel(
            "Top root causes in the range",
            [
                query(
                    "topk(10, sum by (pipeline, stage, reason) "
                    f"(increase(llmspans_stage_failures_total{{{PS}}}[$__range])))",
                    instant=True,
                    as_table=True,
                )
            ],
            links=trace_links(with_reason=True),
        ),
    ],
)


#: the app's own bases of correctness: a judged run is counted again under basis="judge"
APP_BASIS: Final = 'basis!="judge"'
#: relevance from the app's own labels
LABELS: Final = 'basis="labels"'
#: the two bases of relevance side by side: the app's labels and the judge's
BASES: Final = 'basis=~"labels|judge"'


def _cal(metric: str, by: str, window: str, extra: str = "") -> str:
    """``sum by (BY) (rate|increase(llmspans_calibration_METRIC_total{...}[WINDOW]))``.

    Over the app's own bases (``labels``, ``outcome``): each run once.
    """
    fn = "increase" if window == "$__range" else "rate"
    selector = f"{P}, {APP_BASIS}, {extra}" if extra else f"{P}, {APP_BASIS}"
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
#: evaluator calls that gave a judgment (an ``error`` or ``timeout`` verdict gives none)
_JUDGED: Final = 'verdict!~"error|timeout"'


def _mean(metric: str, selector: str, by: str) -> str:
    """Mean of histogram ``metric`` over ``$window``: rate of its sum / rate of its count."""
    return (
        f"sum by ({by}) (rate({metric}_sum{{{selector}}}[$window]))\n"
        f"/ sum by ({by}) (rate({metric}_count{{{selector}}}[$window]))"
    )


def _judged_quality_row() -> list[DashboardItem]:
    """The figures of continuous evaluation beside the app-labelled ones above them."""
    return [
        row("Judged quality (sampled runs, docs/evaluation.md)"),
        timeseries_panel(
            "Context precision: judged and app-labelled",
            [
                query(
                    _mean(
                        "llmspans_retrieval_context_precision", f"{P}, {BASES}", "pipeline, basis"
                    ),
                    "{{pipeline}} {{basis}}",
                )
            ],
            unit="percentunit",
            width=8,
            description="Rank-weighted context precision, relevance from the judge "
            '(basis="judge", sampled runs) and from the app\'s labels (basis="labels").',
        ),
        timeseries_panel(
            "Context recall: judged and app-labelled",
            [
                query(
                    _mean("llmspans_retrieval_context_recall", f"{P}, {BASES}", "pipeline, basis"),
                    "{{pipeline}} {{basis}}",
                )
            ],
            unit="percentunit",
            width=8,
            description="Judged: share of sampled runs whose retrieved context held a document "
            "the judge found relevant. Labels: share of the labelled relevant ids retrieved.",
        ),
        timeseries_panel(
            "Citation support (judged) and citation precision",
            [
                query(
                    _mean("llmspans_generation_citation_support", P, "pipeline"),
                    "{{pipeline}} support (judged)",
                ),
                query(
                    _mean("llmspans_generation_citation_precision", P, "pipeline"),
                    "{{pipeline}} precision (cited ids shown)",
                ),
            ],
            unit="percentunit",
            width=8,
            description="Support: cited documents the judge found to support the claim they are "
            "cited for. Precision only checks that a cited id was shown to the model.",
        ),
        timeseries_panel(
            "Judged failures by stage and reason",
            [
                query(
                    "sum by (pipeline, stage, reason) "
                    f"(rate(llmspans_judged_failures_total{{{R}}}[{RI}]))",
                    "{{pipeline}} {{stage}} {{reason}}",
                )
            ],
            unit="reqps",
            stack=True,
            description="Judged runs that failed once the judged labels were applied, at their "
            "root cause: runs that looked successful to the app included.",
        ),
        timeseries_panel(
            "Judged failure ratio by segment and stage",
            [
                query(
                    "sum by (pipeline, segment, stage) "
                    f"(rate(llmspans_judged_failures_total{{{R}}}[$window]))\n"
                    "/ on (pipeline) group_left () sum by (pipeline) "
                    f"(rate(llmspans_evaluations_total{{{P}, {_JUDGED}}}[$window]))",
                    "{{pipeline}} {{segment}} {{stage}}",
                )
            ],
            unit="percentunit",
            description="Judged failures of the segment and stage / judged runs of the pipeline: "
            "what LlmspansJudgedFailureSpike watches.",
        ),
        timeseries_panel(
            "Judge agreement with the app's labels",
            [
                query(
                    "sum by (evaluator, aspect) "
                    '(rate(llmspans_judge_agreement_total{agree="true"}[$window]))\n'
                    "/ sum by (evaluator, aspect) (rate(llmspans_judge_agreement_total[$window]))",
                    "{{evaluator}} {{aspect}}",
                )
            ],
            unit="percentunit",
            width=8,
            description="Where a judged run also has the app's labels: the share of retrieved "
            "documents (relevance) and runs (correctness) on which judge and labels agree.",
        ),
        timeseries_panel(
            "Evaluations by verdict and drops by reason",
            [
                query(
                    "sum by (pipeline, evaluator, verdict) "
                    f"(rate(llmspans_evaluations_total{{{P}}}[{RI}]))",
                    "{{pipeline}} {{evaluator}} {{verdict}}",
                ),
                query(
                    f"sum by (reason) (rate(llmspans_evaluation_dropped_total[{RI}]))",
                    "dropped {{reason}}",
                ),
            ],
            unit="reqps",
            width=8,
            description="Evaluator calls by verdict (error and timeout give no judgment) and "
            "sampled runs dropped before evaluation (LlmspansJudgeErrors, "
            "LlmspansEvaluationDrops).",
        ),
        timeseries_panel(
            "Evaluation spend per hour",
            [
                query(
                    "sum by (evaluator) "
                    f"(rate(llmspans_evaluation_cost_usd_total{{{P}}}[$window])) * 3600",
                    "{{evaluator}}",
                )
            ],
            unit="currencyUSD",
            width=8,
            description="USD per hour at the rate of the last $window; "
            "LlmspansEvaluationOverBudget compares the fleet's hourly spend with its budget.",
        ),
    ]


QUALITY: Final = llmspans_dashboard(
    uid="llmspans-quality",
    title="llmspans / Quality",
    description="Retrieval and citation quality, and calibration of the stated confidence: from "
    "the app's own labels, and as judged on sampled runs (docs/evaluation.md).",
    panels=[
        row("App-labelled quality"),
        timeseries_panel(
            "Context precision (rank-weighted, mean, app labels)",
            [
                query(
                    _mean("llmspans_retrieval_context_precision", f"{P}, {LABELS}", "pipeline"),
                    "{{pipeline}}",
                )
            ],
            unit="percentunit",
            width=8,
        ),
        timeseries_panel(
            "Context recall (mean, app labels)",
            [
                query(
                    _mean("llmspans_retrieval_context_recall", f"{P}, {LABELS}", "pipeline"),
                    "{{pipeline}}",
                )
            ],
            unit="percentunit",
            width=8,
        ),
        timeseries_panel(
            "Citation precision (mean)",
            [
                query(
                    f"sum by (pipeline) (rate(llmspans_generation_citation_precision_sum{{{P}}}"
                    f"[$window]))\n/ sum by (pipeline) "
                    f"(rate(llmspans_generation_citation_precision_count{{{P}}}[$window]))",
                    "{{pipeline}}",
                )
            ],
            unit="percentunit",
            width=8,
        ),
        heatmap_panel(
            "Context precision distribution",
            [
                query(
                    "sum by (le) "
                    "(increase(llmspans_retrieval_context_precision_bucket"
                    f"{{{P}, {LABELS}}}[{RI}]))",
                    "{{le}}",
                )
            ],
            unit="percentunit",
            exemplars=True,
        ),
        timeseries_panel(
            "Expected calibration error (exact over $window)",
            [
                query(
                    _ECE,
                    "{{pipeline}} over $window",
                ),
                query(
                    f"max by (pipeline) (llmspans_calibration_ece{{{P}}})",
                    "{{pipeline}} collector window",
                ),
            ],
            unit="percentunit",
            description="Sum over confidence bins of |correct runs - sum of confidences| / runs; "
            "the second series is the collector's own gauge over its recent runs.",
        ),
        barchart_panel(
            "Reliability: accuracy and mean confidence by bin",
            [
                query(
                    _ACCURACY_BY_BIN,
                    "accuracy",
                    instant=True,
                    as_table=True,
                ),
                query(
                    _CONFIDENCE_BY_BIN,
                    "mean confidence",
                    instant=True,
                    as_table=True,
                ),
            ],
            unit="percentunit",
        ).x_field("bin"),
        barchart_panel(
            "Runs with a confidence, by bin",
            [
                query(
                    _cal("runs", "bin", "$__range"),
                    "runs",
                    instant=True,
                    as_table=True,
                )
            ],
        ).x_field("bin"),
        *_judged_quality_row(),
    ],
)

_JOB = 'job=~"llmspans-collector.*"'
COLLECTOR: Final = llmspans_dashboard(
    uid="llmspans-collector",
    title="llmspans / Collector health",
    description="The llmspans collector replicas: intake, refusals, assembly and forwarding.",
    panels=[
        stat_panel("Replicas up", [query(f"sum(up{{{_JOB}}})", instant=True)]),
        stat_panel(
            "Spans received per second",
            [query("sum(rate(llmspans_collector_spans_received_total[$__rate_interval]))")],
            unit="cps",
        ),
        stat_panel(
            "Traces in flight",
            [query("sum(llmspans_collector_traces_inflight)")],
        ),
        stat_panel(
            "Spans in flight",
            [query("sum(llmspans_collector_spans_inflight)")],
        ),
        timeseries_panel(
            "Spans received by replica",
            [
                query(
                    "sum by (instance) "
                    "(rate(llmspans_collector_spans_received_total[$__rate_interval]))",
                    "{{instance}}",
                )
            ],
            unit="cps",
            description="Balanced replicas receive similar rates; the gateway routes by trace id.",
        ),
        timeseries_panel(
            "Spans rejected by reason",
            [
                query(
                    "sum by (instance, reason) "
                    "(rate(llmspans_collector_spans_rejected_total[$__rate_interval]))",
                    "{{instance}} {{reason}}",
                )
            ],
            unit="cps",
            description="inflight_limit and queue_full are backpressure (senders retry); the "
            "rest is bad input.",
        ),
        timeseries_panel(
            "Requests rejected by reason",
            [
                query(
                    "sum by (instance, reason) "
                    "(rate(llmspans_collector_requests_rejected_total[$__rate_interval]))",
                    "{{instance}} {{reason}}",
                )
            ],
            unit="reqps",
        ),
        timeseries_panel(
            "Traces finalised by reason",
            [
                query(
                    "sum by (instance, reason) "
                    "(rate(llmspans_collector_traces_finalized_total[$__rate_interval]))",
                    "{{instance}} {{reason}}",
                )
            ],
            unit="cps",
            stack=True,
        ),
        timeseries_panel(
            "Evicted traces and late spans",
            [
                query(
                    "sum by (instance) "
                    "(rate(llmspans_collector_traces_evicted_total[$__rate_interval]))",
                    "{{instance}} evicted traces",
                ),
                query(
                    "sum by (instance) "
                    "(rate(llmspans_collector_late_spans_total[$__rate_interval]))",
                    "{{instance}} late spans",
                ),
            ],
            unit="cps",
        ),
        timeseries_panel(
            "Known attributes with the wrong type",
            [
                query(
                    "sum by (instance) "
                    "(rate(llmspans_collector_bad_attributes_total[$__rate_interval]))",
                    "{{instance}}",
                )
            ],
            unit="cps",
        ),
        timeseries_panel(
            "Forward queue by exporter",
            [
                query(
                    "sum by (instance, exporter) (llmspans_collector_forward_queue_spans)",
                    "{{instance}} {{exporter}}",
                )
            ],
        ),
        timeseries_panel(
            "Spans forwarded and dropped by exporter",
            [
                query(
                    "sum by (instance, exporter) "
                    "(rate(llmspans_collector_spans_forwarded_total[$__rate_interval]))",
                    "{{instance}} {{exporter}} forwarded",
                ),
                query(
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


def render(board: dashboard.Dashboard) -> str:
    """The dashboard's JSON, as the SDK's encoder writes it."""
    return json.dumps(board.build(), cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n"


def files() -> dict[Path, str]:
    """Every dashboard file and its content."""
    return {DASHBOARDS_DIR / f"{d.build().uid}.json": render(d) for d in DASHBOARDS}


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
