"""A loopback OpenAI-compatible API with the two failures the interop tests need.

Reuses the chat answer of :mod:`tests.instrumentation.fake_providers` and adds two
models: one that gets HTTP 500, one whose answer is a refusal (``finish_reason``
``content_filter`` and the ``refusal`` field set, as OpenAI sends them).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.instrumentation.fake_providers import _chat_completion

#: A model name that makes the fake answer HTTP 500.
FAILING_MODEL = "model-that-500s"
#: A model name that makes the fake answer with a refusal.
REFUSING_MODEL = "model-that-refuses"


def _refusal(model: str) -> dict[str, Any]:
    body = _chat_completion(model)
    choice = body["choices"][0]
    choice["message"] = {
        "role": "assistant",
        "content": None,
        "refusal": "I can't help with that.",
        "annotations": [],
    }
    choice["finish_reason"] = "content_filter"
    return body


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server: FakeOpenAI

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        model = str(body.get("model", ""))
        if model == FAILING_MODEL:
            status, answer = 500, {"error": {"message": "internal error", "type": "server_error"}}
        elif model == REFUSING_MODEL:
            status, answer = 200, _refusal(model)
        else:
            status, answer = 200, _chat_completion(model)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeOpenAI(ThreadingHTTPServer):
    """``/v1/chat/completions`` on 127.0.0.1; ``start()``, ``url``, ``stop()``."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)
