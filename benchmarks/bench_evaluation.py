"""Continuous evaluation does not slow ingestion: the collector process's spans per
CPU-second with and without evaluation at 1 % sampling, behind an LLM judge that
takes seconds per call.

    python benchmarks/bench_evaluation.py [--spans 300000] [--share 0.01] [--judge-s 2]
        [--concurrency 4] [--queue-size 200] [--repeat 2] [--quick]

The real collector (``python -m llmspans.collector``, forwarding to a counting sink,
``_targets.LlmspansCollector``) is started twice: once without an evaluation section,
once with the built-in ``LLMJudge`` pointed at a fake OpenAI-compatible endpoint on
127.0.0.1 (in this process) that sleeps ``--judge-s`` seconds per call before it
answers with a valid verdict. Each time, a load generator process (``loadgen.py``)
sends the same pre-built OTLP/HTTP batches (6-span runs, ``--share`` of the roots
marked ``llmspans.evaluation.sampled``) as fast as the collector accepts them, 4
requests in flight.

Measured for each: the collector process's CPU seconds from the first request until
every run's outcome is on /metrics, and spans per CPU-second over that interval
(the judge's sleeping threads cost nothing; its HTTP calls, queueing and the
judgments' metrics and spans are in it; /metrics is polled every 0.25 s in both
modes), and the same for the main thread alone (the event loop that receives,
assembles, attributes and forwards: ingestion); accepted spans/s at the sender (wall clock:
moves with the neighbours on a shared machine). With evaluation: the evaluation
queue's depth from ``llmspans_collector_evaluation_queue_runs`` polled every 0.25 s
(max and mean of ``queued``, max of ``running``), the judgments by verdict and the
drops by reason from ``llmspans_evaluations_total`` and
``llmspans_evaluation_dropped_total`` once the queue has drained (at most
``--drain-s`` seconds after the load; what was still queued then is reported).
``--repeat`` off/on pairs run alternately and the medians are reported: on a shared
machine the ratio of the two is the figure that means something.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, median, run_loadgen, wait_until, write_result
from _targets import LlmspansCollector

OUTCOMES = "llmspans_task_outcomes_total"
QUEUE = "llmspans_collector_evaluation_queue_runs"
EVALUATIONS = "llmspans_evaluations_total"
DROPPED = "llmspans_evaluation_dropped_total"
COST = "llmspans_evaluation_cost_usd_total"
SPANS_PER_RUN = 6
POLL_S = 0.25
#: Longest request body the fake judge reads (a prompt is a few KiB).
MAX_BODY_BYTES = 1 << 20

VERDICT = json.dumps(
    {"relevant_ids": [], "citations": {}, "correct": "correct", "explanation": "benchmark"}
)


class _JudgeHandler(BaseHTTPRequestHandler):
    server: FakeJudge

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = min(int(self.headers.get("Content-Length", "0") or 0), MAX_BODY_BYTES)
        self.rfile.read(length)
        time.sleep(self.server.delay_s)
        with self.server.lock:
            self.server.calls += 1
        body = json.dumps(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "model": "gpt-4o-mini",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": VERDICT},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1500, "completion_tokens": 60, "total_tokens": 1560},
            }
        ).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass


class FakeJudge(ThreadingHTTPServer):
    """An OpenAI-compatible chat endpoint on 127.0.0.1 that takes ``delay_s`` per call."""

    daemon_threads = True

    def __init__(self, delay_s: float) -> None:
        super().__init__(("127.0.0.1", 0), _JudgeHandler)
        self.delay_s = delay_s
        self.calls = 0
        self.lock = threading.Lock()  # guards calls
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class QueuePoller(threading.Thread):
    """Reads the evaluation queue gauge from /metrics every ``POLL_S`` seconds."""

    def __init__(self, coll: LlmspansCollector) -> None:
        super().__init__(daemon=True)
        self.coll = coll
        self.queued: list[float] = []
        self.running: list[float] = []
        self.errors: list[str] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                metrics = self.coll.metrics()
            except Exception as exc:  # a slow scrape under load: note it, go on
                self.errors.append(f"{type(exc).__name__}: {exc}")
            else:
                self.queued.append(metrics.get(f'{QUEUE}{{state="queued"}}', 0.0))
                self.running.append(metrics.get(f'{QUEUE}{{state="running"}}', 0.0))
            self.stop_event.wait(POLL_S)


def _labelled(metrics: dict[str, float], name: str, label: str) -> dict[str, float]:
    """``{label value: sum}`` over the samples of ``name`` (summed over other labels)."""
    found: dict[str, float] = {}
    for key, value in metrics.items():
        if key.startswith(name + "{") and f'{label}="' in key:
            which = key.split(f'{label}="', 1)[1].split('"', 1)[0]
            found[which] = found.get(which, 0.0) + value
    return found


def main_thread_cpu_s(coll: LlmspansCollector) -> float:
    """CPU seconds of the collector's main thread (its event loop: receiving,
    assembly, attribution, forwarding); the evaluation threads are the others."""
    pid = coll.proc.ps.pid
    for thread in coll.proc.ps.threads():
        if thread.id == pid:
            return float(thread.user_time + thread.system_time)
    return float("nan")


def measure(
    mode: str, spans: int, share: float, evaluation: dict[str, Any] | None, drain_s: float
) -> dict[str, Any]:
    coll = LlmspansCollector(
        f"evaluation-{mode}",
        trace_idle_s=1.0,
        evaluation=evaluation,
        extra_env={"BENCH_JUDGE_KEY": "bench-key"},
    )
    try:
        # /metrics is polled the same way in both modes: a scrape costs CPU too
        poller = QueuePoller(coll)
        marks: dict[str, float] = {}

        def go() -> None:
            marks["cpu0"] = coll.proc.cpu_s()
            marks["main0"] = main_thread_cpu_s(coll)
            marks["t0"] = time.perf_counter()
            poller.start()

        argv = [
            "--protocol",
            "http",
            "--endpoint",
            coll.http_endpoint(),
            "--spans",
            str(spans),
            "--spans-per-trace",
            str(SPANS_PER_RUN),
            "--sampled-share",
            str(share),
            "--concurrency",
            "4",
            "--seed",
            "7",
        ]
        load = run_loadgen(argv, on_go=go)
        coll.proc.check_alive()
        accepted = load["spans_accepted"]
        runs = accepted // SPANS_PER_RUN
        wait_until(
            lambda: coll.metrics().get(OUTCOMES, 0.0) >= runs,
            coll.trace_idle_s + 120,
            interval=POLL_S,
            what="every run's outcome on /metrics",
        )
        cpu = coll.proc.cpu_s() - marks["cpu0"]
        main_cpu = main_thread_cpu_s(coll) - marks["main0"]
        busy_s = time.perf_counter() - marks["t0"]
        result: dict[str, Any] = {
            "mode": mode,
            "spans": accepted,
            "runs": runs,
            "accepted_spans_per_s": round(load["spans_per_s"]),
            "retries": load["retries"],
            "errors": load["errors"],
            "cpu_s": round(cpu, 3),
            "wall_s": round(busy_s, 2),
            "spans_per_cpu_s": round(accepted / cpu) if cpu > 0 else None,
            "main_thread_cpu_s": round(main_cpu, 3),
            "spans_per_main_thread_cpu_s": round(accepted / main_cpu) if main_cpu > 0 else None,
        }
        if evaluation is None:
            poller.stop_event.set()
            poller.join(timeout=10)
        else:
            # the queue drains at concurrency / judge_s runs per second: wait (bounded)
            deadline = time.monotonic() + drain_s
            while time.monotonic() < deadline:
                metrics = coll.metrics()
                if (
                    metrics.get(f'{QUEUE}{{state="queued"}}', 0.0)
                    + metrics.get(f'{QUEUE}{{state="running"}}', 0.0)
                    == 0
                ):
                    break
                time.sleep(POLL_S)
            poller.stop_event.set()
            poller.join(timeout=10)
            time.sleep(1.5)  # one more sweep records the last judgments
            metrics = coll.metrics()
            queued = poller.queued or [0.0]
            result["evaluation"] = {
                "sampled_runs": None,
                "queue_queued_max": max(queued),
                "queue_queued_mean": round(sum(queued) / len(queued), 1),
                "queue_running_max": max(poller.running or [0.0]),
                "queue_polls": len(poller.queued),
                "poll_errors": len(poller.errors),
                "still_queued_after_drain": metrics.get(f'{QUEUE}{{state="queued"}}', 0.0),
                "judgments_by_verdict": _labelled(metrics, EVALUATIONS, "verdict"),
                "dropped_by_reason": _labelled(metrics, DROPPED, "reason"),
                "cost_usd": round(metrics.get(COST, 0.0), 4),
            }
        coll.proc.check_alive()
        return result
    finally:
        coll.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=300_000)
    parser.add_argument("--share", type=float, default=0.01)
    parser.add_argument("--judge-s", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=4, help="judge calls at once")
    parser.add_argument("--queue-size", type=int, default=200, help="sampled runs waiting")
    parser.add_argument("--drain-s", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=2, help="off/on pairs, alternating")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    spans = 60_000 if args.quick else args.spans
    if args.quick:
        args.repeat = 1
    drain_s = min(args.drain_s, 20.0) if args.quick else args.drain_s
    judge = FakeJudge(args.judge_s)
    try:
        evaluation = {
            "evaluators": [
                {
                    "base_url": judge.url,
                    "model": "gpt-4o-mini",
                    "api_key_env": "BENCH_JUDGE_KEY",
                    "timeout_s": 10 * args.judge_s,
                    "retries": 0,
                }
            ],
            "concurrency": args.concurrency,
            "queue_size": args.queue_size,
            "timeout_s": 10 * args.judge_s + 5,
        }
        pairs = []
        for _ in range(args.repeat):
            # off and on alternate, so a change in the neighbours' load hits both
            off = measure("off", spans, args.share, None, drain_s)
            on = measure("on", spans, args.share, evaluation, drain_s)
            pairs.append((off, on))
        judge_calls = judge.calls
    finally:
        judge.close()
    ratios = [
        on["spans_per_cpu_s"] / off["spans_per_cpu_s"]
        for off, on in pairs
        if on["spans_per_cpu_s"] and off["spans_per_cpu_s"]
    ]
    for _, on in pairs:
        ev = on["evaluation"]
        ev["sampled_runs"] = (
            sum(ev["judgments_by_verdict"].values())
            + sum(ev["dropped_by_reason"].values())
            + ev["still_queued_after_drain"]
        )
        ev["sampled_share_of_runs"] = round(ev["sampled_runs"] / max(on["runs"], 1), 4)
    main_ratios = [
        on["spans_per_main_thread_cpu_s"] / off["spans_per_main_thread_cpu_s"]
        for off, on in pairs
        if on["spans_per_main_thread_cpu_s"] and off["spans_per_main_thread_cpu_s"]
    ]
    off_rates = [off["spans_per_cpu_s"] for off, _ in pairs if off["spans_per_cpu_s"]]
    on_rates = [on["spans_per_cpu_s"] for _, on in pairs if on["spans_per_cpu_s"]]
    result = {
        "benchmark": "evaluation",
        "machine": machine(),
        "quick": args.quick,
        "spans": pairs[0][0]["spans"] if pairs else spans,
        "sampled_share": args.share,
        "judge_s": args.judge_s,
        "concurrency": args.concurrency,
        "queue_size": args.queue_size,
        "judge_calls": judge_calls,
        "pairs": [{"off": off, "on": on} for off, on in pairs],
        "spans_per_cpu_s_off": round(median(off_rates)) if off_rates else None,
        "spans_per_cpu_s_on": round(median(on_rates)) if on_rates else None,
        "ratio_on_off": round(median(ratios), 3) if ratios else None,
        "main_thread_ratio_on_off": round(median(main_ratios), 3) if main_ratios else None,
    }
    for index, (off, on) in enumerate(pairs):
        ev = on["evaluation"]
        print(
            f"pair {index + 1}: {off['spans']:,} spans; spans per CPU-second "
            f"{off['spans_per_cpu_s']:,} without evaluation, {on['spans_per_cpu_s']:,} with "
            f"(main thread alone {off['spans_per_main_thread_cpu_s']:,} and "
            f"{on['spans_per_main_thread_cpu_s']:,}); "
            f"accepted {off['accepted_spans_per_s']:,} / {on['accepted_spans_per_s']:,} "
            f"spans/s; queue max {ev['queue_queued_max']:.0f} (mean "
            f"{ev['queue_queued_mean']}), running max {ev['queue_running_max']:.0f}; "
            f"sampled {ev['sampled_runs']:.0f}, judged {ev['judgments_by_verdict']}, "
            f"dropped {ev['dropped_by_reason']}, still queued "
            f"{ev['still_queued_after_drain']:.0f}"
        )
    print(
        f"median spans per CPU-second: {result['spans_per_cpu_s_off']:,} without, "
        f"{result['spans_per_cpu_s_on']:,} with evaluation (ratio {result['ratio_on_off']}; "
        f"main thread alone {result['main_thread_ratio_on_off']}); "
        f"{judge_calls} judge calls"
    )
    print(write_result("evaluation", result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
