"""The forwarded traces, verdicts included, stored by a real OTLP backend (Arize Phoenix)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from collector_support import RunningCollector, emit_run, grpc_sender, http_sender, wait_until

from llmspans import _attributes as A
from tests.phoenix import PROJECT_ATTRIBUTE, Phoenix


def _attribute(span: dict[str, Any], key: str) -> Any:
    """An attribute of a span as Phoenix's REST API returns it (flat or nested)."""
    attributes = span.get("attributes") or {}
    if key in attributes:
        return attributes[key]
    node: Any = attributes
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


@pytest.mark.slow
@pytest.mark.parametrize("exporter_protocol", ["http", "grpc"])
def test_phoenix_stores_forwarded_runs_with_their_verdicts(
    exporter_protocol: str,
    phoenix: Phoenix,
    start_collector: Callable[..., RunningCollector],
) -> None:
    exporter = (
        {"protocol": "http", "endpoint": phoenix.traces_url}
        if exporter_protocol == "http"
        else {"protocol": "grpc", "endpoint": phoenix.grpc_endpoint}
    )
    collector = start_collector(exporters=[exporter])
    project = f"llmspans-collector-{exporter_protocol}"
    http = http_sender(collector.http_url, resource={PROJECT_ATTRIBUTE: project})
    grpc = grpc_sender(collector.grpc_endpoint, resource={PROJECT_ATTRIBUTE: project})
    ok = emit_run(http.tracer, pipeline="support")
    failed = emit_run(grpc.tracer, pipeline="support", retrieval_error=True)
    http.close()
    grpc.close()

    def complete(spans: list[dict[str, Any]]) -> bool:
        roots = [s for s in spans if _attribute(s, A.OUTCOME) is not None]
        return len(spans) >= 10 and len(roots) == 2

    spans = phoenix.wait_for_spans(project, complete, timeout=90)
    assert len(spans) == 10
    by_trace: dict[str, dict[str, Any]] = {}
    for span in spans:
        if _attribute(span, A.OUTCOME) is not None:
            by_trace[span["context"]["trace_id"]] = span
    assert _attribute(by_trace[ok.hex()], A.OUTCOME) == "success"
    assert _attribute(by_trace[failed.hex()], A.OUTCOME) == "failure"
    assert _attribute(by_trace[failed.hex()], A.FAILURE_STAGE) == "retrieval"
    assert _attribute(by_trace[failed.hex()], A.FAILURE_REASON) == "error"
    assert by_trace[failed.hex()]["name"] == "invoke_workflow support"
    # Phoenix stores after it answered: the collector may count the delivery a moment
    # after the spans are visible.
    wait_until(lambda: collector.metric("llmspans_collector_spans_forwarded_total") == 10)
