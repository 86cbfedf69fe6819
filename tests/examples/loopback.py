"""A loopback HTTP server for the examples tests: a stand-in model endpoint or trace backend."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer


class LoopbackHandler(BaseHTTPRequestHandler):
    """The request handler of a loopback server: replies in one call, logs nothing."""

    def reply(self, data: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serving(handler: type[LoopbackHandler]) -> Iterator[str]:
    """``handler`` served on a free loopback port (``http://127.0.0.1:PORT``) until exit."""
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
