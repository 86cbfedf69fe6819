"""OpenLLMetry's chromadb instrumentation on a real chromadb (in process).

``opentelemetry-instrumentation-chromadb`` writes a ``chroma.query`` span with
``db.system`` ``chroma`` and ``db.operation`` ``query`` and one ``db.query.result``
event per document returned: none for an empty result. Its spans go through the
real OTLP/HTTP exporter to a real collector, and are read by every converter.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import chromadb
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmspans
from llmspans import _attributes as A
from llmspans._tracing import use_tracer_provider
from llmspans.instrumentation import instrument, uninstrument
from tests.collector.collector_support import RunningCollector, wait_until
from tests.core.test_conventions import _records

_names = itertools.count()


class Traced:
    """OpenLLMetry's chromadb instrumentor exporting to a collector and to memory."""

    def __init__(self, collector: RunningCollector) -> None:
        from opentelemetry.instrumentation.chromadb import ChromaInstrumentor

        self.provider = TracerProvider()
        self.provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector.http_url))
        )
        self.sent = InMemorySpanExporter()
        self.provider.add_span_processor(SimpleSpanProcessor(self.sent))
        self.instrumentor = ChromaInstrumentor()
        self.instrumentor.instrument(tracer_provider=self.provider)
        self.llmspans_too = False

    def with_llmspans(self) -> None:
        """llmspans' own chromadb instrumentor too, wrapping OpenLLMetry's."""
        assert instrument("chromadb", tracer_provider=self.provider) == ["chromadb"]
        self.llmspans_too = True

    def close(self) -> None:
        if self.llmspans_too:
            uninstrument("chromadb")
        self.instrumentor.uninstrument()
        self.provider.shutdown()


@pytest.fixture
def traced(start_collector: Callable[..., RunningCollector]) -> Iterator[Traced]:
    collector = start_collector()
    found = Traced(collector)
    found.collector = collector  # type: ignore[attr-defined]
    previous = use_tracer_provider(found.provider)
    try:
        yield found
    finally:
        use_tracer_provider(previous)
        found.close()


def _collection() -> Any:
    client = chromadb.EphemeralClient()
    collection = client.create_collection(f"kb{next(_names)}", embedding_function=None)
    collection.add(
        ids=["doc-a", "doc-b", "doc-c"],
        embeddings=[[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]],
        metadatas=[{"lang": "en"}, {"lang": "en"}, {"lang": "de"}],
    )
    return collection


def _collector(traced: Traced) -> RunningCollector:
    collector: RunningCollector = traced.collector  # type: ignore[attr-defined]
    return collector


def test_a_query_that_finds_nothing_is_retrieval_empty(traced: Traced) -> None:
    collection = _collection()

    @llmspans.pipeline("kb")
    def answer() -> list[str]:
        found = collection.query(
            query_embeddings=[[1.0, 0.0]], n_results=2, where={"lang": "fr"}
        )
        return list(found["ids"][0])

    assert answer() == []
    collector = _collector(traced)
    wait_until(lambda: collector.metric("llmspans_task_outcomes_total") == 1, what="one run")
    assert collector.metric(
        "llmspans_stage_failures_total", pipeline="kb", stage="retrieval", reason="empty"
    ) == 1
    assert collector.metric("llmspans_stage_calls_total", pipeline="kb", stage="retrieval") == 1
    records = {record.name: record for record in _records(traced.sent.get_finished_spans())}
    query = records["chroma.query"]
    assert (query.stage, query.document_ids) == (A.STAGE_RETRIEVAL, ())
    assert records["chroma.add"].stage is None  # the other operations are no stage


def test_a_query_that_finds_documents_records_their_ids(traced: Traced) -> None:
    collection = _collection()

    @llmspans.pipeline("kb")
    def answer() -> list[str]:
        found = collection.query(query_embeddings=[[1.0, 0.0]], n_results=2)
        return list(found["ids"][0])

    ids = answer()
    assert ids == ["doc-a", "doc-c"]
    collector = _collector(traced)
    wait_until(lambda: collector.metric("llmspans_task_outcomes_total") == 1, what="one run")
    assert collector.metric("llmspans_stage_failures_total") == 0
    assert collector.metric(
        "llmspans_task_outcomes_total", pipeline="kb", outcome="unverified"
    ) == 1
    records = {record.name: record for record in _records(traced.sent.get_finished_spans())}
    query = records["chroma.query"]
    assert query.stage == A.STAGE_RETRIEVAL
    assert query.document_ids == tuple(ids)
    assert query.scores is None  # OpenLLMetry records distances, not scores


def test_stacked_on_llmspans_own_chromadb_instrumentor_it_is_one_retrieval(
    traced: Traced,
) -> None:
    traced.with_llmspans()
    collection = _collection()

    @llmspans.pipeline("kb")
    def answer() -> list[str]:
        found = collection.query(
            query_embeddings=[[1.0, 0.0]], n_results=2, where={"lang": "fr"}
        )
        return list(found["ids"][0])

    assert answer() == []
    collector = _collector(traced)
    wait_until(lambda: collector.metric("llmspans_task_outcomes_total") == 1, what="one run")
    assert collector.metric(
        "llmspans_stage_failures_total", pipeline="kb", stage="retrieval", reason="empty"
    ) == 1
    assert collector.metric("llmspans_stage_calls_total", pipeline="kb", stage="retrieval") == 1
