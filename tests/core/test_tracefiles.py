"""Reading traces files: every reader keeps at most ``max_line_bytes`` + 1 bytes of a
line, so a file of one endless line, or a gzip bomb, is reported, not held."""

from __future__ import annotations

import gzip
import json
import time
import tracemalloc
from pathlib import Path

import pytest

from llmspans._tracefiles import iter_otlp_json_lines, open_trace_lines
from llmspans.cli import main

from .test_analyze import Tracing, _recorded

MiB = 1024 * 1024


def _peak_reading(path: Path, max_line_bytes: int) -> tuple[list[int], int, float]:
    """Lengths of the lines read, the peak of Python allocations, and CPU seconds."""
    tracemalloc.start()
    started = time.process_time()
    try:
        with open_trace_lines(path, max_line_bytes=max_line_bytes) as lines:
            lengths = [len(line) for line in lines]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return lengths, peak, time.process_time() - started


@pytest.mark.parametrize("packed", [False, True], ids=["plain", "gzip"])
def test_an_endless_line_is_cut_at_the_bound_and_never_held(tmp_path: Path, packed: bool) -> None:
    body = b'{"resourceSpans": []}\n' + b'{"x": "' + b"y" * (48 * MiB) + b'"}\n{}\n'
    path = tmp_path / ("long.jsonl.gz" if packed else "long.jsonl")
    path.write_bytes(gzip.compress(body, compresslevel=1) if packed else body)
    lengths, peak, cpu = _peak_reading(path, MiB)
    print(
        f"\n[figures] {path.name}: 48 MiB line, bound 1 MiB: peak {peak / MiB:.2f} MiB, "
        f"{cpu:.2f} s CPU"
    )
    assert lengths[0] == 22 and lengths[1] == MiB + 1 and lengths[2] == 3
    assert peak < 6 * MiB  # the cut line, its text and one piece of the rest


def test_a_gzip_bomb_of_one_line_is_read_past_in_bounded_memory(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.jsonl.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as out:
        zeros = b"0" * MiB
        for _ in range(200):  # 200 MiB inflated, about 200 KiB on disk
            out.write(zeros)
    lengths, peak, cpu = _peak_reading(bomb, MiB)
    print(
        f"\n[figures] gzip bomb {bomb.stat().st_size} bytes -> 200 MiB: "
        f"peak {peak / MiB:.2f} MiB, {cpu:.2f} s CPU"
    )
    assert lengths == [MiB + 1]
    assert peak < 6 * MiB


def test_a_line_past_the_bound_is_reported_with_its_number() -> None:
    lines = ['{"resourceSpans": []}\n', "{" + "é" * 600 + "}\n", "{}\n"]
    errors: list[tuple[int, str]] = []
    assert list(iter_otlp_json_lines(lines, lambda n, e: errors.append((n, e)), 1000)) == []
    assert errors == [(2, "longer than 1000 bytes")]  # 1,202 bytes, 602 characters
    with pytest.raises(ValueError, match="line 2: longer than 1000 bytes"):
        list(iter_otlp_json_lines(lines, max_line_bytes=1000))


@pytest.mark.parametrize("command", ["analyze", "diverge"])
def test_the_commands_skip_a_long_line_and_keep_the_rest(
    tracing: Tracing, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    plain = tmp_path / "traces.jsonl"
    _recorded(tracing, plain)
    lines = plain.read_bytes().splitlines(keepends=True)
    long_line = b'{"resourceSpans": [' + b" " * 5000 + b"]}\n"
    path = tmp_path / "with-long.jsonl.gz"
    path.write_bytes(gzip.compress(b"".join([lines[0], long_line, *lines[1:]])))
    if command == "analyze":
        argv = ["analyze", str(path), "--json", "--max-line-bytes", "4096"]
    else:
        argv = [
            "diverge",
            "--offline",
            str(path),
            "--production",
            str(path),
            "--format",
            "json",
            "--max-line-bytes",
            "4096",
        ]
    status = main(argv)
    captured = capsys.readouterr()
    assert "skipped line 2: longer than 4096 bytes" in captured.err
    assert status == 0
    if command == "analyze":
        assert json.loads(captured.out)["pipelines"]["rag"]["runs"] == 2
    else:  # every run is production: read, with nothing to compare them with
        assert "no pipeline runs" not in captured.err
