"""A webhook receiver for Alertmanager: logs every notification, keeps them for reading back.

docker-compose.yml runs it as ``alert-sink`` so that the stack shows pages and
tickets without a real pager (``docker compose logs -f alert-sink``); the live
alerting test uses it as the webhook that must receive the spike alert. Replace
its URLs in ``alertmanager.yml`` with your pager's (PagerDuty, Opsgenie, Slack)
in production.

    python -m llmspans.collector.alert_sink --listen 0.0.0.0:9099

``POST /<path>`` takes Alertmanager's webhook JSON (version 4); ``GET /notifications``
returns what arrived so far as a JSON array of ``{"path": ..., "body": ...}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

MAX_BODY: Final = 16 * 1024 * 1024


class WebhookSink:
    """An HTTP server on ``host:port`` (0: a free port) collecting webhook notifications."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, echo: bool = False) -> None:
        self._lock = threading.Lock()  # protects _notifications
        self._notifications: list[dict[str, Any]] = []
        self._echo = echo
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self.send_error(413, "body too large")
                    return
                try:
                    body = json.loads(self.rfile.read(length) or b"null")
                except json.JSONDecodeError as error:
                    self.send_error(400, f"not JSON: {error}")
                    return
                sink._add(self.path, body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                if self.path != "/notifications":
                    self.send_error(404)
                    return
                payload = json.dumps(sink.notifications()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="webhook-sink", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "/") -> str:
        host = str(self._server.server_address[0])
        return f"http://{host}:{self.port}{path}"

    def start(self) -> WebhookSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _add(self, path: str, body: Any) -> None:
        with self._lock:
            self._notifications.append({"path": path, "body": body})
        if self._echo:
            for line in describe(path, body):
                print(line, flush=True)

    def notifications(self) -> list[dict[str, Any]]:
        """Every notification so far, oldest first."""
        with self._lock:
            return list(self._notifications)

    def alerts(self, status: str | None = "firing") -> list[dict[str, Any]]:
        """The alerts of every notification (with ``status`` when given)."""
        found = []
        for notification in self.notifications():
            body = notification["body"]
            for alert in body.get("alerts", []) if isinstance(body, dict) else []:
                if status is None or alert.get("status") == status:
                    found.append(alert)
        return found


def describe(path: str, body: Any) -> list[str]:
    """One readable line per alert of a notification."""
    if not isinstance(body, dict):
        return [f"{path}: {body!r}"]
    lines = []
    for alert in body.get("alerts", []):
        labels = alert.get("labels", {})
        name = labels.get("alertname", "?")
        rest = " ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "alertname")
        summary = alert.get("annotations", {}).get("summary", "")
        lines.append(f"{path} {alert.get('status', '?').upper()} {name} {rest} :: {summary}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llmspans.collector.alert_sink")
    parser.add_argument("--listen", default="127.0.0.1:9099", help="host:port")
    args = parser.parse_args(argv)
    host, _, port = str(args.listen).rpartition(":")
    sink = WebhookSink(host or "0.0.0.0", int(port), echo=True)
    print(f"alert sink listening on {sink.url()}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        sink._server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
