"""A local stand-in of the Hugging Face Hub's HTTP API, enough for a model card's metadata push.

Stdlib only (``ThreadingHTTPServer`` in a background thread, random free port on 127.0.0.1); point
``huggingface_hub`` at it with ``HF_ENDPOINT=<url>`` and any ``HF_TOKEN``. It serves what
``create_repo``, ``ModelCard.load`` (``hf_hub_download`` of ``README.md``), ``RepoCard.validate`` and
``upload_file`` (preupload + NDJSON commit) send, keeps each model repository's files in memory,
answers a missing repository or file with the Hub's 404 and ``X-Error-Code`` header, and records
every request as ``(method, path)``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/(?P<op>preupload|commit)/(?P<rev>[^/?]+)")


class HubServer:
    """The stand-in: ``repos`` maps ``owner/name`` to ``{path: bytes}``; ``token`` is required when set."""

    def __init__(self, token: str | None = "hf_test_token") -> None:
        self.token = token
        self.repos: dict[str, dict[str, bytes]] = {}
        self.requests: list[tuple[str, str]] = []
        self.commits = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence
                pass

            def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False):
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _json(self, status: int, obj: object, headers: dict | None = None) -> None:
                self._send(status, json.dumps(obj).encode(), headers)

            def _not_found(self, code: str, head: bool = False) -> None:
                body = json.dumps({"error": f"{code}: {self.path}"}).encode()
                self._send(404, body, {"X-Error-Code": code, "X-Error-Message": code}, head=head)

            def _authorised(self) -> bool:
                if hub.token is None or self.headers.get("authorization") == f"Bearer {hub.token}":
                    return True
                self._json(401, {"error": "Invalid credentials in Authorization header"})
                return False

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("content-length") or 0))

            def _resolve(self, head: bool) -> None:
                with hub._lock:
                    hub.requests.append(("HEAD" if head else "GET", self.path))
                m = _RESOLVE.match(self.path.split("?")[0])
                if not m or m["repo"] not in hub.repos:
                    return self._not_found("RepoNotFound", head)
                data = hub.repos[m["repo"]].get(m["path"])
                if data is None:
                    return self._not_found("EntryNotFound", head)
                etag = hashlib.sha256(data).hexdigest()
                headers = {
                    "Content-Type": "text/plain",
                    "ETag": f'"{etag}"',
                    "X-Repo-Commit": "0" * 39 + str(hub.commits % 10),
                }
                self._send(200, data, headers, head=head)

            def do_HEAD(self) -> None:  # noqa: N802
                self._resolve(head=True)

            def do_GET(self) -> None:  # noqa: N802
                self._resolve(head=False)

            def do_POST(self) -> None:  # noqa: N802
                body = self._body()
                with hub._lock:
                    hub.requests.append(("POST", self.path))
                path = self.path.split("?")[0]
                if path == "/api/validate-yaml":  # the Hub checks a card's YAML without a token
                    return self._json(200, {"errors": [], "warnings": []})
                if not self._authorised():
                    return None
                if path == "/api/repos/create":
                    req = json.loads(body)
                    repo = (
                        f"{req.get('organization') or 'user'}/{req['name']}"
                        if "/" not in req["name"]
                        else req["name"]
                    )
                    with hub._lock:
                        if repo in hub.repos:
                            return self._json(
                                409,
                                {"error": "You already created this model repo", "url": f"{hub.url}/{repo}"},
                            )
                        hub.repos[repo] = {}
                    return self._json(200, {"url": f"{hub.url}/{repo}", "name": repo})
                m = _API.match(path)
                if not m:
                    return self._json(404, {"error": f"no route {path}"})
                if m["repo"] not in hub.repos:
                    return self._not_found("RepoNotFound")
                if m["op"] == "preupload":
                    files = json.loads(body).get("files", [])
                    return self._json(
                        200,
                        {
                            "files": [
                                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                for f in files
                            ]
                        },
                    )
                written = {}
                for line in body.decode().splitlines():
                    item = json.loads(line)
                    if item.get("key") == "file":
                        value = item["value"]
                        written[value["path"]] = base64.b64decode(value["content"])
                with hub._lock:
                    hub.repos[m["repo"]].update(written)
                    hub.commits += 1
                    oid = f"{hub.commits:040x}"
                return self._json(200, {"commitUrl": f"{hub.url}/{m['repo']}/commit/{oid}", "commitOid": oid})

        return Handler
