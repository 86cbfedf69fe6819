"""The stage context in thread pools, threads and asyncio tasks."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import llmspans
from llmspans import _attributes as A
from llmspans._context import current_pipeline
from llmspans._propagation import (
    instrument_thread_pools,
    thread_pools_instrumented,
    uninstrument_thread_pools,
)
from llmspans.testing import CapturedSpans


@llmspans.retrieval(data_source="shard")
def search_shard(shard: int) -> list[str]:
    return [f"s{shard}"]


def fan_out() -> list[list[str]]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(search_shard, range(3)))


def test_thread_pool_work_joins_the_stage_when_instrumented(spans: CapturedSpans) -> None:
    instrument_thread_pools()
    instrument_thread_pools()  # idempotent
    assert thread_pools_instrumented()

    @llmspans.pipeline("fan")
    def run() -> list[list[str]]:
        return fan_out()

    assert run() == [["s0"], ["s1"], ["s2"]]
    root = spans.one("invoke_workflow fan")
    assert root.context is not None
    shards = spans.by_name("retrieval shard")
    assert len(shards) == 3
    for span in shards:
        assert span.parent is not None and span.parent.span_id == root.context.span_id
        assert dict(span.attributes or {})[A.PIPELINE] == "fan"


def test_thread_pool_without_instrumentation_loses_the_parent(spans: CapturedSpans) -> None:
    uninstrument_thread_pools()
    assert not thread_pools_instrumented()

    @llmspans.pipeline("fan")
    def run() -> None:
        fan_out()

    run()
    assert all(span.parent is None for span in spans.by_name("retrieval shard"))


def test_pool_workers_do_not_keep_the_context(spans: CapturedSpans) -> None:
    instrument_thread_pools()
    seen: list[str | None] = []
    with ThreadPoolExecutor(max_workers=1) as pool:

        @llmspans.pipeline("p")
        def run() -> None:
            pool.submit(lambda: seen.append(current_pipeline())).result()

        run()
        pool.submit(lambda: seen.append(current_pipeline())).result()
    assert seen == ["p", None]


def test_bind_context_for_plain_threads(spans: CapturedSpans) -> None:
    @llmspans.pipeline("threaded")
    def run() -> None:
        worker = threading.Thread(target=llmspans.bind_context(lambda: search_shard(9)))
        worker.start()
        worker.join()

    run()
    span = spans.one("retrieval shard")
    root = spans.one("invoke_workflow threaded")
    assert span.parent is not None and root.context is not None
    assert span.parent.span_id == root.context.span_id


async def test_asyncio_tasks_inherit_the_stage(spans: CapturedSpans) -> None:
    @llmspans.action(name="notify")
    async def notify(user: str) -> str:
        await asyncio.sleep(0)
        return user

    @llmspans.pipeline("async_fan")
    async def run() -> list[str]:
        tasks = [asyncio.create_task(notify(u)) for u in ("a", "b")]
        return list(await asyncio.gather(*tasks, notify("c")))

    assert await run() == ["a", "b", "c"]
    root = spans.one("invoke_workflow async_fan")
    assert root.context is not None
    notes = spans.by_name("execute_tool notify")
    assert len(notes) == 3
    assert {span.parent.span_id for span in notes if span.parent} == {root.context.span_id}


async def test_run_in_executor_carries_the_context(spans: CapturedSpans) -> None:
    instrument_thread_pools()

    @llmspans.pipeline("exec")
    async def run() -> list[str]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, search_shard, 4)

    assert await run() == ["s4"]
    span = spans.one("retrieval shard")
    assert dict(span.attributes or {})[A.PIPELINE] == "exec"
