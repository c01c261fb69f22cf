"""A real OpenAI-compatible chat-completions server on 127.0.0.1, for tests and benchmarks.

Stdlib only (``http.server.ThreadingHTTPServer`` in a background thread, random free port).
Answers ``POST /v1/chat/completions`` (and ``/chat/completions``) with a programmable responder,
an injected latency, and a script of faults (429 with ``Retry-After``, 5xx, slow answers that
trip the client timeout, malformed bodies, empty or null content, 4xx). It records every request
(thread-safe) and the peak number of requests in flight.

Standalone: ``python -m tests.openai_server --port 0 --latency 0.05`` prints its URL and serves.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_FINGERPRINT = "fp_autorater_test"
_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$")


@dataclass
class Fault:
    """One scripted misbehaviour, applied to the next matching request(s)."""

    kind: str  # "status" | "timeout" | "malformed" | "empty" | "null"
    status: int = 500
    retry_after: str | None = None
    delay: float = 0.0
    message: str = "injected fault"

    @classmethod
    def rate_limit(cls, retry_after: str | None = "1") -> Fault:
        """429 Too Many Requests with a ``Retry-After`` header (seconds or an HTTP date)."""
        return cls("status", 429, retry_after=retry_after, message="Rate limit reached (injected)")

    @classmethod
    def http(cls, status: int, message: str | None = None, retry_after: str | None = None) -> Fault:
        """An error status (400, 401, 500, 503, ...) with an OpenAI-style error body."""
        return cls("status", status, retry_after=retry_after, message=message or f"injected HTTP {status}")

    @classmethod
    def timeout(cls, delay: float) -> Fault:
        """Answer normally, but only after ``delay`` seconds (longer than the client timeout)."""
        return cls("timeout", delay=delay)

    @classmethod
    def malformed(cls) -> Fault:
        """A 200 whose body is not JSON."""
        return cls("malformed")

    @classmethod
    def empty(cls) -> Fault:
        """A valid completion with ``content: ""``."""
        return cls("empty")

    @classmethod
    def null(cls) -> Fault:
        """A valid completion with ``content: null``."""
        return cls("null")


def prompt_text(request_json: dict) -> str:
    """All text of a chat request (system and user text parts), joined by newlines."""
    out: list[str] = []
    for msg in request_json.get("messages", []):
        content = msg.get("content")
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out.extend(p.get("text", "") for p in content if p.get("type") == "text")
    return "\n".join(out)


def image_urls(request_json: dict) -> list[str]:
    """The image URLs of a chat request, in order."""
    urls: list[str] = []
    for msg in request_json.get("messages", []):
        content = msg.get("content")
        if isinstance(content, list):
            urls.extend(p["image_url"]["url"] for p in content if p.get("type") == "image_url")
    return urls


def _digest(request_json: dict) -> int:
    blob = prompt_text(request_json) + "|".join(image_urls(request_json))
    return int(hashlib.sha256(blob.encode()).hexdigest()[:8], 16)


def _instance(schema: dict, h: int, name: str = "") -> object:
    """A deterministic instance of a (simple) JSON schema, varied by the hash ``h``."""
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][h % len(schema["enum"])]
    for alt in ("anyOf", "oneOf"):
        if alt in schema:
            return _instance(schema[alt][0], h, name)
    typ = schema.get("type", "object")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), "null")
    if typ == "object":
        props = schema.get("properties", {})
        return {k: _instance(v, h >> (i % 16), k) for i, (k, v) in enumerate(props.items())}
    if typ == "integer":
        lo, hi = int(schema.get("minimum", 1)), int(schema.get("maximum", 10))
        return lo + h % (hi - lo + 1)
    if typ == "number":
        lo, hi = float(schema.get("minimum", 0.0)), float(schema.get("maximum", 1.0))
        return round(lo + (hi - lo) * ((h % 1000) / 999), 3)
    if typ == "boolean":
        return bool(h % 2)
    if typ == "array":
        return [_instance(schema.get("items", {"type": "string"}), h, name)]
    if typ == "null":
        return None
    return f"deterministic {name or 'text'} {h % 997}"


def default_responder(request_json: dict) -> str:
    """A deterministic valid JSON verdict: an instance of the request's json_schema if one was sent,
    else ``{"analysis", "preferred": 1|2}`` when the prompt asks for a preference, else ``{"analysis", "score": 1..10}``.
    """
    h = _digest(request_json)
    rf = request_json.get("response_format") or {}
    schema = (rf.get("json_schema") or {}).get("schema") if rf.get("type") == "json_schema" else None
    if schema:
        return json.dumps(_instance(schema, h))
    analysis = f"deterministic analysis {h % 997}"
    if "prefer" in prompt_text(request_json).lower():
        return json.dumps({"analysis": analysis, "preferred": 1 + h % 2})
    return json.dumps({"analysis": analysis, "score": 1 + h % 10})


@dataclass
class RecordedRequest:
    """One received request: path, headers (lower-case names), parsed JSON body (None if unreadable), arrival time."""

    path: str
    headers: dict
    json: dict | None
    time: float


class OpenAIServer:
    """An OpenAI-compatible server in a background thread; use as a context manager.

    ``responder(request_json) -> str | None`` gives the answer text (None: null content).
    ``latency`` seconds are slept before each answer. ``inject(fault, times, match)`` scripts
    faults for the next ``times`` requests whose prompt text contains ``match`` (any, if None).
    ``api_key``: if set, requests without ``Authorization: Bearer <api_key>`` get a 401.
    """

    def __init__(
        self,
        responder: Callable[[dict], str | None] | None = None,
        *,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        snapshot: str | None = None,
        fingerprint: str | None = DEFAULT_FINGERPRINT,
        api_key: str | None = None,
    ) -> None:
        self.responder = responder or default_responder
        self.latency = latency
        self.snapshot = snapshot
        self.fingerprint = fingerprint
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._faults: list[list] = []  # [fault, remaining, match]
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound port."""
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """Base URL for the openai client: ``http://127.0.0.1:PORT/v1``."""
        return f"http://{self._httpd.server_address[0]}:{self.port}/v1"

    def start(self) -> OpenAIServer:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting and inspection -------------------------------------------------------------
    def inject(self, fault: Fault, times: int = 1, match: str | None = None) -> None:
        """Apply ``fault`` to the next ``times`` requests (whose prompt text contains ``match``)."""
        with self._lock:
            self._faults.append([fault, times, match])

    def clear_faults(self) -> None:
        """Forget every scripted fault not yet used."""
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        """Clear the request log, the peak-in-flight counter and the fault script."""
        with self._lock:
            self.requests.clear()
            self.max_in_flight = self.in_flight
            self._faults.clear()

    @property
    def request_count(self) -> int:
        """Number of chat requests received so far."""
        with self._lock:
            return len(self.requests)

    def _take_fault(self, text: str) -> Fault | None:
        with self._lock:
            for entry in self._faults:
                fault, remaining, match = entry
                if remaining > 0 and (match is None or match in text):
                    entry[1] -= 1
                    if entry[1] == 0:
                        self._faults.remove(entry)
                    return fault
        return None

    def _snapshot_for(self, model: str) -> str:
        if self.snapshot is not None:
            return self.snapshot
        return model if _DATED.search(model or "") else f"{model or 'test-model'}-2024-08-06"

    # -- HTTP ----------------------------------------------------------------------------------
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # no 40 ms Nagle / delayed-ACK stalls between header and body

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence
                pass

            def _send(self, status: int, body: bytes, headers: dict | None = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(body)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up (timeout)

            def _error(self, status: int, message: str, headers: dict | None = None) -> None:
                kind = {400: "invalid_request_error", 401: "invalid_request_error", 429: "rate_limit_error"}
                body = {"error": {"message": message, "type": kind.get(status, "server_error"), "code": None}}
                self._send(status, json.dumps(body).encode(), headers)

            def do_GET(self) -> None:  # noqa: N802
                if self.path.rstrip("/").endswith("/models"):
                    body = {"object": "list", "data": [{"id": "test-model", "object": "model"}]}
                    self._send(200, json.dumps(body).encode())
                else:
                    self._error(404, f"no route {self.path}")

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if self.path.split("?")[0].rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                    self._error(404, f"no route {self.path}")
                    return
                try:
                    req = json.loads(raw)
                except ValueError:
                    req = None
                with server._lock:
                    server.requests.append(
                        RecordedRequest(
                            self.path, {k.lower(): v for k, v in self.headers.items()}, req, time.monotonic()
                        )
                    )
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._answer(req)
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _answer(self, req: dict | None) -> None:
                if req is None:
                    self._error(400, "request body is not JSON")
                    return
                if (
                    server.api_key is not None
                    and self.headers.get("Authorization") != f"Bearer {server.api_key}"
                ):
                    self._error(401, "Incorrect API key provided.")
                    return
                fault = server._take_fault(prompt_text(req))
                if server.latency > 0:
                    time.sleep(server.latency)
                if fault is not None and fault.kind == "status":
                    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
                    self._error(fault.status, fault.message, headers)
                    return
                if fault is not None and fault.kind == "malformed":
                    self._send(200, b"<html>502 Bad Gateway (not JSON)</html>")
                    return
                if fault is not None and fault.kind == "timeout":
                    time.sleep(fault.delay)
                if fault is not None and fault.kind in ("empty", "null"):
                    text = "" if fault.kind == "empty" else None
                else:
                    text = server.responder(req)
                n_images = len(image_urls(req))
                prompt_tokens = len(prompt_text(req).split()) + 85 * n_images
                completion_tokens = 0 if not text else max(1, len(text) // 4)
                body = {
                    "id": f"chatcmpl-{len(server.requests)}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": server._snapshot_for(req.get("model", "")),
                    "system_fingerprint": server.fingerprint,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text, "refusal": None},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                }
                self._send(200, json.dumps(body).encode())

        return Handler


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT, after printing the base URL on stdout (one line, flushed)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--latency", type=float, default=0.0, help="seconds slept before each answer")
    ap.add_argument("--api-key", default=None, help="if set, require this bearer key (else accept any)")
    ap.add_argument("--snapshot", default=None, help="model name to report (default: requested + date)")
    args = ap.parse_args(argv)
    server = OpenAIServer(
        latency=args.latency, host=args.host, port=args.port, snapshot=args.snapshot, api_key=args.api_key
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with server:
        print(server.url, flush=True)
        while not stop.wait(0.5):
            pass
    print(f"served {server.request_count} requests", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
