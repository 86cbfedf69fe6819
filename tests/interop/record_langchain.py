"""Record the LangChain traces the interop tests read (``data/*.jsonl``).

    PYTHONPATH=. python tests/interop/record_langchain.py

One small RAG chain in langchain-core (a retriever, a prompt, a fake chat model, an
output parser) run three times: the retriever finds nothing; all goes well; the
model's provider is down. Traced once by OpenInference's LangChain
instrumentation and once by OpenLLMetry's, each written as OTLP JSON lines (one
export request per line, hex ids), as the OpenTelemetry file exporters write them.
The files are committed: the tests read them without these packages running.
"""

from __future__ import annotations

import base64
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnablePassthrough
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

DATA = Path(__file__).parent / "data"


class KnowledgeBase(BaseRetriever):
    """A retriever over a fixed index; ``hits`` is what every query returns."""

    hits: list[Document] = []

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        return list(self.hits)


class UnavailableChatModel(FakeListChatModel):
    """A chat model whose provider is down."""

    def _generate(self, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("model provider unavailable")


def rag_chain(hits: list[Document], *, model_down: bool = False) -> Any:
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from the context: {context}"), ("human", "{question}")]
    )
    answers = ["Refunds take 5 days."]
    model = (
        UnavailableChatModel(responses=answers)
        if model_down
        else FakeListChatModel(responses=answers)
    )
    return (
        {"context": KnowledgeBase(hits=hits), "question": RunnablePassthrough()}
        | prompt
        | model
        | StrOutputParser()
    )


def _hex_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: (
                base64.b64decode(item).hex()
                if key in ("traceId", "spanId", "parentSpanId") and item
                else _hex_ids(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_hex_ids(item) for item in value]
    return value


def record(instrumentor: Any, path: Path) -> int:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor.instrument(tracer_provider=provider)
    try:
        rag_chain([]).invoke("How long do refunds take?")
        found = [Document(page_content="Refunds take 5 days.", id="kb-7", metadata={"score": 0.9})]
        rag_chain(found).invoke("How long do refunds take?")
        with contextlib.suppress(ConnectionError):  # the failure is what is recorded
            rag_chain(found, model_down=True).invoke("How long do refunds take?")
    finally:
        instrumentor.uninstrument()
    spans = exporter.get_finished_spans()
    request = json_format.MessageToDict(encode_spans(spans))
    path.write_text(json.dumps(_hex_ids(request), sort_keys=True) + "\n")
    return len(spans)


def main() -> None:
    from openinference.instrumentation.langchain import LangChainInstrumentor
    from opentelemetry.instrumentation.langchain import LangchainInstrumentor

    DATA.mkdir(exist_ok=True)
    for name, instrumentor in (
        ("openinference_langchain.jsonl", LangChainInstrumentor()),
        ("openllmetry_langchain.jsonl", LangchainInstrumentor()),
    ):
        count = record(instrumentor, DATA / name)
        print(f"{name}: {count} spans", file=sys.stderr)


if __name__ == "__main__":
    main()
