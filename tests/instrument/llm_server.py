"""A local stand-in for the OpenAI and Anthropic APIs on loopback, answering their documented JSON shapes.

``POST /v1/chat/completions``, ``/v1/responses`` and ``/v1/messages``, plain or
streamed (server-sent events, chunked), with ``usage`` as configured. It keeps
every request body, so tests can see what the SDK sent (the model after a
downgrade) and count what reached it. ``mode``: ``"ok"``, ``"error"`` (HTTP
400 with the provider's error body) or ``"cut"`` (a stream whose connection
closes after its first content event, before any usage).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["LLMServer", "Usage"]


@dataclass
class Usage:
    """What the server reports: prompt (cached included), output (reasoning included), cache parts."""

    prompt: int = 1200
    output: int = 300
    cached: int = 200
    cache_write: int = 100
    reasoning: int = 50


@dataclass
class LLMServer:
    usage: Usage = field(default_factory=Usage)
    mode: str = "ok"
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        server = self

        class Handler(_Handler):
            owner = server

        self._http = _Server(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.port = self._http.server_address[1]
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    @property
    def openai_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def models(self) -> list[str]:
        """The model of each request that reached the server, in order."""
        with self._lock:
            return [body.get("model", "") for _, body in self.requests]

    def note(self, path: str, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append((path, body))

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up (a closed stream): nothing to report


class _Handler(BaseHTTPRequestHandler):
    owner: LLMServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        path = self.path.split("?")[0]
        server = self.owner
        server.note(path, body)
        anthropic = path.endswith("/messages")
        if server.mode == "error":
            error = (
                {"type": "error", "error": {"type": "invalid_request_error", "message": "bad request"}}
                if anthropic
                else {"error": {"message": "bad request", "type": "invalid_request_error", "code": None}}
            )
            self._json(400, error)
            return
        model = body.get("model", "")
        usage = server.usage
        if path.endswith("/chat/completions"):
            if body.get("stream"):
                options = body.get("stream_options") or {}
                self._sse(_chat_events(model, usage, bool(options.get("include_usage"))), named=False)
            else:
                self._json(200, _chat(model, usage))
        elif path.endswith("/responses"):
            if body.get("stream"):
                self._sse(_responses_events(model, usage), named=True)
            else:
                self._json(200, _response(model, usage, "completed"))
        elif anthropic:
            if body.get("stream"):
                self._sse(_message_events(model, usage), named=True)
            else:
                self._json(200, _message(model, usage))
        else:
            self._json(404, {"error": {"message": f"no route {path}"}})

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _sse(self, events: list[tuple[str, dict[str, Any] | str]], *, named: bool) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        texts = [
            (f"event: {name}\n" if named else "")
            + f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"
            for name, payload in events
        ]
        if self.owner.mode == "cut":  # the first events, then no usage and no end of the body
            chunk = "".join(texts[:2]).encode()
            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.close_connection = True
            return
        chunk = "".join(texts).encode()  # one write: a client reads the events as they parse
        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n0\r\n\r\n")


def _chat_usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt,
        "completion_tokens": usage.output,
        "total_tokens": usage.prompt + usage.output,
        "prompt_tokens_details": {"cached_tokens": usage.cached},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning},
    }


def _chat(model: str, usage: Usage) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello."},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": _chat_usage(usage),
    }


def _chat_events(model: str, usage: Usage, with_usage: bool) -> list[tuple[str, dict[str, Any] | str]]:
    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        if with_usage:
            payload["usage"] = None
        return payload

    events: list[tuple[str, dict[str, Any] | str]] = [
        ("", chunk({"role": "assistant", "content": ""}, None)),
        ("", chunk({"content": "Hel"}, None)),
        ("", chunk({"content": "lo."}, None)),
        ("", chunk({}, "stop")),
    ]
    if with_usage:
        final = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [],
            "usage": _chat_usage(usage),
        }
        events.append(("", final))
    events.append(("", "[DONE]"))
    return events


def _response(model: str, usage: Usage | None, status: str) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 0,
        "model": model,
        "status": status,
        "output": []
        if usage is None
        else [
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Hello.", "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": None
        if usage is None
        else {
            "input_tokens": usage.prompt,
            "output_tokens": usage.output,
            "total_tokens": usage.prompt + usage.output,
            "input_tokens_details": {"cached_tokens": usage.cached},
            "output_tokens_details": {"reasoning_tokens": usage.reasoning},
        },
    }


def _responses_events(model: str, usage: Usage) -> list[tuple[str, dict[str, Any] | str]]:
    return [
        (
            "response.created",
            {
                "type": "response.created",
                "sequence_number": 0,
                "response": _response(model, None, "in_progress"),
            },
        ),
        (
            "response.output_text.delta",
            {
                "type": "response.output_text.delta",
                "sequence_number": 1,
                "item_id": "msg_1",
                "output_index": 0,
                "content_index": 0,
                "delta": "Hello.",
                "logprobs": [],
            },
        ),
        (
            "response.completed",
            {
                "type": "response.completed",
                "sequence_number": 2,
                "response": _response(model, usage, "completed"),
            },
        ),
    ]


def _message_usage(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt - usage.cached - usage.cache_write,
        "output_tokens": usage.output,
        "cache_read_input_tokens": usage.cached,
        "cache_creation_input_tokens": usage.cache_write,
    }


def _message(model: str, usage: Usage) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "Hello."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": _message_usage(usage),
    }


def _message_events(model: str, usage: Usage) -> list[tuple[str, dict[str, Any] | str]]:
    start = dict(_message(model, usage), content=[], stop_reason=None)
    start["usage"] = dict(_message_usage(usage), output_tokens=1)
    return [
        ("message_start", {"type": "message_start", "message": start}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello."}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": usage.output},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
