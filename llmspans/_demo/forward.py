"""``llmspans demo --forward URL``: the target checked once up front, the delivery counted.

A dead or wrong target must not cost the user half a minute of silence followed by
a report that claims every span went there: the demo sends one empty OTLP export
before it starts, runs without forwarding when that fails (and says why, in one
line), and reports from the collector's own counters what was delivered.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Final

#: How long the up-front check waits for the target to answer.
PROBE_TIMEOUT_S: Final = 3.0

#: The name the demo gives the forwarding exporter (the ``exporter`` label of its counters).
EXPORTER_NAME: Final = "forward"


def check_url(text: str) -> str:
    """``text`` when it is an http(s) URL with a host, else ``ValueError`` saying why."""
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(
            f"expected an http:// or https:// URL such as http://127.0.0.1:6006/v1/traces, "
            f"got {text!r}"
        )
    try:
        parsed.port  # noqa: B018  # raises on a port that is not a number
    except ValueError as error:
        raise ValueError(f"bad port in {text!r}: {error}") from None
    return text


def probe(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Why ``url`` cannot take OTLP/HTTP traces, or ``None`` when it can.

    Sends one empty ``ExportTraceServiceRequest`` (zero bytes of protobuf): a trace
    backend accepts it with 2xx and records nothing.
    """
    request = urllib.request.Request(
        url, data=b"", method="POST", headers={"Content-Type": "application/x-protobuf"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s):
            return None
    except urllib.error.HTTPError as error:
        return f"it answers HTTP {error.code} {error.reason} (not an OTLP/HTTP traces endpoint?)"
    except urllib.error.URLError as error:
        return _reason(error.reason)
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except OSError as error:
        return _reason(error)


def _reason(error: object) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (nothing listens there)"
    if isinstance(error, TimeoutError):
        return "no answer in time"
    if isinstance(error, socket.gaierror):
        return f"unknown host ({error.strerror})"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the collector's forwarding exporter did with the demo's spans."""

    url: str
    #: spans the collector received and the evaluation spans it made (each goes to every
    #: exporter)
    spans: int
    forwarded: int
    dropped: int
    #: why nothing was sent, when the up-front check failed
    skipped: str | None = None

    @property
    def pending(self) -> int:
        """Spans neither delivered nor given up on when the demo stopped waiting."""
        return max(0, self.spans - self.forwarded - self.dropped)

    @property
    def complete(self) -> bool:
        return self.skipped is None and self.forwarded >= self.spans

    def line(self) -> str:
        """One line for the report."""
        if self.skipped is not None:
            return f"not forwarded to {self.url}: {self.skipped}"
        if self.complete:
            return f"forwarded to {self.url}: all {self.forwarded} spans"
        parts = [f"{self.forwarded} of {self.spans} spans delivered"]
        if self.dropped:
            parts.append(f"{self.dropped} given up on after retries")
        if self.pending:
            parts.append(f"{self.pending} still queued when the demo stopped")
        return f"forwarding to {self.url} incomplete: " + ", ".join(parts)

    def to_json(self) -> dict[str, object]:
        return {
            "url": self.url,
            "spans": self.spans,
            "forwarded": self.forwarded,
            "dropped": self.dropped,
            "pending": self.pending,
            "skipped": self.skipped,
        }
