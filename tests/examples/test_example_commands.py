"""``python -m examples.<name> "..."``: one request by hand, its spans and its verdict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("module", "request_text", "expected"),
    [
        ("examples.support_rag", "Can I get a refund on my annual plan?", "[kb-009]"),
        ("examples.sql_analyst", "What are the top 3 products by units sold?", "Whiteboard Marker"),
        ("examples.booking_agent", "Table for 4 on March 14 at 7:30 pm, name is Okafor.", "19:30"),
    ],
)
def test_one_request_by_hand_prints_the_answer_the_spans_and_the_verdict(
    module: str, request_text: str, expected: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module, request_text],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout
    name = module.split(".")[1]
    assert f"invoke_workflow {name}" in done.stdout
    assert "llmspans.action.verified = True" in done.stdout
    assert f"verdict for {name}: success" in done.stdout
