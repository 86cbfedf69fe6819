"""Run one request of an example and show its spans and the verdict, all in process.

``python -m llmspans.examples.support_rag "How do I reset my password?"`` (and likewise for
``sql_analyst`` and ``booking_agent``) prints the answer, the stage spans llmspans
recorded, and the verdict the attribution core gives the run: the same verdict the
collector would write on the trace.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from llmspans import _attributes as A
from llmspans.core.evaluate import evaluate_trace
from llmspans.core.model import Thresholds
from llmspans.embedded import record_from_readable_span
from llmspans.testing import capture_spans

from . import MODEL_PRICES

_SHOWN: Final = (
    A.RETRIEVAL_DOCUMENT_IDS,
    A.RETRIEVAL_RELEVANT_IDS,
    A.CONTEXT_SELECTED_IDS,
    A.GENERATION_CITATIONS,
    A.GENERATION_CONFIDENCE,
    A.GENERATION_REFUSED,
    A.GENERATION_OUTPUT_VALID,
    A.GEN_AI_USAGE_INPUT_TOKENS,
    A.GEN_AI_USAGE_OUTPUT_TOKENS,
    A.COST_USD,
    A.ACTION_VERIFIED,
    A.ACTION_VERIFICATION,
    A.TASK_COMPLETED,
)


def trace_one(call: Callable[[], object]) -> int:
    """Run ``call`` with its spans captured; print result, spans and verdict. Exit status."""
    import llmspans

    previous = llmspans.get_price_table()
    llmspans.set_price_table(previous.with_prices(dict(MODEL_PRICES)))
    try:
        with capture_spans() as spans:
            result = call()
    finally:
        llmspans.set_price_table(previous)
    print(result)
    print()
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        attributes = span.attributes or {}
        duration_ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
        indent = "  " if span.parent is not None else ""
        print(f"{indent}{span.name}  ({duration_ms:.1f} ms, {span.status.status_code.name})")
        for key in _SHOWN:
            if key in attributes:
                value = attributes[key]
                shown = list(value) if isinstance(value, tuple) else value
                print(f"{indent}    {key} = {shown}")
    records = [record_from_readable_span(s) for s in spans]
    for run, verdict in evaluate_trace(records, Thresholds()).runs:
        print()
        print(f"verdict for {run.pipeline}: {verdict.outcome}", end="")
        if verdict.failure_stage:
            print(f", root cause {verdict.failure_stage} ({verdict.failure_reason})", end="")
        print()
    return 0
