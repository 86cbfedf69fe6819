"""Live: real collectors, Prometheus and Alertmanager; a retrieval spike pages, nothing else.

The scenario (one run shared by the tests of this module):

- three ``llmspans-collector`` processes: a *reference* that gets every span, and a
  pair of *replicas* that share the traces by trace id (sharded in the sender, as
  the gateway's loadbalancing exporter does);
- Prometheus (scrape and evaluation every second, the ``fast`` rule profile,
  exemplar storage on) and Alertmanager (the shipped alertmanager.yml, its
  webhooks pointed at a receiver in this process);
- ``python -m collector.traffic`` over OTLP/HTTP with the SDK exporter: steady
  runs with a few percent of failures per stage, then 80% of the runs failing in
  retrieval;
- a few deliberate collector-health events (a malformed request, a span with
  invalid ids, an orphan trace that times out, a late span, a wrong attribute
  type) so that every collector-health panel has a series.
- sampled runs of a second pipeline, judged by a code evaluator in every
  collector (some with the app's own labels, for judge agreement; a calls budget
  that drops a few), and offline runs of the traffic's pipeline, so that the
  Judged quality and Divergence rows have series.

While the spike alert is firing every dashboard query runs against Prometheus.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import socket
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from collector.grafana import build
from collector.prometheus import render
from llmspans import _attributes as A
from llmspans.collector.alert_sink import WebhookSink
from tests.evaluation import scenario
from tests.listening import collector_ports, logged_port

from .conftest import ROOT, Processes, binary, get_json, http_get, venv_binary, wait_for
from .test_dashboards import concrete, dashboards

pytestmark = pytest.mark.slow

STEADY_S = 55
SPIKE_S = 30
RATE = 20
REFERENCE = "reference"
REPLICAS = ("replica-1", "replica-2")


@dataclass
class Collector:
    name: str
    traces_file: Path
    #: the ports the collector bound itself (its config says 127.0.0.1:0), from its log
    http_port: int = 0
    metrics_port: int = 0

    @property
    def otlp(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.metrics_port}"


@dataclass
class Live:
    prometheus: str
    collectors: dict[str, Collector]
    sink: WebhookSink
    processes: Processes
    #: every alert Prometheus reported (any state), with the phase it was seen in
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    #: dashboard panel title, expr -> number of series returned
    panels: list[tuple[str, str, str, int]] = field(default_factory=list)
    runs_sent: int = 0
    spike_alert_at: float | None = None
    spike_started_at: float | None = None
    #: the runs each job counted once both settled (or the deadline passed)
    runs_counted: tuple[dict[str, float], dict[str, float]] = ({}, {})
    #: SHARDED_TOTALS expression -> (reference job's totals, sharded job's totals)
    totals: dict[str, tuple[dict[str, float], dict[str, float]]] = field(default_factory=dict)
    #: runs counted by each replica of the sharded job
    per_instance: list[float] = field(default_factory=list)

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        answer = get_json(url)
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def poll_alerts(self, phase: str) -> None:
        answer = get_json(f"{self.prometheus}/api/v1/alerts")
        for alert in answer["data"]["alerts"]:
            self.seen.append((phase, {**alert["labels"], "_state": alert["state"]}))


# --- OTLP requests for the collector-health events --------------------------------------


def _kv(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _request(*spans: Span) -> bytes:
    request = ExportTraceServiceRequest()
    scope_spans = request.resource_spans.add().scope_spans.add()
    scope_spans.spans.extend(spans)
    return request.SerializeToString()


def _span(trace_id: bytes, span_id: bytes, parent: bytes = b"", *attributes: KeyValue) -> Span:
    now = time.time_ns()
    return Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name="health event",
        start_time_unix_nano=now - 1_000_000,
        end_time_unix_nano=now,
        attributes=list(attributes),
    )


def _post(url: str, body: bytes, content_type: str = "application/x-protobuf") -> int:
    request = urllib.request.Request(
        f"{url}/v1/traces", data=body, headers={"Content-Type": content_type}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _send_like_the_traffic(live: Live, trace_id: bytes, body: bytes) -> None:
    """To the reference and to the replica that owns ``trace_id`` (as collector.traffic)."""
    owner = REPLICAS[int.from_bytes(trace_id, "big") % len(REPLICAS)]
    for name in (REFERENCE, owner):
        status = _post(live.collectors[name].otlp, body)
        assert status == 200, (name, status)


def _health_events(live: Live) -> None:
    rng = random.Random(5)
    for collector in live.collectors.values():
        assert _post(collector.otlp, b"\x0a\x05not a protobuf") == 400
        bad_ids = json.dumps(
            {"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "00", "spanId": "01"}]}]}]}
        ).encode()
        assert _post(collector.otlp, bad_ids, "application/json") in (200, 400)
    # an orphan: a child whose root never comes; finalised by trace_timeout (evicted)
    orphan = rng.randbytes(16)
    _send_like_the_traffic(
        live, orphan, _request(_span(orphan, rng.randbytes(8), rng.randbytes(8)))
    )
    # a known attribute of the wrong type (document ids as an int)
    odd = rng.randbytes(16)
    _send_like_the_traffic(
        live,
        odd,
        _request(
            _span(
                odd,
                rng.randbytes(8),
                b"",
                _kv(A.STAGE, "retrieval"),
                _kv(A.RETRIEVAL_DOCUMENT_IDS, 7),
            )
        ),
    )
    # a span of a trace that is already final: late. The trace is final once idle
    # (0.5 s) and swept; on a loaded machine that may take longer, so the next span
    # waits until both collectors that get the trace hold no trace in flight (the
    # orphan above goes at its 3 s timeout): then it is late on both, exactly once.
    late = rng.randbytes(16)
    owner = REPLICAS[int.from_bytes(late, "big") % len(REPLICAS)]
    _send_like_the_traffic(live, late, _request(_span(late, rng.randbytes(8))))
    receivers = [live.collectors[name] for name in (REFERENCE, owner)]
    wait_for(
        lambda: all(
            _collector_metric(c, "llmspans_collector_traces_inflight") == 0 for c in receivers
        ),
        60,
        what="the health-event traces to be final",
    )
    _send_like_the_traffic(live, late, _request(_span(late, rng.randbytes(8))))
    wait_for(
        lambda: all(
            _collector_metric(c, "llmspans_collector_late_spans_total") == 1 for c in receivers
        ),
        60,
        what="the late span counted by both collectors",
    )


# --- judged and offline runs ----------------------------------------------------------

JUDGED_PIPELINE = "support_judged"
#: the code evaluator every collector runs, and its budget: the reference, which gets
#: every judged run, drops those past it (``budget_calls``)
EVALUATOR = "tests.evaluation.judges:judge"
CALLS_PER_MINUTE = 6
OFFLINE_RUNS = 12


def _record_judged_runs(tracer: Tracer) -> int:
    """The scenario's runs (tests/evaluation/scenario.py), sampled, in segment billing.

    They look successful to the app; the judge finds missed retrievals and wrong
    answers. The ones that answered right come first and carry the app's labels
    (relevant ids, correct), so judge agreement has data even where the budget drops
    the last runs.
    """
    runs = sorted(scenario.RUNS, key=lambda run: run is not scenario.RUNS[-1])
    for documents, answer, claims in runs:
        labelled = "5 days" in answer
        root: dict[str, Any] = {
            A.STAGE: A.STAGE_PIPELINE,
            A.PIPELINE: JUDGED_PIPELINE,
            A.SEGMENT: "billing",
            A.TASK_COMPLETED: True,
            A.EVALUATION_SAMPLED: True,
        }
        retrieval: dict[str, Any] = {
            A.STAGE: A.STAGE_RETRIEVAL,
            A.RETRIEVAL_DOCUMENT_IDS: [doc for doc, _ in documents],
            A.RETRIEVAL_SCORES: [0.9, 0.8],
            A.RETRIEVAL_QUERY: "How long does a refund take?",
            A.RETRIEVAL_DOCUMENTS_CONTENT: json.dumps(dict(documents)),
        }
        if labelled:
            root[A.TASK_CORRECT] = True
            retrieval[A.RETRIEVAL_RELEVANT_IDS] = ["d-refund"]
        with tracer.start_as_current_span(f"invoke_workflow {JUDGED_PIPELINE}", attributes=root):
            with tracer.start_as_current_span("retrieval kb", attributes=retrieval):
                pass
            with tracer.start_as_current_span(
                "chat m",
                attributes={
                    A.STAGE: A.STAGE_GENERATION,
                    A.GENERATION_CITATIONS: list(claims),
                    A.GENERATION_CONFIDENCE: 0.9,
                    A.GEN_AI_OUTPUT_MESSAGES: json.dumps(
                        [{"role": "assistant", "parts": [{"type": "text", "content": answer}]}]
                    ),
                    A.GENERATION_CLAIMS: json.dumps(claims),
                },
            ):
                pass
    return len(runs)


def _record_offline_runs(tracer: Tracer) -> int:
    """Runs of the traffic's pipeline from an evaluation set (source offline, segment
    none as the traffic's), all successful: the divergence rules get both sides and
    no stage gets a failure the spike tests do not expect."""
    root = {
        A.STAGE: A.STAGE_PIPELINE,
        A.PIPELINE: "support_answer",
        A.RUN_SOURCE: A.SOURCE_OFFLINE,
        A.TASK_COMPLETED: True,
    }
    retrieval = {A.STAGE: A.STAGE_RETRIEVAL, A.RETRIEVAL_DOCUMENT_IDS: ["d-1", "d-2"]}
    for _ in range(OFFLINE_RUNS):
        with (
            tracer.start_as_current_span("invoke_workflow support_answer", attributes=root),
            tracer.start_as_current_span("retrieval kb", attributes=retrieval),
        ):
            pass
    return OFFLINE_RUNS


def _send_judged_and_offline_runs(live: Live) -> int:
    """Record the runs with a real SDK and send each trace as the traffic does; the
    number of runs sent."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("live")

    def send() -> int:
        by_trace: dict[int, list[Any]] = {}
        for span in exporter.get_finished_spans():
            assert span.context is not None
            by_trace.setdefault(span.context.trace_id, []).append(span)
        exporter.clear()
        for trace_id, spans in by_trace.items():
            _send_like_the_traffic(
                live, trace_id.to_bytes(16, "big"), encode_spans(spans).SerializeToString()
            )
        return len(by_trace)

    runs = _record_judged_runs(tracer) + _record_offline_runs(tracer)
    assert send() == runs
    # A second offline batch once Prometheus has scraped the series the first one
    # created: rate() counts increments from a series' second sample on, so a single
    # batch that creates its series would leave the offline side of the divergence
    # rules empty.
    time.sleep(3.0)
    second = _record_offline_runs(tracer)
    assert send() == second
    runs += second
    provider.shutdown()
    return runs


def _collector_metric(collector: Collector, name: str) -> float:
    """Sum of the samples ``name`` on a collector's /metrics (0 when it has none)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = http_get(f"http://{collector.target}/metrics").decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


# --- the scenario ------------------------------------------------------------------------


def _collector_config(collector: Collector, directory: Path, dead_port: int) -> Path:
    config = {
        "receivers": {"grpc": None, "http": {"endpoint": "127.0.0.1:0"}},
        "metrics": {
            "prometheus": {"endpoint": "127.0.0.1:0"},
            "service_instance_id": collector.name,
        },
        "assembly": {"trace_idle_s": 0.5, "trace_timeout_s": 3.0},
        "evaluation": {"evaluators": [EVALUATOR], "calls_per_minute": CALLS_PER_MINUTE},
        "exporters": [
            {"name": "file", "protocol": "file", "path": str(collector.traces_file)},
            # nothing listens there: its spans are dropped after a short retry
            {
                "name": "unreachable",
                "protocol": "http",
                "endpoint": f"http://127.0.0.1:{dead_port}/v1/traces",
                "retry_max_elapsed_s": 0.5,
                "timeout_s": 0.5,
                "queue_size": 100000,
            },
        ],
    }
    path = directory / f"{collector.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _alertmanager_config(sink: WebhookSink) -> dict[str, Any]:
    """The shipped config, its webhooks pointed at ``sink``, its waits shortened."""
    config = yaml.safe_load((ROOT / "collector/alertmanager/alertmanager.yml").read_text())
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            path = urllib.parse.urlparse(hook["url"]).path
            hook["url"] = sink.url(path)
    config["route"].update(group_wait="1s", group_interval="1s", repeat_interval="1m")
    return config


def _prometheus_config(
    live_dir: Path, alertmanager_port: int, collectors: dict[str, Collector]
) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(live_dir / "rules.yml")],
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]
        },
        "scrape_configs": [
            {
                "job_name": "llmspans-collector",
                "static_configs": [{"targets": [collectors[n].target for n in REPLICAS]}],
            },
            {
                "job_name": "llmspans-reference",
                "static_configs": [{"targets": [collectors[REFERENCE].target]}],
            },
        ],
    }


def _traffic_lines(processes: Processes) -> list[str]:
    return processes.log("traffic").splitlines()


def _run_dashboard_queries(live: Live) -> None:
    for dashboard in dashboards():
        for title, expr in build.queries(dashboard):
            result = live.query(concrete(expr))
            live.panels.append((dashboard["uid"], title, expr, len(result)))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    live_dir = tmp_path_factory.mktemp("live")
    logs = live_dir / "logs"
    logs.mkdir()
    processes = Processes(logs)
    sink = WebhookSink().start()
    # The collectors' second exporter points here: a port bound and never listened
    # on refuses every connection, and no other socket can take it meanwhile.
    unreachable = socket.socket()
    unreachable.bind(("127.0.0.1", 0))
    try:
        yield _scenario(live_dir, processes, sink, int(unreachable.getsockname()[1]))
    finally:
        processes.stop_all()
        sink.stop()
        unreachable.close()


def _scenario(live_dir: Path, processes: Processes, sink: WebhookSink, dead_port: int) -> Live:
    # Every server binds port 0 and logs the port it got: no port is picked in
    # advance, so none can be taken by another socket before the server binds it.
    collectors = {
        name: Collector(name, live_dir / f"{name}.jsonl") for name in (REFERENCE, *REPLICAS)
    }
    started = {}
    for collector in collectors.values():
        config = _collector_config(collector, live_dir, dead_port)
        # the evaluator is imported from this checkout's tests package
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        started[collector.name] = processes.start(
            collector.name,
            [venv_binary("llmspans-collector"), "--config", str(config)],
            env={"PYTHONPATH": path},
        )
    for collector in collectors.values():
        ports = collector_ports(
            started[collector.name], processes.logs / f"{collector.name}.log", timeout=90
        )
        assert ports["http"] is not None and ports["metrics"] is not None
        collector.http_port, collector.metrics_port = ports["http"], ports["metrics"]

    (live_dir / "rules.yml").write_text(render.render(render.load_profile("fast"), "fast"))
    (live_dir / "alertmanager.yml").write_text(yaml.safe_dump(_alertmanager_config(sink)))
    (live_dir / "am-data").mkdir()
    alertmanager = processes.start(
        "alertmanager",
        [
            binary("prometheus-alertmanager"),
            f"--config.file={live_dir / 'alertmanager.yml'}",
            f"--storage.path={live_dir / 'am-data'}",
            "--web.listen-address=127.0.0.1:0",
            "--cluster.listen-address=",
        ],
    )
    am_port = logged_port(alertmanager, processes.logs / "alertmanager.log")
    (live_dir / "prometheus.yml").write_text(
        yaml.safe_dump(_prometheus_config(live_dir, am_port, collectors))
    )
    (live_dir / "prom-data").mkdir()
    prometheus = processes.start(
        "prometheus",
        [
            binary("prometheus"),
            f"--config.file={live_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={live_dir / 'prom-data'}",
            "--web.listen-address=127.0.0.1:0",
            "--enable-feature=exemplar-storage",
            "--web.enable-lifecycle",
        ],
    )
    prom_port = logged_port(prometheus, processes.logs / "prometheus.log")
    live = Live(f"http://127.0.0.1:{prom_port}", collectors, sink, processes)

    for collector in collectors.values():
        wait_for(
            lambda c=collector: http_get(f"http://{c.target}/readyz").strip() == b"ready",
            60,
            what=lambda c=collector: f"collector {c.name}: {processes.log(c.name)[-2000:]}",
        )
    wait_for(lambda: http_get(f"{live.prometheus}/-/ready"), 60, what="prometheus")
    wait_for(lambda: http_get(f"http://127.0.0.1:{am_port}/-/ready"), 60, what="alertmanager")
    wait_for(
        lambda: all(
            t["health"] == "up"
            for t in get_json(f"{live.prometheus}/api/v1/targets")["data"]["activeTargets"]
        ),
        60,
        what="all scrape targets up",
    )

    _health_events(live)
    extra_runs = _send_judged_and_offline_runs(live)
    processes.start(
        "traffic",
        [
            str(ROOT / ".venv" / "bin" / "python"),
            "-m",
            "llmspans.collector.traffic",
            "--endpoint",
            collectors[REFERENCE].otlp,
            "--shard",
            ",".join(collectors[n].otlp for n in REPLICAS),
            "--rate",
            str(RATE),
            "--phase",
            f"steady={STEADY_S}",
            "--phase",
            f"spike={SPIKE_S}",
            "--spike-stage",
            "retrieval",
            "--spike-mode",
            "error",
            "--spike-share",
            "0.8",
            "--latency-scale",
            "0.02",
            "--workers",
            "2",
        ],
        env={"PYTHONUNBUFFERED": "1"},
    )

    deadline = time.monotonic() + STEADY_S + SPIKE_S + 60
    phase = "steady"
    while time.monotonic() < deadline:
        lines = _traffic_lines(processes)
        if phase == "steady" and "phase spike started" in lines:
            phase = "spike"
            live.spike_started_at = time.monotonic()
        live.poll_alerts(phase)
        if phase == "spike" and live.spike_alert_at is None and _spike_notified(sink):
            live.spike_alert_at = time.monotonic()
            _run_dashboard_queries(live)
        if any(line.startswith("phase spike ended") for line in lines):
            break
        time.sleep(1.0)
    traffic = processes.started[-1][1]
    assert traffic.wait(60) == 0, processes.log("traffic")
    live.runs_sent = extra_runs + sum(
        int(m.group(1)) for m in re.finditer(r"ended runs=(\d+)", processes.log("traffic"))
    )
    _record_totals(live)
    return live


RUNS_EXPR = 'sum(llmspans_task_outcomes_total{job="JOB"})'


def _record_totals(live: Live) -> None:
    """The totals of both jobs, taken here while every collector still runs.

    A test of this module stops the collectors; recorded now, the comparison of
    the sharded job with the reference holds in whatever order the tests run.
    """
    deadline = time.monotonic() + 60
    expected = {"": float(live.runs_sent)}
    while True:
        counted = (
            _totals(live, RUNS_EXPR, "llmspans-reference"),
            _totals(live, RUNS_EXPR, "llmspans-collector"),
        )
        if counted == (expected, expected) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    live.runs_counted = counted
    for expr in SHARDED_TOTALS:
        live.totals[expr] = (
            _totals(live, expr, "llmspans-reference"),
            _totals(live, expr, "llmspans-collector"),
        )
    live.per_instance = [
        float(r["value"][1])
        for r in live.query(
            'sum by (instance) (llmspans_task_outcomes_total{job="llmspans-collector"})'
        )
    ]


def _spike_notified(sink: WebhookSink) -> bool:
    return any(
        a["labels"].get("alertname") == "LlmspansStageFailureSpike" for a in sink.alerts("firing")
    )


# --- the tests -----------------------------------------------------------------------------


def test_the_retrieval_spike_reaches_alertmanager(live: Live) -> None:
    assert live.spike_alert_at is not None, (
        f"no spike alert reached the webhook; Prometheus saw {live.seen[-20:]}; "
        f"traffic: {live.processes.log('traffic')}"
    )
    assert live.spike_started_at is not None
    # The page comes while the spike lasts (the fast profile pages within seconds;
    # the bound is the spike itself, so that a loaded machine does not fail it).
    delay = live.spike_alert_at - live.spike_started_at
    assert delay < SPIKE_S, f"the page came {delay:.1f} s into a {SPIKE_S} s spike"
    spikes = [
        a
        for a in live.sink.alerts("firing")
        if a["labels"]["alertname"] == "LlmspansStageFailureSpike"
    ]
    for alert in spikes:
        labels = alert["labels"]
        assert labels["stage"] == "retrieval"
        assert labels["reason"] == "error"
        assert labels["pipeline"] == "support_answer"
        assert labels["severity"] == "page"
        assert "retrieval failures spiking" in alert["annotations"]["summary"]
    # pages go to the page receiver
    paths = {
        n["path"]
        for n in live.sink.notifications()
        if any(a["labels"]["alertname"] == "LlmspansStageFailureSpike" for a in n["body"]["alerts"])
    }
    assert paths == {"/page"}


def test_no_other_stage_alerts(live: Live) -> None:
    staged = [labels for _, labels in live.seen if "stage" in labels]
    assert staged, "Prometheus never reported the spike alert"
    assert {labels["stage"] for labels in staged} == {"retrieval"}
    notified = [a["labels"] for a in live.sink.alerts(None) if "stage" in a["labels"]]
    assert {labels["stage"] for labels in notified} == {"retrieval"}


def test_steady_failures_do_not_page(live: Live) -> None:
    steady = [labels for phase, labels in live.seen if phase == "steady"]
    assert not [a for a in steady if a["alertname"] == "LlmspansStageFailureSpike"], steady
    assert not [a for a in steady if "stage" in a], steady


def test_every_dashboard_query_returns_data(live: Live) -> None:
    assert live.panels, "the dashboard queries did not run (no spike alert)"
    expected = sum(1 for d in dashboards() for _ in build.queries(d))
    assert len(live.panels) == expected
    empty = [(uid, title, expr) for uid, title, expr, count in live.panels if count == 0]
    assert not empty, "panels without data:\n" + "\n".join(map(str, empty))


def _totals(live: Live, expr: str, job: str) -> dict[str, float]:
    by = expr.split("by (", 1)[1].split(")", 1)[0] if "by (" in expr else ""
    result = live.query(expr.replace("JOB", job))
    return {
        ",".join(r["metric"].get(label.strip(), "") for label in by.split(",")): float(
            r["value"][1]
        )
        for r in result
    }


SHARDED_TOTALS = [
    'sum by (pipeline, outcome) (llmspans_task_outcomes_total{job="JOB"})',
    'sum by (pipeline, stage, reason) (llmspans_stage_failures_total{job="JOB"})',
    'sum by (pipeline, stage, status) (llmspans_stage_calls_total{job="JOB"})',
    'sum by (pipeline, kind) (llmspans_feedback_total{job="JOB"})',
    'sum by (pipeline, bin, correct) (llmspans_calibration_runs_total{job="JOB", basis!="judge"})',
    'sum by (pipeline, bin) (llmspans_calibration_confidence_total{job="JOB", basis!="judge"})',
    'sum by (pipeline, outcome) (llmspans_task_cost_usd_total{job="JOB"})',
    'sum by (pipeline, stage, le) (llmspans_stage_duration_seconds_bucket{job="JOB"})',
    'sum by (pipeline) (llmspans_retrieval_context_precision_sum{job="JOB", basis!="judge"})',
    'sum by (pipeline) (llmspans_generation_citation_precision_count{job="JOB"})',
    'sum by (le) (llmspans_collector_traces_evicted_total{job="JOB"})',
    'sum by (le) (llmspans_collector_late_spans_total{job="JOB"})',
]


def test_two_sharded_replicas_sum_to_the_reference(live: Live) -> None:
    expected = {"": float(live.runs_sent)}
    assert live.runs_counted == (expected, expected), (
        f"both jobs should count all {live.runs_sent} runs (reference, sharded)"
    )
    assert live.runs_sent >= STEADY_S * RATE
    assert live.totals.keys() == set(SHARDED_TOTALS)
    for expr, (reference, sharded) in live.totals.items():
        assert reference, expr
        assert reference.keys() == sharded.keys(), expr
        for key, value in reference.items():
            assert math.isclose(value, sharded[key], rel_tol=1e-9, abs_tol=1e-12), (expr, key)
    # both replicas did part of the work
    assert len(live.per_instance) == 2
    assert all(runs > live.runs_sent * 0.3 for runs in live.per_instance)


def test_exemplars_lead_to_traces_that_failed_in_retrieval(live: Live) -> None:
    now = time.time()
    query = urllib.parse.urlencode(
        {
            "query": "llmspans_stage_failures_total"
            '{job="llmspans-reference", stage="retrieval", reason="error"}',
            "start": now - 600,
            "end": now,
        }
    )
    answer = get_json(f"{live.prometheus}/api/v1/query_exemplars?{query}")
    trace_ids = {
        exemplar["labels"]["trace_id"]
        for series in answer["data"]
        for exemplar in series["exemplars"]
    }
    assert trace_ids, answer
    assert all(re.fullmatch(r"[0-9a-f]{32}", t) for t in trace_ids)
    roots = _root_failure_stages(live.collectors[REFERENCE].traces_file)
    for trace_id in trace_ids:
        assert roots.get(trace_id) == ("retrieval", "error"), trace_id


def _root_failure_stages(path: Path) -> dict[str, tuple[str, str]]:
    """trace id -> (llmspans.failure.stage, .reason) of the enriched roots in an OTLP JSON file."""
    found: dict[str, tuple[str, str]] = {}
    for line in path.read_text().splitlines():
        document = json.loads(line)
        for resource_spans in document.get("resourceSpans", []):
            for scope_spans in resource_spans.get("scopeSpans", []):
                for span in scope_spans.get("spans", []):
                    attributes = {
                        a["key"]: a["value"].get("stringValue") for a in span.get("attributes", [])
                    }
                    stage = attributes.get(A.FAILURE_STAGE)
                    if stage:
                        found[span["traceId"]] = (stage, attributes.get(A.FAILURE_REASON) or "")
    return found


def test_collectors_shut_down_cleanly(live: Live) -> None:
    for name, process in live.processes.started:
        if name in live.collectors:
            assert live.processes.stop(process) == 0, live.processes.log(name)[-3000:]
