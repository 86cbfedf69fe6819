"""The LLM judge against a loopback OpenAI-compatible server: good verdicts, malformed
and hostile replies, slow replies past the timeout, retries, an exhausted budget."""

from __future__ import annotations

import json

import pytest

from llmspans.evaluation import Document, EvaluationRunner, JudgeError, LLMJudge, Run

from .fake_judge import FakeJudgeServer, chat_reply

RUN = Run(
    pipeline="support",
    trace_id="ab" * 16,
    input="How long does a refund take?",
    documents=(
        Document("d-refund", "A refund takes 5 days.", 0.9),
        Document("d-hours", "We open at 9.", 0.5),
    ),
    answer="Refunds take 5 days.",
    citations={"d-refund": "A refund takes 5 days", "d-hours": "refunds are instant"},
)
GOOD = json.dumps(
    {
        "relevant_ids": ["d-refund", "never-retrieved"],
        "citations": {"d-refund": "supported", "d-hours": "unsupported", "zzz": "supported"},
        "correct": "correct",
        "explanation": "The refund document says 5 days.",
    }
)


def _judge(server: FakeJudgeServer, **options: object) -> LLMJudge:
    return LLMJudge(
        server.url,
        "judge-model",
        api_key_env="LLMSPANS_TEST_JUDGE_KEY",
        usd_per_input_token=1e-6,
        usd_per_output_token=2e-6,
        **options,  # type: ignore[arg-type]
    )


def test_a_verdict_becomes_a_judgment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMSPANS_TEST_JUDGE_KEY", "sk-test")
    with FakeJudgeServer([(200, chat_reply(GOOD), 0.0)]) as server:
        judgment = _judge(server)(RUN)
    assert judgment.relevant_ids == ["d-refund"]  # the id never retrieved is left out
    assert judgment.supported_citations == ["d-refund"]
    assert judgment.unsupported_citations == ["d-hours"]
    assert judgment.correct is True
    assert judgment.cost_usd == pytest.approx(1000 * 1e-6 + 50 * 2e-6)
    (request,) = server.requests
    assert request["authorization"] == "Bearer sk-test"
    prompt = request["body"]["messages"][1]["content"]
    assert "[Question]: How long does a refund take?" in prompt
    assert '[Reference "d-refund"]: A refund takes 5 days.' in prompt
    assert request["body"]["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize(
    "content",
    [
        "I think it is relevant.",  # not JSON
        json.dumps({"relevant_ids": "d-refund", "correct": "correct"}),  # wrong shape
        json.dumps({"relevant_ids": [], "correct": "maybe"}),  # not one of the rails
        "[" * 50_000 + "]" * 50_000,  # deeply nested
        json.dumps({"relevant_ids": ["x"] * 20_000, "correct": "correct"}),  # too many ids
    ],
)
def test_a_malformed_verdict_is_an_error_never_a_guess(content: str) -> None:
    with FakeJudgeServer([(200, chat_reply(content), 0.0)]) as server:
        with pytest.raises(JudgeError):
            _judge(server)(RUN)
        assert len(server.requests) == 1  # a malformed reply is not retried


def test_a_huge_reply_is_refused_unread() -> None:
    huge = chat_reply("x" * 2_000_000)
    with FakeJudgeServer([(200, huge, 0.0)]) as server, pytest.raises(JudgeError, match="larger"):
        _judge(server)(RUN)


def test_server_errors_are_retried_then_counted() -> None:
    with FakeJudgeServer([(500, b"{}", 0.0), (200, chat_reply(GOOD), 0.0)]) as server:
        assert _judge(server, retries=1)(RUN).correct is True
    with FakeJudgeServer([(503, b"{}", 0.0)]) as server:
        with pytest.raises(JudgeError, match="no reply after 2 attempts"):
            _judge(server, retries=1)(RUN)
        assert len(server.requests) == 2


def test_what_is_sent_is_bounded() -> None:
    text = "t" * 100_000
    many = Run(
        pipeline="p",
        input="q" * 100_000,
        documents=tuple(Document(f"d{i}", text) for i in range(100_000)),
        answer="a",
    )
    judge = LLMJudge("http://127.0.0.1:9/v1", "m", max_documents=20, max_document_chars=4000)
    prompt = judge.prompt(many)
    assert prompt.count("[Reference ") == 20
    assert len(prompt) < 20 * 4100 + 5000


def test_the_runner_counts_slow_and_malformed_replies_and_keeps_the_budget() -> None:
    replies = [(200, chat_reply("not json"), 0.0), (200, chat_reply(GOOD), 2.0)]
    with FakeJudgeServer(replies) as server:
        runner: EvaluationRunner[int] = EvaluationRunner(
            [("llm", _judge(server, retries=0, timeout_s=5.0))],
            timeout_s=0.5,
            concurrency=1,
        )
        runner.submit(0, RUN)
        runner.submit(1, RUN)
        assert runner.drain(10.0)
        outcomes, _ = runner.take()
        runner.close(timeout_s=0.1)
    assert sorted(outcome.status for outcome in outcomes) == ["error", "timeout"]

    with FakeJudgeServer([(200, chat_reply(GOOD, 100_000, 0), 0.0)]) as server:
        runner = EvaluationRunner([("llm", _judge(server))], usd_per_hour=0.15, concurrency=1)
        for index in range(4):
            runner.submit(index, RUN)
        assert runner.drain(10.0)
        outcomes, dropped = runner.take()
        runner.close()
    # 0.10 dollars per call: the second call starts below 0.15, the rest are over budget
    assert [outcome.status for outcome in outcomes] == ["ok", "ok"]
    assert dropped == {"budget_usd": 2}
    assert len(server.requests) == 2
