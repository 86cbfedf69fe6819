"""The Grafana dashboards: built from collector/grafana/build.py, valid, linked to traces.

That every query returns data from a real collector is checked by the live test
(test_live_alerting.py); here each query is checked for PromQL syntax (promtool)
and for metric names the collector serves.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.grafana import build
from collector.prometheus import render
from llmspans.core.catalogue import CATALOGUE, COLLECTOR_HEALTH, EVALUATION

from .conftest import ROOT, run_tool

DASHBOARD_FILES = sorted((ROOT / "collector" / "grafana" / "dashboards").glob("*.json"))
DATASOURCES = yaml.safe_load(
    (ROOT / "collector/grafana/provisioning/datasources/llmspans.yaml").read_text()
)["datasources"]

#: dashboard variables replaced by concrete values to run or check a query
VARIABLES = {
    "$__rate_interval": "30s",
    "$__range": "5m",
    "$window": "1m",
    "$pipeline": ".*",
    "$stage": ".*",
    "$segment": ".*",
    "$source": ".*",
}


def concrete(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unknown variable in {expr!r}"
    return expr


def dashboards() -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in DASHBOARD_FILES]


def test_dashboard_files_are_built_from_build_py() -> None:
    assert {p.name for p in DASHBOARD_FILES} == {
        "llmspans-overview.json",
        "llmspans-stages.json",
        "llmspans-quality.json",
        "llmspans-collector.json",
    }
    assert build.main(["--check"]) == 0, "run python -m collector.grafana.build"


def test_check_fails_on_a_stale_file_and_a_build_rewrites_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for path in DASHBOARD_FILES:
        (tmp_path / path.name).write_text(path.read_text())
    stale = tmp_path / "llmspans-stages.json"
    stale.write_text(stale.read_text().replace('"p95 latency by stage"', '"p99 latency"'))
    monkeypatch.setattr(build, "DASHBOARDS_DIR", tmp_path)
    assert build.main(["--check"]) == 1
    assert '"p99 latency"' in stale.read_text()
    assert build.main([]) == 0
    assert build.main(["--check"]) == 0
    assert stale.read_text() == (DASHBOARD_FILES[0].parent / stale.name).read_text()


def test_a_panel_that_straddles_two_rows_is_refused() -> None:
    panels = [
        build.timeseries_panel("left", [build.query("up")], width=16),
        build.timeseries_panel("right", [build.query("up")], width=12),
    ]
    with pytest.raises(ValueError, match="'right' does not fit"):
        build.llmspans_dashboard("test", "test", "test", panels)


def test_a_label_breakdown_is_a_variable_and_its_matchers() -> None:
    board = build.llmspans_dashboard(
        "test",
        "test",
        "test",
        [build.stat_panel("runs", [build.query("up")])],
        filters=[
            build.label_variable("pipeline"),
            build.label_variable("segment", "llmspans_task_outcomes_total"),
        ],
    )
    variables = json.loads(build.render(board))["templating"]["list"]
    segment = next(v for v in variables if v["name"] == "segment")
    assert segment["query"]["query"] == "label_values(llmspans_task_outcomes_total, segment)"
    assert segment["datasource"]["uid"] == build.PROMETHEUS_UID
    assert segment["multi"] and segment["includeAll"] and segment["allValue"] == ".*"
    assert [v["name"] for v in variables][:2] == ["pipeline", "segment"]
    assert build.matchers("pipeline", "segment") == 'pipeline=~"$pipeline", segment=~"$segment"'


def test_dashboards_are_valid_and_use_provisioned_datasources() -> None:
    uids = {source["uid"] for source in DATASOURCES}
    seen_uids = set()
    for dashboard in dashboards():
        assert dashboard["uid"] not in seen_uids
        seen_uids.add(dashboard["uid"])
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), dashboard["uid"]
        assert dashboard["panels"], dashboard["uid"]
        for panel in dashboard["panels"]:
            position = panel["gridPos"]
            assert position["x"] >= 0 and position["x"] + position["w"] <= 24, panel["title"]
            if panel["type"] == "row":
                # expanded, so that its panels are the dashboard's and every query runs
                assert position == {"h": 1, "w": 24, "x": 0, "y": position["y"]}, panel
                assert panel["collapsed"] is False and not panel["panels"], panel["title"]
                continue
            assert panel["datasource"]["uid"] in uids
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] in uids
                assert target["expr"].strip()
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                assert variable["datasource"]["uid"] in uids
        for annotation in dashboard["annotations"]["list"]:
            assert annotation["datasource"]["uid"] in uids
            # written by the builder's one escape from the SDK (PrometheusAnnotation)
            assert annotation["titleFormat"] and annotation["textFormat"], annotation


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    rules = [
        {"record": f"dashboard_query_{index}", "expr": concrete(expr)}
        for index, (_, expr) in enumerate(
            item for dashboard in dashboards() for item in build.queries(dashboard)
        )
    ]
    assert len(rules) >= 40
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = run_tool("promtool", "check", "rules", str(path), timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def rows(dashboard: dict[str, Any]) -> dict[str, list[str]]:
    """Row title -> the titles of the panels under it ("" for those before any row)."""
    found: dict[str, list[str]] = {"": []}
    current = ""
    for panel in sorted(dashboard["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"])):
        if panel["type"] == "row":
            current = panel["title"]
            found[current] = []
        else:
            found[current].append(panel["title"])
    return found


def test_the_quality_dashboard_has_a_judged_row_below_the_app_labelled_one() -> None:
    quality = next(d for d in dashboards() if d["uid"] == "llmspans-quality")
    by_row = rows(quality)
    assert list(by_row) == [
        "",
        "App-labelled quality",
        "Judged quality (sampled runs, docs/evaluation.md)",
    ]
    judged = by_row["Judged quality (sampled runs, docs/evaluation.md)"]
    exprs = dict(build.queries(quality))
    judged_exprs = "\n".join(expr for title, expr in build.queries(quality) if title in judged)
    # judged beside labelled, as two series of one panel
    for title in (
        "Context precision: judged and app-labelled",
        "Context recall: judged and app-labelled",
    ):
        assert 'basis=~"labels|judge"' in exprs[title] and "basis)" in exprs[title]
    # the app-labelled row reads the app's own labels only
    for title in by_row["App-labelled quality"]:
        for panel_title, expr in build.queries(quality):
            if panel_title == title and "context_" in expr:
                assert 'basis="labels"' in expr, title
            if panel_title == title and "calibration" in expr:
                counters = expr.count("_runs_total") + expr.count("_confidence_total")
                assert counters == expr.count('basis!="judge"'), title
    for family in EVALUATION:
        assert family.prometheus_name in judged_exprs, family.prometheus_name


def test_the_overview_has_a_divergence_row() -> None:
    overview = next(d for d in dashboards() if d["uid"] == "llmspans-overview")
    by_row = rows(overview)
    (title,) = [t for t in by_row if t.startswith("Divergence")]
    exprs = [expr for t, expr in build.queries(overview) if t in by_row[title]]
    assert any(render.DIVERGENCE_Z in expr for expr in exprs)
    assert any('source="offline"' in e and 'source="production"' not in e for e in exprs)
    assert any('source="production"' in e for e in exprs)


def test_queries_use_only_metrics_the_collector_serves_or_the_rules_record() -> None:
    recorded = {
        rule["record"]
        for group in yaml.safe_load((ROOT / "collector/prometheus/rules.yml").read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    used_recorded = {
        name
        for dashboard in dashboards()
        for _, expr in build.queries(dashboard)
        for name in re.findall(r"\b([a-z_]+:[a-z_]+:[a-z0-9_]+)\b", expr)
    }
    assert used_recorded <= recorded, sorted(used_recorded - recorded)
    served = set()
    for family in (*CATALOGUE, *EVALUATION, *COLLECTOR_HEALTH):
        name = family.prometheus_name
        if family.kind == "counter":
            served.add(f"{name}_total")
        elif family.kind == "histogram":
            served.update(f"{name}_{suffix}" for suffix in ("bucket", "sum", "count"))
        else:
            served.add(name)
    used = set()
    for dashboard in dashboards():
        for _, expr in build.queries(dashboard):
            plain = re.sub(r"\b[a-z_]+:[a-z_]+:[a-z0-9_]+\b", "", expr)
            used.update(re.findall(r"\b(llmspans_[a-z_]+)\b", plain))
    assert used, "no llmspans metric in the dashboards"
    assert used <= served, f"not served by the collector: {sorted(used - served)}"
    # every SPEC section 4 metric family is on some dashboard
    for family in (*CATALOGUE, *EVALUATION):
        assert any(name.startswith(family.prometheus_name) for name in used), family.otel_name


@pytest.mark.parametrize("uid", ["llmspans-overview", "llmspans-stages"])
def test_failure_panels_link_to_their_traces(uid: str) -> None:
    dashboard = next(d for d in dashboards() if d["uid"] == uid)
    linked = [
        panel
        for panel in dashboard["panels"]
        if "llmspans_stage_failures_total" in json.dumps(panel.get("targets", []))
        and panel["type"] == "timeseries"
    ]
    assert linked
    for panel in linked:
        links = panel["fieldConfig"]["defaults"]["links"]
        urls = [link["url"] for link in links]
        assert any("llmspans.failure.stage=${__field.labels.stage}" in u for u in urls)
        assert any(u.startswith("/explore") and '"uid":"jaeger"' in u for u in urls)
        assert any(u.startswith("${jaeger_url}/search?service=${service}") for u in urls)
        assert all(t.get("exemplar") for t in panel["targets"])
    reasons = [panel for panel in linked if any("reason" in t["expr"] for t in panel["targets"])]
    for panel in reasons:
        urls = [link["url"] for link in panel["fieldConfig"]["defaults"]["links"]]
        assert any("llmspans.failure.reason=${__field.labels.reason}" in u for u in urls)
    names = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"service", "jaeger_url", "pipeline"} <= names
