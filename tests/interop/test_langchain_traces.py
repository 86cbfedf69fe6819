"""Recorded LangChain traces of the peers' own instrumentations are attributed.

``data/*.jsonl`` were written by ``record_langchain.py``: one RAG chain in
langchain-core run three times (the retriever finds nothing; all goes well; the
chat model's provider is down), traced by OpenInference's and by OpenLLMetry's
LangChain instrumentation. ``llmspans analyze`` reads them as any user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).resolve().parents[2]


def _analyze(name: str) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "llmspans.cli", "analyze", "--json", str(DATA / name)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report: dict[str, Any] = json.loads(completed.stdout)
    return report


def test_openinference_langchain_trace() -> None:
    report = _analyze("openinference_langchain.jsonl")
    assert report["traces"] == 3 and report["bad_attributes"] == 0
    (name,) = report["pipelines"]
    pipeline = report["pipelines"][name]
    assert name == "RunnableSequence"  # the top CHAIN's span name
    assert pipeline["outcomes"] == {"success": 0, "failure": 2, "unverified": 1}
    stages = pipeline["stages"]
    assert set(stages) == {"retrieval", "generation"}
    assert stages["retrieval"]["calls"] == 3
    assert stages["retrieval"]["failures_by_reason"] == {"empty": 1}
    assert stages["generation"]["calls"] == 3 and stages["generation"]["errors"] == 1
    assert stages["generation"]["failures_by_reason"] == {"error": 1}


def test_openllmetry_langchain_trace() -> None:
    report = _analyze("openllmetry_langchain.jsonl")
    assert report["traces"] == 3 and report["bad_attributes"] == 0
    (name,) = report["pipelines"]
    pipeline = report["pipelines"][name]
    assert name == "RunnableSequence"  # traceloop.workflow.name
    # OpenLLMetry records retrieved documents only as content: an empty retrieval
    # cannot be told from the ids, so that run stays unverified.
    assert pipeline["outcomes"] == {"success": 0, "failure": 1, "unverified": 2}
    stages = pipeline["stages"]
    assert stages["retrieval"]["calls"] == 3
    assert stages["generation"]["calls"] == 3
    assert stages["generation"]["failures_by_reason"] == {"error": 1}


@pytest.mark.parametrize("name", ["openinference_langchain.jsonl", "openllmetry_langchain.jsonl"])
def test_fixtures_are_otlp_json_lines_with_hex_ids(name: str) -> None:
    (line,) = (DATA / name).read_text().splitlines()
    spans = json.loads(line)["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert all(len(span["traceId"]) == 32 for span in spans)
