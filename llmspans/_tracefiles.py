"""Reading the files the ``llmspans`` commands take: OTLP JSON lines and datasets.

``llmspans analyze``, ``llmspans diverge`` and the tests read recorded traces as
OTLP JSON lines, one ``ExportTraceServiceRequest`` per line, as the OpenTelemetry
file exporters and ``llmspans-collector``'s file exporter write them:
:func:`open_trace_lines` opens a file (gzip when its name ends in ``.gz``) or
standard input (``-``) as text lines, and :func:`iter_otlp_json_lines` turns the
lines into :class:`~llmspans.core.records.SpanRecord` with the core's converter
(:func:`llmspans.core.convert.records_from_otlp_json`), reporting each bad line
with its number. ``llmspans eval`` reads its dataset with :func:`bounded_lines`.

Bytes that are not UTF-8 become U+FFFD everywhere: such a line is still read, or
reported as unreadable, instead of ending the whole read.

Every reader keeps at most ``max_line_bytes`` + 1 bytes of one line (while it
cuts one, a few times that: the cut bytes, their text and one piece of the rest):
a longer line comes out cut to that many bytes and the rest of it is read past, so
the consumer reports it as too long (:func:`iter_otlp_json_lines` with
``max_line_bytes``) without a file of one endless line, or a gzip bomb, filling
memory. The default, :data:`MAX_LINE_BYTES`, is the largest request the collector
takes by default: one export request per line.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Final

from llmspans.core.convert import records_from_otlp_json, salvage_otlp_json
from llmspans.core.records import SpanRecord

__all__ = [
    "MAX_LINE_BYTES",
    "Unreadable",
    "bounded_lines",
    "gzip_lines",
    "iter_otlp_json_file",
    "iter_otlp_json_lines",
    "open_trace_lines",
]

#: Bytes of input read (and of gzip output inflated) at a time.
_CHUNK: Final = 1 << 16

#: The longest line read whole by default: the collector's default
#: ``max_request_bytes`` (one OTLP export request per line).
MAX_LINE_BYTES: Final = 64 * 1024 * 1024


class Unreadable(Exception):
    """The input cannot be read at all (not gzip, or broken before its first line)."""


@contextlib.contextmanager
def open_trace_lines(
    path: str | Path,
    on_break: Callable[[str], None] | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[Iterator[str]]:
    """The text lines of a traces file: ``-`` is standard input, a name ending in
    ``.gz`` is read through gzip (see :func:`gzip_lines` for ``on_break``; without
    it a break raises :class:`Unreadable`), anything else is plain UTF-8. Lines
    longer than ``max_line_bytes`` come out cut (see the module docstring).

    Raises ``OSError`` when the file cannot be opened.
    """
    name = str(path)
    if name == "-":
        yield bounded_lines(sys.stdin.buffer, max_line_bytes)
    elif name.endswith(".gz"):
        with open(name, "rb") as raw:
            yield gzip_lines(raw, on_break or _raise_break, max_line_bytes)
    else:
        with open(name, "rb") as raw:
            yield bounded_lines(raw, max_line_bytes)


def _raise_break(message: str) -> None:
    raise Unreadable(message)


def gzip_lines(
    raw: BinaryIO, on_break: Callable[[str], None], max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[str]:
    """The text lines of a gzip stream, read up to a break if there is one.

    A stream cut short, or corrupt part way, yields every complete line before the
    break, then reports it once through ``on_break``; one broken before its first
    complete line raises :class:`Unreadable`. Bytes that are not UTF-8 become
    U+FFFD, as for plain files. Concatenated gzip members are read one after another.
    At most ``_CHUNK`` bytes are inflated at a time and at most ``max_line_bytes`` + 1
    of one line kept: a longer line comes out cut to that.
    """
    pending = bytearray()  # the line read so far, never more than max_line_bytes + 1
    cut = False  # the current line passed the bound: the rest of it is read past
    complete = 0
    problem: str | None = None
    with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
        while True:
            try:
                data = stream.read1(_CHUNK)
            except EOFError:
                problem = "the compressed data ends early (the file is truncated)"
                break
            except (gzip.BadGzipFile, zlib.error) as error:
                problem = f"corrupt compressed data ({error})"
                break
            if not data:
                break
            start = 0
            while True:
                end = data.find(b"\n", start)
                piece = data[start:] if end < 0 else data[start : end + 1]
                if not cut:
                    pending += piece
                    if len(pending) > max_line_bytes + (end >= 0):
                        del pending[max_line_bytes + 1 :]
                        cut = True
                if end < 0:
                    break
                complete += 1
                yield pending.decode("utf-8", errors="replace")
                pending.clear()
                cut = False
                start = end + 1
    if problem is None:
        if pending:
            yield pending.decode("utf-8", errors="replace")
        return
    if complete == 0:
        raise Unreadable(f"not a readable gzip file: {problem}")
    dropped = " (the incomplete line after it is ignored)" if pending.strip() else ""
    on_break(f"{problem}; read up to line {complete}{dropped}")


def bounded_lines(raw: BinaryIO, max_line_bytes: int) -> Iterator[str]:
    """The file's lines, never holding more than ``max_line_bytes`` + 1 bytes of one:
    the rest of a longer line is read past and the line comes out cut to that many
    bytes (so its reader, :func:`iter_otlp_json_lines` or
    ``llmspans.offline.read_dataset``, reports it as too long)."""
    while True:
        line = raw.readline(max_line_bytes + 1)
        if not line:
            return
        if len(line) > max_line_bytes and not line.endswith(b"\n"):
            while True:  # skip the rest of the long line, a bounded piece at a time
                rest = raw.readline(max_line_bytes + 1)
                if not rest or rest.endswith(b"\n"):
                    break
        yield line.decode("utf-8", errors="replace")


def _not_a_trace_request(request: Any) -> str | None:
    """Why a line that is valid JSON is still no trace export request, or ``None``.

    An object with other keys and no ``resourceSpans`` is JSON of some other kind (a
    log record, metrics, a config): counting it as zero spans would hide that the
    file is not what was meant. ``{}`` is an empty request, as protobuf writes one.
    """
    if not isinstance(request, dict) or not request:
        return None
    if "resourceSpans" in request or "resource_spans" in request:
        return None
    keys = sorted(str(key) for key in request)
    shown = ", ".join(keys[:5]) + (", ..." if len(keys) > 5 else "")
    return f"valid JSON but not an OTLP trace export request: no resourceSpans (keys: {shown})"


def iter_otlp_json_lines(
    lines: Iterable[str],
    on_error: Callable[[int, str], None] | None = None,
    max_line_bytes: int | None = None,
) -> Iterator[SpanRecord]:
    """Records from OTLP JSON lines (one export request per line; blank lines skipped).

    A bad line (not JSON, malformed OTLP, JSON that is no trace export request, such
    as ``{"a": 1}``, or longer than ``max_line_bytes`` in UTF-8 when that is given)
    raises ``ValueError`` with its 1-based line number, unless
    ``on_error(line_number, message)`` is given: then each bad line is reported there
    once, its well-formed spans are still used, and every valid line is read.
    """
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        # The line as read, not stripped: a line cut at the bound inside white space
        # is still too long, not a piece of JSON cut short.
        if max_line_bytes is not None and _longer(line.rstrip("\r\n"), max_line_bytes):
            message = f"longer than {max_line_bytes} bytes"
            if on_error is None:
                raise ValueError(f"line {number}: {message}")
            on_error(number, message)
            continue
        try:
            request = json.loads(text)
        except json.JSONDecodeError as error:
            message = f"invalid JSON: {error}"
        except RecursionError:
            message = "invalid JSON: nested too deeply"
        else:
            foreign = _not_a_trace_request(request)
            if foreign is not None:
                message = foreign
            else:
                try:
                    records = records_from_otlp_json(request)
                except ValueError as error:
                    if on_error is None:
                        raise ValueError(f"line {number}: {error}") from None
                    records, errors = salvage_otlp_json(request)
                    skipped = f"{len(errors)} malformed part(s) skipped" if len(errors) > 1 else ""
                    kept = f"{len(records)} valid span(s) of this line kept" if records else ""
                    note = "; ".join(part for part in (skipped, kept) if part)
                    on_error(number, f"{error}" + (f" ({note})" if note else ""))
                yield from records
                continue
        if on_error is None:
            raise ValueError(f"line {number}: {message}")
        on_error(number, message)


def iter_otlp_json_file(
    path: str | Path,
    on_error: Callable[[int, str], None] | None = None,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[SpanRecord]:
    """Records from an OTLP JSON lines file, gzip or plain, as :func:`open_trace_lines`
    reads it (see :func:`iter_otlp_json_lines` for ``on_error``)."""
    with open_trace_lines(path, max_line_bytes=max_line_bytes) as lines:
        yield from iter_otlp_json_lines(lines, on_error, max_line_bytes)


def _longer(text: str, max_bytes: int) -> bool:
    """Whether ``text`` takes more than ``max_bytes`` in UTF-8 (a character takes one
    to four bytes: only a line near the bound is encoded to tell)."""
    if len(text) > max_bytes:
        return True
    if len(text) * 4 <= max_bytes:
        return False
    return len(text.encode("utf-8", "surrogatepass")) > max_bytes
