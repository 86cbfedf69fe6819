"""``llmspans demo`` end to end: a real collector subprocess, real OTLP over loopback.

The ground truth is the demo's run plan (a pure function of the seed), recomputed
here independently of the demo's own bookkeeping; the attribution is read from the
root spans the collector wrote to ``traces.jsonl``.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from llmspans import _attributes as A
from llmspans._demo.faults import parse_faults
from llmspans._demo.plan import make_plan, shape_of
from llmspans._demo.runner import LIVE_EVERY, WEIGHTS, build_examples, live_questions
from llmspans._demo.scrape import parse_metrics
from llmspans._demo.summary import expected_stage_rate
from llmspans._demo.traces import iter_root_verdicts
from tests.examples.loopback import LoopbackHandler, serving
from tests.examples.test_support_rag_evaluation import _expected_judgment

FAULTS = "retrieval=0.12,selection=0.08,generation=0.08,action=0.08"
SEED = 11
REQUESTS = 300


def _demo(out: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmspans.cli", "demo", "--out", str(out), "--latency", "0", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("demo")
    done = _demo(
        out, "--requests", str(REQUESTS), "--seed", str(SEED), "--faults", FAULTS, "--json"
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "demo.json").read_text())
    assert json.loads(done.stdout) == summary
    return out, summary


def test_each_injected_fault_is_attributed_to_its_stage_exactly(
    demo_run: tuple[Path, dict[str, Any]],
) -> None:
    out, _ = demo_run
    examples = {e.name: e for e in build_examples()}
    shapes = [shape_of(e, WEIGHTS[name]) for name, e in examples.items()]
    plan = make_plan(shapes, REQUESTS, parse_faults(FAULTS), SEED)
    ledger = [json.loads(line) for line in (out / "injected.jsonl").read_text().splitlines()]
    assert [(e["pipeline"], e["index"], e["fault"]) for e in ledger] == [
        (r.pipeline, r.index, str(r.fault) if r.fault else None) for r in plan
    ]
    verdicts = {v.trace_id: v for v in iter_root_verdicts(out / "traces.jsonl")}
    assert len(verdicts) == REQUESTS + REQUESTS // LIVE_EVERY
    injected = [r for r in plan if r.fault]
    assert len(injected) > 30
    for entry, run in zip(ledger, plan, strict=True):
        verdict = verdicts[entry["trace_id"]]
        assert verdict.pipeline == run.pipeline
        assert verdict.injected == (str(run.fault) if run.fault else None)
        if run.fault is None:
            # The examples succeed on every shipped input: nothing else fails.
            assert verdict.outcome == A.OUTCOME_SUCCESS, entry
        else:
            assert verdict.outcome == A.OUTCOME_FAILURE, entry
            assert verdict.failure_stage == run.fault.stage, entry
    by_stage = Counter(v.failure_stage for v in verdicts.values() if v.failure_stage)
    assert by_stage == Counter(r.fault.stage for r in injected if r.fault)


def test_the_injected_rates_are_the_configured_ones_within_sampling_noise(
    demo_run: tuple[Path, dict[str, Any]],
) -> None:
    _, summary = demo_run
    rates = parse_faults(FAULTS)
    stages_of = {e.name: tuple(e.stages) for e in build_examples()}
    pipeline_runs = Counter(e["pipeline"] for e in summary["ledger"])
    for stage, numbers in summary["stages"].items():
        eligible = sum(n for p, n in pipeline_runs.items() if stage in stages_of[p])
        assert numbers["eligible_runs"] == eligible
        expected = sum(
            n * expected_stage_rate(stage, stages_of[p], rates) for p, n in pipeline_runs.items()
        )
        variance = sum(
            n * (q := expected_stage_rate(stage, stages_of[p], rates)) * (1 - q)
            for p, n in pipeline_runs.items()
        )
        assert abs(numbers["attributed"] - expected) <= 4 * variance**0.5 + 1, stage
        assert numbers["matched"] == numbers["injected"] == numbers["attributed"]
        assert numbers["natural"] == 0


def test_metrics_traces_and_offline_analysis_agree(demo_run: tuple[Path, dict[str, Any]]) -> None:
    out, summary = demo_run
    assert summary["exact"] is True
    assert summary["agreement"] == {"ok": True, "differences": []}
    analyzed = subprocess.run(
        [sys.executable, "-m", "llmspans.cli", "analyze", str(out / "traces.jsonl"), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(analyzed.stdout)
    # Every support reply got one piece of user feedback, in a trace of its own, and
    # every judged run an evaluation span in a trace of its own.
    live = len(summary["live"])
    assert live == REQUESTS // LIVE_EVERY
    support_runs = sum(1 for e in summary["ledger"] if e["pipeline"] == "support_rag") + live
    judged = summary["judged"]["sampled_runs"]
    assert report["traces"] == REQUESTS + live + support_runs + judged
    feedback = report["pipelines"]["support_rag"]["feedback"]
    assert sum(feedback.values()) == support_runs
    assert set(feedback) <= set(A.FEEDBACK_KINDS)
    failures = Counter[str]()
    for pipeline in report["pipelines"].values():
        for stage, numbers in pipeline["stages"].items():
            failures[stage] += numbers["root_cause_failures"]
    expected = Counter({s: n["injected"] for s, n in summary["stages"].items() if n["injected"]})
    assert +failures == expected


def _spans(path: Path) -> Iterator[dict[str, Any]]:
    for line in path.read_text("utf-8").splitlines():
        for resource in json.loads(line)["resourceSpans"]:
            for scope in resource["scopeSpans"]:
                yield from scope["spans"]


def _attributes(span: dict[str, Any]) -> dict[str, Any]:
    return {a["key"]: next(iter(a["value"].values())) for a in span.get("attributes", ())}


def test_sampled_runs_are_judged_and_those_that_looked_successful_are_found(
    demo_run: tuple[Path, dict[str, Any]],
) -> None:
    """Ground truth: the bot's own parts run on each sampled run's question (no tracing);
    which runs were sampled is read from the root spans, which had a fault from the plan."""
    out, summary = demo_run
    examples = {e.name: e for e in build_examples()}
    questions = examples["support_rag"].questions  # type: ignore[attr-defined]
    live = live_questions(REQUESTS)
    sampled = {
        span["traceId"]
        for span in _spans(out / "traces.jsonl")
        if not span.get("parentSpanId") and _attributes(span).get(A.EVALUATION_SAMPLED)
    }
    asked: dict[str, tuple[str, str, frozenset[str]]] = {}  # trace -> segment, question, truth
    for entry in summary["ledger"]:
        if entry["pipeline"] == "support_rag" and not entry["fault"]:
            q = questions[entry["index"]]
            asked[entry["trace_id"]] = (q.segment, q.question, frozenset(q.relevant_ids))
    for entry in summary["live"]:
        q = live[entry["index"]]
        asked[entry["trace_id"]] = (q.segment, q.question, frozenset(q.relevant_ids))
    # Every live (billing) run is sampled; no run of the other examples is.
    assert {e["trace_id"] for e in summary["live"]} <= sampled
    pipelines = {e["trace_id"]: e["pipeline"] for e in summary["ledger"]}
    assert all(pipelines.get(t, "support_rag") == "support_rag" for t in sampled)
    expected = Counter(
        f"support_rag:{reason}"
        for trace, (_, question, truth) in asked.items()
        if trace in sampled and (reason := _expected_judgment(question, truth))
    )
    judged = summary["judged"]
    assert judged["sampled_runs"] == len(sampled)
    looked = judged["looked_successful_judged_wrong"]
    assert looked["reasons"] == dict(expected)
    assert looked["runs"] == sum(expected.values())
    assert expected["support_rag:retrieval/missed_relevant"] >= REQUESTS // LIVE_EVERY // 3
    support = judged["pipelines"]["support_rag"]
    assert support["judged_runs"] == len(sampled)
    # Judged recall falls below the app-labelled figure: the live misses are not labelled.
    assert support["context_recall"]["judge"] < support["context_recall"]["labels"]
    assert 0.0 < support["citation_support"] <= 1.0
    failures = {(r["stage"], r["reason"]): r for r in judged["failures"]}
    missed = failures[("retrieval", "missed_relevant")]
    looked_missed = expected["support_rag:retrieval/missed_relevant"]
    assert missed["judged"] >= missed["judged_app_success"] == looked_missed


def test_the_offline_set_diverges_from_production_and_misses_billing(
    demo_run: tuple[Path, dict[str, Any]],
) -> None:
    out, summary = demo_run
    divergence = summary["divergence"]
    questions = build_examples()[0].questions  # type: ignore[attr-defined]
    segment_of = {
        e["trace_id"]: questions[e["index"]].segment
        for e in summary["ledger"]
        if e["pipeline"] == "support_rag"
    }
    segment_of.update({e["trace_id"]: "billing" for e in summary["live"]})
    # Coverage: billing, served by production and absent from the set, comes first.
    assert divergence["uncovered"] == ["billing"]
    first = divergence["coverage"][0]
    assert (first["segment"], first["metric"], first["offline"]) == ("billing", "coverage", 0.0)
    assert first["production_runs"] == Counter(segment_of.values())["billing"]
    assert first["significant"] is True
    # No metric row for billing: the set says nothing about it.
    assert all(r["segment"] != "billing" for r in divergence["significant"])
    # product: enough runs on each side, and the production failures the set never sees.
    product = [e for e in summary["ledger"] if segment_of.get(e["trace_id"]) == "product"]
    successes = sum(1 for e in product if e["outcome"] == A.OUTCOME_SUCCESS)
    rows = {(r["segment"], r["metric"]): r for r in divergence["significant"]}
    completion = rows[("product", "task_completion")]
    assert completion["production_runs"] == len(product)
    assert completion["production"] == pytest.approx(successes / len(product))
    assert completion["offline"] == 1.0
    assert completion["interval"][1] < 0
    # Small segments are never flagged.
    small = [r for r in divergence["significant"] if r["production_runs"] < 30]
    assert small == []
    assert (out / "offline.jsonl").stat().st_size > 0


def test_evaluation_can_be_turned_off_and_bad_rates_are_rejected(tmp_path: Path) -> None:
    done = _demo(tmp_path, "--requests", "20", "--evaluation-sample-rate", "0", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["judged"]["sampled_runs"] == 0
    assert summary["judged"]["pipelines"] == {}
    assert "evaluation" not in yaml.safe_load((tmp_path / "collector.yaml").read_text())
    for bad in ("1.5", "-0.1", "nan", "many"):
        rejected = _demo(tmp_path, "--evaluation-sample-rate", bad)
        assert rejected.returncode == 2, bad
        assert "expected a number in [0, 1]" in rejected.stderr


def test_a_clean_run_succeeds_everywhere_and_prints_the_report(tmp_path: Path) -> None:
    done = _demo(tmp_path, "--requests", "40", "--seed", "3", "--faults", "none")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    text = done.stdout
    for heading in (
        "Outcomes",
        "Root-cause failures by stage and reason",
        "no failures",
        "Injected faults vs attributed root causes",
        "Quality",
        "Stage latency p50 / p95",
        "Where to look next",
        f"llmspans analyze {tmp_path / 'traces.jsonl'}",
        "all 0 injected faults were attributed to the stage they were injected into",
    ):
        assert heading in text
    summary = json.loads((tmp_path / "demo.json").read_text())
    assert summary["injected"] == 0
    assert len(summary["ledger"]) == 40
    assert {e["outcome"] for e in summary["ledger"]} == {A.OUTCOME_SUCCESS}
    outcomes = {name: p["outcomes"] for name, p in summary["report"]["pipelines"].items()}
    # The live billing questions look successful too: no labels say otherwise.
    assert sum(o["success"] for o in outcomes.values()) == 40 + 40 // LIVE_EVERY
    for heading in (
        "Judged on sampled runs",
        "Judged root causes",
        "Offline set vs production (support_rag)",
        "Segment coverage of the offline set",
        "uncovered",
        "looked successful to the app and were judged wrong",
        f"llmspans diverge --offline {tmp_path / 'offline.jsonl'}",
    ):
        assert heading in text, heading


def test_bad_fault_specifications_are_rejected(tmp_path: Path) -> None:
    done = _demo(tmp_path, "--faults", "retreival=0.1")
    assert done.returncode == 2
    assert "bad fault 'retreival=0.1'" in done.stderr


class _OtlpReceiver(LoopbackHandler):
    """A small OTLP/HTTP trace receiver: the stand-in for Phoenix or Jaeger."""

    spans: list[Any] = []
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest.FromString(body)
        with self.lock:
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    type(self).spans.extend(scope.spans)
        self.reply(ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")


@pytest.fixture
def otlp_receiver() -> Iterator[str]:
    _OtlpReceiver.spans = []
    with serving(_OtlpReceiver) as url:
        yield f"{url}/v1/traces"


def test_forward_sends_every_span_with_the_verdict_to_a_backend(
    tmp_path: Path, otlp_receiver: str
) -> None:
    done = _demo(
        tmp_path, "--requests", "30", "--seed", "5", "--faults", "action=0.3",
        "--forward", otlp_receiver, "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "demo.json").read_text())
    received = _OtlpReceiver.spans
    roots = [s for s in received if not s.parent_span_id and s.name.startswith("invoke_workflow")]
    assert len(roots) == 30 + 30 // LIVE_EVERY
    assert len(received) == summary["report"]["spans"]
    feedback = [s for s in received if s.name.startswith("feedback ")]
    assert len(feedback) == len(summary["live"]) + sum(
        1 for e in summary["ledger"] if e["pipeline"] == "support_rag"
    )
    verdicts = {
        s.trace_id.hex(): {a.key: a.value.string_value for a in s.attributes} for s in roots
    }
    for entry in summary["ledger"]:
        attributes = verdicts[entry["trace_id"]]
        assert attributes[A.OUTCOME] == entry["outcome"]
        if entry["fault"]:
            assert attributes[A.FAILURE_STAGE] == "action"


def test_keep_running_serves_metrics_until_ctrl_c(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable, "-m", "llmspans.cli", "demo", "--out", str(tmp_path),
            "--latency", "0", "--requests", "20", "--keep-running",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )  # fmt: skip
    try:
        assert process.stdout is not None
        url = None
        for line in process.stdout:
            match = re.search(r"(http://127\.0\.0\.1:\d+/metrics)", line)
            if match and "live" in line:
                url = match.group(1)
                break
        assert url is not None, "the demo did not announce its live metrics endpoint"
        with urllib.request.urlopen(url, timeout=5) as response:
            metrics = parse_metrics(response.read().decode())
        assert metrics.runs() == 20 + 20 // LIVE_EVERY
        # Ctrl-C in a terminal: SIGINT to the whole foreground process group.
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=30) == 0
        log = (tmp_path / "collector.log").read_text()
        assert "stopped" in log and "Traceback" not in log
        with pytest.raises(OSError):
            urllib.request.urlopen(url, timeout=2)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
