"""``python -m llmspans.examples.<name> "..."``: one request by hand, its spans, its verdict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("name", "request_text", "expected"),
    [
        ("support_rag", "Can I get a refund on my annual plan?", "[kb-009]"),
        ("sql_analyst", "What are the top 3 products by units sold?", "Whiteboard Marker"),
        ("booking_agent", "Table for 4 on March 14 at 7:30 pm, name is Okafor.", "19:30"),
    ],
)
def test_one_request_by_hand_prints_the_answer_the_spans_and_the_verdict(
    name: str, request_text: str, expected: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", f"llmspans.examples.{name}", request_text],
        cwd=tmp_path,  # the examples are part of the package: any directory works
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout
    assert f"invoke_workflow {name}" in done.stdout
    assert "llmspans.action.verified = True" in done.stdout
    assert f"verdict for {name}: success" in done.stdout
