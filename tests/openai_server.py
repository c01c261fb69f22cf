"""A real OpenAI-compatible chat-completions server on 127.0.0.1, for tests and benchmarks.

Stdlib only (``http.server.ThreadingHTTPServer`` in a background thread, random free port).
Answers ``POST /v1/chat/completions`` (and ``/chat/completions``) with a programmable responder,
an injected latency, and faults of three kinds:

* scripted: ``inject(fault, times, match)``: 429 with ``Retry-After``, 5xx, slow answers that trip
  the client timeout, malformed bodies, dropped connections, empty or null content, 4xx;
* seeded random: ``fault_rates={500: 0.3, 429: 0.1}, fault_seed=0``: each request draws its fault
  from (seed, hash of the request body, how many times that body was seen), so a run is
  reproducible whatever the thread timing;
* outages: ``outage(match)``: every matching request fails (503) until ``end_outage``.

``match`` selects requests by a distinctive prompt string (substring of the text parts), by an
image (``image_match(data)`` gives ``"sha256:<hex>"`` of the image bytes), or by a predicate on the
request JSON. It records every request (thread-safe), the fault it got, and the peak number of
requests in flight.

Capacity limits (for adaptive concurrency): ``max_concurrent=N`` answers 429 at once to a request that
arrives while N others are in flight (``RecordedRequest.in_flight`` is the count it saw, itself
included; a request stops counting just before its answer is written); ``rate_limit_requests`` /
``rate_limit_tokens`` per ``rate_limit_window`` seconds send OpenAI's ``x-ratelimit-limit-*`` /
``-remaining-*`` / ``-reset-*`` headers on every answer and 429 (with ``Retry-After``) past the limit.

Standalone: ``python -m tests.openai_server --port 0 --latency 0.05`` prints its URL and serves
(``--fault-rate 500=0.3 --fault-rate 429=0.1 --fault-seed 0`` for seeded random faults).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_FINGERPRINT = "fp_autorater_test"
_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$")


@dataclass
class Fault:
    """One scripted misbehaviour, applied to the next matching request(s)."""

    kind: str  # "status" | "timeout" | "malformed" | "empty" | "null" | "drop" | "truncated" | "raw"
    status: int = 500
    retry_after: str | None = None
    delay: float = 0.0
    message: str = "injected fault"
    body: bytes = b""
    content_type: str = "application/json"

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
    def drop(cls) -> Fault:
        """Close the connection without answering (the client sees a dropped connection)."""
        return cls("drop")

    @classmethod
    def truncated(cls) -> Fault:
        """Announce a full body, send half of it, then close the connection."""
        return cls("truncated")

    @classmethod
    def raw(cls, body: bytes, status: int = 200, content_type: str = "application/json") -> Fault:
        """Answer with exactly ``body`` (e.g. JSON that is not a chat completion)."""
        return cls("raw", status, body=body, content_type=content_type)

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


def image_match(data: bytes) -> str:
    """A ``match`` value that selects requests carrying an image with exactly these bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_digests(request_json: dict) -> list[str]:
    """SHA-256 (hex) of the bytes of each base64 data-URL image of a request, in order."""
    out: list[str] = []
    for url in image_urls(request_json):
        head, _, payload = url.partition(",")
        if not head.startswith("data:") or not head.endswith(";base64"):
            continue
        try:
            out.append(hashlib.sha256(base64.b64decode(payload, validate=True)).hexdigest())
        except (binascii.Error, ValueError):
            continue
    return out


#: what ``inject``/``outage`` accept as ``match``: None (any request), a prompt substring,
#: ``"sha256:<hex>"`` from ``image_match`` (a prefix of the hex is enough), or a predicate
Match = str | Callable[[dict], bool] | None


def request_matches(request_json: dict, match: Match) -> bool:
    """Whether a request is selected by ``match`` (see ``Match``)."""
    if match is None:
        return True
    if callable(match):
        return bool(match(request_json))
    if match.startswith("sha256:"):
        want = match[len("sha256:") :].lower()
        return bool(want) and any(d.startswith(want) for d in image_digests(request_json))
    return match in prompt_text(request_json)


def body_digest(request_json: dict) -> str:
    """SHA-256 of the canonical JSON of a request body (the same prompt and settings give the same hash)."""
    return hashlib.sha256(json.dumps(request_json, sort_keys=True).encode()).hexdigest()


def seeded_fault_status(rates: dict[int, float], seed: int, digest: str, n: int) -> int | None:
    """The status drawn for the ``n``-th sighting (0-based) of the body with ``body_digest`` ``digest``,
    or None (answered): ``u = H(seed, digest, n)`` in [0, 1), against the rates in status order."""
    h = hashlib.sha256(f"{seed}|{digest}|{n}".encode()).hexdigest()
    u = int(h[:13], 16) / 16**13
    edge = 0.0
    for status in sorted(rates):
        edge += rates[status]
        if u < edge:
            return status
    return None


def _image_size_of_url(url: str) -> tuple[int, int]:
    """(width, height) of a base64 data-URL image, decoded from the bytes the server received."""
    from io import BytesIO

    from PIL import Image

    with Image.open(BytesIO(base64.b64decode(url.partition(",")[2]))) as img:
        return img.size


def openai_counted_prompt_tokens(request_json: dict) -> int:
    """``usage.prompt_tokens`` counted like OpenAI from the body received: o200k_base on every text,
    3 tokens per message plus its role, 3 to prime the reply; each image by OpenAI's published rule from
    its decoded size and the ``detail`` it was sent with (low: 85; else fit 2048x2048, short side to 768,
    170 per 512 px tile + 85). Written apart from the package's estimator, which it checks."""
    import math

    from lmms_eval_autorater.judges.tokens import o200k  # only the BPE file loader is shared

    enc = o200k()
    total = 3  # <|im_start|>assistant<|im_sep|>
    for msg in request_json.get("messages", []):
        total += 3 + len(enc.encode(str(msg.get("role", ""))))
        content = msg.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else (content or [])
        for part in parts:
            if part.get("type") == "text":
                total += len(enc.encode(part.get("text", ""), disallowed_special=()))
            elif part.get("type") == "image_url":
                if part["image_url"].get("detail") == "low":
                    total += 85
                    continue
                w, h = _image_size_of_url(part["image_url"]["url"])
                if max(w, h) > 2048:
                    w, h = w * 2048 / max(w, h), h * 2048 / max(w, h)
                if min(w, h) > 768:
                    w, h = w * 768 / min(w, h), h * 768 / min(w, h)
                total += 85 + 170 * math.ceil(w / 512 - 1e-9) * math.ceil(h / 512 - 1e-9)
    return total


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


_TOKEN = re.compile(r"[0-9]+|[A-Za-z]+|\s+|[^0-9A-Za-z\s]")
_TOKEN_SPLIT = re.compile(r"[0-9]|[A-Za-z]+|\s+|[^0-9A-Za-z\s]")


def _lp_entry(token: str, logprob: float) -> dict:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}


def request_paradigm(request_json: dict) -> str:
    """``pairwise`` when the request's schema (or, without one, its text) asks for a preference."""
    rf = request_json.get("response_format") or {}
    schema = (rf.get("json_schema") or {}).get("schema") or {}
    if schema:
        return "pairwise" if "preferred" in (schema.get("properties") or {}) else "pointwise"
    return "pairwise" if "prefer" in prompt_text(request_json).lower() else "pointwise"


class ProbabilityRule:
    """A judge with a known answer distribution, for ``scoring=expected`` tests.

    ``dist(request_json) -> {value: probability}`` (scores 1..10, or choices 1 and 2). ``responder`` answers
    ``{"analysis": ..., "score"|"preferred": the most likely value}``; ``logprobs(request_json, text)`` gives
    OpenAI's ``choices[0].logprobs.content`` for that text: a token per number, word, space run or symbol
    (``split_digits=True``: one token per digit, as Llama/Qwen tokenizers split ``10``), every token certain
    except the verdict value's, whose ``top_logprobs`` carry ``dist`` (with split digits, "1" carries
    p(1) + p(10) and the next token splits it into "0" and the closing brace).
    """

    def __init__(self, dist: Callable[[dict], dict[int, float]], *, split_digits: bool = False) -> None:
        self.dist = dist
        self.split_digits = split_digits

    def responder(self, request_json: dict) -> str:
        d = self.dist(request_json)
        best = max(sorted(d), key=lambda k: d[k])
        key = "preferred" if request_paradigm(request_json) == "pairwise" else "score"
        return json.dumps({"analysis": f"analysis {_digest(request_json) % 997}", key: best})

    def logprobs(self, request_json: dict, text: str | None) -> list[dict] | None:
        if not text:
            return None
        import math

        d = self.dist(request_json)
        pattern = _TOKEN_SPLIT if self.split_digits else _TOKEN
        tokens = pattern.findall(text)
        key = "preferred" if request_paradigm(request_json) == "pairwise" else "score"
        m = re.search(rf'"{key}":\s*([0-9]+)', text)
        start = m.start(1) if m else -1
        out, pos, carry = [], 0, None
        for tok in tokens:
            entry = _lp_entry(tok, 0.0)
            entry["top_logprobs"] = [_lp_entry(tok, 0.0)]
            if pos == start:
                firsts: dict[str, float] = {}
                for v, p in d.items():
                    head = str(v)[0] if self.split_digits else str(v)
                    firsts[head] = firsts.get(head, 0.0) + p
                alts = sorted(firsts.items(), key=lambda kv: -kv[1])
                entry["top_logprobs"] = [_lp_entry(t, math.log(p)) for t, p in alts if p > 0]
                entry["logprob"] = math.log(firsts[tok])
                if self.split_digits and tok == "1" and d.get(10, 0) > 0:
                    carry = (d.get(1, 0.0), d[10])
            elif carry is not None:
                p1, p10 = carry
                alts = [("0", p10 / (p1 + p10)), ("}", p1 / (p1 + p10))]
                entry["top_logprobs"] = [_lp_entry(t, math.log(p)) for t, p in alts if p > 0]
                entry["logprob"] = math.log(dict(alts)[tok]) if tok in dict(alts) else 0.0
                carry = None
            out.append(entry)
            pos += len(tok)
        return out


@dataclass
class RecordedRequest:
    """One received request: path, headers (lower-case names), parsed JSON body (None if unreadable),
    arrival time, and the fault it got (None: answered normally; else ``"outage"``, ``"random"`` or
    ``"scripted"`` then ``:`` and the fault kind or status, e.g. ``"random:429"``, ``"scripted:timeout"``;
    ``"auth"`` for a rejected key).
    """

    path: str
    headers: dict
    json: dict | None
    time: float
    fault: str | None = None
    #: requests in flight when it arrived, itself included (the count ``max_concurrent`` is checked on)
    in_flight: int = 0


class _Listener(ThreadingHTTPServer):
    """A listen backlog like a real server's (uvicorn: 2048), not socketserver's 5: with 32 clients connecting at
    once, 5 drops connections, which a real OpenAI or vLLM endpoint does not."""

    request_queue_size = 256


class OpenAIServer:
    """An OpenAI-compatible server in a background thread; use as a context manager.

    ``responder(request_json) -> str | None`` gives the answer text (None: null content); it may instead
    return ``{"content": str, "logprobs": {...}}`` to answer with the choice's ``logprobs`` as well.
    ``latency`` seconds are slept before each answer. ``inject(fault, times, match)`` scripts
    faults for the next ``times`` requests selected by ``match`` (any, if None). ``outage(match)``
    fails every selected request with 503 until ``end_outage``. ``fault_rates`` ({status: rate})
    with ``fault_seed`` draws a seeded random fault per request (``retry_after``: the Retry-After
    header of random 429s, or {status: value}). Precedence: outage, then scripted, then random.
    ``require_key`` (alias ``api_key``): if set, requests without ``Authorization: Bearer <key>``
    get a 401 (before any fault). ``count_tokens="openai"`` reports ``usage.prompt_tokens`` counted
    like OpenAI from the body received (``openai_counted_prompt_tokens``); the default counts words.
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
        require_key: str | None = None,
        fault_rates: dict[int, float] | None = None,
        fault_seed: int = 0,
        retry_after: str | dict[int, str] | None = None,
        max_concurrent: int | None = None,
        concurrent_retry_after: str | None = None,
        rate_limit_requests: int | None = None,
        rate_limit_tokens: int | None = None,
        rate_limit_window: float = 60.0,
        count_tokens: str = "words",
        usage: str = "openai",
        logprobs: Callable[[dict, str | None], list | None] | None = None,
    ) -> None:
        #: ``logprobs(request_json, text) -> content``: answers of requests that ask for ``logprobs`` carry
        #: ``choices[0].logprobs.content`` (None: the server returns no log-probabilities, as some do not)
        self.logprobs = logprobs
        if usage != "openai" and usage != "none" and not usage.startswith("thinking:"):
            raise ValueError(f"usage must be 'openai', 'none' or 'thinking:N', got {usage!r}")
        #: the ``usage`` field of answers: "openai" (prompt + completion = total), "none" (no usage field),
        #: "thinking:N" (Gemini's OpenAI endpoint: N thought tokens in ``total_tokens`` and
        #: ``completion_tokens_details.reasoning_tokens`` only, not in ``completion_tokens``)
        self.usage = usage
        if count_tokens not in ("words", "openai"):
            raise ValueError(f"count_tokens must be 'words' or 'openai', got {count_tokens!r}")
        #: how ``usage.prompt_tokens`` is counted: "words" (cheap: words + 85 per image) or "openai"
        #: (``openai_counted_prompt_tokens``: like OpenAI bills)
        self.count_tokens = count_tokens
        if api_key is not None and require_key is not None and api_key != require_key:
            raise ValueError("api_key and require_key are the same setting: pass one")
        self.responder = responder or default_responder
        self.latency = latency
        self.snapshot = snapshot
        self.fingerprint = fingerprint
        self.api_key = require_key if require_key is not None else api_key
        self.fault_seed = fault_seed
        self.fault_rates = dict(fault_rates or {})
        self.retry_after = retry_after
        self._check_rates(self.fault_rates)
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.max_concurrent = max_concurrent
        self.concurrent_retry_after = concurrent_retry_after
        self.rate_limit_requests = rate_limit_requests
        self.rate_limit_tokens = rate_limit_tokens
        self.rate_limit_window = rate_limit_window
        self.active = 0  # in flight for max_concurrent: released just before the answer is written
        self._window_start = time.monotonic()
        self._window_requests = 0
        self._window_tokens = 0
        self._faults: list[list] = []  # [fault, remaining, match]
        self._outages: list[tuple[Match, Fault]] = []
        self._seen: dict[str, int] = {}  # body digest -> times seen (drives the seeded draws)
        self._lock = threading.Lock()
        self._httpd = _Listener((host, port), self._handler_class())
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

    @property
    def require_key(self) -> str | None:
        """The bearer key requests must carry (None: any key, or none, is accepted)."""
        return self.api_key

    # -- scripting and inspection -------------------------------------------------------------
    def inject(self, fault: Fault, times: int = 1, match: Match = None) -> None:
        """Apply ``fault`` to the next ``times`` requests selected by ``match`` (see ``Match``)."""
        with self._lock:
            self._faults.append([fault, times, match])

    def outage(
        self,
        match: Match | Iterable[str],
        status: int = 503,
        message: str | None = None,
        retry_after: str | None = None,
    ) -> None:
        """Fail EVERY request selected by ``match`` (or by any of several matches) with ``status``
        (and a ``Retry-After`` header if given) until ``end_outage``/``clear_faults``/``reset``:
        a doc that can never be answered."""
        matches = [match] if match is None or isinstance(match, str) or callable(match) else list(match)
        fault = Fault.http(status, message or f"service unavailable ({status}, injected outage)", retry_after)
        with self._lock:
            self._outages.extend((m, fault) for m in matches)

    def end_outage(self, match: Match | Iterable[str] = None) -> None:
        """End the outage for ``match`` (the same value(s) given to ``outage``), or every outage if None."""
        with self._lock:
            if match is None:
                self._outages.clear()
                return
            drop = [match] if isinstance(match, str) or callable(match) else list(match)
            self._outages = [(m, f) for m, f in self._outages if all(m != d for d in drop)]

    def set_fault_rates(
        self,
        fault_rates: dict[int, float] | None,
        seed: int | None = None,
        retry_after: str | dict[int, str] | None = None,
    ) -> None:
        """Replace the seeded random faults ({status: rate}; None or {} switches them off)."""
        rates = dict(fault_rates or {})
        self._check_rates(rates)
        with self._lock:
            self.fault_rates = rates
            if seed is not None:
                self.fault_seed = seed
            if retry_after is not None:
                self.retry_after = retry_after

    def clear_faults(self) -> None:
        """Forget every scripted fault not yet used and end every outage (random rates stay)."""
        with self._lock:
            self._faults.clear()
            self._outages.clear()

    def reset(self) -> None:
        """Clear the request log, the peak-in-flight counter, the fault script, the outages and the
        seen-body counts of the random faults (so the same requests draw the same faults again)."""
        with self._lock:
            self.requests.clear()
            self.max_in_flight = self.in_flight
            self._faults.clear()
            self._outages.clear()
            self._seen.clear()

    def fault_counts(self) -> dict[str, int]:
        """How many recorded requests got each fault (``RecordedRequest.fault`` values)."""
        with self._lock:
            counts: dict[str, int] = {}
            for r in self.requests:
                if r.fault is not None:
                    counts[r.fault] = counts.get(r.fault, 0) + 1
            return counts

    @property
    def request_count(self) -> int:
        """Number of chat requests received so far."""
        with self._lock:
            return len(self.requests)

    @staticmethod
    def _check_rates(rates: dict[int, float]) -> None:
        if any(not 0.0 <= r <= 1.0 for r in rates.values()) or sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError(f"fault rates must be in [0, 1] and sum to at most 1, got {rates}")
        if any(not 400 <= int(s) <= 599 for s in rates):
            raise ValueError(f"fault rates are keyed by HTTP error status (400-599), got {sorted(rates)}")

    def _random_fault(self, req: dict) -> Fault | None:
        """The seeded draw for this request: (seed, body hash, times this body was seen before)."""
        digest = body_digest(req)
        with self._lock:
            n = self._seen.get(digest, 0)
            self._seen[digest] = n + 1
            rates, seed, retry_after = dict(self.fault_rates), self.fault_seed, self.retry_after
        if not rates:
            return None
        status = seeded_fault_status(rates, seed, digest, n)
        if status is None:
            return None
        ra = retry_after.get(status) if isinstance(retry_after, dict) else None
        if isinstance(retry_after, str) and status == 429:
            ra = retry_after
        if status == 429:
            return Fault.rate_limit(ra)
        return Fault.http(status, f"injected random HTTP {status}", retry_after=ra)

    def _take_fault(self, req: dict) -> tuple[Fault | None, str | None]:
        """The fault for this request and its label (``RecordedRequest.fault``)."""
        random_fault = self._random_fault(req)  # drawn for every request, so the draws stay reproducible
        with self._lock:
            for match, fault in self._outages:
                if request_matches(req, match):
                    return fault, f"outage:{fault.status}"
            for entry in self._faults:
                fault, remaining, match = entry
                if remaining > 0 and request_matches(req, match):
                    entry[1] -= 1
                    if entry[1] == 0:
                        self._faults.remove(entry)
                    what = fault.status if fault.kind == "status" else fault.kind
                    return fault, f"scripted:{what}"
        if random_fault is not None:
            return random_fault, f"random:{random_fault.status}"
        return None, None

    def _snapshot_for(self, model: str) -> str:
        if self.snapshot is not None:
            return self.snapshot
        return model if _DATED.search(model or "") else f"{model or 'test-model'}-2024-08-06"

    # -- capacity limits ------------------------------------------------------------------------
    def admitted_in_flight(self, after: float | None = None) -> int:
        """The most requests in flight seen by a request arriving at or after ``after`` (monotonic time;
        None: any), rejected ones included."""
        with self._lock:
            return max((r.in_flight for r in self.requests if after is None or r.time >= after), default=0)

    def _rate_limit_check(self, req: dict) -> tuple[dict, str | None]:
        """Count ``req`` in the current window: (the x-ratelimit-* headers, a Retry-After if over the limit)."""
        if self.rate_limit_requests is None and self.rate_limit_tokens is None:
            return {}, None
        tokens = len(prompt_text(req).split()) + 85 * len(image_urls(req)) + int(req.get("max_tokens") or 0)
        with self._lock:
            now = time.monotonic()
            if now - self._window_start >= self.rate_limit_window:
                self._window_start, self._window_requests, self._window_tokens = now, 0, 0
            reset = max(0.0, self.rate_limit_window - (now - self._window_start))
            over = (
                self.rate_limit_requests is not None and self._window_requests >= self.rate_limit_requests
            ) or (
                self.rate_limit_tokens is not None and self._window_tokens + tokens > self.rate_limit_tokens
            )
            if not over:
                self._window_requests += 1
                self._window_tokens += tokens
            headers = {}
            if self.rate_limit_requests is not None:
                headers["x-ratelimit-limit-requests"] = str(self.rate_limit_requests)
                headers["x-ratelimit-remaining-requests"] = str(
                    self.rate_limit_requests - self._window_requests
                )
                headers["x-ratelimit-reset-requests"] = f"{reset:.3f}s"
            if self.rate_limit_tokens is not None:
                headers["x-ratelimit-limit-tokens"] = str(self.rate_limit_tokens)
                headers["x-ratelimit-remaining-tokens"] = str(
                    max(0, self.rate_limit_tokens - self._window_tokens)
                )
                headers["x-ratelimit-reset-tokens"] = f"{reset:.3f}s"
        return headers, f"{reset:.3f}" if over else None

    # -- HTTP ----------------------------------------------------------------------------------
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # no 40 ms Nagle / delayed-ACK stalls between header and body

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - silence
                pass

            def _release(self) -> None:
                """Stop counting this request for ``max_concurrent`` (once)."""
                if getattr(self, "_held", False):
                    self._held = False
                    with server._lock:
                        server.active -= 1

            def _send(self, status: int, body: bytes, headers: dict | None = None) -> None:
                self._release()  # answered: no longer in flight for the concurrency limit
                headers = {**getattr(self, "_extra_headers", {}), **dict(headers or {})}
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
                    self.send_header("Content-Length", str(len(body)))
                    for k, v in headers.items():
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
                record = RecordedRequest(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, req, time.monotonic()
                )
                with server._lock:
                    server.requests.append(record)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                self._extra_headers: dict = {}
                with server._lock:
                    server.active += 1
                    record.in_flight = server.active
                self._held = True
                try:
                    self._answer(req, record)
                finally:
                    self._release()
                    with server._lock:
                        server.in_flight -= 1

            def _answer(self, req: dict | None, record: RecordedRequest) -> None:
                if req is None:
                    self._error(400, "request body is not JSON")
                    return
                if (
                    server.api_key is not None
                    and self.headers.get("Authorization") != f"Bearer {server.api_key}"
                ):
                    record.fault = "auth"
                    self._error(401, "Incorrect API key provided.")
                    return
                if server.max_concurrent is not None and record.in_flight > server.max_concurrent:
                    record.fault = "concurrency:429"
                    ra = server.concurrent_retry_after
                    self._error(
                        429,
                        f"Too many requests in flight (more than {server.max_concurrent}, injected)",
                        {"Retry-After": ra} if ra is not None else None,
                    )
                    return
                self._extra_headers, over = server._rate_limit_check(req)
                if over is not None:
                    record.fault = "ratelimit:429"
                    self._error(
                        429, "Rate limit reached for requests (injected window)", {"Retry-After": over}
                    )
                    return
                fault, record.fault = server._take_fault(req)
                if server.latency > 0:
                    time.sleep(server.latency)
                if fault is not None and fault.kind == "status":
                    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else None
                    self._error(fault.status, fault.message, headers)
                    return
                if fault is not None and fault.kind == "malformed":
                    self._send(200, b"<html>502 Bad Gateway (not JSON)</html>")
                    return
                if fault is not None and fault.kind == "raw":
                    self._send(fault.status, fault.body, {"Content-Type": fault.content_type})
                    return
                if fault is not None and fault.kind in ("drop", "truncated"):
                    self.close_connection = True
                    try:
                        if fault.kind == "truncated":
                            body = json.dumps(
                                {"id": "x", "object": "chat.completion", "choices": []}
                            ).encode()
                            self.send_response(200)
                            self.send_header("Content-Type", "application/json")
                            self.send_header("Content-Length", str(len(body)))
                            self.end_headers()
                            self.wfile.write(body[: len(body) // 2])
                            self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return
                if fault is not None and fault.kind == "timeout":
                    time.sleep(fault.delay)
                if fault is not None and fault.kind in ("empty", "null"):
                    text = "" if fault.kind == "empty" else None
                else:
                    text = server.responder(req)
                logprobs = None
                if isinstance(text, dict):  # a responder may give the content and the choice's logprobs
                    text, logprobs = text.get("content"), text.get("logprobs")
                n_images = len(image_urls(req))
                if server.count_tokens == "openai":
                    prompt_tokens = openai_counted_prompt_tokens(req)
                else:
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
                            "logprobs": logprobs
                            if logprobs is not None
                            else (
                                {"content": server.logprobs(req, text)}
                                if server.logprobs is not None and req.get("logprobs")
                                else None
                            ),
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                }
                if server.usage == "none":
                    del body["usage"]
                elif server.usage.startswith("thinking:"):
                    thoughts = int(server.usage.split(":", 1)[1])
                    body["usage"]["total_tokens"] += thoughts
                    body["usage"]["completion_tokens_details"] = {"reasoning_tokens": thoughts}
                self._send(200, json.dumps(body).encode())

        return Handler


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT, after printing the base URL on stdout (one line, flushed)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 picks a free port")
    ap.add_argument("--latency", type=float, default=0.0, help="seconds slept before each answer")
    ap.add_argument(
        "--api-key",
        "--require-key",
        dest="api_key",
        default=None,
        help="if set, require this bearer key (else accept any)",
    )
    ap.add_argument("--snapshot", default=None, help="model name to report (default: requested + date)")
    ap.add_argument(
        "--fault-rate",
        action="append",
        default=[],
        metavar="STATUS=RATE",
        help="seeded random fault, e.g. 500=0.3 (repeatable)",
    )
    ap.add_argument("--fault-seed", type=int, default=0, help="seed of the random faults")
    ap.add_argument("--retry-after", default=None, help="Retry-After header of random 429s")
    args = ap.parse_args(argv)
    rates: dict[int, float] = {}
    for item in args.fault_rate:
        status, sep, rate = item.partition("=")
        if not sep:
            ap.error(f"--fault-rate wants STATUS=RATE, got {item!r}")
        rates[int(status)] = float(rate)
    server = OpenAIServer(
        latency=args.latency,
        host=args.host,
        port=args.port,
        snapshot=args.snapshot,
        api_key=args.api_key,
        fault_rates=rates,
        fault_seed=args.fault_seed,
        retry_after=args.retry_after,
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
