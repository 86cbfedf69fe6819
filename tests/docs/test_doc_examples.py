"""Every code block of the README and docs/ runs as written, or says why it cannot.

The blocks are read from the Markdown (``doc_blocks``), run in a subprocess each,
one page per test, against one real llmspans collector for the whole module (its
metrics are compared before and after each block) or in embedded mode, and what the
marker says they show is asserted. See ``doc_blocks`` for the markers.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmspans._demo.collector import LocalCollector
from llmspans.core.catalogue import COLLECTOR_HEALTH
from tests.docs.doc_blocks import (
    MODES,
    PAGES,
    PYTHON,
    ROOT,
    SHELL,
    Block,
    Expectation,
    Marker,
    blocks,
    program,
)

#: Longest wait for a block's runs to show in the collector's metrics.
METRICS_WAIT_S = 30.0
#: A block of the docs is a few lines: it runs in seconds, or something hangs.
RUN_TIMEOUT_S = 120.0
#: The embedded mode without a collector must not hold the process at exit.
EMBEDDED_EXIT_S = 15.0

_PAGE_BLOCKS = {page: list(blocks(page)) for page in PAGES}
_RUNNABLE_PAGES = [
    page
    for page, found in _PAGE_BLOCKS.items()
    if any(b.marker and b.marker.runnable for b in found)
]

#: Run after an embedded block, in the same process: flush, then scrape the endpoint
#: the block's ``configure(embedded=True, metrics_port=...)`` opened.
_EMBEDDED_EPILOGUE = textwrap.dedent(
    """
    import runpy, sys, urllib.request
    from llmspans import Configuration

    namespace = runpy.run_path(sys.argv[1], run_name="__main__")
    served = [
        value for value in namespace.values()
        if isinstance(value, Configuration) and value.metrics_port is not None
    ]
    if len(served) != 1:
        sys.exit(f"expected one configure(embedded=True, metrics_port=...), found {len(served)}")
    served[0].force_flush()
    url = f"http://127.0.0.1:{served[0].metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        open(sys.argv[2], "wb").write(response.read())
    """
)


def series_sum(text: str, expectation: Expectation) -> float:
    """The sum of the samples of ``expectation``'s series whose labels include its labels."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name != expectation.name:
                continue
            if all(sample.labels.get(k) == v for k, v in expectation.labels.items()):
                total += float(sample.value)
    return total


def _dead_endpoint() -> str:
    """An OTLP endpoint nothing listens on: the embedded mode's "no collector"."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LLMSPANS_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def _run(
    command: list[str], cwd: Path, env: dict[str, str], block: Block
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        command,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    output = f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"{block.where} exited with {done.returncode}:\n{output}"
    return done


def _check_output(block: Block, marker: Marker, stdout: str) -> None:
    for text in marker.expect_output:
        assert text in stdout, f"{block.where}: {text!r} not in its output:\n{stdout[-2000:]}"


def _wait_for(
    block: Block,
    expectations: list[Expectation],
    measure: Callable[[Expectation], float],
) -> None:
    deadline = time.monotonic() + METRICS_WAIT_S
    while True:
        got = {str(e): measure(e) for e in expectations}
        wrong = {name: value for name, value in got.items() if value != float(name.rsplit(" ")[-1])}
        if not wrong or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not wrong, f"{block.where}: expected {list(wrong)}, got {wrong}"


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCollector]:
    """One real collector for every collector block of every page."""
    local = LocalCollector(tmp_path_factory.mktemp("collector"), trace_idle_s=0.2)
    local.start()
    try:
        yield local
    finally:
        local.stop()


def _run_collector_block(
    block: Block, code: str, tmp_path: Path, collector: LocalCollector
) -> None:
    assert block.marker is not None
    before = collector.scrape()
    script = tmp_path / "block.py"
    script.write_text(code, "utf-8")
    endpoint = collector.traces_endpoint.removesuffix("/v1/traces")
    env = _environment(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint)
    done = _run([sys.executable, str(script)], tmp_path, env, block)
    _check_output(block, block.marker, done.stdout)
    _wait_for(
        block,
        block.marker.expect,
        lambda e: series_sum(collector.scrape(), e) - series_sum(before, e),
    )


def _run_embedded_block(block: Block, code: str, tmp_path: Path) -> None:
    assert block.marker is not None
    script, epilogue, scraped = (
        tmp_path / "block.py",
        tmp_path / "epilogue.py",
        tmp_path / "metrics.txt",
    )
    script.write_text(code, "utf-8")
    epilogue.write_text(_EMBEDDED_EPILOGUE, "utf-8")
    env = _environment(OTEL_EXPORTER_OTLP_ENDPOINT=_dead_endpoint())
    started = time.monotonic()
    done = _run([sys.executable, str(epilogue), str(script), str(scraped)], tmp_path, env, block)
    elapsed = time.monotonic() - started
    assert elapsed < EMBEDDED_EXIT_S, f"{block.where} took {elapsed:.1f} s to run and exit"
    _check_output(block, block.marker, done.stdout)
    text = scraped.read_text("utf-8")
    _wait_for(block, block.marker.expect, lambda e: series_sum(text, e))


def _run_plain_block(block: Block, code: str, tmp_path: Path) -> None:
    assert block.marker is not None
    if block.language in SHELL:
        command = ["bash", "-euo", "pipefail", "-c", code]
    else:
        script = tmp_path / "block.py"
        script.write_text(code, "utf-8")
        command = [sys.executable, str(script)]
    done = _run(
        command, tmp_path, _environment(OTEL_EXPORTER_OTLP_ENDPOINT=_dead_endpoint()), block
    )
    _check_output(block, block.marker, done.stdout + done.stderr)


@pytest.mark.parametrize("page", _RUNNABLE_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_runnable_blocks_of_a_page_run_and_show_what_the_page_says(
    page: Path, collector: LocalCollector, tmp_path: Path
) -> None:
    page_blocks = _PAGE_BLOCKS[page]
    for number, block in enumerate(page_blocks):
        marker = block.marker
        if marker is None or not marker.runnable:
            continue
        code = program(block, page_blocks)
        workdir = tmp_path / f"block-{number}"
        workdir.mkdir()
        if marker.mode == "collector":
            _run_collector_block(block, code, workdir, collector)
        elif marker.mode == "embedded":
            _run_embedded_block(block, code, workdir)
        else:
            _run_plain_block(block, code, workdir)


def test_every_code_block_is_runnable_or_says_why_not() -> None:
    problems = []
    for page_blocks in _PAGE_BLOCKS.values():
        for block in page_blocks:
            marker = block.marker
            if not block.language:
                problems.append(f"{block.where}: a fence without a language (text for output)")
            elif block.is_code and marker is None:
                problems.append(f"{block.where}: {block.language} block without a marker")
            elif marker is not None and not marker.runnable and not marker.mode:
                problems.append(f"{block.where}: not-runnable without a reason")
            elif marker is not None and marker.runnable:
                expected = "shell" if block.language in SHELL else None
                if marker.mode not in MODES:
                    problems.append(f"{block.where}: unknown mode {marker.mode!r}")
                elif expected and marker.mode != expected:
                    problems.append(f"{block.where}: a shell block runs in mode shell")
                elif not expected and marker.mode == "shell":
                    problems.append(f"{block.where}: mode shell for a {block.language} block")
                elif marker.expect and marker.mode not in {"collector", "embedded"}:
                    problems.append(f"{block.where}: expect needs a collector or embedded block")
    assert problems == []


def test_every_python_and_shell_block_of_the_readme_runs() -> None:
    readme = [b for b in _PAGE_BLOCKS[ROOT / "README.md"] if b.language in PYTHON]
    assert readme, "the README has Python blocks"
    assert all(b.marker is not None and b.marker.runnable for b in readme)
    assert any(b.marker is not None and b.marker.expect for b in readme)


#: How an indented line that is a command or code begins (formulas may stay indented).
_COMMAND = re.compile(
    r"^ {4}(\.venv/|python|pip |bash |llmspans|import |from \w+ import|curl |docker |export )"
)


def test_no_command_hides_in_an_indented_block() -> None:
    """A four-space indented block after a paragraph is code too, without a language
    or a marker: commands and code go in fences."""
    problems = []
    for page in PAGES:
        lines = page.read_text("utf-8").splitlines()
        inside = False
        for number, line in enumerate(lines, start=1):
            if re.match(r"^\s*```", line):
                inside = not inside
                continue
            after_blank = number > 1 and not lines[number - 2].strip()
            if not inside and after_blank and _COMMAND.match(line):
                problems.append(f"{page.relative_to(ROOT)}:{number}: {line.strip()}")
    assert problems == []


def test_the_example_config_says_what_happens_without_phoenix() -> None:
    example = (ROOT / "collector" / "collector.example.yaml").read_text("utf-8")
    assert "Without Phoenix" in example
    families = {row.prometheus_name for row in COLLECTOR_HEALTH}
    for metric in re.findall(r"llmspans_collector_\w+", example):
        assert metric.removesuffix("_total") in families, f"{metric} is named in the example config"


@pytest.mark.parametrize(
    ("comment", "runnable", "mode"),
    [
        ("<!-- not-runnable: needs docker -->", False, "needs docker"),
        ('<!-- runnable: collector\nexpect: a_total{x="1"} 5\n-->', True, "collector"),
    ],
)
def test_markers_are_read(comment: str, runnable: bool, mode: str, tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(f"text\n\n{comment}\n```python\nprint(1)\n```\n")
    (block,) = blocks(page)
    assert block.marker is not None
    assert (block.marker.runnable, block.marker.mode) == (runnable, mode)
    if runnable:
        assert block.marker.expect == [Expectation("a_total", {"x": "1"}, 5.0)]
