"""Local stand-ins of the OpenAI Batch API and Gemini's native Batch API on 127.0.0.1, for tests.

One stdlib ``ThreadingHTTPServer`` (background thread, random free port) serves both protocols and
direct chat completions, answering every request with the responder idea of ``tests/openai_server``
(``default_responder`` unless given), so a batch line and a direct call of the same prompt get the
same answer and the same token counts:

* OpenAI: ``POST /v1/files`` (multipart, purpose ``batch``), ``POST /v1/batches``, ``GET
  /v1/batches[/{id}]``, ``POST /v1/batches/{id}/cancel``, ``GET /v1/files/{id}/content``;
* Gemini (what ``google-genai`` calls): the resumable upload under ``/upload/v1beta/files``,
  ``POST /v1beta/models/{model}:batchGenerateContent``, ``GET /v1beta/batches[/{id}]``,
  ``GET /v1beta/files/{id}:download``; each GenerateContentRequest is turned into the equivalent chat
  request for the responder;
* direct: ``POST .../chat/completions`` (``direct_calls`` counts them), also under
  ``/v1beta/openai/`` as Gemini's OpenAI-compatible endpoint.

A batch ends after ``polls_to_finish`` status reads. It counts every line it receives per custom_id
(``lines_received``) and keeps each line's body (``bodies``). Faults: ``fail_lines`` (a line answered
with an HTTP error, ``times`` times), ``end_next_batch`` (the next batch expires, is cancelled or
fails, with only its first ``answered`` lines answered), ``drop_next_create`` (the batch is made but
the create request's connection is closed without an answer), ``fail_polls`` (status reads fail).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

from tests.openai_server import DEFAULT_FINGERPRINT, default_responder, image_urls, prompt_text

_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$")
_GRPC = {
    400: (3, "INVALID_ARGUMENT"),
    429: (8, "RESOURCE_EXHAUSTED"),
    500: (13, "INTERNAL"),
    503: (14, "UNAVAILABLE"),
}


def snapshot_for(model: str) -> str:
    """The dated snapshot a request for ``model`` is answered by (as ``tests/openai_server`` does)."""
    model = model.removeprefix("models/")
    return model if _DATED.search(model or "") else f"{model or 'test-model'}-2024-08-06"


def usage_for(req: dict, text: str | None) -> tuple[int, int]:
    """(prompt, completion) tokens as ``tests/openai_server`` counts them."""
    prompt = len(prompt_text(req).split()) + 85 * len(image_urls(req))
    return prompt, 0 if not text else max(1, len(text) // 4)


def chat_request_from_gemini(model: str, request: dict) -> dict:
    """The chat request equivalent to a GenerateContentRequest (system, text and inline images, schema)."""
    messages: list[dict] = []
    system = request.get("systemInstruction") or {}
    if system.get("parts"):
        messages.append({"role": "system", "content": "".join(p.get("text", "") for p in system["parts"])})
    content: list[dict] = []
    for c in request.get("contents", []):
        for part in c.get("parts", []):
            if "inlineData" in part:
                d = part["inlineData"]
                content.append(
                    {"type": "image_url", "image_url": {"url": f"data:{d['mimeType']};base64,{d['data']}"}}
                )
            else:
                content.append({"type": "text", "text": part.get("text", "")})
    messages.append({"role": "user", "content": content})
    out: dict = {"model": model.removeprefix("models/"), "messages": messages}
    schema = (request.get("generationConfig") or {}).get("responseJsonSchema")
    if schema is not None:
        out["response_format"] = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema}}
    return out


class BatchServer:
    """Both batch protocols and direct chat completions in a background thread; a context manager."""

    def __init__(
        self,
        responder: Callable[[dict], str | None] | None = None,
        *,
        polls_to_finish: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
        fingerprint: str | None = DEFAULT_FINGERPRINT,
        logprobs: Callable[[dict, str | None], list | None] | None = None,
    ) -> None:
        self.responder = responder or default_responder
        #: as ``OpenAIServer(logprobs=)``: the ``logprobs.content`` of answers to requests that ask for them
        self.logprobs = logprobs
        self.polls_to_finish = polls_to_finish
        self.fingerprint = fingerprint
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}  # id -> {"protocol", "lines", "polls", "status", "meta", ...}
        self.uploads: dict[str, dict] = {}
        self.lines_received: Counter[str] = Counter()
        self.bodies: dict[str, dict] = {}
        self.direct_calls = 0
        self.direct_requests: list[dict] = []
        self.paths: list[tuple[str, str]] = []
        self._line_faults: list[list] = []  # [status, times, match]
        self._batch_faults: list[tuple[str, int]] = []  # (end state, answered lines)
        self._drop_creates = 0
        self._poll_faults = [503, 0]
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True

    # -- lifecycle --------------------------------------------------------------------------------
    @property
    def root(self) -> str:
        """``http://127.0.0.1:PORT``."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        """The OpenAI base URL (``.../v1``)."""
        return f"{self.root}/v1"

    @property
    def gemini_url(self) -> str:
        """A Gemini OpenAI-compatible base URL (``.../v1beta/openai/``), as the ``autorater_gemini`` preset has."""
        return f"{self.root}/v1beta/openai/"

    def __enter__(self) -> BatchServer:
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- scripting ----------------------------------------------------------------------------------
    def fail_lines(
        self, status: int = 500, times: int = 1, match: Callable[[str], bool] | set | None = None
    ) -> None:
        """Answer the next ``times`` lines selected by ``match`` (a custom_id predicate or set; None: any)
        with HTTP ``status``."""
        with self._lock:
            self._line_faults.append([status, times, match])

    def end_next_batch(self, state: str = "expired", answered: int = 0) -> None:
        """The next batch created ends ``expired``, ``cancelled`` or ``failed`` with only its first
        ``answered`` lines answered."""
        with self._lock:
            self._batch_faults.append((state, answered))

    def fail_polls(self, status: int = 503, times: int = 1) -> None:
        """Answer the next ``times`` batch status reads (both protocols) with HTTP ``status``."""
        with self._lock:
            self._poll_faults = [status, times]

    def _poll_fault(self) -> int | None:
        with self._lock:
            status, times = self._poll_faults
            if times <= 0:
                return None
            self._poll_faults[1] -= 1
            return status

    def drop_next_create(self, times: int = 1) -> None:
        """Create the next batch(es) but close the connection instead of answering the create request."""
        with self._lock:
            self._drop_creates += times

    @property
    def batch_count(self) -> int:
        """Batches created so far (both protocols)."""
        with self._lock:
            return len(self.batches)

    # -- the model --------------------------------------------------------------------------------------
    def _answer(self, req: dict) -> tuple[str | None, int, int]:
        text = self.responder(req)
        p, c = usage_for(req, text)
        return text, p, c

    def _line_fault(self, custom_id: str) -> int | None:
        for entry in self._line_faults:
            status, times, match = entry
            if times <= 0:
                continue
            hit = match is None or (
                custom_id in match if isinstance(match, (set, frozenset)) else match(custom_id)
            )
            if hit:
                entry[1] -= 1
                return status
        return None

    def _create(self, protocol: str, lines: list[tuple[str, dict, dict]], meta: dict) -> str:
        """Register a batch of (custom_id, chat request, original line) and precompute every result."""
        with self._lock:
            bid = f"batch_{next(self._ids)}"
            end, answered = self._batch_faults.pop(0) if self._batch_faults else ("completed", len(lines))
            results = []
            for i, (cid, req, _line) in enumerate(lines):
                self.lines_received[cid] += 1
                if i >= answered:
                    results.append((cid, None))
                    continue
                status = self._line_fault(cid)
                results.append((cid, ("error", status) if status else ("ok", req)))
            self.batches[bid] = {
                "protocol": protocol,
                "n": len(lines),
                "results": results,
                "polls": 0,
                "end": end,
                "status": "validating" if protocol == "openai" else "BATCH_STATE_PENDING",
                "meta": meta,
                "created": int(time.time()),
                "output": None,
                "error_file": None,
            }
            return bid

    def _advance(self, bid: str) -> dict:
        with self._lock:
            b = self.batches[bid]
            if b["output"] is not None or b["status"] in ("cancelled", "BATCH_STATE_CANCELLED"):
                return b
            b["polls"] += 1
            if b["polls"] < self.polls_to_finish:
                b["status"] = "in_progress" if b["protocol"] == "openai" else "BATCH_STATE_RUNNING"
                return b
        self._finish(bid)
        return self.batches[bid]

    def _finish(self, bid: str) -> None:
        b = self.batches[bid]
        out_lines, err_lines = [], []
        completed = failed = 0
        for cid, res in b["results"]:
            if res is None:
                if b["protocol"] == "openai" and b["end"] != "failed":
                    code = "batch_expired" if b["end"] == "expired" else "batch_cancelled"
                    err_lines.append(
                        {
                            "id": f"req_{cid[:8]}",
                            "custom_id": cid,
                            "response": None,
                            "error": {
                                "code": code,
                                "message": f"This request could not be executed ({code}).",
                            },
                        }
                    )
                continue
            kind, payload = res
            if b["protocol"] == "openai":
                if kind == "ok":
                    text, p, c = self._answer(payload)
                    body = self._chat_body(payload, text, p, c)
                    out_lines.append(
                        {
                            "id": f"req_{cid[:8]}",
                            "custom_id": cid,
                            "response": {"status_code": 200, "request_id": cid[:8], "body": body},
                            "error": None,
                        }
                    )
                    completed += 1
                else:
                    err_lines.append(
                        {
                            "id": f"req_{cid[:8]}",
                            "custom_id": cid,
                            "error": None,
                            "response": {
                                "status_code": payload,
                                "request_id": cid[:8],
                                "body": {
                                    "error": {
                                        "message": f"injected line error {payload}",
                                        "type": "server_error",
                                    }
                                },
                            },
                        }
                    )
                    failed += 1
            else:
                if kind == "ok":
                    text, p, c = self._answer(payload)
                    out_lines.append(
                        {
                            "key": cid,
                            "response": {
                                "candidates": [
                                    {
                                        "content": {"parts": [{"text": text or ""}], "role": "model"},
                                        "finishReason": "STOP",
                                        "index": 0,
                                    }
                                ],
                                "usageMetadata": {
                                    "promptTokenCount": p,
                                    "candidatesTokenCount": c,
                                    "totalTokenCount": p + c,
                                },
                                "modelVersion": snapshot_for(payload.get("model", "")),
                            },
                        }
                    )
                    completed += 1
                else:
                    code, name = _GRPC.get(payload, (13, "INTERNAL"))
                    out_lines.append(
                        {
                            "key": cid,
                            "error": {
                                "code": code,
                                "message": f"injected line error {payload}",
                                "status": name,
                            },
                        }
                    )
                    failed += 1
        with self._lock:
            if b["end"] == "failed" or (b["protocol"] == "gemini" and b["end"] == "expired"):
                out_lines = []  # a failed batch (and an expired Gemini job) has no results
            if out_lines:
                fid = f"file-out{next(self._ids)}"
                self.files[fid] = "".join(json.dumps(x) + "\n" for x in out_lines).encode()
                b["output"] = fid
            else:
                b["output"] = ""
            if err_lines and b["protocol"] == "openai" and b["end"] != "failed":
                fid = f"file-err{next(self._ids)}"
                self.files[fid] = "".join(json.dumps(x) + "\n" for x in err_lines).encode()
                b["error_file"] = fid
            b["counts"] = {"total": b["n"], "completed": completed, "failed": failed}
            if b["protocol"] == "openai":
                b["status"] = b["end"]
            else:
                b["status"] = {
                    "completed": "BATCH_STATE_SUCCEEDED",
                    "expired": "BATCH_STATE_EXPIRED",
                    "cancelled": "BATCH_STATE_CANCELLED",
                    "failed": "BATCH_STATE_FAILED",
                }[b["end"]]

    def _chat_body(self, req: dict, text: str | None, p: int, c: int) -> dict:
        return {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": snapshot_for(req.get("model", "")),
            "system_fingerprint": self.fingerprint,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": (
                        {"content": self.logprobs(req, text)}
                        if self.logprobs is not None and req.get("logprobs")
                        else None
                    ),
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
        }

    def _openai_batch(self, bid: str) -> dict:
        b = self.batches[bid]
        counts = b.get("counts") or {"total": b["n"], "completed": 0, "failed": 0}
        errors = None
        if b["status"] == "failed":
            errors = {
                "object": "list",
                "data": [{"code": "injected", "message": "batch failed (injected)", "line": None}],
            }
        return {
            "id": bid,
            "object": "batch",
            "endpoint": b["meta"]["endpoint"],
            "errors": errors,
            "input_file_id": b["meta"]["input_file_id"],
            "completion_window": "24h",
            "status": b["status"],
            "output_file_id": b["output"] or None,
            "error_file_id": b["error_file"],
            "created_at": b["created"],
            "request_counts": counts,
            "metadata": b["meta"].get("metadata"),
        }

    def _gemini_op(self, bid: str) -> dict:
        b = self.batches[bid]
        meta = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch",
            "model": b["meta"]["model"],
            "displayName": b["meta"].get("displayName", ""),
            "state": b["status"],
            "name": f"batches/{bid}",
        }
        if b["output"]:
            meta["output"] = {"responsesFile": f"files/{b['output']}"}
        return {"name": f"batches/{bid}", "metadata": meta, "done": b["output"] is not None}

    # -- HTTP -----------------------------------------------------------------------------------------
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def _send(
                self,
                status: int,
                body: bytes | dict,
                headers: dict | None = None,
                ctype: str = "application/json",
            ) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, message: str) -> None:
                self._send(
                    status, {"error": {"message": message, "type": "invalid_request_error", "code": status}}
                )

            def _body(self) -> bytes:
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def do_GET(self) -> None:  # noqa: N802
                url = urlparse(self.path)
                path = url.path
                with server._lock:
                    server.paths.append(("GET", self.path))
                if re.fullmatch(r"/v1(beta)?/batches/[^/]+", path) and (status := server._poll_fault()):
                    return self._error(status, f"injected poll error {status}")
                m = re.fullmatch(r"/v1/batches/([^/]+)", path)
                if m and m.group(1) in server.batches:
                    server._advance(m.group(1))
                    return self._send(200, server._openai_batch(m.group(1)))
                if path == "/v1/batches":
                    data = [
                        server._openai_batch(b)
                        for b, v in reversed(server.batches.items())
                        if v["protocol"] == "openai"
                    ]
                    return self._send(
                        200,
                        {
                            "object": "list",
                            "data": data,
                            "has_more": False,
                            "first_id": data[0]["id"] if data else None,
                            "last_id": data[-1]["id"] if data else None,
                        },
                    )
                m = re.fullmatch(r"/v1/files/([^/]+)/content", path)
                if m and m.group(1) in server.files:
                    return self._send(200, server.files[m.group(1)], ctype="application/octet-stream")
                m = re.fullmatch(r"/v1beta/batches/([^/:]+)", path)
                if m and m.group(1) in server.batches:
                    server._advance(m.group(1))
                    return self._send(200, server._gemini_op(m.group(1)))
                if path == "/v1beta/batches":
                    ops = [
                        server._gemini_op(b)
                        for b, v in reversed(server.batches.items())
                        if v["protocol"] == "gemini"
                    ]
                    return self._send(200, {"operations": ops})
                m = re.fullmatch(r"/v1beta/files/([^/:]+):download", path)
                if m and m.group(1) in server.files:
                    return self._send(200, server.files[m.group(1)], ctype="application/octet-stream")
                self._error(404, f"no route GET {self.path}")

            def do_POST(self) -> None:  # noqa: N802
                raw = self._body()
                path = urlparse(self.path).path
                with server._lock:
                    server.paths.append(("POST", self.path))
                if path.endswith("/chat/completions"):
                    req = json.loads(raw)
                    with server._lock:
                        server.direct_calls += 1
                        server.direct_requests.append(req)
                    text, p, c = server._answer(req)
                    return self._send(200, server._chat_body(req, text, p, c))
                if path == "/v1/files":
                    return self._openai_upload(raw)
                if path == "/v1/batches":
                    return self._openai_create(json.loads(raw))
                m = re.fullmatch(r"/v1/batches/([^/]+)/cancel", path)
                if m and m.group(1) in server.batches:
                    server.batches[m.group(1)]["status"] = "cancelled"
                    return self._send(200, server._openai_batch(m.group(1)))
                if path.endswith("/upload/v1beta/files"):
                    return self._gemini_upload_start(raw)
                m = re.fullmatch(r"/upload-session/(\d+)", path)
                if m:
                    return self._gemini_upload_data(m.group(1), raw)
                m = re.fullmatch(r"/v1beta/(models/[^:]+):batchGenerateContent", path)
                if m:
                    return self._gemini_create(m.group(1), json.loads(raw))
                self._error(404, f"no route POST {self.path}")

            # OpenAI
            def _openai_upload(self, raw: bytes) -> None:
                head = f"Content-Type: {self.headers.get('Content-Type')}\r\n\r\n".encode()
                msg = BytesParser(policy=email_policy).parsebytes(head + raw)
                fields, data, filename = {}, b"", "upload.jsonl"
                for part in msg.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    if name == "file":
                        data = part.get_payload(decode=True) or b""
                        filename = part.get_filename() or filename
                    else:
                        fields[name] = part.get_content().strip()
                if fields.get("purpose") != "batch":
                    return self._error(400, f"purpose must be batch, got {fields.get('purpose')!r}")
                with server._lock:
                    fid = f"file-in{next(server._ids)}"
                    server.files[fid] = data
                self._send(
                    200,
                    {
                        "id": fid,
                        "object": "file",
                        "bytes": len(data),
                        "created_at": int(time.time()),
                        "filename": filename,
                        "purpose": "batch",
                        "status": "processed",
                    },
                )

            def _openai_create(self, req: dict) -> None:
                data = server.files.get(req.get("input_file_id", ""))
                if data is None:
                    return self._error(404, f"no file {req.get('input_file_id')!r}")
                if req.get("endpoint") != "/v1/chat/completions" or req.get("completion_window") != "24h":
                    return self._error(
                        400,
                        f"unsupported endpoint/window {req.get('endpoint')}/{req.get('completion_window')}",
                    )
                lines = []
                for n, raw in enumerate(data.decode().splitlines(), start=1):
                    line = json.loads(raw)
                    if (
                        line.get("method") != "POST"
                        or line.get("url") != req["endpoint"]
                        or "model" not in line.get("body", {})
                    ):
                        return self._error(400, f"line {n}: method/url/body.model invalid")
                    lines.append((line["custom_id"], line["body"], line))
                    server.bodies[line["custom_id"]] = line["body"]
                if len({c for c, _, _ in lines}) != len(lines):
                    return self._error(400, "duplicate custom_id in one batch")
                bid = server._create(
                    "openai",
                    lines,
                    {
                        "endpoint": req["endpoint"],
                        "input_file_id": req["input_file_id"],
                        "metadata": req.get("metadata"),
                    },
                )
                if self._drop():
                    return
                self._send(200, server._openai_batch(bid))

            def _drop(self) -> bool:
                with server._lock:
                    if server._drop_creates <= 0:
                        return False
                    server._drop_creates -= 1
                self.close_connection = True
                return True

            # Gemini
            def _gemini_upload_start(self, raw: bytes) -> None:
                meta = json.loads(raw or b"{}").get("file", {})
                with server._lock:
                    uid = str(next(server._ids))
                    server.uploads[uid] = {"meta": meta, "data": b""}
                self._send(
                    200,
                    {},
                    {
                        "x-goog-upload-url": f"{server.root}/upload-session/{uid}",
                        "x-goog-upload-status": "active",
                    },
                )

            def _gemini_upload_data(self, uid: str, raw: bytes) -> None:
                up = server.uploads[uid]
                up["data"] += raw
                if "finalize" not in (self.headers.get("X-Goog-Upload-Command") or ""):
                    return self._send(200, {}, {"x-goog-upload-status": "active"})
                with server._lock:
                    fid = f"in{next(server._ids)}"
                    server.files[fid] = up["data"]
                file = {
                    "name": f"files/{fid}",
                    "displayName": up["meta"].get("displayName", ""),
                    "mimeType": "jsonl",
                    "sizeBytes": str(len(up["data"])),
                    "uri": f"{server.root}/v1beta/files/{fid}",
                    "state": "ACTIVE",
                }
                self._send(200, {"file": file}, {"x-goog-upload-status": "final"})

            def _gemini_create(self, model: str, req: dict) -> None:
                batch = req.get("batch", {})
                fname = (batch.get("inputConfig") or {}).get("fileName", "")
                data = server.files.get(fname.removeprefix("files/"))
                if data is None:
                    return self._error(400, f"no input file {fname!r}")
                lines = []
                for raw in data.decode().splitlines():
                    line = json.loads(raw)
                    lines.append((line["key"], chat_request_from_gemini(model, line["request"]), line))
                    server.bodies[line["key"]] = line["request"]
                bid = server._create(
                    "gemini", lines, {"model": model, "displayName": batch.get("displayName", "")}
                )
                if self._drop():
                    return
                self._send(200, server._gemini_op(bid))

        return Handler


def run_batch_offline(server: BatchServer, in_path, out_path, fail: set | None = None) -> int:
    """What ``vllm run-batch -i IN -o OUT`` does, answered by ``server``'s responder: one output line per
    input line in the Batch API's format (a 400 for the custom_ids in ``fail``); returns the line count."""
    out = []
    with open(in_path, encoding="utf-8") as fh:
        for raw in fh:
            line = json.loads(raw)
            cid, body = line["custom_id"], line["body"]
            if fail and cid in fail:
                response = {"status_code": 400, "request_id": cid[:8], "body": {"error": {"message": "bad"}}}
            else:
                text, p, c = server._answer(body)
                response = {
                    "status_code": 200,
                    "request_id": cid[:8],
                    "body": server._chat_body(body, text, p, c),
                }
            out.append({"id": f"vllm-{cid[:8]}", "custom_id": cid, "response": response, "error": None})
    with open(out_path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(o) + "\n" for o in out)
    return len(out)
