"""Where the llmspans hot paths spend their time.

    python benchmarks/bench_profile.py [--spans 100000] [--seconds 15] [--quick]

- The collector: ``py-spy record`` samples the collector process (all threads,
  native frames off) while the load generator sends OTLP/HTTP; the collapsed
  stacks go to ``out/profile_collector.txt`` and the summary (self time and
  inclusive time per function, as a share of samples) to
  ``out/profile_collector_summary.txt``.
- The decorators: ``bench_decorators.py --profile`` writes a pyinstrument tree to
  ``out/profile_decorators.txt``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from _common import HERE, OUT, PYTHON, write_result
from _otlp import LoadShape
from _targets import LlmspansCollector, collector_available
from bench_collector import loadgen_args

IDLE_FRAMES = (
    "select (selectors.py",
    "_run_once",
    "wait (threading.py",
    "poll (selectors.py",
    "epoll",
    "_worker (concurrent",
    "get (queue.py",
    "sleep",
)


def summarize(collapsed: Path, top: int = 40) -> str:
    """Self and inclusive sample shares per function from py-spy's raw (collapsed) output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    idle = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        try:
            count = int(count_text)
        except ValueError:
            continue
        frames = [f for f in stack.split(";") if f]
        if not frames:
            continue
        # The first frame is the thread name ("process 123:thread ..."); drop it.
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        total += count
        leaf = frames[-1] if frames else "?"
        if any(mark in leaf for mark in IDLE_FRAMES):
            idle += count
            continue
        own[leaf] += count
        for frame in set(frames):
            inclusive[frame] += count
    busy = max(total - idle, 1)
    out = [
        f"samples: {total}, waiting (select/poll/sleep/queue): {idle}, busy: {busy}",
        "",
        "self time, share of busy samples:",
    ]
    out += [f"  {100 * c / busy:5.1f}%  {f}" for f, c in own.most_common(top)]
    out += ["", "inclusive time, share of busy samples:"]
    out += [f"  {100 * c / busy:5.1f}%  {f}" for f, c in inclusive.most_common(top)]
    return "\n".join(out) + "\n"


def profile_collector(spans: int, seconds: float) -> dict[str, object]:
    py_spy = shutil.which("py-spy", path=str(Path(PYTHON).parent)) or shutil.which("py-spy")
    if py_spy is None:
        return {"skipped": "py-spy not installed"}
    if not collector_available():
        return {"skipped": "collector package has no __main__ yet"}
    raw = OUT / "profile_collector.txt"
    with LlmspansCollector("llmspans-collector-profile", trace_idle_s=0.5) as coll:
        spy = subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(coll.proc.popen.pid),
                "--rate",
                "250",
                "--duration",
                str(int(seconds)),
                "--format",
                "raw",
                "--output",
                str(raw),
                "--threads",
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.0)
        from _common import run_loadgen

        load = run_loadgen(loadgen_args(coll, "http", spans, LoadShape(), 4))
        _, err = spy.communicate(timeout=seconds + 60)
    if not raw.exists():
        return {"skipped": f"py-spy wrote nothing: {err[-500:]}"}
    summary = summarize(raw)
    (OUT / "profile_collector_summary.txt").write_text(summary)
    return {
        "spans": load["spans_accepted"],
        "accepted_spans_per_s": round(load["spans_per_s"]),
        "collapsed": str(raw),
        "summary": str(OUT / "profile_collector_summary.txt"),
        "top": summary.splitlines()[:25],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        args.spans, args.seconds = 3000, 3.0
    result: dict[str, object] = {"benchmark": "profile"}
    result["collector"] = profile_collector(args.spans, args.seconds)
    decorators = subprocess.run(
        [
            PYTHON,
            str(HERE / "bench_decorators.py"),
            "--profile",
            "--rounds",
            "1",
            "--calls",
            "200" if args.quick else "2000",
            "--output",
            "decorators_profile",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    result["decorators"] = {
        "exit": decorators.returncode,
        "profile": str(OUT / "profile_decorators.txt"),
    }
    print(write_result("profile", result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
