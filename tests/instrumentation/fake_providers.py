"""A loopback HTTP server that answers like the OpenAI, Anthropic and Bedrock runtime APIs.

Responses have the shapes the real APIs send (JSON bodies and server-sent-event
streams), so the real client libraries parse them exactly as in production. The
server keeps every request body it received, for assertions on what the client
sent.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: A model name that makes the fake answer with an API error.
ERROR_MODEL = "model-that-fails"

CHAT_TEXT = ["The answer ", "is 42", "."]


def _chat_completion(model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-123",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": f"{model}-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "".join(CHAT_TEXT),
                    "refusal": None,
                    "annotations": [
                        {
                            "type": "url_citation",
                            "url_citation": {
                                "url": "https://docs.example/doc-1",
                                "title": "doc 1",
                                "start_index": 0,
                                "end_index": 5,
                            },
                        }
                    ],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 1200,
            "completion_tokens": 300,
            "total_tokens": 1500,
            "prompt_tokens_details": {"cached_tokens": 1000, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
        "system_fingerprint": "fp_1",
    }


def _chat_chunks(model: str, include_usage: bool) -> Iterator[dict[str, Any]]:
    base = {
        "id": "chatcmpl-456",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": f"{model}-2024-07-18",
        "system_fingerprint": "fp_1",
    }
    yield {
        **base,
        "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        ],
    }
    for piece in CHAT_TEXT:
        yield {
            **base,
            "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
        }
    yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    if include_usage:
        yield {
            **base,
            "choices": [],
            "usage": {
                "prompt_tokens": 50,
                "completion_tokens": 7,
                "total_tokens": 57,
                "prompt_tokens_details": {"cached_tokens": 0},
            },
        }


def _response(model: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": "resp_123",
        "object": "response",
        "created_at": 1_700_000_000,
        "status": status,
        "model": f"{model}-2025-04-14",
        "output": [
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {
                        "type": "output_text",
                        "text": "Paris.",
                        "annotations": [
                            {
                                "type": "file_citation",
                                "file_id": "file-doc-7",
                                "filename": "doc7.pdf",
                                "index": 0,
                            }
                        ],
                    }
                ],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": 100,
            "input_tokens_details": {"cached_tokens": 20},
            "output_tokens": 10,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 110,
        },
    }


def _response_events(model: str) -> Iterator[dict[str, Any]]:
    created = _response(model, status="in_progress")
    created["output"] = []
    created["usage"] = None
    done = _response(model)
    item = done["output"][0]
    part = item["content"][0]
    empty_item = {**item, "status": "in_progress", "content": []}
    position = {"item_id": item["id"], "output_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": created},
        {"type": "response.output_item.added", "output_index": 0, "item": empty_item},
        {
            "type": "response.content_part.added",
            **position,
            "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": []},
        },
        {
            "type": "response.output_text.delta",
            **position,
            "content_index": 0,
            "delta": part["text"],
            "logprobs": [],
        },
        {
            "type": "response.output_text.done",
            **position,
            "content_index": 0,
            "text": part["text"],
            "logprobs": [],
        },
        {"type": "response.content_part.done", **position, "content_index": 0, "part": part},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": done},
    ]
    for number, event in enumerate(events):
        yield {**event, "sequence_number": number}


def _completion(model: str) -> dict[str, Any]:
    return {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "text": " 42.", "logprobs": None, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6},
    }


def _completion_chunks(model: str) -> Iterator[dict[str, Any]]:
    base = {"id": "cmpl-2", "object": "text_completion", "created": 1_700_000_000, "model": model}
    yield {**base, "choices": [{"index": 0, "text": " 4", "logprobs": None, "finish_reason": None}]}
    yield {
        **base,
        "choices": [{"index": 0, "text": "2", "logprobs": None, "finish_reason": "stop"}],
    }


def _embeddings(model: str, count: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": [0.1 * (i + 1), 0.2, 0.3]}
            for i in range(count)
        ],
        "model": model,
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
    }


def _message(model: str) -> dict[str, Any]:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [
            {
                "type": "text",
                "text": "Hello from Claude.",
                "citations": [
                    {
                        "type": "char_location",
                        "cited_text": "Hello",
                        "document_index": 0,
                        "document_title": "doc-3",
                        "start_char_index": 0,
                        "end_char_index": 5,
                    }
                ],
            }
        ],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 30,
            "output_tokens": 12,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 20,
        },
    }


def _message_events(model: str) -> Iterator[tuple[str, dict[str, Any]]]:
    start = _message(model)
    start["content"] = []
    start["stop_reason"] = None
    start["usage"] = {
        "input_tokens": 30,
        "output_tokens": 1,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 20,
    }
    yield "message_start", {"type": "message_start", "message": start}
    yield (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "text", "text": ""},
        },
    )
    for piece in ("Hello ", "from ", "Claude."):
        yield (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            },
        )
    yield "content_block_stop", {"type": "content_block_stop", "index": 0}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 15},
        },
    )
    yield "message_stop", {"type": "message_stop"}


# --- Amazon Bedrock (bedrock-runtime) ------------------------------------------------

BEDROCK_TEXT = ["Bedrock ", "says ", "hi."]


def _converse(model: str) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": "".join(BEDROCK_TEXT)}]}},
        "stopReason": "end_turn",
        "usage": {
            "inputTokens": 40,
            "outputTokens": 9,
            "totalTokens": 49,
            "cacheReadInputTokens": 200,
            "cacheWriteInputTokens": 10,
        },
        "metrics": {"latencyMs": 120},
    }


def _converse_events() -> Iterator[tuple[str, dict[str, Any]]]:
    yield "messageStart", {"role": "assistant"}
    for piece in BEDROCK_TEXT:
        yield "contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}}
    yield "contentBlockStop", {"contentBlockIndex": 0}
    yield "messageStop", {"stopReason": "end_turn"}
    yield (
        "metadata",
        {
            "usage": {"inputTokens": 40, "outputTokens": 9, "totalTokens": 49},
            "metrics": {"latencyMs": 120},
        },
    )


def _event_frame(event_type: str, payload: dict[str, Any]) -> bytes:
    """One message of the AWS event-stream encoding (``application/vnd.amazon.eventstream``)."""
    import struct
    import zlib

    headers = b""
    for name, value in (
        (":event-type", event_type),
        (":content-type", "application/json"),
        (":message-type", "event"),
    ):
        encoded = value.encode()
        headers += (
            bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(encoded)) + encoded
        )
    body = json.dumps(payload).encode()
    total = 12 + len(headers) + len(body) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + headers + body
    return message + struct.pack(">I", zlib.crc32(message) & 0xFFFFFFFF)


# --- Google Gen AI (Gemini Developer API) ----------------------------------------------

GEMINI_TEXT = ["Gemini ", "answers."]


def _gemini_chunk(model: str, text: str, *, last: bool) -> dict[str, Any]:
    candidate: dict[str, Any] = {
        "content": {"role": "model", "parts": [{"text": text}]},
        "index": 0,
    }
    if last:
        candidate["finishReason"] = "STOP"
    return {
        "candidates": [candidate],
        "usageMetadata": {
            "promptTokenCount": 120,
            "cachedContentTokenCount": 100,
            "candidatesTokenCount": 8 if last else 3,
            "thoughtsTokenCount": 4,
            "totalTokenCount": 132,
        },
        "modelVersion": f"{model}-001",
        "responseId": "gemini-resp-1",
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # close-delimited bodies: SSE streams end with the connection
    server: FakeProviderServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _sse(self, events: Iterator[tuple[str | None, dict[str, Any]]], done: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for name, payload in events:
            if name:
                self.wfile.write(f"event: {name}\n".encode())
            self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
            self.wfile.flush()
        if done:
            self.wfile.write(b"data: [DONE]\n\n")

    def _bedrock(self, body: dict[str, Any]) -> None:
        from urllib.parse import unquote

        _, _, model, operation = self.path.split("/", 3)
        model = unquote(model)
        if model == ERROR_MODEL:
            data = json.dumps({"message": "The provided model identifier is invalid."}).encode()
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("x-amzn-ErrorType", "ValidationException")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif operation == "converse":
            self._json(200, _converse(model))
        elif operation == "converse-stream":
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.amazon.eventstream")
            self.end_headers()
            for event_type, payload in _converse_events():
                self.wfile.write(_event_frame(event_type, payload))
                self.wfile.flush()
        elif operation == "invoke-with-response-stream":
            import base64

            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.amazon.eventstream")
            self.end_headers()
            chunks: list[dict[str, Any]] = [
                {"type": "message_start", "message": {"id": "msg_bedrock", "role": "assistant"}},
                *(
                    {"type": "content_block_delta", "delta": {"type": "text_delta", "text": t}}
                    for t in BEDROCK_TEXT
                ),
                {"type": "message_delta", "delta": {"stop_reason": "end_turn"}},
                {
                    "type": "message_stop",
                    "amazon-bedrock-invocationMetrics": {
                        "inputTokenCount": 25,
                        "outputTokenCount": 6,
                    },
                },
            ]
            for chunk in chunks:
                encoded = base64.b64encode(json.dumps(chunk).encode()).decode()
                self.wfile.write(_event_frame("chunk", {"bytes": encoded}))
                self.wfile.flush()
        elif operation == "invoke":
            reply = {
                "id": "msg_bedrock",
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": "".join(BEDROCK_TEXT)}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 25, "output_tokens": 6},
            }
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("x-amzn-bedrock-input-token-count", "25")
            self.send_header("x-amzn-bedrock-output-token-count", "6")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        else:
            self._json(404, {"message": f"no route {self.path}"})

    def _gemini(self) -> None:
        target = self.path.removeprefix("/v1beta/models/").split("?")[0]
        model, _, method = target.partition(":")
        if model == ERROR_MODEL:
            self._json(
                404,
                {"error": {"code": 404, "message": "model not found", "status": "NOT_FOUND"}},
            )
        elif method == "generateContent":
            self._json(200, _gemini_chunk(model, "".join(GEMINI_TEXT), last=True))
        elif method == "streamGenerateContent":
            events = [
                (None, _gemini_chunk(model, piece, last=i == len(GEMINI_TEXT) - 1))
                for i, piece in enumerate(GEMINI_TEXT)
            ]
            self._sse(iter(events), done=False)
        elif method == "batchEmbedContents":
            self._json(200, {"embeddings": [{"values": [0.1, 0.2, 0.3]}]})
        else:
            self._json(404, {"error": {"code": 404, "message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        with self.server.lock:
            self.server.requests.append((self.path, body))
        if self.path.startswith("/model/"):
            self._bedrock(body)
            return
        if self.path.startswith("/v1beta/models/"):
            self._gemini()
            return
        model = body.get("model", "")
        stream = bool(body.get("stream"))
        if model == ERROR_MODEL:
            if self.path.endswith("/messages"):
                self._json(
                    400,
                    {
                        "type": "error",
                        "error": {"type": "invalid_request_error", "message": "bad model"},
                    },
                )
            else:
                self._json(
                    400,
                    {
                        "error": {
                            "message": "The model does not exist",
                            "type": "invalid_request_error",
                            "param": "model",
                            "code": "model_not_found",
                        }
                    },
                )
            return
        if self.path == "/v1/chat/completions":
            if stream:
                include = bool((body.get("stream_options") or {}).get("include_usage"))
                self._sse(((None, c) for c in _chat_chunks(model, include)), done=True)
            else:
                self._json(200, _chat_completion(model))
        elif self.path == "/v1/completions":
            if stream:
                self._sse(((None, c) for c in _completion_chunks(model)), done=True)
            else:
                self._json(200, _completion(model))
        elif self.path == "/v1/responses":
            if stream:
                self._sse(((e["type"], e) for e in _response_events(model)), done=False)
            else:
                self._json(200, _response(model))
        elif self.path == "/v1/embeddings":
            inputs = body.get("input")
            self._json(200, _embeddings(model, len(inputs) if isinstance(inputs, list) else 1))
        elif self.path.split("?")[0] == "/v1/messages":
            if stream:
                self._sse(iter(list(_message_events(model))), done=False)
            else:
                self._json(200, _message(model))
        else:
            self._json(404, {"error": {"message": f"no route {self.path}"}})


class FakeProviderServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()  # guards requests: handler threads append concurrently
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that stops reading a stream early resets the connection: expected here."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            return
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeProviderServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)
