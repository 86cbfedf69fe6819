"""Content capture: off by default, on when asked, redacted, truncated, never leaked."""

from __future__ import annotations

import json
import logging

import pytest

import llmspans
from llmspans import _attributes as A
from llmspans import _content
from llmspans.testing import CapturedSpans

CONTENT_KEYS = (
    A.RETRIEVAL_QUERY,
    A.RETRIEVAL_DOCUMENTS_CONTENT,
    A.GEN_AI_INPUT_MESSAGES,
    A.GEN_AI_OUTPUT_MESSAGES,
    A.GEN_AI_TOOL_CALL_ARGUMENTS,
    A.GEN_AI_TOOL_CALL_RESULT,
)


@llmspans.retrieval(data_source="kb")
def search(query: str) -> list[dict[str, str]]:
    return [{"id": "d1", "text": "The refund window is 30 days."}]


@llmspans.generation(model="m")
def answer(question: str, context: list[str]) -> str:
    llmspans.record_generation(prompt="system: be brief", completion="30 days")
    return "Refunds within 30 days."


@llmspans.action(name="email")
def email(to: str, body: str) -> dict[str, str]:
    return {"status": "sent"}


def run_all() -> None:
    search("refund policy for alice@example.com")
    answer("refund?", ["d1"])
    email("alice@example.com", body="hi")


def all_attributes(spans: CapturedSpans) -> dict[str, object]:
    merged: dict[str, object] = {}
    for span in spans:
        merged.update(span.attributes or {})
    return merged


def test_content_is_off_by_default(spans: CapturedSpans) -> None:
    assert not _content.capture_enabled()
    run_all()
    merged = all_attributes(spans)
    for key in CONTENT_KEYS:
        assert key not in merged
    # ids are always recorded
    assert merged[A.RETRIEVAL_DOCUMENT_IDS] == ("d1",)
    assert _content.prepare_content("anything") is None


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "span_only", "SPAN_AND_EVENT"])
def test_env_variable_turns_capture_on(
    monkeypatch: pytest.MonkeyPatch, spans: CapturedSpans, value: str
) -> None:
    monkeypatch.setenv(_content.CAPTURE_ENV, value)
    _content.reload_environment()
    run_all()
    retrieval = spans.attributes("retrieval kb")
    assert retrieval[A.RETRIEVAL_QUERY] == "refund policy for alice@example.com"
    assert json.loads(str(retrieval[A.RETRIEVAL_DOCUMENTS_CONTENT])) == [
        "The refund window is 30 days."
    ]
    generation = spans.attributes("chat m")
    # What record_generation() states wins over the arguments and the return value.
    assert generation[A.GEN_AI_INPUT_MESSAGES] == "system: be brief"
    assert generation[A.GEN_AI_OUTPUT_MESSAGES] == "30 days"
    action = spans.attributes("execute_tool email")
    assert json.loads(str(action[A.GEN_AI_TOOL_CALL_ARGUMENTS])) == {
        "args": ["alice@example.com"],
        "kwargs": {"body": "hi"},
    }
    assert json.loads(str(action[A.GEN_AI_TOOL_CALL_RESULT])) == {"status": "sent"}


@pytest.mark.parametrize("value", ["false", "", "no_content", "EVENT_ONLY", "0"])
def test_env_variable_other_values_keep_it_off(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(_content.CAPTURE_ENV, value)
    _content.reload_environment()
    assert not _content.capture_enabled()


def test_redaction_hook(spans: CapturedSpans) -> None:
    _content.set_capture(True)
    llmspans.set_redactor(lambda text: text.replace("alice@example.com", "<email>"))
    run_all()
    assert spans.attributes("retrieval kb")[A.RETRIEVAL_QUERY] == "refund policy for <email>"
    assert "alice" not in str(spans.attributes("execute_tool email")[A.GEN_AI_TOOL_CALL_ARGUMENTS])


def test_redactor_returning_none_drops_the_value(spans: CapturedSpans) -> None:
    _content.set_capture(True)
    llmspans.set_redactor(lambda text: None if "@" in text else text)
    run_all()
    assert A.RETRIEVAL_QUERY not in spans.attributes("retrieval kb")
    assert spans.attributes("chat m")[A.GEN_AI_OUTPUT_MESSAGES] == "30 days"


def test_raising_redactor_drops_content_and_logs_once(
    spans: CapturedSpans, caplog: pytest.LogCaptureFixture
) -> None:
    _content.set_capture(True)

    def broken(text: str) -> str:
        raise RuntimeError("redactor bug")

    llmspans.set_redactor(broken)
    with caplog.at_level(logging.WARNING, logger="llmspans"):
        run_all()
        run_all()
    merged = all_attributes(spans)
    for key in CONTENT_KEYS:
        assert key not in merged
    assert merged[A.RETRIEVAL_DOCUMENT_IDS] == ("d1",)
    logged = [r for r in caplog.records if "content.redactor" in r.getMessage()]
    assert len(logged) == 1


def test_truncation_from_env_and_from_code(monkeypatch: pytest.MonkeyPatch) -> None:
    _content.set_capture(True)
    monkeypatch.setenv(_content.MAX_LENGTH_ENV, "20")
    _content.reload_environment()
    text = _content.prepare_content("x" * 100)
    assert text == "x" * (20 - len(_content.TRUNCATION_MARK)) + _content.TRUNCATION_MARK
    assert len(text) == 20
    assert _content.prepare_content("short") == "short"
    _content.set_max_length(5)
    assert _content.prepare_content("abcdefgh") == "abcde"
    with pytest.raises(ValueError):
        _content.set_max_length(-1)


def test_redaction_runs_before_truncation() -> None:
    _content.set_capture(True)
    _content.set_max_length(30)
    seen: list[str] = []

    def redact(text: str) -> str:
        seen.append(text)
        return text.replace("secret", "######")

    _content.set_redactor(redact)
    result = _content.prepare_content("a" * 40 + " secret")
    assert seen == ["a" * 40 + " secret"]
    assert result is not None and len(result) == 30


def test_values_are_serialised_as_json() -> None:
    from dataclasses import dataclass

    @dataclass
    class Point:
        x: int

    _content.set_capture(True)
    assert json.loads(_content.prepare_content({"p": Point(1), "s": {2}}) or "") == {
        "p": {"x": 1},
        "s": [2],
    }
    assert _content.prepare_content(b"bytes") == "bytes"
    assert _content.prepare_content(None) is None
