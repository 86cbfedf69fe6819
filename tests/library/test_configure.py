"""configure(): real OTLP/HTTP and OTLP/gRPC export, embedded metrics, environment variables.

configure() installs global providers, so every test that lets it do so runs the
application in a subprocess; the receivers run here, on loopback.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import urllib.request

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmspans
from llmspans import _attributes as A
from llmspans import _tracing

from .conftest import ReceivedSpans, span_attributes

APP = textwrap.dedent(
    """
    import asyncio, json, sys
    import llmspans
    from opentelemetry import trace

    config = llmspans.configure({configure_args})

    @llmspans.retrieval(data_source="faq")
    def search(query):
        return [{{"id": "d1", "score": 0.9}}, {{"id": "d2", "score": 0.4}}]

    @llmspans.generation(model="gpt-4o-mini", provider="openai")
    async def answer(question, docs):
        llmspans.record_generation(input_tokens=100, output_tokens=10, citations=["d1"])
        return "ok"

    @llmspans.pipeline("support_answer")
    async def handle(question):
        docs = search(question)
        await answer(question, docs)
        llmspans.set_outcome(completed=True)
        return llmspans.current_run()

    ref = asyncio.run(handle("refund?"))
    llmspans.feedback(ref, kind="accept")
    global_is_sdk = type(trace.get_tracer_provider()).__name__
    {after}
    config.shutdown()
    print(json.dumps({{"ref": ref.to_str() if ref else None, "global": global_is_sdk}}))
    """
)


def run_app(
    configure_args: str = "", env: dict[str, str] | None = None, after: str = "pass"
) -> subprocess.CompletedProcess[str]:
    code = APP.format(configure_args=configure_args, after=after)
    full_env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("OTEL_") and key != "PYTHONPATH"
    }
    full_env["OTEL_METRICS_EXPORTER"] = "none"
    full_env.update(env or {})
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=180,
        env=full_env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


def assert_pipeline_arrived(received: ReceivedSpans, service: str) -> None:
    spans = received.spans()
    by_name = {span.name: (resource, span) for resource, span in spans}
    assert set(by_name) == {
        "invoke_workflow support_answer",
        "retrieval faq",
        "chat gpt-4o-mini",
        "feedback accept",
    }
    for resource, _span in spans:
        assert resource["service.name"] == service
    _, root = by_name["invoke_workflow support_answer"]
    _, retrieval = by_name["retrieval faq"]
    _, chat = by_name["chat gpt-4o-mini"]
    _, feedback = by_name["feedback accept"]
    assert root.parent_span_id == b""
    assert retrieval.parent_span_id == root.span_id
    assert chat.parent_span_id == root.span_id
    assert retrieval.trace_id == root.trace_id
    assert retrieval.kind == retrieval.SPAN_KIND_CLIENT
    assert span_attributes(retrieval)[A.RETRIEVAL_DOCUMENT_IDS] == ("d1", "d2")
    assert span_attributes(retrieval)[A.RETRIEVAL_SCORES] == (0.9, 0.4)
    assert span_attributes(retrieval)[A.PIPELINE] == "support_answer"
    assert span_attributes(chat)[A.COST_USD] == pytest.approx(100 * 0.15e-6 + 10 * 0.6e-6)
    assert span_attributes(root)[A.TASK_COMPLETED] is True
    assert feedback.links[0].trace_id == root.trace_id
    assert feedback.links[0].span_id == root.span_id


def test_otlp_http_to_a_real_receiver(otlp_http_receiver: tuple[str, ReceivedSpans]) -> None:
    endpoint, received = otlp_http_receiver
    result = run_app(f'"support-bot", endpoint="{endpoint}", headers={{"x-tenant": "t1"}}')
    assert_pipeline_arrived(received, "support-bot")
    assert all(headers.get("x-tenant") == "t1" for headers in received.headers)
    assert '"global": "TracerProvider"' in result.stdout


def test_otlp_grpc_to_a_real_receiver(otlp_grpc_receiver: tuple[str, ReceivedSpans]) -> None:
    endpoint, received = otlp_grpc_receiver
    run_app(f'"grpc-bot", endpoint="{endpoint}", protocol="grpc"')
    assert_pipeline_arrived(received, "grpc-bot")


def test_standard_environment_variables_are_honoured(
    otlp_grpc_receiver: tuple[str, ReceivedSpans],
) -> None:
    endpoint, received = otlp_grpc_receiver
    run_app(
        "",
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_SERVICE_NAME": "from-env",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test",
            "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=secret",
        },
    )
    assert_pipeline_arrived(received, "from-env")
    assert all(headers.get("x-api-key") == "secret" for headers in received.headers)
    request = received.requests[0]
    resource = {
        kv.key: kv.value.string_value for kv in request.resource_spans[0].resource.attributes
    }
    assert resource["deployment.environment"] == "test"


def test_http_endpoint_from_environment(otlp_http_receiver: tuple[str, ReceivedSpans]) -> None:
    endpoint, received = otlp_http_receiver
    run_app('"env-http"', env={"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
    assert_pipeline_arrived(received, "env-http")


def test_sdk_disabled_sends_nothing(otlp_http_receiver: tuple[str, ReceivedSpans]) -> None:
    endpoint, received = otlp_http_receiver
    result = run_app(f'"off", endpoint="{endpoint}"', env={"OTEL_SDK_DISABLED": "true"})
    assert received.spans() == []
    assert '"ref": null' in result.stdout
    assert '"global": "ProxyTracerProvider"' in result.stdout


def test_existing_global_provider_is_left_alone(
    otlp_http_receiver: tuple[str, ReceivedSpans],
) -> None:
    endpoint, received = otlp_http_receiver
    code = textwrap.dedent(
        f"""
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        mine = TracerProvider()
        trace.set_tracer_provider(mine)
        import llmspans
        config = llmspans.configure("ours", endpoint="{endpoint}")
        assert trace.get_tracer_provider() is mine

        @llmspans.action
        def act():
            return 1

        act()
        config.shutdown()
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "already installed" in result.stderr
    assert [span.name for _, span in received.spans()] == ["execute_tool act"]


def test_library_alone_installs_no_global_provider() -> None:
    code = textwrap.dedent(
        """
        from opentelemetry import trace
        import llmspans, llmspans.testing

        @llmspans.pipeline("p")
        def run():
            return llmspans.current_run()

        assert run() is None
        assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
        with llmspans.testing.capture_spans() as spans:
            run()
        assert len(spans) == 1
        assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
        print("clean")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "clean"


def test_unsupported_protocol_is_reported() -> None:
    with pytest.raises(ValueError, match="unsupported OTLP protocol"):
        llmspans.configure(protocol="http/json", tracer_provider=TracerProvider())
    assert _tracing.get_tracer_provider() is None


def test_explicit_tracer_provider_is_used_without_touching_the_global() -> None:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    config = llmspans.configure(tracer_provider=provider, propagate_context=False)
    try:
        assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)

        @llmspans.retrieval("x")
        def search() -> list[str]:
            return ["a"]

        search()
    finally:
        config.shutdown()
    assert [span.name for span in exporter.get_finished_spans()] == ["retrieval x"]
    assert _tracing.get_tracer_provider() is None
    search()  # after shutdown the library is back on the (unset) global provider
    assert len(exporter.get_finished_spans()) == 1


def test_embedded_metrics_on_a_prometheus_endpoint() -> None:
    scrape = textwrap.dedent(
        """
        import urllib.request
        config.force_flush()
        body = urllib.request.urlopen(
            f"http://127.0.0.1:{config.metrics_port}/metrics", timeout=10
        ).read().decode()
        print(body, file=sys.stderr)
        """
    )
    result = run_app(
        '"embedded-bot", embedded=True, metrics_port=0, span_exporter=None',
        env={"OTEL_TRACES_EXPORTER": "none"},
        after=scrape,
    )
    metrics = result.stderr
    assert "llmspans_stage_calls_total{" in metrics
    stage_calls = [
        line
        for line in metrics.splitlines()
        if line.startswith("llmspans_stage_calls_total{") and 'stage="retrieval"' in line
    ]
    assert stage_calls, metrics
    assert 'pipeline="support_answer"' in stage_calls[0]
    assert stage_calls[0].endswith(" 1.0")
    outcomes = [
        line for line in metrics.splitlines() if line.startswith("llmspans_task_outcomes_total{")
    ]
    assert any('outcome="success"' in line and line.endswith(" 1.0") for line in outcomes), outcomes


def _configure_on_a_fixed_port(provider: TracerProvider) -> tuple[llmspans.Configuration, int]:
    """configure() on a port given by number, as users do.

    A port found free a moment ago can be taken by another socket before the server
    binds it; then configure() raises ``OSError`` and another free port is tried.
    """
    for _ in range(5):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        try:
            config = llmspans.configure(
                tracer_provider=provider,
                embedded=True,
                metrics_port=port,
                set_global=False,
                propagate_context=False,
            )
        except OSError:
            continue
        return config, port
    raise AssertionError("no free port in five tries")


def test_embedded_with_an_explicit_provider_and_fixed_port() -> None:
    provider = TracerProvider()
    config, unused_tcp_port = _configure_on_a_fixed_port(provider)
    assert config.metrics_port == unused_tcp_port
    try:

        @llmspans.retrieval("kb")
        def search() -> list[str]:
            return []

        @llmspans.pipeline("empty_search")
        def run() -> None:
            search()

        run()
        config.force_flush()
        body = (
            urllib.request.urlopen(f"http://127.0.0.1:{unused_tcp_port}/metrics", timeout=10)
            .read()
            .decode()
        )
    finally:
        config.shutdown()
    failures = [
        line for line in body.splitlines() if line.startswith("llmspans_stage_failures_total{")
    ]
    assert len(failures) == 1, body
    assert 'stage="retrieval"' in failures[0]
    assert 'reason="empty"' in failures[0]
    assert failures[0].endswith(" 1.0")
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{unused_tcp_port}/metrics", timeout=2)
