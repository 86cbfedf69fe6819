"""Amazon Bedrock (boto3 bedrock-runtime) against a loopback endpoint that answers like it."""

from __future__ import annotations

import json
from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from llmspans import _attributes as attr
from llmspans.cost import cost_usd

from .conftest import Spans, decorated_stage, pipeline_root
from .fake_providers import BEDROCK_TEXT, ERROR_MODEL, FakeProviderServer

MODEL = "us.anthropic.claude-3-5-sonnet-20241022-v2:0"
MESSAGES = [{"role": "user", "content": [{"text": "Say hi."}]}]


@pytest.fixture
def bedrock(server: FakeProviderServer) -> Any:
    return boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=server.url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1}),
    )


def test_converse_is_a_generation_span(
    bedrock: Any, server: FakeProviderServer, spans: Spans
) -> None:
    with pipeline_root("assistant"):
        response = bedrock.converse(
            modelId=MODEL,
            messages=MESSAGES,
            inferenceConfig={"maxTokens": 50, "temperature": 0.4, "stopSequences": ["END"]},
        )
    assert response["output"]["message"]["content"][0]["text"] == "".join(BEDROCK_TEXT)
    span = spans.one(f"chat {MODEL}")
    assert span.kind.name == "CLIENT"
    attributes = spans.attributes(f"chat {MODEL}")
    assert attributes[attr.STAGE] == "generation"
    assert attributes[attr.PIPELINE] == "assistant"
    assert attributes[attr.GEN_AI_PROVIDER_NAME] == "aws.bedrock"
    assert attributes[attr.GEN_AI_REQUEST_MODEL] == MODEL
    assert attributes[attr.GEN_AI_REQUEST_MAX_TOKENS] == 50
    assert attributes[attr.GEN_AI_REQUEST_TEMPERATURE] == pytest.approx(0.4)
    assert attributes[attr.GEN_AI_REQUEST_STOP_SEQUENCES] == ["END"]
    assert attributes[attr.GEN_AI_REQUEST_STREAM] is False
    assert attributes[attr.GEN_AI_RESPONSE_FINISH_REASONS] == ["end_turn"]
    assert attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] == 40 + 200 + 10
    assert attributes[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 9
    assert attributes[attr.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 200
    expected = cost_usd(
        "claude-3-5-sonnet-20241022",
        250,
        9,
        cache_read_input_tokens=200,
        cache_creation_input_tokens=10,
    )
    assert expected is not None
    assert attributes[attr.COST_USD] == pytest.approx(expected)
    assert attributes[attr.SERVER_ADDRESS] == "127.0.0.1"
    assert attributes[attr.SERVER_PORT] == server.server_address[1]


def test_converse_stream_span_covers_the_stream(bedrock: Any, spans: Spans) -> None:
    response = bedrock.converse_stream(modelId=MODEL, messages=MESSAGES)
    assert spans.all() == []
    text = "".join(
        event["contentBlockDelta"]["delta"]["text"]
        for event in response["stream"]
        if "contentBlockDelta" in event
    )
    assert text == "".join(BEDROCK_TEXT)
    attributes = spans.attributes(f"chat {MODEL}")
    assert attributes[attr.GEN_AI_REQUEST_STREAM] is True
    assert attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] == 40
    assert attributes[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 9
    assert attributes[attr.GEN_AI_RESPONSE_FINISH_REASONS] == ["end_turn"]
    assert attributes[attr.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK] > 0


def test_invoke_model_tokens_from_headers_body_left_unread(bedrock: Any, spans: Spans) -> None:
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64, "messages": MESSAGES}
    response = bedrock.invoke_model(modelId=MODEL, body=json.dumps(body))
    assert json.loads(response["body"].read())["content"][0]["text"] == "".join(BEDROCK_TEXT)
    attributes = spans.attributes(f"chat {MODEL}")
    assert attributes[attr.GEN_AI_REQUEST_MAX_TOKENS] == 64
    assert attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] == 25
    assert attributes[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 6
    assert attributes[attr.COST_USD] > 0


def test_invoke_model_with_response_stream(bedrock: Any, spans: Spans) -> None:
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64, "messages": MESSAGES}
    response = bedrock.invoke_model_with_response_stream(modelId=MODEL, body=json.dumps(body))
    chunks = [json.loads(event["chunk"]["bytes"]) for event in response["body"]]
    assert chunks[-1]["type"] == "message_stop"
    attributes = spans.attributes(f"chat {MODEL}")
    assert attributes[attr.GEN_AI_REQUEST_STREAM] is True
    assert attributes[attr.GEN_AI_USAGE_INPUT_TOKENS] == 25
    assert attributes[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 6
    assert attributes[attr.GEN_AI_RESPONSE_FINISH_REASONS] == ["end_turn"]


def test_enriches_a_decorated_generation(bedrock: Any, spans: Spans) -> None:
    with decorated_stage("generation", "reply"):
        bedrock.converse(modelId=MODEL, messages=MESSAGES)
    assert spans.names() == ["chat reply"]
    assert spans.attributes()[attr.GEN_AI_USAGE_OUTPUT_TOKENS] == 9


def test_error_marks_the_span(bedrock: Any, spans: Spans) -> None:
    with pytest.raises(botocore.exceptions.ClientError):
        bedrock.converse(modelId=ERROR_MODEL, messages=MESSAGES)
    span = spans.one()
    assert span.status.status_code.name == "ERROR"
    assert spans.attributes()[attr.ERROR_TYPE] == "ValidationException"


def test_other_services_are_not_traced(server: FakeProviderServer, spans: Spans) -> None:
    s3 = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url=server.url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(botocore.exceptions.ClientError):
        s3.list_buckets()
    assert spans.all() == []
