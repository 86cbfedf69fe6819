"""Run references and feedback spans linked to the run's root span."""

from __future__ import annotations

import json

import pytest
from opentelemetry.trace import SpanKind

import llmspans
from llmspans import _attributes as A
from llmspans.testing import CapturedSpans


def test_run_ref_round_trips() -> None:
    ref = llmspans.RunRef(trace_id=0xABC, span_id=0x1F, pipeline="support-answer v2")
    text = ref.to_str()
    assert text == f"{0xABC:032x}-{0x1F:016x}-support-answer v2"
    assert llmspans.RunRef.from_str(text) == ref
    assert str(ref) == text
    as_json = json.dumps(ref.to_dict())
    assert llmspans.RunRef.from_dict(json.loads(as_json)) == ref


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",
        "zz" * 16 + "-" + "1" * 16 + "-p",
        "0" * 32 + "-" + "1" * 16 + "-p",
        "1" * 32 + "-1-p",
    ],
)
def test_run_ref_rejects_malformed_text(text: str) -> None:
    with pytest.raises(ValueError):
        llmspans.RunRef.from_str(text)


def test_feedback_links_to_the_run_root(spans: CapturedSpans) -> None:
    refs: list[llmspans.RunRef | None] = []

    @llmspans.generation(model="m")
    def answer() -> None:
        refs.append(llmspans.current_run())

    @llmspans.pipeline("support_answer")
    def handle() -> None:
        refs.append(llmspans.current_run())
        answer()

    handle()
    ref = refs[0]
    assert ref is not None and refs[1] == ref
    root = spans.one("invoke_workflow support_answer")
    assert root.context is not None
    assert (ref.trace_id, ref.span_id, ref.pipeline) == (
        root.context.trace_id,
        root.context.span_id,
        "support_answer",
    )

    llmspans.feedback(ref.to_str(), kind="edit", edit_ratio=0.4)
    llmspans.feedback(ref.to_dict(), kind="accept")
    edit = spans.one("feedback edit")
    assert edit.kind is SpanKind.INTERNAL
    assert edit.parent is None
    assert edit.context is not None and edit.context.trace_id != root.context.trace_id
    assert dict(edit.attributes or {}) == {
        A.STAGE: "feedback",
        A.PIPELINE: "support_answer",
        A.FEEDBACK_KIND: "edit",
        A.FEEDBACK_EDIT_RATIO: 0.4,
    }
    assert len(edit.links) == 1
    link = edit.links[0].context
    assert (link.trace_id, link.span_id) == (root.context.trace_id, root.context.span_id)
    assert A.FEEDBACK_EDIT_RATIO not in (spans.one("feedback accept").attributes or {})


def test_feedback_inside_another_pipeline_is_still_its_own_trace(spans: CapturedSpans) -> None:
    ref = llmspans.RunRef(trace_id=1, span_id=2, pipeline="old")

    @llmspans.pipeline("new")
    def handle() -> None:
        llmspans.feedback(ref, kind="bypass")

    handle()
    feedback = spans.one("feedback bypass")
    assert feedback.parent is None
    assert dict(feedback.attributes or {})[A.PIPELINE] == "old"


@pytest.mark.parametrize("kind", ["like", "EDIT", ""])
def test_invalid_kind_raises(kind: str, spans: CapturedSpans) -> None:
    with pytest.raises(ValueError, match="accept, edit, bypass, reject"):
        llmspans.feedback(llmspans.RunRef(1, 2, "p"), kind=kind)
    assert len(spans) == 0


@pytest.mark.parametrize("ratio", [-0.1, 1.5, float("nan")])
def test_invalid_edit_ratio_raises(ratio: float) -> None:
    with pytest.raises(ValueError, match="edit_ratio"):
        llmspans.feedback(llmspans.RunRef(1, 2, "p"), kind="edit", edit_ratio=ratio)


def test_untraced_run_and_outside_pipeline(spans: CapturedSpans) -> None:
    assert llmspans.current_run() is None
    llmspans.feedback(None, kind="reject")
    assert len(spans) == 0
    with pytest.raises(ValueError):
        llmspans.feedback("not-a-ref", kind="reject")
