"""Decorator overhead: the cost of one stage span, in one process, per library.

    python benchmarks/bench_decorators.py [--rounds 11] [--calls 1000] [--quick] [--profile]

Every variant traces through the same ``TracerProvider`` with the same
``SimpleSpanProcessor`` and a no-op exporter, so what differs is only what each
library does per call:

- ``undecorated``: the plain function (a retrieval returning 10 documents with
  ids and scores);
- ``raw span``: ``tracer.start_as_current_span`` around it, no attributes;
- ``raw span + attrs``: the same span carrying the attributes the llmspans span
  carries (stage, pipeline, operation, data source, top k, document ids and scores
  read from the result; tokens, citations and cost for a generation): what a
  careful hand-instrumentation costs;
- ``llmspans``: the stage decorators, sync, async and generator, with
  realistic attributes (a retrieval returning 10 documents; a generation
  recording tokens, citations and cost via ``record_generation``);
- ``pipeline run``: a pipeline with a retrieval and a generation (3 spans), raw,
  with llmspans, and with llmspans through a provider that also holds
  ``EmbeddedProcessor`` (in-process attribution and metrics);
- ``OpenLLMetry @task``, ``OpenInference @tracer.chain``, ``Langfuse @observe``
  (installed in the benchmark environment only; Langfuse always adds its own
  batch processor, here exporting to a dead loopback port, so it gets a provider
  of its own holding the same simple processor plus that one).

Each round times a block of ``--calls`` calls of every variant, in a fresh
random order, in CPU time of the calling thread; the table shows the median
per-call time over the rounds and ratios measured in the same run. Every block
runs inside one parent span (an llmspans pipeline for the llmspans variants, a
raw span for the others).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from _common import OUT, machine, median, write_result
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind

from llmspans import _attributes as A

DEAD_ENDPOINT = "http://127.0.0.1:9"  # discard port: nothing listens there

DOCS = [
    {"id": f"doc-{i}", "score": round(0.95 - 0.05 * i, 2), "text": f"passage {i}"}
    for i in range(10)
]
CITATIONS = ["doc-1", "doc-2"]
CHUNKS = ("The ", "answer ", "is 42.")


#: CPU time of the calling thread: what the application's request path pays, and
#: unlike wall time unaffected by other processes on a shared machine. (Work a
#: library pushes to a background thread of its own is not counted; of the
#: variants here only Langfuse's batch exporter has one.)
_clock = time.thread_time


class CountingExporter(SpanExporter):
    """Counts spans and drops them: the exporter's own cost is out of the picture."""

    def __init__(self) -> None:
        self.spans = 0
        self.attributes = 0
        #: the last span of each (instrumentation scope, span name), for the checks
        self.last: dict[tuple[str, str], ReadableSpan] = {}

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        for span in spans:
            self.attributes += len(span.attributes or ())
            scope = span.instrumentation_scope.name if span.instrumentation_scope else ""
            self.last[(scope, span.name)] = span
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


@dataclass
class Variant:
    name: str
    group: str  # what a ratio compares it with
    block: Callable[[int], float]  # runs n calls, returns seconds
    spans_per_call: int = 1


def retrieve(query: str) -> list[dict[str, Any]]:
    return DOCS


def generate(prompt: str) -> str:
    return "The answer is 42."


def stream(prompt: str) -> Any:
    yield from CHUNKS


async def aretrieve(query: str) -> list[dict[str, Any]]:
    return DOCS


def _timed(run: Callable[[int], None]) -> Callable[[int], float]:
    def block(n: int) -> float:
        start = _clock()
        run(n)
        return _clock() - start

    return block


def build_variants(
    provider: TracerProvider, exporter: CountingExporter, loop: asyncio.AbstractEventLoop
) -> tuple[list[Variant], dict[str, str]]:
    tracer = provider.get_tracer("bench.raw")
    variants: list[Variant] = []
    skipped: dict[str, str] = {}

    def in_raw_parent(body: Callable[[int], None]) -> Callable[[int], None]:
        def run(n: int) -> None:
            with tracer.start_as_current_span("invoke_workflow bench"):
                body(n)

        return run

    # --- baselines ------------------------------------------------------------------
    def undecorated(n: int) -> None:
        for _ in range(n):
            retrieve("q")

    def raw_span(n: int) -> None:
        for _ in range(n):
            with tracer.start_as_current_span("retrieval faq", kind=SpanKind.CLIENT):
                retrieve("q")

    def retrieval_attrs(docs: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            A.STAGE: A.STAGE_RETRIEVAL,
            A.PIPELINE: "bench",
            A.GEN_AI_OPERATION_NAME: A.OP_RETRIEVAL,
            A.GEN_AI_DATA_SOURCE_ID: "faq",
            A.GEN_AI_REQUEST_TOP_K: len(docs),
            A.RETRIEVAL_DOCUMENT_IDS: [d["id"] for d in docs],
            A.RETRIEVAL_SCORES: [float(d["score"]) for d in docs],
        }

    def raw_retrieval_attrs(n: int) -> None:
        for _ in range(n):
            with tracer.start_as_current_span("retrieval faq", kind=SpanKind.CLIENT) as span:
                docs = retrieve("q")
                span.set_attributes(retrieval_attrs(docs))

    generation_attrs = {
        A.STAGE: A.STAGE_GENERATION,
        A.PIPELINE: "bench",
        A.GEN_AI_OPERATION_NAME: A.OP_CHAT,
        A.GEN_AI_PROVIDER_NAME: "openai",
        A.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
        A.GEN_AI_RESPONSE_MODEL: "gpt-4o-mini",
        A.GEN_AI_USAGE_INPUT_TOKENS: 3150,
        A.GEN_AI_USAGE_OUTPUT_TOKENS: 240,
        A.GENERATION_CITATIONS: CITATIONS,
        A.COST_USD: 0.000617,
    }

    def raw_generation_attrs(n: int) -> None:
        for _ in range(n):
            with tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT) as span:
                generate("p")
                span.set_attributes(generation_attrs)

    def raw_generator_attrs(n: int) -> None:
        for _ in range(n):
            with tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT) as span:
                for _chunk in stream("p"):
                    pass
                span.set_attributes(generation_attrs)

    async def araw_retrieval_attrs(n: int) -> None:
        for _ in range(n):
            with tracer.start_as_current_span("retrieval faq", kind=SpanKind.CLIENT) as span:
                docs = await aretrieve("q")
                span.set_attributes(retrieval_attrs(docs))

    def raw_async(n: int) -> None:
        with tracer.start_as_current_span("invoke_workflow bench"):
            loop.run_until_complete(araw_retrieval_attrs(n))

    def undecorated_async(n: int) -> None:
        async def body() -> None:
            for _ in range(n):
                await aretrieve("q")

        loop.run_until_complete(body())

    def raw_run(n: int) -> None:
        for _ in range(n):
            with tracer.start_as_current_span("invoke_workflow bench") as root:
                root.set_attributes(
                    {
                        A.STAGE: A.STAGE_PIPELINE,
                        A.PIPELINE: "bench",
                        A.GEN_AI_OPERATION_NAME: A.OP_INVOKE_WORKFLOW,
                    }
                )
                with tracer.start_as_current_span("retrieval faq", kind=SpanKind.CLIENT) as span:
                    docs = retrieve("q")
                    span.set_attributes(retrieval_attrs(docs))
                with tracer.start_as_current_span("chat gpt-4o-mini", kind=SpanKind.CLIENT) as span:
                    generate("p")
                    span.set_attributes(generation_attrs)

    variants += [
        Variant("raw span + attrs", "pipeline run", _timed(raw_run), 3),
        Variant("undecorated", "retrieval", _timed(undecorated), 0),
        Variant("raw span", "retrieval", _timed(in_raw_parent(raw_span))),
        Variant("raw span + attrs", "retrieval", _timed(in_raw_parent(raw_retrieval_attrs))),
        Variant("raw span + attrs", "generation", _timed(in_raw_parent(raw_generation_attrs))),
        Variant("raw span + attrs", "generator", _timed(in_raw_parent(raw_generator_attrs))),
        Variant("undecorated", "async retrieval", _timed(undecorated_async), 0),
        Variant("raw span + attrs", "async retrieval", _timed(raw_async)),
    ]

    # --- llmspans ---------------------------------------------------------------------
    try:
        variants += _llmspans_variants(loop, exporter)
    except (ImportError, AttributeError) as exc:
        skipped["llmspans"] = f"not available yet: {exc}"

    # --- other libraries (benchmark environment only) ------------------------------------
    for name, factory in (
        ("OpenLLMetry @task", _traceloop_variant),
        ("OpenInference @tracer.chain", _openinference_variant),
        ("Langfuse @observe", _langfuse_variant),
    ):
        try:
            variants.append(
                Variant(name, "retrieval", _timed(in_raw_parent(factory(provider, exporter))))
            )
        except ImportError as exc:
            skipped[name] = f"not installed: {exc.name}"
    return variants, skipped


def _llmspans_variants(
    loop: asyncio.AbstractEventLoop, exporter: CountingExporter
) -> list[Variant]:
    import llmspans

    pipeline = llmspans.pipeline("bench")

    @llmspans.retrieval(data_source="faq")
    def l_retrieve(query: str) -> list[dict[str, Any]]:
        return DOCS

    @llmspans.retrieval(data_source="faq")
    async def l_aretrieve(query: str) -> list[dict[str, Any]]:
        return DOCS

    @llmspans.generation(model="gpt-4o-mini", provider="openai")
    def l_generate(prompt: str) -> str:
        llmspans.record_generation(
            response_model="gpt-4o-mini",
            input_tokens=3150,
            output_tokens=240,
            citations=CITATIONS,
        )
        return "The answer is 42."

    @llmspans.generation(model="gpt-4o-mini", provider="openai")
    def l_stream(prompt: str) -> Any:
        llmspans.record_generation(
            response_model="gpt-4o-mini",
            input_tokens=3150,
            output_tokens=240,
            citations=CITATIONS,
        )
        yield from CHUNKS

    def in_pipeline(body: Callable[[int], None]) -> Callable[[int], None]:
        @pipeline
        def run(n: int) -> None:
            body(n)

        return run

    def retrieval(n: int) -> None:
        for _ in range(n):
            l_retrieve("q")

    def generation(n: int) -> None:
        for _ in range(n):
            l_generate("p")

    def generator(n: int) -> None:
        for _ in range(n):
            for _chunk in l_stream("p"):
                pass

    @pipeline
    async def aretrieval(n: int) -> None:
        for _ in range(n):
            await l_aretrieve("q")

    def async_block(n: int) -> None:
        loop.run_until_complete(aretrieval(n))

    @pipeline
    def l_run() -> None:
        l_retrieve("q")
        l_generate("p")

    def runs(n: int) -> None:
        for _ in range(n):
            l_run()

    embedded_provider = _embedded_provider(exporter)

    def embedded_block(n: int) -> float:
        # The library traces through the embedded provider for this block only.
        from llmspans._tracing import use_tracer_provider

        previous = use_tracer_provider(embedded_provider)
        try:
            start = _clock()
            runs(n)
            return _clock() - start
        finally:
            use_tracer_provider(previous)

    return [
        Variant("llmspans", "pipeline run", _timed(runs), 3),
        Variant("llmspans + embedded metrics", "pipeline run", embedded_block, 3),
        Variant("llmspans", "retrieval", _timed(in_pipeline(retrieval))),
        Variant("llmspans", "generation", _timed(in_pipeline(generation))),
        Variant("llmspans", "generator", _timed(in_pipeline(generator))),
        Variant("llmspans", "async retrieval", _timed(async_block)),
    ]


def _embedded_provider(exporter: CountingExporter) -> TracerProvider:
    """A provider with the shared exporter plus llmspans' in-process attribution."""
    from llmspans.embedded import EmbeddedProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    provider.add_span_processor(EmbeddedProcessor())
    return provider


def _traceloop_variant(
    provider: TracerProvider, exporter: CountingExporter
) -> Callable[[int], None]:
    os.environ.setdefault("TRACELOOP_TELEMETRY", "false")
    from traceloop.sdk import Traceloop
    from traceloop.sdk.decorators import task

    # The global provider is already ours: Traceloop uses it. An empty processor
    # list keeps Traceloop from adding a processor of its own, so its spans go
    # through exactly the shared simple processor (this leaves out Traceloop's
    # on_start hook, which makes @task look slightly cheaper than it is).
    Traceloop.init(
        app_name="bench",
        api_endpoint=DEAD_ENDPOINT,
        processor=[],
        telemetry_enabled=False,
        disable_batch=True,
        instruments=set(),
    )

    @task(name="retrieve")
    def t_retrieve(query: str) -> list[dict[str, Any]]:
        return DOCS

    def run(n: int) -> None:
        for _ in range(n):
            t_retrieve("q")

    return run


def _openinference_variant(
    provider: TracerProvider, exporter: CountingExporter
) -> Callable[[int], None]:
    from openinference.instrumentation import OITracer, TraceConfig

    oi_tracer = OITracer(provider.get_tracer("bench.openinference"), config=TraceConfig())

    @oi_tracer.chain
    def o_retrieve(query: str) -> list[dict[str, Any]]:
        return DOCS

    def run(n: int) -> None:
        for _ in range(n):
            o_retrieve("q")

    return run


def _langfuse_variant(
    provider: TracerProvider, exporter: CountingExporter
) -> Callable[[int], None]:
    from langfuse import Langfuse, observe

    own = TracerProvider()
    own.add_span_processor(SimpleSpanProcessor(exporter))
    Langfuse(
        public_key="pk-lf-bench",
        secret_key="sk-lf-bench",
        host=DEAD_ENDPOINT,
        tracer_provider=own,
        flush_at=512,
        flush_interval=3600,
    )

    @observe(name="retrieve")
    def f_retrieve(query: str) -> list[dict[str, Any]]:
        return DOCS

    def run(n: int) -> None:
        for _ in range(n):
            f_retrieve("q")

    return run


def check_llmspans_spans(exporter: CountingExporter) -> None:
    """The llmspans spans carry what the raw baseline sets: the comparison is fair.

    Raises when a stage span lacks an attribute of the baseline, so a library change
    that stops recording something cannot make the benchmark look better.
    """
    retrieval = exporter.last.get(("llmspans", "retrieval faq"))
    generation = exporter.last.get(("llmspans", "chat gpt-4o-mini"))
    if retrieval is None or generation is None:
        return  # llmspans not measured in this run
    expected = {
        "retrieval": (
            retrieval,
            {A.STAGE: A.STAGE_RETRIEVAL, A.PIPELINE: "bench", A.GEN_AI_DATA_SOURCE_ID: "faq"},
            (A.RETRIEVAL_DOCUMENT_IDS, A.RETRIEVAL_SCORES),
        ),
        "generation": (
            generation,
            {
                A.STAGE: A.STAGE_GENERATION,
                A.PIPELINE: "bench",
                A.GEN_AI_REQUEST_MODEL: "gpt-4o-mini",
                A.GEN_AI_USAGE_INPUT_TOKENS: 3150,
            },
            (A.GENERATION_CITATIONS, A.COST_USD),
        ),
    }
    for what, (span, values, present) in expected.items():
        attrs = dict(span.attributes or {})
        wrong = {k: attrs.get(k) for k, v in values.items() if attrs.get(k) != v}
        missing = [k for k in present if k not in attrs]
        if wrong or missing:
            raise RuntimeError(f"llmspans {what} span lacks attributes: {wrong} {missing}")
    if len(retrieval.attributes[A.RETRIEVAL_DOCUMENT_IDS]) != len(DOCS):  # type: ignore[index,arg-type]
        raise RuntimeError("llmspans retrieval span lacks document ids")


def measure(
    variants: list[Variant], rounds: int, calls: int, exporter: CountingExporter, seed: int = 1
) -> dict[str, list[float]]:
    """Per-call seconds of each variant, one sample per round, in shuffled order."""
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {f"{v.group}|{v.name}": [] for v in variants}
    # Warm-up: first calls import lazily and fill caches.
    for v in variants:
        v.block(max(calls // 10, 10))
    check_llmspans_spans(exporter)
    for _ in range(rounds):
        order = list(variants)
        rng.shuffle(order)
        for v in order:
            gc.collect()
            before = exporter.spans
            seconds = v.block(calls)
            samples[f"{v.group}|{v.name}"].append(seconds / calls)
            # Langfuse sends only the spans its own filter keeps to the shared exporter.
            exported = exporter.spans - before
            if (
                v.spans_per_call
                and exported < calls * v.spans_per_call
                and v.name != "Langfuse @observe"
            ):
                raise RuntimeError(
                    f"{v.name} ({v.group}) exported "
                    f"{exporter.spans - before} spans for {calls} calls"
                )
    return samples


def ratios(cost: dict[str, float]) -> dict[str, float]:
    """The ratios the targets are judged by, from a cost per call of each variant
    (``group|name``: seconds here, instructions in ``bench_instructions.py``)."""
    found: dict[str, float] = {}
    for group in ("retrieval", "generation", "generator", "async retrieval", "pipeline run"):
        ours = cost.get(f"{group}|llmspans")
        same = cost.get(f"{group}|raw span + attrs")
        if ours and same:
            found[f"llmspans/raw_same_attrs ({group})"] = round(ours / same, 3)
    embedded = cost.get("pipeline run|llmspans + embedded metrics")
    same = cost.get("pipeline run|raw span + attrs")
    if embedded and same:
        found["llmspans with embedded metrics/raw_same_attrs (pipeline run)"] = round(
            embedded / same, 3
        )
    ours, task = cost.get("retrieval|llmspans"), cost.get("retrieval|OpenLLMetry @task")
    if ours and task:
        found["llmspans/OpenLLMetry @task (retrieval)"] = round(ours / task, 3)
    raw = cost.get("retrieval|raw span")
    for name in ("OpenLLMetry @task", "OpenInference @tracer.chain", "Langfuse @observe"):
        other = cost.get(f"retrieval|{name}")
        if other and raw:
            found[f"{name}/raw span"] = round(other / raw, 3)
    return found


def summarize(samples: dict[str, list[float]]) -> dict[str, Any]:
    rows = []
    med = {key: median(xs) for key, xs in samples.items()}
    for key, xs in samples.items():
        group, name = key.split("|", 1)
        raw_attrs = med.get(f"{group}|raw span + attrs")
        raw = med.get("retrieval|raw span")
        rows.append(
            {
                "group": group,
                "variant": name,
                "us_per_call": round(med[key] * 1e6, 2),
                "min_us": round(min(xs) * 1e6, 2),
                "max_us": round(max(xs) * 1e6, 2),
                "x_raw_span_same_attrs": round(med[key] / raw_attrs, 3) if raw_attrs else None,
                "x_raw_span": round(med[key] / raw, 3) if raw and group == "retrieval" else None,
            }
        )
    return {"rows": rows, "ratios": ratios(med)}


def profile(variants: list[Variant], calls: int) -> str:
    """A pyinstrument profile of the llmspans variants (text)."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        return "pyinstrument is not installed (it belongs to benchmarks/requirements.txt)\n"

    profiler = Profiler(interval=0.0001)
    profiler.start()
    for v in variants:
        if v.name == "llmspans":
            v.block(calls)
    profiler.stop()
    return str(profiler.output_text(unicode=False, color=False, show_all=False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke run")
    parser.add_argument("--profile", action="store_true", help="also write a pyinstrument profile")
    parser.add_argument("--output", default="decorators", help="results name (out/NAME.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.calls = 2, 50

    # Langfuse's exporter retries against the dead port and its queue overflows:
    # expected here, and not worth a screenful of warnings.
    for name in ("opentelemetry.exporter", "opentelemetry.sdk._shared_internal", "langfuse"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    exporter = CountingExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    loop = asyncio.new_event_loop()
    variants, skipped = build_variants(provider, exporter, loop)
    samples = measure(variants, args.rounds, args.calls, exporter)
    result = {
        "benchmark": "decorators",
        "machine": machine(),
        "rounds": args.rounds,
        "calls_per_round": args.calls,
        "quick": args.quick,
        "skipped": skipped,
        **summarize(samples),
    }
    if args.profile:
        OUT.mkdir(parents=True, exist_ok=True)
        text = profile(variants, args.calls * 5)
        (OUT / "profile_decorators.txt").write_text(text)
        result["profile"] = str(OUT / "profile_decorators.txt")
    loop.close()
    path = write_result(args.output, result)
    for row in result["rows"]:
        print(
            f"{row['group']:>16} {row['variant']:<30} {row['us_per_call']:8.2f} us  "
            f"x{row['x_raw_span_same_attrs'] or 0:.2f}",
            file=sys.stderr,
        )
    print(result["ratios"], file=sys.stderr)
    print(path)
    return 0


if __name__ == "__main__":
    code = main()
    # Langfuse flushes at exit, retrying against the dead port for tens of seconds;
    # everything measured is already written.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
