"""Shadow runs: the candidate runs on sampled copies, never touching the live call."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import llmspans
from llmspans import _attributes as A
from llmspans.testing import CapturedSpans


def _wait(condition: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@llmspans.pipeline("candidate")
def _candidate(question: dict[str, Any]) -> str:
    question["seen"] = True  # mutates its copy only
    return "candidate answer"


def test_the_candidate_runs_on_a_copy_as_a_shadow_run_of_its_own(spans: CapturedSpans) -> None:
    @llmspans.shadow(_candidate, rate=1.0)
    @llmspans.pipeline("live")
    def live(question: dict[str, Any]) -> str:
        return "live answer"

    question: dict[str, Any] = {"text": "refund?"}
    assert live(question) == "live answer"
    assert question == {"text": "refund?"}
    stats = live.shadow_stats  # type: ignore[attr-defined]
    _wait(lambda: stats.completed == 1)
    _wait(lambda: len(spans.by_name("invoke_workflow candidate")) == 1)
    shadow_root = spans.one("invoke_workflow candidate")
    live_root = spans.one("invoke_workflow live")
    assert (shadow_root.attributes or {})[A.RUN_SOURCE] == "shadow"
    assert A.RUN_SOURCE not in (live_root.attributes or {})
    assert shadow_root.parent is None
    assert shadow_root.context is not None and live_root.context is not None
    assert shadow_root.context.trace_id != live_root.context.trace_id


def test_a_raising_or_hanging_candidate_changes_nothing_for_the_caller(
    spans: CapturedSpans,
) -> None:
    release = threading.Event()
    entered = threading.Event()

    def hanging(question: str) -> str:
        entered.set()
        release.wait(timeout=60)
        raise RuntimeError("candidate bug")

    @llmspans.shadow(hanging, rate=1.0, backlog=2)
    def live(question: str) -> str:
        return question.upper()

    assert live("q") == "Q"
    _wait(entered.is_set)  # the one worker is now stuck in the candidate
    started = time.monotonic()
    answers = [live("q") for _ in range(19)]
    took = time.monotonic() - started
    assert answers == ["Q"] * 19
    assert took < 5, f"19 live calls took {took:.2f} s with a hanging candidate"
    stats = live.shadow_stats  # type: ignore[attr-defined]
    # one running (hung), two waiting, the rest dropped and counted
    assert stats.sampled == 20 and stats.dropped == 17
    release.set()
    _wait(lambda: stats.failed == 3)
    assert stats.completed == 0


def test_sampling_rate_and_async_live_functions() -> None:
    calls: list[int] = []

    async def candidate(value: int) -> None:
        calls.append(value)

    @llmspans.shadow(candidate, rate=0.1, seed=3, backlog=1000)
    async def live(value: int) -> int:
        return value * 2

    import asyncio

    async def main() -> list[int]:
        return [await live(index) for index in range(2000)]

    assert asyncio.run(main()) == [index * 2 for index in range(2000)]
    stats = live.shadow_stats  # type: ignore[attr-defined]
    _wait(lambda: stats.completed == stats.sampled)
    assert 140 <= stats.sampled <= 260  # 10 % of 2000, with a fixed seed
    assert len(calls) == stats.sampled
    with pytest.raises(ValueError, match="rate"):
        llmspans.shadow(candidate, rate=2.0)
