"""The Prometheus rules: rendered from one profile file, valid, and unit-tested by promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.prometheus import render

from .conftest import ROOT, run_tool

PROM_DIR = ROOT / "collector" / "prometheus"
TEST_FILES = sorted((PROM_DIR / "tests").glob("*.test.yml"))


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_tool("promtool", *args, cwd=cwd)


def rules_of(text: str) -> list[dict[str, Any]]:
    document = yaml.safe_load(text)
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_committed_rules_are_rendered_from_the_production_profile() -> None:
    expected = render.render(render.load_profile("production"), "production")
    assert (PROM_DIR / "rules.yml").read_text(encoding="utf-8") == expected, (
        "collector/prometheus/rules.yml is stale: run python -m collector.prometheus.render"
    )
    assert render.main(["--check"]) == 0


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "rules.yml"
    stale.write_text("groups: []\n")
    assert render.main(["--check", "--output", str(stale)]) == 1
    assert render.main(["--output", str(stale)]) == 0
    assert render.main(["--check", "--output", str(stale)]) == 0


@pytest.mark.parametrize("profile", ["production", "fast"])
def test_promtool_accepts_every_profile(profile: str, tmp_path: Path) -> None:
    path = tmp_path / f"{profile}.yml"
    path.write_text(render.render(render.load_profile(profile), profile))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("test_file", TEST_FILES, ids=[p.name for p in TEST_FILES])
def test_promtool_unit_tests_pass(test_file: Path) -> None:
    result = promtool("test", "rules", str(test_file), cwd=test_file.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    alerts = {r["alert"] for r in rules_of((PROM_DIR / "rules.yml").read_text()) if "alert" in r}
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    assert alerts == fires, f"alerts without a firing test: {alerts - fires}"
    assert alerts <= quiet, f"alerts without a quiet test: {alerts - quiet}"


def test_the_windows_come_from_the_profile() -> None:
    fast = render.load_profile("fast")
    production = render.load_profile("production")
    assert production.windows() == ["5m", "30m", "1h", "6h", "1d"]
    assert all(render.duration_seconds(w) <= 360 for w in fast.windows())
    fast_rules = rules_of(render.render(fast, "fast"))
    spike = next(r for r in fast_rules if r.get("alert") == "LlmspansStageFailureSpike")
    assert "ratio_rate10s" in spike["expr"] and "ratio_rate90s" in spike["expr"]
    assert spike["for"] == "0s"
    # every recorded series an alert reads is recorded in the same file
    recorded = {r["record"] for r in fast_rules if "record" in r}
    for rule in fast_rules:
        if "alert" in rule:
            for token in rule["expr"].replace("(", " ").replace(")", " ").split():
                name = token.split("{")[0]
                if name.count(":") == 2:
                    assert name in recorded, f"{rule['alert']} reads {name}, never recorded"


def test_profiles_extend_and_validate(tmp_path: Path) -> None:
    path = tmp_path / "profiles.yaml"
    base = yaml.safe_load((PROM_DIR / "profiles.yaml").read_text())
    base["quiet_nights"] = {
        "extends": "production",
        "stage_failure_spike": {"min_runs": 500, "floor": 0.1},
    }
    path.write_text(yaml.safe_dump(base))
    profile = render.load_profile("quiet_nights", path)
    assert profile.stage_failure_spike.min_runs == 500
    assert profile.stage_failure_spike.short_window == "5m"  # inherited
    spike = next(
        r for r in rules_of(render.render(profile)) if r.get("alert") == "LlmspansStageFailureSpike"
    )
    assert ">= 500)" in spike["expr"] and "> 0.1\n" in spike["expr"]

    base["broken"] = {"extends": "production", "stage_failure_spike": {"short_window": "5 min"}}
    path.write_text(yaml.safe_dump(base))
    with pytest.raises(ValueError, match="single-unit Prometheus duration"):
        render.load_profile("broken", path)
    with pytest.raises(ValueError, match="no profile 'nope'"):
        render.load_profile("nope", path)
    base["loop_a"] = {"extends": "loop_b"}
    base["loop_b"] = {"extends": "loop_a"}
    path.write_text(yaml.safe_dump(base))
    with pytest.raises(ValueError, match="loop"):
        render.load_profile("loop_a", path)


@pytest.mark.parametrize(
    ("override", "test_file", "failing_case"),
    [
        (
            {"stage_failure_spike": {"min_runs": 0}},
            "stage_failure_spike.test.yml",
            "a spike below the volume floor stays quiet",
        ),
        (
            {"task_completion_slo": {"min_runs": 0}},
            "task_completion_slo.test.yml",
            "a total outage below the volume floor stays quiet",
        ),
        (
            {"judged_failure_spike": {"min_runs": 0}},
            "evaluation.test.yml",
            "a judged spike below the volume floor stays quiet",
        ),
        (
            {"evaluation_health": {"min_sampled": 0}},
            "evaluation.test.yml",
            "drops below the volume floor stay quiet",
        ),
        (
            {"stage_failure_spike": {"factor": 1.0000001, "baseline_window": "5m"}},
            "stage_failure_spike.test.yml",
            "retrieval spike fires with the top reason",
        ),
    ],
)
def test_the_quiet_tests_would_catch_a_weaker_rule(
    override: dict[str, Any], test_file: str, failing_case: str, tmp_path: Path
) -> None:
    """Loosen one guard of the profile: the unit test that relies on it must fail."""
    profiles = yaml.safe_load((PROM_DIR / "profiles.yaml").read_text())
    profiles["weakened"] = {"extends": "production", **override}
    path = tmp_path / "profiles.yaml"
    path.write_text(yaml.safe_dump(profiles))
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules.yml").write_text(
        render.render(render.load_profile("weakened", path), "weakened")
    )
    # only the case that relies on the loosened guard, so that this stays quick
    suite = yaml.safe_load((PROM_DIR / "tests" / test_file).read_text())
    suite["tests"] = [case for case in suite["tests"] if case["name"].startswith(failing_case)]
    assert len(suite["tests"]) == 1
    (tmp_path / "rules" / test_file).write_text(yaml.safe_dump(suite))
    result = promtool("test", "rules", test_file, cwd=tmp_path / "rules")
    assert result.returncode != 0, result.stdout
    assert failing_case in result.stdout + result.stderr

    # the same case passes against the rules as they are
    (tmp_path / "rules.yml").write_text((PROM_DIR / "rules.yml").read_text())
    result = promtool("test", "rules", test_file, cwd=tmp_path / "rules")
    assert result.returncode == 0, result.stdout + result.stderr
