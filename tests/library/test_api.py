"""The public surface: exports, configure() wiring of content, redaction and prices."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import llmspans
from llmspans import _attributes as A
from llmspans import _content


def test_public_names() -> None:
    expected = {
        "pipeline",
        "retrieval",
        "context_selection",
        "generation",
        "action",
        "record_retrieval",
        "record_context",
        "record_generation",
        "record_action",
        "set_outcome",
        "current_run",
        "RunRef",
        "feedback",
        "configure",
        "instrument",
        "PriceTable",
    }
    assert expected <= set(llmspans.__all__)
    for name in llmspans.__all__:
        assert getattr(llmspans, name) is not None
    from llmspans.instrumentation import instrument

    assert llmspans.instrument is instrument


@given(
    trace_id=st.integers(min_value=1, max_value=2**128 - 1),
    span_id=st.integers(min_value=1, max_value=2**64 - 1),
    pipeline=st.text(min_size=1).filter(lambda s: s.strip() == s),
)
def test_run_ref_text_and_dict_round_trip(trace_id: int, span_id: int, pipeline: str) -> None:
    ref = llmspans.RunRef(trace_id, span_id, pipeline)
    assert llmspans.RunRef.from_str(ref.to_str()) == ref
    assert llmspans.RunRef.from_dict(ref.to_dict()) == ref


@given(text=st.text(), limit=st.integers(min_value=0, max_value=64))
def test_captured_content_never_exceeds_the_limit(text: str, limit: int) -> None:
    _content.set_capture(True)
    _content.set_max_length(limit)
    try:
        result = _content.prepare_content(text)
        assert result is not None
        assert len(result) <= limit
        if len(text) <= limit:
            assert result == text
    finally:
        _content.set_capture(None)
        _content.set_max_length(None)


def test_configure_wires_content_redaction_and_prices(tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text("models:\n  house-model: {input: 1000000, output: 0}\n")
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    config = llmspans.configure(
        tracer_provider=provider,
        capture_content=True,
        redact=lambda text: text.replace("4111-1111", "<card>"),
        content_max_length=40,
        price_table=prices,
        propagate_context=False,
    )
    try:

        @llmspans.generation(model="house-model")
        def answer(question: str) -> str:
            llmspans.record_generation(input_tokens=3, output_tokens=5)
            return "charged card 4111-1111 " + "x" * 100

        answer("pay with 4111-1111")
    finally:
        config.shutdown()
    (span,) = exporter.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert attributes[A.COST_USD] == 3.0
    assert attributes[A.GEN_AI_INPUT_MESSAGES] == "pay with <card>"
    output = str(attributes[A.GEN_AI_OUTPUT_MESSAGES])
    assert output.startswith("charged card <card> ")
    assert len(output) == 40
