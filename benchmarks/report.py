"""Collects ``out/*.json`` into ``results.md`` and ``results.json``, and the README's table.

    python benchmarks/report.py [--command "bash benchmarks/run.sh"]

The README section between the ``results:start`` / ``results:end`` markers is
replaced with the new tables, so the README always shows the latest run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import HERE, OUT

START, END = "<!-- results:start -->", "<!-- results:end -->"

TARGET_DECORATOR_RAW = 1.10
TARGET_DECORATOR_TRACELOOP = 0.5
TARGET_SPANS_PER_CORE = 100_000
TARGET_DELAY_S = 0.5
TARGET_BYTES_PER_SPAN = 1024


def _load(name: str) -> dict[str, Any] | None:
    path = OUT / f"{name}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float | int):
        if digits == 0:
            return f"{value:,.0f}"
        return f"{value:,.{digits}f}"
    return str(value)


def _status(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "**gap**")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def decorators_section(d: dict[str, Any], targets: list[list[str]]) -> list[str]:
    lines = [
        "### 1. Decorator overhead (µs per call, median of "
        f"{d['rounds']} interleaved rounds of {d['calls_per_round']} calls)",
        "",
    ]
    rows = [
        [
            r["group"],
            r["variant"],
            _fmt(r["us_per_call"], 2),
            _fmt(r["x_raw_span_same_attrs"], 2),
            _fmt(r["x_raw_span"], 2),
        ]
        for r in d["rows"]
    ]
    lines += _table(["call", "variant", "µs/call", "x raw span, same attrs", "x raw span"], rows)
    if d.get("skipped"):
        lines += ["", "Not measured: " + "; ".join(f"{k} ({v})" for k, v in d["skipped"].items())]
    _decorator_targets(d.get("ratios", {}), targets, digits=2, how="")
    return lines


def instructions_section(d: dict[str, Any], targets: list[list[str]]) -> list[str]:
    lines = [
        "### 1b. Decorator overhead in CPU instructions (valgrind, "
        f"{d.get('calls', '?')} calls per variant)",
        "",
    ]
    if d.get("skipped"):
        return [*lines, f"Not measured: {d['skipped']}"]
    rows = [
        [
            r["group"],
            r["variant"],
            _fmt(r["instructions_per_call"]),
            _fmt(r["x_raw_span_same_attrs"], 3),
        ]
        for r in d["rows"]
    ]
    lines += _table(["call", "variant", "instructions/call", "x raw span, same attrs"], rows)
    _decorator_targets(d.get("ratios", {}), targets, digits=3, how=", in CPU instructions")
    return lines


def _decorator_targets(
    ratios: dict[str, float], targets: list[list[str]], digits: int, how: str
) -> None:
    """The decorator target rows, from CPU time or from instruction counts (``how``)."""
    rows = [
        (
            f"llmspans/raw_same_attrs ({group})",
            f"llmspans stage span ({group}) vs raw SDK span, same attributes",
            TARGET_DECORATOR_RAW,
        )
        for group in ("retrieval", "generation", "generator", "async retrieval")
    ]
    rows += [
        (
            "llmspans/raw_same_attrs (pipeline run)",
            "llmspans pipeline run (3 stage spans) vs raw SDK spans, same attributes",
            TARGET_DECORATOR_RAW,
        ),
        (
            "llmspans with embedded metrics/raw_same_attrs (pipeline run)",
            "the same run with in-process attribution and metrics (EmbeddedProcessor)",
            None,
        ),
        (
            "llmspans/OpenLLMetry @task (retrieval)",
            "llmspans retrieval vs OpenLLMetry `@task`",
            TARGET_DECORATOR_TRACELOOP,
        ),
    ]
    for key, what, goal in rows:
        if key not in ratios:
            continue
        value = ratios[key]
        targets.append(
            [
                what + how,
                "(no target)" if goal is None else f"≤ {goal:.2f}x",
                f"{value:.{digits}f}x",
                "-" if goal is None else _status(value <= goal),
            ]
        )


def collector_section(d: dict[str, Any], targets: list[list[str]]) -> list[str]:
    lines = [
        "### 2. Collector throughput (loopback, batches of 512 spans, runs of 6, "
        f"{d['spans_per_load']:,} spans per load, 4 requests in flight)",
        "",
    ]
    rows = []
    lowest_core: float | None = None
    for r in d["rows"]:
        idle = r.get("metric_delay_idle_s") or {}
        attributed = r.get("attributed_spans_per_s")
        if r["target"] == "phoenix":
            attributed_txt = f"stored {_fmt(r.get('stored_spans_per_s'), 1)}/s"
        else:
            attributed_txt = _fmt(attributed)
        fwd = ""
        if "forwarded_spans" in r:
            verdicts = _fmt(r["forwarded_roots_with_verdict"])
            fwd = f"{_fmt(r['forwarded_spans'])} ({verdicts} roots with verdict)"
        cpu = r.get("cpu_s_until_attributed", r.get("cpu_s"))
        rows.append(
            [
                r["target"],
                r["protocol"],
                _fmt(r["accepted_spans_per_s"]),
                attributed_txt,
                _fmt(cpu, 2),
                _fmt(r.get("spans_per_cpu_s")),
                _fmt(r.get("spans_per_cpu_s_with_forwarding")),
                f"{_fmt(idle.get('median'), 3)} / {_fmt(idle.get('max'), 3)}" if idle else "-",
                fwd or "-",
            ]
        )
        if r["target"].startswith("llmspans"):
            core = r.get("spans_per_cpu_s")
            if core is not None:
                lowest_core = core if lowest_core is None else min(lowest_core, core)
    lines += _table(
        [
            "receiver",
            "protocol",
            "accepted spans/s",
            "attributed spans/s",
            "CPU s",
            "spans per CPU-s (per core)",
            "… incl. forwarding drain",
            "metric delay, idle, median / max (s, beyond trace_idle)",
            "forwarded",
        ],
        rows,
    )
    if d.get("skipped"):
        lines += ["", "Not measured: " + "; ".join(f"{k} ({v})" for k, v in d["skipped"].items())]
    if lowest_core is not None:
        targets.append(
            [
                "llmspans collector spans per core, attribution, metrics and forwarding on "
                "(lower of HTTP and gRPC)",
                f"≥ {TARGET_SPANS_PER_CORE:,}/s",
                f"{lowest_core:,.0f}/s",
                _status(lowest_core >= TARGET_SPANS_PER_CORE),
            ]
        )
    return lines


def core_section(d: dict[str, Any]) -> list[str]:
    lines = [
        f"### 2b. Collector work per span, step by step (in process, {d['spans']:,} spans, "
        f"{d['traces']:,} traces; CPU µs per span)",
        "",
    ]
    rows = [
        [r["step"], _fmt(r["us_per_span"], 2), _fmt(r["spans_per_s_one_core"])] for r in d["rows"]
    ]
    return lines + _table(["step", "µs per span", "spans/s on one core"], rows)


def evaluation_section(d: dict[str, Any]) -> list[str]:
    lines = [
        f"### 2c. Continuous evaluation: the collector with and without a judge of "
        f"{d['judge_s']} s per call ({d['sampled_share']:.0%} of runs sampled, "
        f"{d['concurrency']} calls at once, a queue of {d['queue_size']}; "
        f"{d['spans']:,} spans per pass)",
        "",
    ]
    rows = []
    for index, pair in enumerate(d["pairs"], 1):
        off, on = pair["off"], pair["on"]
        ev = on["evaluation"]
        ratio = (
            on["spans_per_cpu_s"] / off["spans_per_cpu_s"]
            if on["spans_per_cpu_s"] and off["spans_per_cpu_s"]
            else None
        )
        rows.append(
            [
                str(index),
                _fmt(off["spans_per_cpu_s"]),
                _fmt(on["spans_per_cpu_s"]),
                _fmt(ratio, 3),
                f"{_fmt(ev['queue_queued_max'])} / {_fmt(ev['queue_queued_mean'], 1)}",
                _fmt(ev["sampled_runs"]),
                _fmt(sum(ev["judgments_by_verdict"].values())),
                ", ".join(f"{k} {v:.0f}" for k, v in ev["dropped_by_reason"].items()) or "0",
            ]
        )
    header = [
        "pair",
        "spans/CPU-s off",
        "spans/CPU-s on",
        "on/off",
        "queue max / mean",
        "sampled",
        "judged",
        "dropped",
    ]
    return lines + _table(header, rows)


def memory_section(d: dict[str, Any], targets: list[list[str]]) -> list[str]:
    lines = ["### 3. Collector memory", ""]
    if "skipped" in d:
        return [*lines, f"Not measured: {d['skipped']}"]
    inflight = d.get("inflight", {})
    rows = [
        [
            _fmt(r["spans_in_flight"]),
            _fmt(r.get("traces_in_flight")),
            _fmt(r["rss_mib"], 1),
            _fmt(r["bytes_per_span"]),
        ]
        for r in inflight.get("rows", [])
    ]
    lines += [f"Resident memory before the load: {_fmt(inflight.get('base_rss_mib'), 1)} MiB.", ""]
    lines += _table(
        ["spans in flight", "traces in flight", "RSS MiB", "bytes per in-flight span"], rows
    )
    if inflight.get("rows"):
        top = inflight["rows"][-1]
        targets.append(
            [
                f"bytes per in-flight span ({top['spans_in_flight']:,} in flight)",
                f"< {TARGET_BYTES_PER_SPAN}",
                _fmt(top["bytes_per_span"]),
                _status(top["bytes_per_span"] < TARGET_BYTES_PER_SPAN),
            ]
        )
    soak = d.get("soak")
    if soak:
        lines += [
            "",
            f"Steady load: {soak['rate_spans_per_s']:,.0f} spans/s for {soak['seconds']:.0f} s "
            f"({_fmt(soak.get('spans_sent'))} spans sent, "
            f"{_fmt(soak.get('spans_received'))} received): "
            f"RSS max {_fmt(soak.get('rss_mib_first_half_max'), 1)} MiB in the first half, "
            f"{_fmt(soak.get('rss_mib_second_half_max'), 1)} MiB in the second, "
            f"end {_fmt(soak.get('rss_mib_end'), 1)} MiB; slope over the second half "
            f"{_fmt(soak.get('slope_mib_per_min_second_half'), 2)} MiB/min.",
        ]
        delay = soak.get("metric_delay_s")
        if delay:
            lines += [
                "",
                f"Metric delay under that steady load ({delay['n']} probe runs): median "
                f"{delay['median']:.3f} s, max {delay['max']:.3f} s beyond trace_idle.",
            ]
            targets.append(
                [
                    "metric delay beyond trace_idle under steady load (worst probe)",
                    f"< {TARGET_DELAY_S} s",
                    f"{delay['max']:.3f} s",
                    _status(delay["max"] < TARGET_DELAY_S),
                ]
            )
        slope = soak.get("slope_mib_per_min_second_half")
        if slope is not None and soak["seconds"] >= 60:
            targets.append(
                [
                    f"memory under steady load ({soak['seconds']:.0f} s)",
                    "flat (< 1 MiB/min growth)",
                    f"{slope:.2f} MiB/min",
                    _status(slope < 1.0),
                ]
            )
    return lines


def scaling_section(d: dict[str, Any]) -> list[str]:
    lines = ["### 4. Scaling (llmspans collector, OTLP/HTTP)", ""]
    if "skipped" in d:
        return [*lines, f"Not measured: {d['skipped']}"]
    rows = [
        [
            str(r["spans_per_trace"]),
            _fmt(r["payload_bytes"]),
            _fmt(r["bytes_per_span"]),
            _fmt(r["accepted_spans_per_s"]),
            _fmt(r["attributed_spans_per_s"]),
            _fmt(r["spans_per_cpu_s"]),
        ]
        for r in d.get("shapes", [])
    ]
    lines += _table(
        [
            "spans per trace",
            "payload bytes per span",
            "wire bytes per span",
            "accepted spans/s",
            "attributed spans/s",
            "spans per CPU-s",
        ],
        rows,
    )
    rows = [
        [
            _fmt(r["spans_in_flight_before"]),
            _fmt(r["accepted_spans_per_s"]),
            _fmt(r["spans_per_cpu_s_receiving"]),
        ]
        for r in d.get("inflight", [])
    ]
    if rows:
        lines += ["", "Receiving with traces already in flight (trace_idle 120 s):", ""]
        lines += _table(
            ["spans in flight before", "accepted spans/s", "spans per CPU-s while receiving"], rows
        )
    return lines


def render(command: str) -> tuple[str, dict[str, Any]]:
    parts = {
        name: _load(name)
        for name in (
            "decorators",
            "instructions",
            "collector",
            "core",
            "evaluation",
            "memory",
            "scaling",
        )
    }
    machine = next((p["machine"] for p in parts.values() if p and "machine" in p), {})
    targets: list[list[str]] = []
    body: list[str] = []
    sections: dict[str, Callable[[dict[str, Any]], list[str]]] = {
        "decorators": lambda d: decorators_section(d, targets),
        "instructions": lambda d: instructions_section(d, targets),
        "collector": lambda d: collector_section(d, targets),
        "core": core_section,
        "evaluation": evaluation_section,
        "memory": lambda d: memory_section(d, targets),
        "scaling": scaling_section,
    }
    stale: list[str] = []
    for name, section in sections.items():
        part = parts[name]
        if not part:
            continue
        marked = len(targets)
        try:
            lines = section(part)
        except (KeyError, TypeError, IndexError) as error:
            # A result file written by an older version of its script: left out of
            # the report (and said so) rather than failing the whole report.
            del targets[marked:]
            parts[name] = None
            stale.append(name)
            print(
                f"report: out/{name}.json does not have the fields this report reads "
                f"({type(error).__name__}: {error}); left out. Rerun it with "
                f"`bash benchmarks/run.sh --only {name}`.",
                file=sys.stderr,
            )
            continue
        body += [*lines, ""]
    if stale:
        body += [
            "Left out, written by an older version of their scripts: "
            + ", ".join(f"`out/{name}.json`" for name in stale)
            + ".",
            "",
        ]
    quick = any(p.get("quick") for p in parts.values() if p)
    head = [
        f"Measured {machine.get('when_utc', '?')} on {machine.get('cpu', '?')}, "
        f"{machine.get('cores', '?')} cores, {machine.get('memory_gib', '?')} GiB, "
        f"{machine.get('os', '?')}, Python {machine.get('python', '?')}, "
        f"protobuf {machine.get('protobuf', '?')}; load average at start "
        f"{machine.get('load_avg_at_start', '?')}.",
        "",
        f"Reproduce: `{command}`"
        + (" (quick smoke mode: numbers are not meaningful)" if quick else ""),
        "",
        "#### Targets",
        "",
        *_table(["target", "goal", "measured", "status"], targets),
        "",
    ]
    text = "\n".join([*head, *body]).rstrip() + "\n"
    return text, {
        "machine": machine,
        "targets": targets,
        **{k: v for k, v in parts.items() if v is not None},
    }


def update_readme(readme: Path, table: str) -> None:
    text = readme.read_text() if readme.exists() else ""
    if START in text and END in text:
        before, rest = text.split(START, 1)
        _, after = rest.split(END, 1)
        readme.write_text(f"{before}{START}\n{table}{END}{after}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--command", default="bash benchmarks/run.sh")
    parser.add_argument("--no-readme", action="store_true")
    parser.add_argument(
        "--results-dir", type=Path, default=HERE, help="where results.md and results.json go"
    )
    args = parser.parse_args(argv)
    text, data = render(args.command)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "results.md").write_text("# Benchmark results\n\n" + text)
    (args.results_dir / "results.json").write_text(json.dumps(data, indent=2, default=str))
    if not args.no_readme:
        update_readme(HERE / "README.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
