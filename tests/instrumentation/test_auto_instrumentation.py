"""``opentelemetry-instrument`` picks the instrumentors up through their entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from llmspans import _attributes as attr
from llmspans.instrumentation import INSTRUMENTORS

from .fake_providers import FakeProviderServer

_BIN = Path(sys.executable).parent

SCRIPT = """
import os, sys
import llmspans
import openai
from qdrant_client import QdrantClient, models

client = openai.OpenAI(base_url=os.environ["FAKE_OPENAI_URL"], api_key="k", max_retries=0)
reply = client.chat.completions.create(
    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
)
assert reply.choices[0].message.content == "The answer is 42."

qdrant = QdrantClient(":memory:")
qdrant.create_collection(
    "kb", vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT)
)
qdrant.upsert("kb", points=[models.PointStruct(id=5, vector=[1.0, 0.0])])
qdrant.query_points("kb", query=[1.0, 0.0], limit=1)
# already enabled by the launcher: instrument() reports them and patches nothing twice
print("ENABLED", ",".join(llmspans.instrument()), file=sys.stderr)
client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "2"}])
print("SCRIPT-DONE", file=sys.stderr)
"""


def _console_spans(output: str) -> list[dict[str, Any]]:
    """The spans the console exporter printed (one JSON document each)."""
    decoder = json.JSONDecoder()
    spans: list[dict[str, Any]] = []
    index = 0
    while True:
        start = output.find("{", index)
        if start < 0:
            return spans
        document, index = decoder.raw_decode(output, start)
        if isinstance(document, dict) and "context" in document:
            spans.append(document)


def test_opentelemetry_instrument_emits_llmspans_spans(
    tmp_path: Path, fake_server: FakeProviderServer
) -> None:
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {
        **os.environ,
        "FAKE_OPENAI_URL": f"{fake_server.url}/v1",
        "OTEL_SERVICE_NAME": "auto-test",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        # the peers' instrumentors (OpenInference, OpenLLMetry, openai-v2; installed
        # with the integrations extra) register as "openai" and "langchain" in the
        # same entry-point group; keep them out
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "openai,langchain",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    completed = subprocess.run(
        [str(_BIN / "opentelemetry-instrument"), sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "SCRIPT-DONE" in completed.stderr
    enabled = ",".join(INSTRUMENTORS)
    assert f"ENABLED {enabled}" in completed.stderr
    printed = _console_spans(completed.stdout)
    assert [span["name"] for span in printed].count("chat gpt-4o-mini") == 2
    spans = {span["name"]: span for span in printed}
    chat = spans["chat gpt-4o-mini"]
    assert chat["kind"] == "SpanKind.CLIENT"
    assert chat["attributes"][attr.STAGE] == "generation"
    assert chat["attributes"][attr.GEN_AI_USAGE_INPUT_TOKENS] == 1200
    retrieval = spans["retrieval kb"]
    assert retrieval["attributes"][attr.RETRIEVAL_DOCUMENT_IDS] == ["5"]
    assert retrieval["attributes"][attr.RETRIEVAL_SCORES] == [1.0]
    # no span from the disabled openinference instrumentor
    assert not any(name.startswith("ChatCompletion") for name in spans)
