"""Fixtures of the interoperability tests: a fake OpenAI API and a real collector."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator

import pytest

from tests.collector.collector_support import loop_thread, sink, start_collector

from .fake_api import FakeOpenAI

__all__ = ["fake_openai", "loop_thread", "sink", "start_collector"]


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def openai_methods_restored() -> Iterator[None]:
    """The ``openai`` client's methods as they were before each test.

    ``opentelemetry-instrumentation-openai`` 0.62.4's ``uninstrument()`` leaves its
    wrappers of ``chat.completions.create`` and ``parse`` in place, bound to a tracer
    provider the test has shut down: every later test would get an unexported span
    in the middle of its call, and its spans an unknown parent.
    """
    import openai.resources  # noqa: F401  (the modules walked below)

    before = {
        (cls, name): value
        for module_name, module in list(sys.modules.items())
        if module_name.startswith("openai.resources") and module is not None
        for cls in list(vars(module).values())
        if inspect.isclass(cls) and cls.__module__ == module_name
        for name, value in list(vars(cls).items())
        if callable(value)
    }
    yield
    for (cls, name), value in before.items():
        if vars(cls).get(name) is not value:
            setattr(cls, name, value)
