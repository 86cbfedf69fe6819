"""The ``gen_ai.client.token.usage`` and ``gen_ai.client.operation.duration`` metrics.

Every client runs against the loopback fake of its API, instrumented with an SDK
MeterProvider whose in-memory reader collects with delta temporality
(conftest), so each test reads what its own calls recorded.
"""

from __future__ import annotations

from typing import Any

import anthropic
import boto3
import litellm
import openai
import pytest
from botocore.config import Config
from google import genai
from google.genai import types
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind

from llmspans import _attributes as attr
from llmspans.instrumentation import _metrics
from llmspans.instrumentation._base import Request, get_tracer, sync_wrapper
from llmspans.instrumentation._genai import Usage, record_usage

from .conftest import Spans, decorated_stage
from .fake_providers import ERROR_MODEL, FakeProviderServer

DURATION = "gen_ai.client.operation.duration"
TOKENS = "gen_ai.client.token.usage"


def _collect(reader: InMemoryMetricReader) -> dict[str, list[HistogramDataPoint]]:
    """Both histograms from one collection (a collection empties the delta)."""
    data = reader.get_metrics_data()
    found: dict[str, list[HistogramDataPoint]] = {DURATION: [], TOKENS: []}
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            assert scope.scope.name == _metrics.METER_NAME
            for metric in scope.metrics:
                points = [p for p in metric.data.data_points if p.count]
                found.setdefault(metric.name, []).extend(points)  # type: ignore[arg-type]
    return found


def _tokens(points: list[HistogramDataPoint]) -> dict[str, float]:
    return {str((p.attributes or {})[_metrics.TOKEN_TYPE]): p.sum for p in points}


@pytest.fixture
def oai(server: FakeProviderServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="k", max_retries=0)


def test_openai_chat_records_duration_and_tokens(
    oai: openai.OpenAI, server: FakeProviderServer, metric_reader: InMemoryMetricReader
) -> None:
    oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Q"}])
    found = _collect(metric_reader)
    [duration] = found[DURATION]
    expected = {
        attr.GEN_AI_OPERATION_NAME: "chat",
        attr.GEN_AI_PROVIDER_NAME: "openai",
        attr.GEN_AI_SYSTEM: "openai",
        attr.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
        attr.GEN_AI_RESPONSE_MODEL: "gpt-4o-mini-2024-07-18",
        attr.SERVER_ADDRESS: "127.0.0.1",
        attr.SERVER_PORT: server.server_address[1],
    }
    assert dict(duration.attributes or {}) == expected
    assert duration.count == 1 and 0 < duration.sum < 30
    assert list(duration.explicit_bounds) == list(_metrics.DURATION_BUCKETS)
    tokens = found[TOKENS]
    assert _tokens(tokens) == {"input": 1200, "output": 300}
    for point in tokens:
        assert {k: v for k, v in (point.attributes or {}).items() if k != _metrics.TOKEN_TYPE} == (
            expected
        )
        assert list(point.explicit_bounds) == list(_metrics.TOKEN_BUCKETS)


def test_an_error_is_recorded_with_its_type_and_no_tokens(
    oai: openai.OpenAI, metric_reader: InMemoryMetricReader
) -> None:
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model=ERROR_MODEL, messages=[{"role": "user", "content": "Q"}])
    found = _collect(metric_reader)
    [duration] = found[DURATION]
    assert (duration.attributes or {})[attr.ERROR_TYPE] == "BadRequestError"
    assert found[TOKENS] == []


def test_a_stream_is_one_operation_with_its_usage(
    oai: openai.OpenAI, metric_reader: InMemoryMetricReader
) -> None:
    stream = oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Q"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    for _ in stream:
        pass
    found = _collect(metric_reader)
    assert len(found[DURATION]) == 1 and found[DURATION][0].count == 1
    assert set(_tokens(found[TOKENS])) == {"input", "output"}


def test_embeddings_are_an_operation(
    oai: openai.OpenAI, metric_reader: InMemoryMetricReader
) -> None:
    oai.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    found = _collect(metric_reader)
    [duration] = found[DURATION]
    assert (duration.attributes or {})[attr.GEN_AI_OPERATION_NAME] == "embeddings"
    assert _tokens(found[TOKENS]) == {"input": 8, "output": 0}


def test_a_call_enriching_a_decorated_stage_still_records(
    oai: openai.OpenAI, spans: Spans, metric_reader: InMemoryMetricReader
) -> None:
    with decorated_stage("generation", "answer"):
        oai.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Q"}]
        )
    found = _collect(metric_reader)
    assert found[DURATION][0].count == 1
    assert _tokens(found[TOKENS]) == {"input": 1200, "output": 300}


def test_litellm_calling_openai_is_one_operation(
    server: FakeProviderServer, spans: Spans, metric_reader: InMemoryMetricReader
) -> None:
    litellm.completion(
        model="openai/gpt-4o-mini",
        messages=[{"role": "user", "content": "Q"}],
        api_base=f"{server.url}/v1",
        api_key="k",
    )
    found = _collect(metric_reader)
    assert sum(p.count for p in found[DURATION]) == 1
    assert _tokens(found[TOKENS]) == {"input": 1200, "output": 300}


def test_anthropic_bedrock_and_gemini_record(
    server: FakeProviderServer, metric_reader: InMemoryMetricReader
) -> None:
    anthropic.Anthropic(base_url=server.url, api_key="k", max_retries=0).messages.create(
        model="claude-3-5-sonnet-20241022",
        max_tokens=10,
        messages=[{"role": "user", "content": "Hi"}],
    )
    boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=server.url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1}),
    ).converse(
        modelId="us.anthropic.claude-3-5-sonnet-20241022-v2:0",
        messages=[{"role": "user", "content": [{"text": "Hi"}]}],
    )
    gemini = genai.Client(
        api_key="k", http_options=types.HttpOptions(base_url=server.url, retry_options=None)
    )
    gemini.models.generate_content(model="gemini-2.0-flash", contents="Hi")
    found = _collect(metric_reader)
    providers = {(p.attributes or {})[attr.GEN_AI_PROVIDER_NAME]: p.count for p in found[DURATION]}
    assert providers == {"anthropic": 1, "aws.bedrock": 1, "gcp.gemini": 1}
    by_provider: dict[tuple[Any, Any], float] = {
        (
            (p.attributes or {})[attr.GEN_AI_PROVIDER_NAME],
            (p.attributes or {})[_metrics.TOKEN_TYPE],
        ): p.sum
        for p in found[TOKENS]
    }
    assert by_provider == {
        ("anthropic", "input"): 30 + 100 + 20,
        ("anthropic", "output"): 12,
        ("aws.bedrock", "input"): 40 + 200 + 10,
        ("aws.bedrock", "output"): 9,
        ("gcp.gemini", "input"): 120,
        ("gcp.gemini", "output"): 8 + 4,
    }


def _client_call(call: Any, result: Any) -> Any:
    record_usage(call, "m", Usage(input_tokens=5, output_tokens=7))
    call.set(attr.GEN_AI_RESPONSE_MODEL, "m-1")
    return result


def _request(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request:
    return Request(
        stage=attr.STAGE_GENERATION,
        name="chat m",
        kind=SpanKind.CLIENT,
        attributes={
            attr.GEN_AI_OPERATION_NAME: "chat",
            attr.GEN_AI_PROVIDER_NAME: "p",
            attr.GEN_AI_REQUEST_MODEL: "m",
        },
    )


def test_an_unsampled_call_is_still_measured() -> None:
    reader = InMemoryMetricReader()
    metrics = _metrics.ClientMetrics(MeterProvider(metric_readers=[reader]))
    tracer = get_tracer(TracerProvider(sampler=ALWAYS_OFF))
    wrapper = sync_wrapper(tracer, "test", _request, _client_call, metrics=metrics)
    assert wrapper(lambda: "result", None, (), {}) == "result"
    found = _collect(reader)
    [duration] = found[DURATION]
    assert (duration.attributes or {})[attr.GEN_AI_RESPONSE_MODEL] == "m-1"
    assert _tokens(found[TOKENS]) == {"input": 5, "output": 7}


class _Watched(_metrics.ClientMetrics):
    __slots__ = ("recorded",)

    def record(self, *args: Any) -> None:
        self.recorded.append(args)


def test_without_a_meter_provider_nothing_is_recorded() -> None:
    metrics = _Watched(NoOpMeterProvider())
    metrics.recorded = []
    assert not metrics.live
    wrapper = sync_wrapper(
        get_tracer(TracerProvider()), "test", _request, _client_call, metrics=metrics
    )
    wrapper(lambda: None, None, (), {})
    assert metrics.recorded == []
    live = _Watched(MeterProvider())
    live.recorded = []
    sync_wrapper(get_tracer(TracerProvider()), "test", _request, _client_call, metrics=live)(
        lambda: None, None, (), {}
    )
    assert len(live.recorded) == 1


def test_instruments_are_created_once_per_provider() -> None:
    provider = MeterProvider()
    assert _metrics.client_metrics(provider) is _metrics.client_metrics(provider)
    assert _metrics.client_metrics(provider) is not _metrics.client_metrics(MeterProvider())


def test_the_global_provider_is_found_without_the_environment_look_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry import metrics
    from opentelemetry.metrics import _internal as api

    monkeypatch.setattr(api, "_METER_PROVIDER", None)
    assert _metrics._global_provider() is None
    assert type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider"
    unset = _metrics.ClientMetrics(None)
    assert not unset.live
    provider = MeterProvider()
    monkeypatch.setattr(api, "_METER_PROVIDER", provider)
    assert _metrics._global_provider() is metrics.get_meter_provider() is provider
    assert unset.live  # asked again: a provider set after the instrumentor counts
