"""The fenced code blocks of the documentation, and the markers that say how to run them.

A Python or shell block is preceded by an HTML comment (invisible on the rendered
page) that either says how the test suite runs it and what it must show::

    <!-- runnable: collector
    expect: llmspans_task_outcomes_total{pipeline="support_answer",outcome="success"} 5
    -->

or why it cannot run here::

    <!-- not-runnable: needs docker -->

Modes: ``collector`` (Python, with ``OTEL_EXPORTER_OTLP_ENDPOINT`` set to a real
llmspans collector; ``expect`` lines are checked against the growth of its
``/metrics``), ``embedded`` (Python, no collector listening; ``expect`` lines are
checked against the Prometheus endpoint of the ``configure(embedded=True,
metrics_port=...)`` the block sets up, scraped when the block has run), ``python``
(Python, nothing else running) and ``shell`` (``bash -euo pipefail``, the
environment's ``python`` and ``llmspans`` first on ``PATH``). Options, one per line:

- ``expect: NAME{LABEL="VALUE",...} NUMBER``: the sum of the series with these
  labels (any others are summed over) equals NUMBER;
- ``expect-output: TEXT``: the block's standard output contains TEXT;
- ``in-place-of: TEXT``: the block is a replacement for the line of the page's
  previous Python block that starts with TEXT, and runs as that whole block.

Every other fence names its language (``text`` for output, ``yaml``, ``promql``),
so nothing on a page is code that silently never runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: The pages whose blocks are checked: the README, every page of docs/, the examples' README.
PAGES = (
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    ROOT / "examples" / "README.md",
)

PYTHON = frozenset({"python", "py"})
SHELL = frozenset({"bash", "sh", "shell", "console"})
MODES = frozenset({"collector", "embedded", "python", "shell"})

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<ticks>`{3,})(?P<language>[\w+-]*)\s*$")
_MARKER = re.compile(r"<!--\s*(?P<kind>runnable|not-runnable):(?P<body>.*?)-->", re.DOTALL)
_EXPECT = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Expectation:
    """``expect: NAME{LABELS} VALUE``."""

    name: str
    labels: dict[str, str]
    value: float

    @classmethod
    def parse(cls, text: str) -> Expectation:
        found = _EXPECT.match(text.strip())
        if found is None:
            raise ValueError(f"cannot read the expectation {text!r}")
        labels = dict(_LABEL.findall(found.group("labels") or ""))
        return cls(found.group("name"), labels, float(found.group("value")))

    def __str__(self) -> str:
        labels = ",".join(f'{k}="{v}"' for k, v in self.labels.items())
        return f"{self.name}{{{labels}}} {self.value:g}"


@dataclass(frozen=True)
class Marker:
    """What the comment before a block says: how to run it, or why it is not run."""

    runnable: bool
    #: the mode when runnable, else the reason
    mode: str
    expect: list[Expectation] = field(default_factory=list)
    expect_output: list[str] = field(default_factory=list)
    in_place_of: str | None = None

    @classmethod
    def parse(cls, kind: str, body: str) -> Marker:
        first, *rest = body.strip().splitlines() or [""]
        if kind == "not-runnable":
            return cls(False, " ".join([first, *rest]).strip())
        marker = cls(True, first.strip())
        for line in rest:
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "expect":
                marker.expect.append(Expectation.parse(value))
            elif key == "expect-output":
                marker.expect_output.append(value)
            elif key == "in-place-of":
                object.__setattr__(marker, "in_place_of", value)
            elif key:
                raise ValueError(f"unknown marker option {key!r}")
        return marker


@dataclass(frozen=True)
class Block:
    page: Path
    #: 1-based line of the opening fence
    line: int
    language: str
    code: str
    marker: Marker | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def is_code(self) -> bool:
        return self.language in PYTHON | SHELL


def blocks(page: Path) -> Iterator[Block]:
    """The fenced blocks of ``page``, each with the marker right before it (if any)."""
    lines = page.read_text("utf-8").splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, ticks = opening.group("indent"), opening.group("ticks")
        body: list[str] = []
        end = index + 1
        while end < len(lines) and lines[end].strip() != ticks:
            text = lines[end]
            body.append(text[len(indent) :] if text.startswith(indent) else text.lstrip())
            end += 1
        if end == len(lines):
            raise ValueError(f"{page}:{index + 1}: the fence is never closed")
        yield Block(
            page,
            index + 1,
            opening.group("language").lower(),
            "\n".join(body) + "\n",
            _marker_before(lines, index),
        )
        index = end + 1


def _marker_before(lines: list[str], fence: int) -> Marker | None:
    """The ``runnable`` / ``not-runnable`` comment that ends on the line before ``fence``."""
    end = fence - 1
    if end < 0 or not lines[end].strip().endswith("-->"):
        return None
    start = end
    while start >= 0 and "<!--" not in lines[start]:
        start -= 1
    if start < 0:
        return None
    found = _MARKER.search("\n".join(lines[start : end + 1]))
    if found is None:
        return None
    return Marker.parse(found.group("kind"), found.group("body"))


def program(block: Block, page_blocks: list[Block]) -> str:
    """The code a runnable block stands for (``in-place-of`` resolved)."""
    marker = block.marker
    if marker is None or marker.in_place_of is None:
        return block.code
    earlier = [
        b for b in page_blocks if b.line < block.line and b.language in PYTHON and b is not block
    ]
    if not earlier:
        raise ValueError(f"{block.where}: in-place-of, but no Python block before it")
    base = earlier[-1].code.splitlines()
    hits = [i for i, text in enumerate(base) if text.startswith(marker.in_place_of)]
    if len(hits) != 1:
        raise ValueError(
            f"{block.where}: {marker.in_place_of!r} starts {len(hits)} lines of "
            f"{earlier[-1].where}, expected exactly one"
        )
    replaced = [*base[: hits[0]], *block.code.rstrip("\n").splitlines(), *base[hits[0] + 1 :]]
    return "\n".join(replaced) + "\n"
