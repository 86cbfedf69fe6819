"""Each benchmark script runs end to end in its seconds-long ``--quick`` mode.

The numbers of a quick run mean nothing; what is checked is that every script
measures what it says (the right variants, every run attributed, every span
forwarded) so ``bash benchmarks/run.sh`` does not break unnoticed. Comparison
packages (OpenLLMetry, OpenInference, Langfuse, rotel, Phoenix, py-spy) live in
the benchmark environment only; a script skips what is not installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
RunScript = Callable[..., dict[str, Any]]

sys.path.insert(0, str(BENCHMARKS))

from _otlp import LoadShape, RequestBuilder  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
)

# Room for a loaded machine: the scripts' own subprocess timeout is 240 s.
pytestmark = pytest.mark.timeout(300)


def test_load_batches_have_fresh_trace_ids_and_whole_runs() -> None:
    builder = RequestBuilder(LoadShape())
    batches = list(builder.batches(5000, batch_spans=512))
    trace_ids: set[bytes] = set()
    total = 0
    for data, count in batches:
        request = ExportTraceServiceRequest.FromString(data)
        spans = request.resource_spans[0].scope_spans[0].spans
        assert len(spans) == count
        assert count % 6 == 0 and count <= 512
        batch_traces = {span.trace_id for span in spans}
        assert not batch_traces & trace_ids, "a trace id was reused across batches"
        trace_ids |= batch_traces
        roots = [s for s in spans if not s.parent_span_id]
        pipelines = [s for s in roots if not s.links]
        feedback = [s for s in roots if s.links]
        assert len(pipelines) == len(feedback) == count // 6
        # Each feedback span links to a pipeline root of the same batch.
        root_ids = {(s.trace_id, s.span_id) for s in pipelines}
        assert {(s.links[0].trace_id, s.links[0].span_id) for s in feedback} == root_ids
        total += count
    assert total >= 5000


def test_decorators(run_script: RunScript) -> None:
    data = run_script("bench_decorators.py", "--quick", result="decorators")
    variants = {(row["group"], row["variant"]): row for row in data["rows"]}
    for group in ("retrieval", "generation", "generator", "async retrieval"):
        assert (group, "raw span + attrs") in variants
        assert (group, "llmspans") in variants, data.get("skipped")
        assert variants[(group, "llmspans")]["us_per_call"] > 0
    assert "llmspans/raw_same_attrs (retrieval)" in data["ratios"]


def test_instruction_count_children_run_every_variant() -> None:
    """The children ``bench_instructions.py`` counts under valgrind, run plainly: each
    builds the variants, finds its own and runs it (valgrind itself is not needed)."""
    import bench_instructions

    keys = [k for k in bench_instructions.KEYS if k != bench_instructions.TASK]
    for key in [bench_instructions.BASELINE, bench_instructions.BASELINE_EMBEDDED, *keys]:
        proc = subprocess.run(
            [sys.executable, str(BENCHMARKS / "bench_instructions.py"), "--child", key, "3"],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=BENCHMARKS.parent,
        )
        assert proc.returncode == 0, f"{key!r}: {proc.stderr[-2000:]}"
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_instructions.py"), "--child", "no|such", "3"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=BENCHMARKS.parent,
    )
    assert proc.returncode == 3 and "missing variant" in proc.stderr


def test_instruction_count_children_without_embedded_mode_start_no_clocked_thread() -> None:
    """Only the embedded variant's child and its baseline build the embedded processor:
    its sweeper wakes by the clock, which would make every other count depend on how
    long the child ran (the machine's load) instead of on what it ran."""
    script = (
        "import sys, threading; sys.path.insert(0, sys.argv[1]); import bench_instructions as b; "
        "b.child(sys.argv[2], 3); print(sorted(t.name for t in threading.enumerate()))"
    )
    names = {}
    import bench_instructions

    for key in ("retrieval|llmspans", "pipeline run|llmspans", bench_instructions.EMBEDDED):
        proc = subprocess.run(
            [sys.executable, "-c", script, str(BENCHMARKS), key],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=BENCHMARKS.parent,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        names[key] = proc.stdout
    assert "llmspans-embedded" not in names["retrieval|llmspans"]
    assert "llmspans-embedded" not in names["pipeline run|llmspans"]
    assert "llmspans-embedded" in names[bench_instructions.EMBEDDED]


def test_core(run_script: RunScript) -> None:
    data = run_script("bench_core.py", "--quick", result="core")
    steps = {row["step"]: row["us_per_span"] for row in data["rows"]}
    assert {
        "parse",
        "convert",
        "evaluate",
        "observations",
        "processor accept",
        "processor finalise",
    } <= steps.keys()
    assert all(value > 0 for value in steps.values())


def test_core_conventions(run_script: RunScript) -> None:
    data = run_script("bench_core.py", "--conventions", "--quick", result="core_conventions")
    rows = {row["path"]: row for row in data["cpu"]["rows"]}
    assert rows.keys() == {"slim + evaluate", "convert + evaluate"}
    for row in rows.values():
        assert row["ns_per_span_read"] > 0 and row["ns_per_span_bypassed"] > 0
        assert row["difference_ns_min"] <= row["difference_ns_median"] <= row["difference_ns_max"]


def test_the_bypass_gives_the_same_records_to_spans_without_other_conventions() -> None:
    """What the conventions benchmark compares: the same work, minus the reading."""
    import bench_core
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    from llmspans.collector._protobuf import record_from_otlp_span

    spans = [
        span
        for data, _ in RequestBuilder(LoadShape(), seed=3).batches(600)
        for resource in ExportTraceServiceRequest.FromString(data).resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    read = [record_from_otlp_span(span) for span in spans]
    retriever = Span(trace_id=b"t" * 16, span_id=b"s" * 8, name="retriever")
    kind = retriever.attributes.add(key="openinference.span.kind")
    kind.value.string_value = "RETRIEVER"
    assert record_from_otlp_span(retriever).stage == "retrieval"
    with bench_core.conventions_bypassed():
        bypassed = [record_from_otlp_span(span) for span in spans]
        assert record_from_otlp_span(retriever).stage is None  # the reading is off
    assert bypassed == read
    assert record_from_otlp_span(retriever).stage == "retrieval"  # and back on


def test_collector(run_script: RunScript) -> None:
    data = run_script(
        "bench_collector.py", "--quick", "--targets", "llmspans", "python-naive", result="collector"
    )
    rows = {(row["target"], row["protocol"]): row for row in data["rows"]}
    for protocol in ("http", "grpc"):
        row = rows[(f"llmspans-collector-{protocol}", protocol)]
        assert row["errors"] == 0, row["error_samples"]
        assert not row["attribution_timed_out"]
        assert row["runs_attributed"] == row["runs"] > 0
        assert row["feedback_counted"] >= row["runs"]
        # Every span forwarded (probes included), each run's root with its verdict.
        assert row["forwarded_spans"] >= row["spans_sent"]
        assert row["forwarded_roots_with_verdict"] >= row["runs"]
        assert row["metric_delay_idle_s"]["n"] == 5
        assert row["spans_per_cpu_s"] > 0
    naive = rows[("python-naive", "http")]
    assert naive["errors"] == 0 and naive["spans_sent"] >= 5000


def test_memory(run_script: RunScript) -> None:
    data = run_script("bench_memory.py", "--quick", result="memory")
    rows = data["inflight"]["rows"]
    assert all(
        row["spans_in_flight"] >= level for row, level in zip(rows, (1000, 5000), strict=True)
    )
    assert rows[-1]["traces_in_flight"] and rows[-1]["traces_in_flight"] > 0
    soak = data["soak"]
    assert soak["spans_sent"] and soak["errors"] == 0
    assert soak["metric_delay_s"]["n"] >= 1 and not soak["probe_errors"]
    assert len(soak["samples"]) >= 2


def test_scaling(run_script: RunScript) -> None:
    data = run_script("bench_scaling.py", "--quick", result="scaling")
    shapes = {(row["spans_per_trace"], row["payload_bytes"]): row for row in data["shapes"]}
    assert set(shapes) == {(6, 0), (60, 0), (600, 0), (6, 1024), (6, 8192)}
    for row in shapes.values():
        assert row["errors"] == 0 and row["runs_attributed"] == row["runs"]
    assert shapes[(6, 8192)]["bytes_per_span"] > 8192
    assert len(data["inflight"]) == 3


def test_evaluation(run_script: RunScript) -> None:
    """The real collector, evaluation off and on, behind a fake judge on loopback."""
    # one call at a time of 0.5 s: slower than 1 % of the load, so the queue fills
    data = run_script(
        "bench_evaluation.py",
        "--quick",
        "--judge-s",
        "0.5",
        "--concurrency",
        "1",
        "--queue-size",
        "20",
        result="evaluation",
    )
    (pair,) = data["pairs"]
    off, on = pair["off"], pair["on"]
    for mode in (off, on):
        assert mode["errors"] == 0 and mode["runs"] > 0 and mode["spans_per_cpu_s"] > 0
    assert on["spans"] == off["spans"]
    ev = on["evaluation"]
    judged = sum(ev["judgments_by_verdict"].values())
    # every call the fake judge answered is a judgment on /metrics, all of them valid
    assert judged == data["judge_calls"] > 0
    assert set(ev["judgments_by_verdict"]) == {"correct"}
    assert 0 < ev["queue_queued_max"] <= 20 and ev["queue_running_max"] == 1
    assert data["main_thread_ratio_on_off"] > 0
    assert 0.001 < ev["sampled_share_of_runs"] < 0.05
    assert data["ratio_on_off"] > 0


def test_profile(run_script: RunScript) -> None:
    data = run_script("bench_profile.py", "--quick", result="profile")
    assert data["decorators"]["exit"] == 0
    collector = data["collector"]
    assert "skipped" in collector or collector["spans"] >= 3000


def test_report(run_script: RunScript, bench_out: Path, tmp_path: Path) -> None:
    run_script("bench_decorators.py", "--quick", result="decorators")
    # instruction counts need valgrind: their rendering is checked on written results
    instructions = {
        "benchmark": "instructions",
        "calls": 600,
        "rows": [
            {
                "group": "generator",
                "variant": variant,
                "instructions_per_call": count,
                "x_raw_span_same_attrs": round(count / 250_000, 3),
            }
            for variant, count in (("raw span + attrs", 250_000), ("llmspans", 290_000))
        ],
        "ratios": {"llmspans/raw_same_attrs (generator)": 1.16},
    }
    (bench_out / "instructions.json").write_text(json.dumps(instructions))
    # a result file left by an older version of its script: reported, left out
    (bench_out / "evaluation.json").write_text(json.dumps({"benchmark": "evaluation"}))
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "report.py"),
            "--no-readme",
            "--results-dir",
            str(tmp_path),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={"LLMSPANS_BENCH_OUT": str(bench_out), "PATH": ""},
    )
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "results.md").read_text()
    assert "Decorator overhead" in text and "| target | goal | measured | status |" in text
    assert "| generator | llmspans | 290,000 | 1.160 |" in text
    assert (
        "| llmspans stage span (generator) vs raw SDK span, same attributes, in CPU "
        "instructions | ≤ 1.10x | 1.160x | **gap** |"
    ) in text
    assert (tmp_path / "results.json").exists()
    assert "out/evaluation.json does not have the fields" in proc.stderr
    assert "run.sh --only evaluation" in proc.stderr
    assert "Left out, written by an older version of their scripts: `out/evaluation.json`" in text
    assert "evaluation" not in json.loads((tmp_path / "results.json").read_text())


def test_collector_process_plumbing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``bench_collector_process.py`` without valgrind: the collector runs behind a
    shell wrapper that writes a stand-in summary, so what is checked is the rest
    (its start, the load, every span and verdict at the sink, a clean SIGTERM exit)."""
    import _common
    import _targets
    import bench_collector_process as process

    for module in (_common, _targets, process):
        monkeypatch.setattr(module, "OUT", tmp_path)

    def fake_prefix(log_file: Path | str | None = None) -> list[str]:
        script = f'printf "==1== I   refs:      1,234\\n" > {log_file}; exec "$@"'
        return ["sh", "-c", script, "sh"]

    monkeypatch.setattr(process, "cachegrind_prefix", fake_prefix)
    counted = process.count(process.ROOT, "http", 600)
    assert counted["instructions"] == 1234
    assert counted["errors"] == 0 and counted["spans"] >= 600
    assert counted["forwarded_spans"] >= counted["spans"]
    assert counted["roots_with_verdict"] >= counted["spans"] // 6
    assert _targets.collector_module(process.ROOT) == "llmspans.collector"
    with pytest.raises(FileNotFoundError):
        _targets.collector_module(tmp_path)
    assert _common.parse_instructions("==7== I refs:  12,345,678\n") == 12_345_678
    assert _common.parse_instructions("no summary") is None
