"""``llmspans eval DATASET.jsonl --pipeline package.module:function``: the offline harness.

Runs the app's own pipeline function over a labelled set, one run per line, with
``llmspans.run.source = offline`` on each root and the line's labels attached to
the run (docs/conventions.md sections 7 and 9):

- ``input``: the argument the pipeline is called with (an object is passed as
  keyword arguments, anything else as the one positional argument);
- ``segment``: the run's ``llmspans.segment``;
- ``relevant_ids``: ``llmspans.retrieval.relevant_ids`` on each of its retrievals;
- ``expected``: ``llmspans.task.correct`` is an exact match of the result with it,
  or what ``--check package.module:function`` (called with the result and the
  expected value) says;
- ``id`` (optional): echoed in error messages.

The runs go through the same engine as everything else: with ``--endpoint`` their
spans are exported to a collector (OTLP/HTTP); either way the report is made in
process, by the code of ``llmspans analyze``, over exactly the spans recorded
(``--traces FILE`` keeps them as OTLP JSON lines). Sync and async pipeline
functions work; ``--concurrency`` bounds how many run at once.

A line that is not a JSON object with an ``input`` is reported with its number and
skipped; a line longer than ``--max-line-bytes`` too. Exit status: 0 when every
line ran, 1 when some lines were skipped or some runs raised, 2 when the dataset or
the functions cannot be loaded.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import inspect
import json
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmspans import _attributes as A
from llmspans._argtypes import positive_int, positive_int_at_most
from llmspans._runs import RunLabels, run_labels, run_source
from llmspans._tracefiles import bounded_lines
from llmspans._tracing import get_tracer_provider, use_tracer_provider
from llmspans.analyze import analyze_lines
from llmspans.core.model import Thresholds
from llmspans.core.report import Report
from llmspans.evaluation import load_evaluator

#: ``--concurrency`` above this is refused: each run at once may hold a thread.
MAX_CONCURRENCY: Final = 256

__all__ = ["Line", "add_arguments", "read_dataset", "record_dataset", "run", "run_dataset"]

#: Lines listed on stderr before the rest is summarised.
_MAX_LISTED = 20


@dataclass(frozen=True, slots=True)
class Line:
    """One labelled input of the dataset."""

    number: int
    input: Any
    segment: str | None
    relevant_ids: tuple[str, ...] | None
    expected: Any
    has_expected: bool
    id: str | None


def _line(number: int, text: str) -> Line:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"not JSON ({error})") from None
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    if "input" not in value:
        raise ValueError('no "input"')
    segment = value.get("segment")
    if segment is not None and not isinstance(segment, str):
        raise ValueError('"segment" is not a string')
    relevant = value.get("relevant_ids")
    if relevant is not None and (
        not isinstance(relevant, list) or not all(isinstance(i, str) for i in relevant)
    ):
        raise ValueError('"relevant_ids" is not a list of strings')
    ident = value.get("id")
    return Line(
        number,
        value["input"],
        segment,
        tuple(relevant) if relevant is not None else None,
        value.get("expected"),
        "expected" in value,
        None if ident is None else str(ident),
    )


def read_dataset(
    lines: Iterable[str], max_line_bytes: int, skipped: list[tuple[int, str]]
) -> Iterator[Line]:
    """The dataset's valid lines; each bad one is added to ``skipped`` with why."""
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        if len(text.rstrip("\n").encode("utf-8", "surrogatepass")) > max_line_bytes:
            skipped.append((number, f"longer than {max_line_bytes} bytes"))
            continue
        try:
            yield _line(number, text)
        except ValueError as error:
            skipped.append((number, str(error)))


def _call_args(value: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if isinstance(value, dict):
        return (), {str(key): item for key, item in value.items()}
    return (value,), {}


def _labels(line: Line, check: Callable[[Any, Any], Any] | None) -> RunLabels:
    def correct(result: object) -> bool | None:
        if check is not None:
            verdict = check(result, line.expected)
            return None if verdict is None else bool(verdict)
        if not line.has_expected:
            return None
        return bool(result == line.expected)

    return RunLabels(line.segment, line.relevant_ids, correct)


@dataclass(slots=True)
class Outcome:
    """What running the dataset did."""

    runs: int = 0
    raised: int = 0


def run_dataset(
    lines: Iterable[Line],
    pipeline: Callable[..., Any],
    *,
    check: Callable[[Any, Any], Any] | None = None,
    concurrency: int = 4,
    progress: Callable[[int], None] | None = None,
    errors: list[str] | None = None,
) -> Outcome:
    """Run ``pipeline`` over ``lines`` with the runs labelled and marked ``offline``.

    Spans go to the library's current tracer provider. An exception of the pipeline
    is the run's (recorded on its spans): it is counted, never raised.
    """
    outcome = Outcome()
    lock = threading.Lock()  # guards outcome and errors

    def done(line: Line, error: BaseException | None) -> None:
        with lock:
            outcome.runs += 1
            if error is not None:
                outcome.raised += 1
                if errors is not None and len(errors) < _MAX_LISTED:
                    name = line.id or f"line {line.number}"
                    errors.append(f"{name}: {type(error).__name__}: {error}")
            count = outcome.runs
        if progress is not None:
            progress(count)

    if inspect.iscoroutinefunction(pipeline):

        async def main() -> None:
            gate = asyncio.Semaphore(max(1, concurrency))

            async def one(line: Line) -> None:
                async with gate:
                    args, kwargs = _call_args(line.input)
                    error: BaseException | None = None
                    with run_source(A.SOURCE_OFFLINE), run_labels(_labels(line, check)):
                        try:
                            await pipeline(*args, **kwargs)
                        except Exception as exc:
                            error = exc
                    done(line, error)

            await asyncio.gather(*(one(line) for line in lines))

        asyncio.run(main())
        return outcome

    def one_sync(line: Line) -> None:
        args, kwargs = _call_args(line.input)
        error: BaseException | None = None
        with run_source(A.SOURCE_OFFLINE), run_labels(_labels(line, check)):
            try:
                pipeline(*args, **kwargs)
            except Exception as exc:
                error = exc
        done(line, error)

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        # A bounded window of submitted lines: a huge dataset is streamed, not queued.
        pending: list[Any] = []
        for line in lines:
            pending.append(pool.submit(one_sync, line))
            if len(pending) >= 4 * max(1, concurrency):
                pending.pop(0).result()
        for future in pending:
            future.result()
    return outcome


def record_dataset(
    lines: Iterable[Line],
    pipeline: Callable[..., Any],
    *,
    check: Callable[[Any, Any], Any] | None = None,
    concurrency: int = 4,
    progress: Callable[[int], None] | None = None,
    errors: list[str] | None = None,
    endpoint: str | None = None,
    service_name: str = "llmspans-eval",
) -> tuple[Outcome, list[str]]:
    """:func:`run_dataset` through a tracer provider of its own; what it did and the
    spans it recorded, as OTLP JSON lines (``analyze`` and ``diverge`` read them).

    With ``endpoint`` the spans are also exported to a collector over OTLP/HTTP. The
    library's tracer provider is put back afterwards.
    """
    captured = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    provider.add_span_processor(SimpleSpanProcessor(captured))
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        url = endpoint.rstrip("/")
        if not url.endswith("/v1/traces"):
            url += "/v1/traces"
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    previous = get_tracer_provider()
    use_tracer_provider(provider)
    try:
        outcome = run_dataset(
            lines,
            pipeline,
            check=check,
            concurrency=concurrency,
            progress=progress,
            errors=errors,
        )
    finally:
        use_tracer_provider(previous)
        provider.shutdown()
    return outcome, list(otlp_json_lines(captured.get_finished_spans()))


def _hex_ids(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: base64.b64decode(item).hex()
            if key in ("traceId", "spanId", "parentSpanId") and isinstance(item, str) and item
            else _hex_ids(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_hex_ids(item) for item in value]
    return value


def otlp_json_lines(spans: Iterable[ReadableSpan], per_line: int = 512) -> Iterator[str]:
    """Spans as OTLP JSON lines (hex ids), as the OpenTelemetry file exporters write them."""
    batch: list[ReadableSpan] = []
    for span in spans:
        batch.append(span)
        if len(batch) >= per_line:
            yield json.dumps(_hex_ids(json_format.MessageToDict(encode_spans(batch))))
            batch = []
    if batch:
        yield json.dumps(_hex_ids(json_format.MessageToDict(encode_spans(batch))))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="JSON lines: input, segment, relevant_ids, expected, id")
    parser.add_argument(
        "--pipeline", required=True, help="the pipeline function, as package.module:function"
    )
    parser.add_argument(
        "--check",
        default=None,
        help="package.module:function(result, expected) -> bool, instead of an exact match",
    )
    parser.add_argument(
        "--concurrency",
        type=positive_int_at_most(MAX_CONCURRENCY),
        default=4,
        help=f"runs at once (default 4, at most {MAX_CONCURRENCY})",
    )
    parser.add_argument(
        "--endpoint",
        default=None,
        help="also export the spans over OTLP/HTTP to this collector (base URL)",
    )
    parser.add_argument(
        "--traces", default=None, help="write the recorded spans here (OTLP JSON lines)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--max-line-bytes",
        type=positive_int,
        default=1 << 20,
        help="longer dataset lines are skipped",
    )


def _progress(total: int | None, stream: TextIO) -> Callable[[int], None]:
    width = 30

    def show(count: int) -> None:
        if not stream.isatty():
            return
        if total:
            filled = width * count // total
            stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {count}/{total}")
        else:
            stream.write(f"\r{count} runs")
        stream.flush()

    return show


def _load(spec: str, what: str) -> Callable[..., Any]:
    """``package.module:function``, importable from the current directory too."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return load_evaluator(spec)
    except ValueError as error:
        raise ValueError(str(error).replace("evaluator", what, 1)) from None


def run(args: argparse.Namespace) -> int:
    try:
        pipeline = _load(args.pipeline, "--pipeline")
        check = _load(args.check, "--check") if args.check else None
        skipped: list[tuple[int, str]] = []
        with Path(args.dataset).open("rb") as raw:
            lines = list(
                read_dataset(bounded_lines(raw, args.max_line_bytes), args.max_line_bytes, skipped)
            )
    except (ValueError, OSError) as error:
        print(f"llmspans eval: {error}", file=sys.stderr)
        return 2
    for number, why in skipped[:_MAX_LISTED]:
        print(f"llmspans eval: skipped line {number}: {why}", file=sys.stderr)

    errors: list[str] = []
    outcome, recorded = record_dataset(
        lines,
        pipeline,
        check=check,
        concurrency=args.concurrency,
        progress=_progress(len(lines), sys.stderr),
        errors=errors,
        endpoint=args.endpoint,
    )
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    if args.traces:
        Path(args.traces).write_text("".join(line + "\n" for line in recorded), encoding="utf-8")
    report: Report = analyze_lines(recorded, Thresholds())
    for message in errors:
        print(f"llmspans eval: {message}", file=sys.stderr)
    print(
        f"llmspans eval: {outcome.runs} runs, {outcome.raised} raised, "
        f"{len(skipped)} lines skipped",
        file=sys.stderr,
    )
    if args.json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        sys.stdout.write(report.render())
    return 1 if skipped or outcome.raised else 0
