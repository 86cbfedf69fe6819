"""Content capture: queries, prompts, completions, document text, action arguments.

Content is sensitive, so it is off by default (docs/conventions.md section 3). It is recorded only
when ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` is ``true`` (or one of
the newer semconv values ``SPAN_ONLY`` / ``SPAN_AND_EVENT``), or when
``configure(capture_content=True)`` says so. Every captured value is

1. turned into text (``str`` as is, other values as JSON, falling back to ``repr``),
2. passed through the user's redaction hook (``configure(redact=...)`` or
   :func:`set_redactor`), which returns the text to keep, or ``None`` to drop it,
3. truncated to ``OTEL_INSTRUMENTATION_GENAI_CONTENT_MAX_LENGTH`` characters
   (default 8192) or ``configure(content_max_length=...)``.

A redaction hook that raises drops the value: content is never recorded unredacted.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from typing import Final

from opentelemetry.trace import Span

from llmspans._context import current_run_span
from llmspans._logging import log_internal_error
from llmspans._runs import run_sampled
from llmspans._state import STATE

CAPTURE_ENV: Final = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
MAX_LENGTH_ENV: Final = "OTEL_INSTRUMENTATION_GENAI_CONTENT_MAX_LENGTH"
DEFAULT_MAX_LENGTH: Final = 8192
TRUNCATION_MARK: Final = "...[truncated]"

_TRUE_VALUES: Final = frozenset({"true", "1", "yes", "on", "span_only", "span_and_event"})

#: The redaction hook: receives the text, returns the text to record or ``None``.
Redactor = Callable[[str], str | None]


def _read_env() -> tuple[bool, int]:
    from_env = STATE.content_from_env
    if from_env is None:
        capture = os.environ.get(CAPTURE_ENV, "").strip().lower() in _TRUE_VALUES
        raw = os.environ.get(MAX_LENGTH_ENV, "").strip()
        try:
            length = int(raw) if raw else DEFAULT_MAX_LENGTH
        except ValueError:
            length = DEFAULT_MAX_LENGTH
        from_env = STATE.content_from_env = (capture, max(0, length))
    return from_env


def _capture_setting() -> bool:
    """``configure``'s or ``set_capture``'s setting, else the environment's; kept in
    ``STATE.capture_setting`` until either changes."""
    capture = STATE.capture
    if capture is None:
        capture = _read_env()[0]
    STATE.capture_setting = capture
    return capture


def capture_enabled() -> bool:
    """Whether content is recorded (default: no); always inside a run sampled for
    evaluation, which records what a judge needs (docs/evaluation.md)."""
    capture = STATE.capture_setting
    if capture is None:
        capture = _capture_setting()
    # The context is looked up only once some run was sampled (a flag: no call).
    return capture or (STATE.runs_sampled and run_sampled(current_run_span()))


def capture_enabled_in(run_span: Span | None) -> bool:
    """:func:`capture_enabled` for code that knows its run's root span (a stage's
    ``run_span``): the same answer, without looking the run up in the context."""
    capture = STATE.capture_setting
    if capture is None:
        capture = _capture_setting()
    return capture or (STATE.runs_sampled and run_sampled(run_span))


def captured_for_evaluation() -> bool:
    """Whether content is recorded only because the current run is sampled for
    evaluation (capture itself is off): its span is then marked
    ``llmspans.evaluation.sampled_content`` so the collector can strip it."""
    capture = STATE.capture
    if capture is None:
        capture = _read_env()[0]
    return not capture and bool(STATE.sampled_runs) and run_sampled(current_run_span())


def max_length() -> int:
    """Maximum number of characters of one captured value."""
    length = STATE.max_length
    if length is not None:
        return length
    return _read_env()[1]


def set_capture(enabled: bool | None) -> None:
    """Turn capture on or off in code; ``None`` goes back to the environment variable."""
    STATE.capture = enabled


def set_max_length(length: int | None) -> None:
    """Set the truncation length in code; ``None`` goes back to the environment variable."""
    if length is not None and length < 0:
        raise ValueError(f"content_max_length must be >= 0, got {length}")
    STATE.max_length = length


def set_redactor(redactor: Redactor | None) -> None:
    """Install the redaction hook applied to every captured value (``None`` removes it).

    The hook gets the text about to be recorded and returns the text to record
    instead, or ``None`` to record nothing. If it raises, the value is dropped.
    """
    STATE.redactor = redactor


def reload_environment() -> None:
    """Read the environment variables again on next use (after changing them)."""
    STATE.content_from_env = None
    STATE.capture_setting = None
    STATE.source_from_env = None
    STATE.runs_changed()


def _to_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    try:
        return json.dumps(value, default=_jsonable, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def _jsonable(value: object) -> object:
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return repr(value)


def prepare_content(value: object) -> str | None:
    """The text to record for ``value``, or ``None`` when nothing may be recorded."""
    if not capture_enabled() or value is None:
        return None
    try:
        text = _to_text(value)
    except Exception as exc:
        log_internal_error("content.serialize", exc)
        return None
    redactor: Redactor | None = STATE.redactor
    if redactor is not None:
        try:
            redacted = redactor(text)
        except Exception as exc:
            log_internal_error("content.redactor", exc)
            return None
        if redacted is None:
            return None
        text = redacted if isinstance(redacted, str) else str(redacted)
    limit = max_length()
    if len(text) > limit:
        keep = max(0, limit - len(TRUNCATION_MARK))
        text = text[:keep] + TRUNCATION_MARK if limit > len(TRUNCATION_MARK) else text[:limit]
    return text
