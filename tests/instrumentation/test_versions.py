"""The version policy: a new major is instrumented with a warning; a skip always says why."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import ClassVar

import anthropic
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from llmspans._state import STATE
from llmspans.instrumentation import INSTRUMENTORS, _load, instrument, uninstrument
from llmspans.instrumentation._patching import Patch
from llmspans.instrumentation._versions import (
    VersionedInstrumentor,
    installed_version,
    unavailable_reason,
)
from llmspans.instrumentation.anthropic import AnthropicInstrumentor
from llmspans.instrumentation.openai import OpenAIInstrumentor

from .fake_providers import FakeProviderServer

MESSAGES = [{"role": "user", "content": "hi"}]


class _UntestedOpenAIInstrumentor(OpenAIInstrumentor):
    _instance = None  # BaseInstrumentor is a per-class singleton
    tested: ClassVar[str] = "< 1"


class _TooOldOpenAIInstrumentor(OpenAIInstrumentor):
    _instance = None
    requirement: ClassVar[str] = "openai >= 999"


def test_every_instrumentor_declares_a_floor_and_the_tested_versions() -> None:
    for name in INSTRUMENTORS:
        instrumentor = _load(name)
        assert isinstance(instrumentor, VersionedInstrumentor), name
        assert "<" not in instrumentor.requirement, f"{name}: no upper bound in the requirement"
        assert instrumentor.tested.startswith("<"), name


def test_anthropic_2_is_supported_and_tested() -> None:
    requirement = Requirement(AnthropicInstrumentor.requirement)
    for version in ("1.17.0", "2.0.0", "2.16.0"):
        assert Version(version) in requirement.specifier
        assert Version(version) in SpecifierSet(AnthropicInstrumentor.tested)
    assert Version("3.0.0") not in SpecifierSet(AnthropicInstrumentor.tested)
    installed = installed_version(AnthropicInstrumentor.requirement)
    assert installed == anthropic.__version__
    instrumentor = AnthropicInstrumentor()
    assert instrumentor.available()
    assert instrumentor.untested_version() is None


def test_an_untested_release_is_instrumented_with_one_warning(
    server: FakeProviderServer, caplog: pytest.LogCaptureFixture
) -> None:
    import openai

    STATE.logged_kinds.clear()
    uninstrument("openai")
    instrumentor = _UntestedOpenAIInstrumentor()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        with caplog.at_level(logging.DEBUG, logger="llmspans"):
            instrumentor.instrument(tracer_provider=provider, skip_dep_check=True)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert f"openai {openai.__version__} is newer than the versions" in warnings[0]
        assert "instrumenting it anyway" in warnings[0]
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="k", max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert [s.name for s in exporter.get_finished_spans()] == ["chat gpt-4o-mini"]
    finally:
        instrumentor.uninstrument()
        from .conftest import _METER_PROVIDER, _PROVIDER

        instrument("openai", tracer_provider=_PROVIDER, meter_provider=_METER_PROVIDER)


def test_a_release_below_the_floor_is_skipped_with_the_reason(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmspans import instrumentation

    instrumentor = _TooOldOpenAIInstrumentor()
    reason = unavailable_reason(instrumentor)
    assert reason is not None
    assert reason.startswith("openai ") and "llmspans supports openai >= 999" in reason
    assert "not installed" not in reason

    uninstrument("openai")
    monkeypatch.setattr(instrumentation, "_load", lambda name: instrumentor)
    try:
        with caplog.at_level(logging.DEBUG, logger="llmspans"):
            assert instrument("openai") == []
        skipped = [r for r in caplog.records if "skipped" in r.getMessage()]
        assert len(skipped) == 1
        assert skipped[0].levelno == logging.WARNING
        assert "llmspans supports openai >= 999" in skipped[0].getMessage()
    finally:
        monkeypatch.undo()
        from .conftest import _METER_PROVIDER, _PROVIDER

        instrument("openai", tracer_provider=_PROVIDER, meter_provider=_METER_PROVIDER)


def test_a_missing_library_is_reported_as_not_installed() -> None:
    class _Missing(VersionedInstrumentor):
        _instance = None
        library: ClassVar[str] = "llmspans_no_such_client"
        requirement: ClassVar[str] = "llmspans-no-such-client >= 1"
        tested: ClassVar[str] = "< 2"

        def patches(self, tracer: Tracer) -> Sequence[Patch]:
            return ()

    assert unavailable_reason(_Missing()) == "llmspans_no_such_client is not installed"


class _RenamedMethodInstrumentor(OpenAIInstrumentor):
    _instance = None
    tested: ClassVar[str] = "< 1"

    def patches(self, tracer: Tracer) -> Sequence[Patch]:
        gone = Patch("json", "NoSuchClass.create", "test.gone", _no_read, _no_respond)
        return (gone,)


def _no_read(*_: object) -> object:
    raise AssertionError("never called")


def _no_respond(*_: object) -> object:
    raise AssertionError("never called")


def test_a_method_missing_in_an_untested_release_is_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    STATE.logged_kinds.clear()
    instrumentor = _RenamedMethodInstrumentor()
    try:
        with caplog.at_level(logging.WARNING, logger="llmspans"):
            instrumentor.instrument(tracer_provider=TracerProvider(), skip_dep_check=True)
        messages = [r.getMessage() for r in caplog.records]
        assert any("has no json.NoSuchClass.create" in m for m in messages), messages
    finally:
        instrumentor.uninstrument()
