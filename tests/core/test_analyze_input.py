"""``llmspans analyze`` input handling: what it says about input that is not what was meant."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmspans.analyze import EXIT_STATUS
from llmspans.cli import main

from .test_analyze import Tracing, _recorded


def test_valid_json_that_is_not_otlp_is_reported_not_counted_as_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "logs.jsonl"
    path.write_text('{"a": 1}\n{"level": "info", "msg": "hi"}\n')
    assert main(["analyze", str(path)]) == 2
    err = capsys.readouterr().err
    assert "skipped line 1: valid JSON but not an OTLP trace export request" in err
    assert "(keys: level, msg)" in err


def test_an_empty_request_is_still_a_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text('{}\n{"resourceSpans": []}\n')
    assert main(["analyze", str(path)]) == 0
    assert capsys.readouterr().err == ""


def test_a_truncated_gzip_file_is_read_up_to_the_break(
    tracing: Tracing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = tmp_path / "traces.jsonl"
    _recorded(tracing, plain)
    lines = plain.read_bytes().splitlines(keepends=True)
    # Filler lines after the recorded ones, so that the cut falls well after them.
    filler = [b'{"resourceSpans": []}\n'] * 2000
    packed = gzip.compress(b"".join([*lines, *filler]), compresslevel=0)
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(packed[: len(packed) * 2 // 3])

    assert main(["analyze", str(cut), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["pipelines"]["rag"]["runs"] == 2
    (warning,) = captured.err.splitlines()
    assert warning.startswith(f"llmspans analyze: warning: {cut}: the compressed data ends early")
    assert "read up to line" in warning


def test_a_gzip_file_broken_before_its_first_line_cannot_be_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_gzip = tmp_path / "plain.jsonl.gz"
    not_gzip.write_text('{"resourceSpans": []}\n')
    assert main(["analyze", str(not_gzip)]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_concatenated_gzip_members_are_read_in_full(
    tracing: Tracing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = tmp_path / "traces.jsonl"
    _recorded(tracing, plain)
    lines = plain.read_bytes().splitlines(keepends=True)
    joined = tmp_path / "joined.jsonl.gz"
    joined.write_bytes(gzip.compress(b"".join(lines[:2])) + gzip.compress(b"".join(lines[2:])))
    assert main(["analyze", str(joined), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["pipelines"]["rag"]["runs"] == 2
    assert captured.err == ""


def test_help_documents_the_exit_status() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "llmspans.cli", "analyze", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert EXIT_STATUS in done.stdout
