"""Builders for span records and runs used across the core tests."""

from __future__ import annotations

import itertools
from typing import Any

from llmspans import _attributes as A
from llmspans.core.records import SpanRecord

TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
_ids = itertools.count(1)


def span_id() -> bytes:
    return next(_ids).to_bytes(8, "big")


def record(
    stage: str | None = None,
    *,
    parent: SpanRecord | None = None,
    trace_id: bytes = TRACE,
    start: int = 0,
    duration_ms: int = 10,
    **fields: Any,
) -> SpanRecord:
    """A span record; ``start`` in milliseconds; ``fields`` are SpanRecord fields."""
    name = fields.pop("name", A.span_name(stage, "x") if stage else "other")
    return SpanRecord(
        trace_id=trace_id,
        span_id=fields.pop("span_id", span_id()),
        parent_span_id=parent.span_id if parent is not None else fields.pop("parent_span_id", b""),
        name=name,
        start_ns=1_700_000_000_000_000_000 + start * 1_000_000,
        end_ns=1_700_000_000_000_000_000 + (start + duration_ms) * 1_000_000,
        stage=stage,
        **fields,
    )


def pipeline_root(name: str = "rag", **fields: Any) -> SpanRecord:
    return record(
        A.STAGE_PIPELINE,
        pipeline=name,
        name=A.span_name(A.STAGE_PIPELINE, name),
        duration_ms=fields.pop("duration_ms", 1000),
        **fields,
    )
