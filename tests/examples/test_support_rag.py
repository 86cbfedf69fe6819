"""The support RAG: BM25, the shipped corpus and labels, the answerers, the traced run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from llmspans import _attributes as A
from llmspans._demo.examples import submodule
from llmspans.core.metrics import context_precision, context_recall
from llmspans.testing import CapturedSpans
from tests.examples.loopback import LoopbackHandler, serving

bm25 = submodule("bm25")
knowledge = submodule("support_rag.knowledge")
answer = submodule("support_rag.answer")
pipeline = submodule("support_rag.pipeline")


def test_bm25_ranks_by_term_weight_and_length() -> None:
    index = bm25.BM25(
        [
            ("a", ["refund", "policy", "annual"]),
            ("b", ["refund"] + ["filler"] * 30),
            ("c", ["sync", "conflict"]),
        ]
    )
    hits = index.search(["refund", "annual"], top_k=5)
    assert [h.id for h in hits] == ["a", "b"]  # c has no query term: not returned
    assert hits[0].score > hits[1].score > 0
    assert index.search(["nothing"], top_k=5) == []
    assert [h.id for h in index.search(["refund"], top_k=1)] == ["a"]


def test_bm25_needs_documents() -> None:
    with pytest.raises(ValueError, match="at least one document"):
        bm25.BM25([])


def test_the_corpus_and_the_labels_are_consistent() -> None:
    kb = knowledge.KnowledgeBase.load()
    questions = knowledge.load_questions()
    assert 40 <= len(kb.documents) <= 80
    assert len(questions) >= 50
    assert len({q.id for q in questions}) == len(questions)
    for q in questions:
        assert q.relevant_ids and set(q.relevant_ids) <= set(kb.documents), q.id


def test_every_labelled_question_retrieves_and_selects_a_relevant_article() -> None:
    kb = knowledge.KnowledgeBase.load()
    precision: list[float] = []
    for q in knowledge.load_questions():
        docs = kb.search(q.question, pipeline.TOP_K)
        ids = [d.id for d in docs]
        assert set(ids) & set(q.relevant_ids), q.question
        recall = context_recall(ids, q.relevant_ids)
        assert recall is not None and recall > 0
        value = context_precision(ids, q.relevant_ids)
        assert value is not None
        precision.append(value)
    assert sum(precision) / len(precision) > 0.8


def test_the_extractive_answerer_quotes_and_cites_a_shown_article() -> None:
    kb = knowledge.KnowledgeBase.load()
    docs = kb.search("How long is the password reset link valid?", 3)
    result = answer.ExtractiveAnswerer().answer("How long is the password reset link valid?", docs)
    assert result.citations == ("kb-002",)
    assert "30 minutes" in result.text
    assert not result.refused and 0.2 <= result.confidence <= 0.95
    assert result.input_tokens > result.output_tokens > 0
    refusal = answer.ExtractiveAnswerer().answer("What is the refund policy?", [])
    assert refusal.refused and refusal.citations == ()


class _ChatHandler(LoopbackHandler):
    """A minimal OpenAI-compatible ``/v1/chat/completions`` endpoint."""

    requests: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        reply = {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"] + "-2024-07-18",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {
                        "role": "assistant",
                        "content": "The link is valid for 30 minutes [kb-002].\nConfidence: 0.85",
                    },
                }
            ],
            "usage": {"prompt_tokens": 321, "completion_tokens": 17, "total_tokens": 338},
        }
        self.reply(json.dumps(reply).encode(), "application/json")


@pytest.fixture
def chat_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with serving(_ChatHandler) as base:
        url = f"{base}/v1"
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        _ChatHandler.requests = []
        yield url


def test_an_openai_compatible_endpoint_answers_when_configured(
    chat_server: str, spans: CapturedSpans
) -> None:
    pytest.importorskip("openai")
    chosen = answer.default_answerer()
    assert isinstance(chosen, answer.ChatAnswerer)
    bot = pipeline.SupportRag(answerer=chosen)
    reply = bot.handle(
        "How long is the password reset link valid?", ticket_id="T-1", relevant_ids=["kb-002"]
    )
    assert reply.answer is not None and reply.answer.citations == ("kb-002",)
    assert reply.answer.confidence == 0.85
    sent = _ChatHandler.requests[0]["messages"]
    assert sent[0]["role"] == "system" and "[kb-002]" in sent[1]["content"]
    generation = spans.by_stage("generation")
    assert len(generation) == 1
    attributes = generation[0].attributes
    assert attributes[A.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    assert attributes[A.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini-2024-07-18"
    assert attributes[A.GEN_AI_USAGE_INPUT_TOKENS] == 321
    assert attributes[A.GENERATION_CITATIONS] == ("kb-002",)
    assert attributes[A.COST_USD] > 0


def test_without_an_endpoint_the_answerer_is_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert isinstance(answer.default_answerer(), answer.ExtractiveAnswerer)


def test_a_run_traces_every_stage_with_its_facts(
    pipelines: dict[str, Any], spans: CapturedSpans
) -> None:
    bot = pipelines["support_rag"]
    reply = bot.run(0)  # "How long is the password reset link valid?"
    assert reply.reply_id is not None and bot.tickets.reply_exists(reply.reply_id, reply.ticket_id)
    assert spans.names() == [
        "retrieval nimbus-help-centre",
        "context_selection select",
        "chat nimbus-extractive-1",
        "execute_tool post_reply",
        "invoke_workflow support_rag",
    ]
    root = spans.one("invoke_workflow support_rag")
    for span in spans:
        if span is not root:
            assert span.parent is not None and span.parent.span_id == root.context.span_id
            assert span.attributes[A.PIPELINE] == "support_rag"
    retrieval = spans.attributes("retrieval nimbus-help-centre")
    assert retrieval[A.RETRIEVAL_DOCUMENT_IDS][0] == "kb-002"
    assert len(retrieval[A.RETRIEVAL_SCORES]) == len(retrieval[A.RETRIEVAL_DOCUMENT_IDS])
    assert retrieval[A.RETRIEVAL_RELEVANT_IDS] == ("kb-002",)
    selection = spans.attributes("context_selection select")
    assert selection[A.CONTEXT_INPUT_IDS] == retrieval[A.RETRIEVAL_DOCUMENT_IDS]
    assert selection[A.CONTEXT_TOKENS] <= selection[A.CONTEXT_TOKEN_BUDGET] == pipeline.TOKEN_BUDGET
    generation = spans.attributes("chat nimbus-extractive-1")
    assert set(generation[A.GENERATION_CITATIONS]) <= set(selection[A.CONTEXT_SELECTED_IDS])
    assert generation[A.GEN_AI_PROVIDER_NAME] == "llmspans.examples"
    assert spans.attributes("execute_tool post_reply")[A.ACTION_VERIFIED] is True
    assert root.attributes[A.TASK_COMPLETED] is True
    assert root.attributes[A.TASK_CORRECT] is True


def test_a_failing_stage_is_recorded_and_the_bot_still_answers(
    pipelines: dict[str, Any], spans: CapturedSpans, faults: Any
) -> None:
    with faults.injecting(("retrieval", "error")):
        reply = pipelines["support_rag"].run(1)
    assert reply.error == "InjectedFault" and reply.reply_id is None
    retrieval = spans.one("retrieval nimbus-help-centre")
    assert retrieval.status.status_code.name == "ERROR"
    assert retrieval.attributes[A.ERROR_TYPE].endswith("InjectedFault")
    assert spans.by_stage("generation") == []
    assert spans.one("invoke_workflow support_rag").attributes[A.TASK_COMPLETED] is False
