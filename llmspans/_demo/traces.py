"""The collector's verdicts, read back from the root spans it wrote to ``traces.jsonl``."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmspans import _attributes as A

#: the attribute the example pipelines put on their root span naming the injected fault
INJECTED_FAULT_ATTRIBUTE = "llmspans_examples.injected_fault"


@dataclass(frozen=True, slots=True)
class RootVerdict:
    """The verdict the collector wrote on one pipeline root span."""

    trace_id: str
    pipeline: str
    outcome: str | None
    failure_stage: str | None
    failure_reason: str | None
    injected: str | None


def _scalar(value: Mapping[str, Any]) -> object:
    for key in ("stringValue", "boolValue", "doubleValue", "intValue"):
        if key in value:
            return value[key]
    return None


def _attributes(span: Mapping[str, Any]) -> dict[str, object]:
    return {a["key"]: _scalar(a.get("value", {})) for a in span.get("attributes", ())}


def _iter_spans(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            request = json.loads(line)
            for resource in request.get("resourceSpans", ()):
                for scope in resource.get("scopeSpans", ()):
                    yield from scope.get("spans", ())


def iter_root_verdicts(path: Path) -> Iterator[RootVerdict]:
    """Every pipeline root span in an OTLP JSON lines file, with the verdict attributes."""
    for span in _iter_spans(path):
        if span.get("parentSpanId"):
            continue
        attrs = _attributes(span)
        if attrs.get(A.STAGE) != A.STAGE_PIPELINE:
            continue
        yield RootVerdict(
            trace_id=_hex_id(str(span.get("traceId", ""))),
            pipeline=str(attrs.get(A.PIPELINE, "")),
            outcome=_str(attrs.get(A.OUTCOME)),
            failure_stage=_str(attrs.get(A.FAILURE_STAGE)),
            failure_reason=_str(attrs.get(A.FAILURE_REASON)),
            injected=_str(attrs.get(INJECTED_FAULT_ATTRIBUTE)),
        )


@dataclass(frozen=True, slots=True)
class JudgedRun:
    """One ``evaluate {pipeline}`` span the collector wrote: the judgment of one run."""

    trace_id: str  # of the judged run (the span's link)
    pipeline: str
    segment: str | None
    verdict: str | None
    failure_stage: str | None
    failure_reason: str | None


def iter_judged_runs(path: Path) -> Iterator[JudgedRun]:
    """Every evaluation span in an OTLP JSON lines file, with the run it is linked to."""
    for span in _iter_spans(path):
        attrs = _attributes(span)
        if attrs.get(A.STAGE) != A.STAGE_EVALUATION:
            continue
        links = span.get("links") or [{}]
        yield JudgedRun(
            trace_id=_hex_id(str(links[0].get("traceId", ""))),
            pipeline=str(attrs.get(A.PIPELINE, "")),
            segment=_str(attrs.get(A.SEGMENT)),
            verdict=_str(attrs.get(A.EVALUATION_VERDICT)),
            failure_stage=_str(attrs.get(A.EVALUATION_FAILURE_STAGE)),
            failure_reason=_str(attrs.get(A.EVALUATION_FAILURE_REASON)),
        )


def count_feedback_spans(path: Path) -> int:
    """How many feedback spans an OTLP JSON lines file holds."""
    return sum(
        1 for span in _iter_spans(path) if _attributes(span).get(A.STAGE) == A.STAGE_FEEDBACK
    )


def _hex_id(value: str) -> str:
    """Trace ids are hex in OTLP JSON; accept base64 too (protobuf's generic JSON mapping)."""
    if len(value) == 32:
        return value.lower()
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        return value.lower()


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None
