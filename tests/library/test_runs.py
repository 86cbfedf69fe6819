"""What a run records at its root: segment, source, evaluation sampling, claims."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import llmspans
from llmspans import _attributes as A
from llmspans import _content
from llmspans._configure import _apply_settings
from llmspans._runs import RunLabels, run_labels
from llmspans._state import STATE
from llmspans.collector.evaluation import request_without_content
from llmspans.core.judging import should_sample
from llmspans.testing import CapturedSpans


@llmspans.retrieval("faq")
def _search(question: str) -> list[dict[str, Any]]:
    return [{"id": "doc-1", "text": "refunds take 5 days", "score": 0.9}]


@llmspans.generation("gpt-4o-mini", provider="openai")
def _answer(question: str, docs: list[dict[str, Any]]) -> str:
    llmspans.record_generation(
        citations=["doc-1"], claims={"doc-1": "refunds take 5 days"}, completion="5 days"
    )
    return "5 days"


def _classify(question: str) -> str:
    return "billing" if "refund" in question else "small_talk"


@llmspans.pipeline("support", segment=_classify)
def _support(question: str) -> str:
    return _answer(question, _search(question))


@llmspans.pipeline("fixed", segment="billing")
def _fixed(question: str, override: str | None = None) -> str:
    if override is not None:
        llmspans.set_segment(override)
    return question


def _root(spans: CapturedSpans, name: str) -> dict[str, Any]:
    return dict(spans.attributes(f"invoke_workflow {name}"))


def test_segment_from_a_function_of_the_arguments(spans: CapturedSpans) -> None:
    _support("when is my refund?")
    assert _root(spans, "support")[A.SEGMENT] == "billing"
    spans.clear()
    _support("hello")
    assert _root(spans, "support")[A.SEGMENT] == "small_talk"


def test_set_segment_wins_over_the_decorator(spans: CapturedSpans) -> None:
    _fixed("q")
    assert _root(spans, "fixed")[A.SEGMENT] == "billing"
    spans.clear()
    _fixed("q", override="refund_eligibility")
    assert _root(spans, "fixed")[A.SEGMENT] == "refund_eligibility"


def test_a_segment_function_that_raises_never_reaches_the_app(spans: CapturedSpans) -> None:
    @llmspans.pipeline("broken", segment=lambda question: 1 / 0)
    def broken(question: str) -> str:
        return question.upper()

    assert broken("q") == "Q"
    assert A.SEGMENT not in _root(spans, "broken")


def test_source_from_configuration_context_and_environment(
    spans: CapturedSpans, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fixed("q")
    assert A.RUN_SOURCE not in _root(spans, "fixed")  # production: the default, unset
    with llmspans.run_source("offline"):
        spans.clear()
        _fixed("q")
        assert _root(spans, "fixed")[A.RUN_SOURCE] == "offline"
    # The variable is read once, at the first run, like the content variables: set
    # later in a running process it changes nothing until the environment is read again.
    monkeypatch.setenv("LLMSPANS_RUN_SOURCE", "shadow")
    spans.clear()
    _fixed("q")
    assert A.RUN_SOURCE not in _root(spans, "fixed")
    _content.reload_environment()
    spans.clear()
    _fixed("q")
    assert _root(spans, "fixed")[A.RUN_SOURCE] == "shadow"
    with pytest.raises(ValueError, match="production, offline, shadow"), llmspans.run_source("x"):
        pass


def test_sampled_runs_record_what_a_judge_needs_with_capture_off(spans: CapturedSpans) -> None:
    _apply_settings(
        capture_content=False,
        content_max_length=None,
        redact=None,
        price_table=None,
        propagate_context=False,
        sample_rate=1.0,
    )
    _support("when is my refund?")
    root = _root(spans, "support")
    assert root[A.EVALUATION_SAMPLED] is True
    generation = dict(spans.by_stage(A.STAGE_GENERATION)[0].attributes or {})
    assert json.loads(str(generation[A.GENERATION_CLAIMS])) == {"doc-1": "refunds take 5 days"}
    assert A.GEN_AI_OUTPUT_MESSAGES in generation
    # an unsampled run records no content
    STATE.sample_rate = 0.0
    spans.clear()
    _support("when is my refund?")
    assert A.EVALUATION_SAMPLED not in _root(spans, "support")
    generation = dict(spans.by_stage(A.STAGE_GENERATION)[0].attributes or {})
    assert A.GENERATION_CLAIMS not in generation and A.GEN_AI_OUTPUT_MESSAGES not in generation


def test_sampling_follows_the_trace_id_and_per_segment_rates(spans: CapturedSpans) -> None:
    STATE.sample_rate = 0.3
    STATE.sample_rates = {"billing": 1.0}
    for index in range(40):
        _support("refund" if index % 2 else "hello")
    for root in spans.by_stage(A.STAGE_PIPELINE):
        attributes = dict(root.attributes or {})
        context = root.get_span_context()
        assert context is not None
        expected = should_sample(
            context.trace_id, 0.3, str(attributes[A.SEGMENT]), {"billing": 1.0}
        )
        assert attributes.get(A.EVALUATION_SAMPLED, False) is expected
        if attributes[A.SEGMENT] == "billing":
            assert expected


def test_bad_rates_and_sources_are_refused_at_configure(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="sample rate"):
        llmspans.configure(evaluation_sample_rate=1.5, span_exporter=None, set_global=False)
    with pytest.raises(ValueError, match="run source"):
        llmspans.configure(source="prod", set_global=False)
    monkeypatch.setenv("LLMSPANS_EVALUATION_SAMPLE_RATE", "lots")
    with pytest.raises(ValueError, match="LLMSPANS_EVALUATION_SAMPLE_RATE"):
        llmspans.configure(set_global=False)


@llmspans.action("refund")
def _refund(order: str) -> str:
    return f"refunded {order}"


@llmspans.pipeline("support_action")
def _support_and_act(question: str) -> str:
    answer = _answer(question, _search(question))
    _refund("order-1")
    return answer


def _settings(*, capture: bool, rate: float) -> None:
    _apply_settings(
        capture_content=capture,
        content_max_length=None,
        redact=None,
        price_table=None,
        propagate_context=False,
        sample_rate=rate,
    )


def _forwarded(spans: CapturedSpans) -> tuple[bytes, bytes]:
    """The spans as an OTLP request, and what the collector forwards of it."""
    payload = encode_spans(spans.spans).SerializeToString()
    return payload, request_without_content(payload)


def _decoded(payload: bytes) -> dict[str, dict[str, Any]]:
    request = ExportTraceServiceRequest.FromString(payload)
    return {
        span.name: {kv.key: kv.value for kv in span.attributes}
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    }


def test_content_recorded_only_for_the_judge_is_marked_and_stripped(spans: CapturedSpans) -> None:
    """Capture off, run sampled: every span with content says so, and the collector's
    forwarding removes that content (ids and the rest stay)."""
    _settings(capture=False, rate=1.0)
    _support_and_act("when is my refund?")
    with_content = [
        span for span in spans if A.CONTENT_ATTRIBUTES & set(dict(span.attributes or {}))
    ]
    assert {dict(s.attributes or {})[A.STAGE] for s in with_content} == {
        A.STAGE_RETRIEVAL,
        A.STAGE_GENERATION,
        A.STAGE_ACTION,
    }
    for span in spans:
        attributes = dict(span.attributes or {})
        assert attributes.get(A.EVALUATION_SAMPLED_CONTENT, False) is (span in with_content)
    payload, forwarded = _forwarded(spans)
    assert forwarded != payload
    for name, attributes in _decoded(forwarded).items():
        assert not A.CONTENT_ATTRIBUTES & set(attributes), name
    retrieval = _decoded(forwarded)["retrieval faq"]
    assert [v.string_value for v in retrieval[A.RETRIEVAL_DOCUMENT_IDS].array_value.values] == [
        "doc-1"
    ]


def test_content_captured_on_purpose_or_unsampled_runs_pass_unchanged(
    spans: CapturedSpans,
) -> None:
    # capture on and the run sampled: the content was wanted anyway, not marked
    _settings(capture=True, rate=1.0)
    _support_and_act("when is my refund?")
    assert _root(spans, "support_action")[A.EVALUATION_SAMPLED] is True
    assert all(A.EVALUATION_SAMPLED_CONTENT not in dict(s.attributes or {}) for s in spans)
    payload, forwarded = _forwarded(spans)
    assert forwarded is payload
    assert A.GENERATION_CLAIMS in _decoded(forwarded)["chat gpt-4o-mini"]
    # capture off and the run not sampled: no content, no mark
    spans.clear()
    _settings(capture=False, rate=0.0)
    _support_and_act("when is my refund?")
    for span in spans:
        assert not (A.CONTENT_ATTRIBUTES | {A.EVALUATION_SAMPLED_CONTENT}) & set(
            dict(span.attributes or {})
        )
    payload, forwarded = _forwarded(spans)
    assert forwarded is payload


def _content_keys_written(path: Path) -> set[str]:
    """The attribute names a module passes as content: keys of ``content={...}`` and
    ``set_content({...})``, and the key argument of ``_put_content``."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
        candidates: list[ast.expr] = []
        if name == "set_content" and node.args and isinstance(node.args[0], ast.Dict):
            candidates.extend(key for key in node.args[0].keys if key is not None)
        if name == "_put_content" and len(node.args) >= 2:
            candidates.append(node.args[1])
        for keyword in node.keywords:
            if keyword.arg == "content" and isinstance(keyword.value, ast.Dict):
                candidates.extend(key for key in keyword.value.keys if key is not None)
        for candidate in candidates:
            assert isinstance(candidate, ast.Attribute), ast.dump(candidate)
            found.add(getattr(A, candidate.attr))
    return found


def test_every_content_attribute_the_library_writes_is_stripped() -> None:
    """The strip list is complete: each content key the decorators, the record_*
    helpers and the instrumentors write is in CONTENT_ATTRIBUTES."""
    package = Path(llmspans.__file__).parent
    written: set[str] = set()
    for path in [
        package / "_decorators.py",
        package / "_recording.py",
        *sorted((package / "instrumentation").glob("*.py")),
    ]:
        written |= _content_keys_written(path)
    assert A.GEN_AI_INPUT_MESSAGES in written and A.RETRIEVAL_QUERY in written
    assert written <= A.CONTENT_ATTRIBUTES, written - A.CONTENT_ATTRIBUTES


@llmspans.pipeline("plain")
def _plain(question: str) -> str:
    return question.upper()


def test_run_facts_set_up_after_the_first_run_reach_the_next_runs(spans: CapturedSpans) -> None:
    # A pipeline without segment= skips its hooks while nothing run-level is set up
    # (one flag and two context lookups): each way of setting a source, a sample or
    # labels later must reach the next run.
    settings: dict[str, Any] = {
        "capture_content": None,
        "content_max_length": None,
        "redact": None,
        "price_table": None,
        "propagate_context": False,
    }
    _plain("q")
    assert STATE.run_facts is False  # the environment was read: nothing applies
    facts = {A.RUN_SOURCE, A.SEGMENT, A.EVALUATION_SAMPLED, A.TASK_CORRECT}
    assert facts.isdisjoint(_root(spans, "plain"))
    previous = _apply_settings(**settings, source="shadow")
    spans.clear()
    _plain("q")
    assert _root(spans, "plain")[A.RUN_SOURCE] == "shadow"
    previous.restore(None)
    assert STATE.run_facts is False
    with llmspans.run_source("offline"):
        spans.clear()
        _plain("q")
        assert _root(spans, "plain")[A.RUN_SOURCE] == "offline"
    with run_labels(RunLabels(segment="billing", check=lambda result: result == "Q")):
        spans.clear()
        _plain("q")
        root = _root(spans, "plain")
        assert root[A.SEGMENT] == "billing" and root[A.TASK_CORRECT] is True
    _apply_settings(**settings, sample_rate=1.0)
    spans.clear()
    _plain("q")
    assert _root(spans, "plain")[A.EVALUATION_SAMPLED] is True
