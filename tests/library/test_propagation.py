"""The stage context in thread pools, threads and asyncio tasks."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from opentelemetry.instrumentation.threading import ThreadingInstrumentor

import llmspans
from llmspans import _attributes as A
from llmspans._context import current_pipeline
from llmspans.testing import CapturedSpans

_ORIGINAL_SUBMIT = ThreadPoolExecutor.submit
_ORIGINAL_START = threading.Thread.start


@pytest.fixture
def threads_instrumented() -> Iterator[None]:
    """Thread propagation enabled the way an application does it, for one test."""
    ThreadingInstrumentor().instrument()
    yield
    ThreadingInstrumentor().uninstrument()
    assert ThreadPoolExecutor.submit is _ORIGINAL_SUBMIT


@llmspans.retrieval(data_source="shard")
def search_shard(shard: int) -> list[str]:
    return [f"s{shard}"]


def fan_out() -> list[list[str]]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(search_shard, range(3)))


def _assert_shards_joined_the_run(spans: CapturedSpans, pipeline: str) -> None:
    root = spans.one(f"invoke_workflow {pipeline}")
    assert root.context is not None
    shards = spans.by_name("retrieval shard")
    assert len(shards) == 3
    for span in shards:
        assert span.context is not None and span.context.trace_id == root.context.trace_id
        assert span.parent is not None and span.parent.span_id == root.context.span_id
        assert dict(span.attributes or {})[A.PIPELINE] == pipeline


@pytest.mark.usefixtures("threads_instrumented")
def test_thread_pool_work_joins_the_stage_when_instrumented(spans: CapturedSpans) -> None:
    @llmspans.pipeline("fan")
    def run() -> list[list[str]]:
        return fan_out()

    assert run() == [["s0"], ["s1"], ["s2"]]
    _assert_shards_joined_the_run(spans, "fan")


def test_configure_propagates_into_thread_pools_and_shutdown_undoes_it(
    spans: CapturedSpans,
) -> None:
    config = llmspans.configure(tracer_provider=spans.provider)
    try:
        assert ThreadPoolExecutor.submit is not _ORIGINAL_SUBMIT

        @llmspans.pipeline("fan")
        def run() -> list[list[str]]:
            return fan_out()

        assert run() == [["s0"], ["s1"], ["s2"]]
    finally:
        config.shutdown()
    _assert_shards_joined_the_run(spans, "fan")
    assert ThreadPoolExecutor.submit is _ORIGINAL_SUBMIT
    assert threading.Thread.start is _ORIGINAL_START


@pytest.mark.usefixtures("threads_instrumented")
def test_shutdown_keeps_the_propagation_the_application_enabled(spans: CapturedSpans) -> None:
    llmspans.configure(tracer_provider=spans.provider).shutdown()
    assert ThreadPoolExecutor.submit is not _ORIGINAL_SUBMIT
    assert ThreadingInstrumentor().is_instrumented_by_opentelemetry


def test_configure_without_propagation_leaves_thread_pools_alone(spans: CapturedSpans) -> None:
    config = llmspans.configure(tracer_provider=spans.provider, propagate_context=False)
    try:
        assert ThreadPoolExecutor.submit is _ORIGINAL_SUBMIT
    finally:
        config.shutdown()


_OWN_PROVIDER_APP = textwrap.dedent(
    """
    import sys
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from opentelemetry import trace
    from opentelemetry.instrumentation.threading import ThreadingInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import llmspans

    original_submit = ThreadPoolExecutor.submit
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    if sys.argv[1] == "configure":
        config = llmspans.configure(span_exporter=exporter)
    else:
        ThreadingInstrumentor().instrument()  # as docs/stages.md says, without configure()

    @llmspans.retrieval(data_source="shard")
    def search_shard(shard):
        return [f"s{shard}"]

    @llmspans.pipeline("fan")
    def run():
        with ThreadPoolExecutor(max_workers=2) as pool:
            return list(pool.map(search_shard, range(3)))

    assert run() == [["s0"], ["s1"], ["s2"]]
    if sys.argv[1] == "configure":
        config.shutdown()
        assert ThreadPoolExecutor.submit is original_submit
    (root,) = [s for s in exporter.get_finished_spans() if s.name == "invoke_workflow fan"]
    shards = [s for s in exporter.get_finished_spans() if s.name == "retrieval shard"]
    assert len(shards) == 3, exporter.get_finished_spans()
    for span in shards:
        assert span.context.trace_id == root.context.trace_id
        assert span.parent.span_id == root.context.span_id
        assert span.attributes["llmspans.pipeline"] == "fan"
    print("ok")
    """
)


@pytest.mark.parametrize("setup", ["own provider", "configure"])
def test_thread_pool_stage_joins_the_trace_of_an_own_global_provider(setup: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _OWN_PROVIDER_APP, setup.split(maxsplit=1)[0]],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_thread_pool_without_instrumentation_loses_the_parent(spans: CapturedSpans) -> None:
    assert ThreadPoolExecutor.submit is _ORIGINAL_SUBMIT

    @llmspans.pipeline("fan")
    def run() -> None:
        fan_out()

    run()
    assert all(span.parent is None for span in spans.by_name("retrieval shard"))


@pytest.mark.usefixtures("threads_instrumented")
def test_pool_workers_do_not_keep_the_context(spans: CapturedSpans) -> None:
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


@pytest.mark.usefixtures("threads_instrumented")
async def test_run_in_executor_carries_the_context(spans: CapturedSpans) -> None:

    @llmspans.pipeline("exec")
    async def run() -> list[str]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, search_shard, 4)

    assert await run() == ["s4"]
    span = spans.one("retrieval shard")
    assert dict(span.attributes or {})[A.PIPELINE] == "exec"
