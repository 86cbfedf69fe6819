"""A counting OTLP/HTTP receiver: the forwarding target of the measured collector.

    python benchmarks/sink.py --port PORT [--naive]

``POST /v1/traces`` parses each protobuf request (upb: cheap) and counts spans, and
root spans carrying the collector's verdict (``llmspans.outcome``), so a benchmark
can check that forwarding kept up and that roots arrived enriched.
``GET /stats`` answers the counts as JSON.

With ``--naive`` it is also the comparison point of the issue: a bare Python
receiver that walks every attribute of every span into a dict, the way a
straightforward OTLP-to-Python conversion does.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

OUTCOME_KEY = "llmspans.outcome"
_EMPTY_RESPONSE = ExportTraceServiceResponse().SerializeToString()


def _value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, which) if which else None


def naive_walk(request: ExportTraceServiceRequest) -> list[dict[str, Any]]:
    """Every span as a dict of all its fields and attributes."""
    out = []
    for rs in request.resource_spans:
        resource = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for span in ss.spans:
                out.append(
                    {
                        "trace_id": span.trace_id.hex(),
                        "span_id": span.span_id.hex(),
                        "parent_span_id": span.parent_span_id.hex(),
                        "name": span.name,
                        "start": span.start_time_unix_nano,
                        "end": span.end_time_unix_nano,
                        "status": span.status.code,
                        "attributes": {kv.key: _value(kv.value) for kv in span.attributes},
                        "resource": resource,
                    }
                )
    return out


class Sink:
    def __init__(self, naive: bool) -> None:
        self.naive = naive
        self.spans = 0
        self.requests = 0
        self.roots = 0
        self.roots_with_verdict = 0
        self.bytes = 0

    async def traces(self, request: web.Request) -> web.Response:
        body = await request.read()
        msg = ExportTraceServiceRequest()
        try:
            msg.ParseFromString(body)
        except Exception as exc:
            return web.Response(status=400, text=f"bad protobuf: {exc}")
        self.requests += 1
        self.bytes += len(body)
        if self.naive:
            self.spans += len(naive_walk(msg))
        else:
            for rs in msg.resource_spans:
                for ss in rs.scope_spans:
                    self.spans += len(ss.spans)
                    for span in ss.spans:
                        if not span.parent_span_id:
                            self.roots += 1
                            if any(kv.key == OUTCOME_KEY for kv in span.attributes):
                                self.roots_with_verdict += 1
        return web.Response(body=_EMPTY_RESPONSE, content_type="application/x-protobuf")

    async def stats(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "spans": self.spans,
                "requests": self.requests,
                "bytes": self.bytes,
                "roots": self.roots,
                "roots_with_verdict": self.roots_with_verdict,
            }
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--naive", action="store_true")
    args = parser.parse_args(argv)
    sink = Sink(args.naive)
    app = web.Application(client_max_size=256 << 20)
    app.router.add_post("/v1/traces", sink.traces)
    app.router.add_get("/stats", sink.stats)
    print(json.dumps({"listening": args.port}), file=sys.stderr, flush=True)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
