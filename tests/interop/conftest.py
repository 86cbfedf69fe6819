"""Fixtures of the interoperability tests: a fake OpenAI API and a real collector."""

from __future__ import annotations

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
