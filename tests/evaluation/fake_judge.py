"""A loopback OpenAI-compatible chat endpoint that answers as a judge would.

``replies`` is a list of (status, body bytes, delay seconds) served in order, the
last one repeated; every request body is kept for assertions.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def chat_reply(content: str, prompt_tokens: int = 1000, completion_tokens: int = 50) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": "judge-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    ).encode()


class _Handler(BaseHTTPRequestHandler):
    server: FakeJudgeServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length))
        server = self.server
        with server.lock:
            server.requests.append(
                {"body": body, "authorization": self.headers.get("Authorization")}
            )
            status, reply, delay = server.replies[min(server.served, len(server.replies) - 1)]
            server.served += 1
        if delay:
            time.sleep(delay)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
        except OSError:
            pass


class FakeJudgeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, replies: list[tuple[int, bytes, float]]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.replies = replies
        self.served = 0
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()  # guards served and requests

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def __enter__(self) -> FakeJudgeServer:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
