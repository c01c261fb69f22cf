"""Gemini's native Batch API for ``autorater_gemini``, through the ``google-genai`` SDK.

A line is ``{"key": custom_id, "request": GenerateContentRequest}`` (REST JSON): the system text as
``systemInstruction``, the user parts in order (text, and images as ``inlineData``), and a
``generationConfig`` with the temperature, ``maxOutputTokens``, the seed when the judge sends one,
and ``responseMimeType: application/json`` with ``responseJsonSchema`` when the prompt carries a
schema. The JSONL is uploaded through the Files API; ``client.batches.create`` makes the job
(``display_name`` = the ledger token), ``client.batches.get`` polls its ``JOB_STATE_*``, and the
responses file is downloaded and parsed line by line.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from lmms_eval_autorater.judges.batch.protocol import (
    JobStatus,
    LineError,
    keyed_records,
    line_status_retryable,
)
from lmms_eval_autorater.judges.types import BackendError, ChatImage, ChatPrompt, Completion
from lmms_eval_autorater.redact import redact_url

log = logging.getLogger(__name__)

#: the Gemini API's limits per batch input file (2 GB); no line limit is documented
MAX_LINES = 50_000
MAX_BYTES = 2 * 1024**3

_STATES = {
    "JOB_STATE_PENDING": "running",
    "JOB_STATE_QUEUED": "running",
    "JOB_STATE_RUNNING": "running",
    "JOB_STATE_UNSPECIFIED": "running",
    "JOB_STATE_SUCCEEDED": "completed",
    "JOB_STATE_PARTIALLY_SUCCEEDED": "completed",
    "JOB_STATE_EXPIRED": "expired",
    "JOB_STATE_CANCELLED": "cancelled",
    "JOB_STATE_CANCELLING": "running",
    "JOB_STATE_FAILED": "failed",
}

#: Gemini finish reasons -> the OpenAI names the direct path records
_FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter"}

#: gRPC codes (as Google APIs report them in line errors) -> HTTP statuses
_GRPC_TO_HTTP = {3: 400, 4: 504, 5: 404, 7: 403, 8: 429, 13: 500, 14: 503, 16: 401}


def native_base_url(base_url: str | None) -> tuple[str | None, str]:
    """(SDK base_url, api_version) from the judge's OpenAI-compatible ``base_url``:
    ``https://host/v1beta/openai/`` -> (``https://host/``, ``v1beta``); None -> the SDK's default."""
    if not base_url:
        return None, "v1beta"
    url = base_url.rstrip("/")
    if url.endswith("/openai"):
        url = url[: -len("/openai")]
    version = "v1beta"
    m = re.search(r"/(v1(?:alpha|beta)?\d*)$", url)
    if m:
        version, url = m.group(1), url[: m.start()]
    if url.rstrip("/") == "https://generativelanguage.googleapis.com":
        return None, version  # the SDK's own default endpoint
    return url + "/", version


def generate_content_request(prompt: ChatPrompt, backend: Any) -> dict:
    """The ``GenerateContentRequest`` (REST JSON) equivalent to the direct path's chat request."""
    parts: list[dict] = []
    for part in prompt.parts:
        if isinstance(part, ChatImage):
            parts.append(
                {"inlineData": {"mimeType": part.mime, "data": base64.b64encode(part.data).decode()}}
            )
        else:
            parts.append({"text": str(part)})
    config: dict[str, Any] = {"maxOutputTokens": int(backend.max_tokens)}
    if backend.temperature is not None:
        config["temperature"] = backend.temperature
    if backend.send_seed:
        config["seed"] = backend.seed
    if prompt.json_schema is not None and backend.use_json_schema:
        config["responseMimeType"] = "application/json"
        config["responseJsonSchema"] = prompt.json_schema
    request: dict[str, Any] = {"contents": [{"role": "user", "parts": parts}], "generationConfig": config}
    if prompt.system:
        request["systemInstruction"] = {"parts": [{"text": prompt.system}]}
    return request


def completion_from_response(response: dict, requested_model: str) -> Completion:
    """A ``Completion`` from a ``GenerateContentResponse`` (REST JSON): the text of the first
    candidate's non-thought parts, the model version, token usage (thinking counts as output, as
    Gemini bills it) and the finish reason in OpenAI's words. No candidate (a blocked prompt) is an
    empty answer, as the direct path gives it."""
    if not isinstance(response, dict):
        raise BackendError(
            f"gemini/{requested_model}: unreadable response {str(response)[:200]!r}", retryable=True
        )
    usage_meta = response.get("usageMetadata") or {}
    usage = {
        "prompt_tokens": _count(usage_meta.get("promptTokenCount")),
        "completion_tokens": _count(usage_meta.get("candidatesTokenCount"))
        + _count(usage_meta.get("thoughtsTokenCount")),
    }
    model = response.get("modelVersion") if isinstance(response.get("modelVersion"), str) else ""
    candidates = response.get("candidates") or []
    if not isinstance(candidates, list) or not candidates:
        block = (response.get("promptFeedback") or {}).get("blockReason")
        return Completion(
            text="", model=model, usage=usage, finish_reason="content_filter" if block else None
        )
    cand = candidates[0] if isinstance(candidates[0], dict) else {}
    parts = (cand.get("content") or {}).get("parts") or []
    text = "".join(
        p["text"]
        for p in parts
        if isinstance(p, dict) and isinstance(p.get("text"), str) and not p.get("thought")
    )
    reason = cand.get("finishReason")
    finish = _FINISH.get(reason, reason.lower() if isinstance(reason, str) else None)
    return Completion(text=text, model=model, usage=usage, finish_reason=finish)


def parse_response_lines(
    lines: Iterable[str | bytes], requested_model: str
) -> Iterator[tuple[str, Completion | LineError]]:
    """(key, answer or error) per line of a Gemini batch responses file."""
    for key, rec in keyed_records(lines, "key", "gemini batch output"):
        if rec.get("error"):
            yield key, _line_error(rec["error"])
            continue
        try:
            yield key, completion_from_response(rec.get("response"), requested_model)
        except BackendError as err:
            yield key, LineError(str(err), None, True)


def _line_error(error: Any) -> LineError:
    code = error.get("code") if isinstance(error, dict) else None
    message = error.get("message", error) if isinstance(error, dict) else error
    status = _GRPC_TO_HTTP.get(code, None) if isinstance(code, int) and code < 100 else code
    status = status if isinstance(status, int) else None
    return LineError(f"batch line error {code}: {str(message)[:500]}", status, line_status_retryable(status))


def _count(value: object) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else 0


class GeminiBatchProtocol:
    """Gemini Batch API jobs through ``genai.Client`` (the key is the judge's, from ``$GEMINI_API_KEY``)."""

    name = "gemini"

    def __init__(
        self,
        backend: Any,
        *,
        max_lines: int = MAX_LINES,
        max_bytes: int = MAX_BYTES,
        timeout: float = 600.0,
        list_limit: int = 1000,
    ) -> None:
        from google import genai
        from google.genai import types

        self.backend = backend
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.list_limit = list_limit
        base_url, version = native_base_url(backend.base_url)
        options = types.HttpOptions(
            base_url=base_url, api_version=version, timeout=int(1000 * max(float(backend.timeout), timeout))
        )
        self.model = backend.model
        self._client = genai.Client(api_key=backend.client.api_key, http_options=options)

    @property
    def scope(self) -> str:
        """``gemini|<base_url>|<model>``."""
        return f"gemini|{redact_url(str(self.backend.base_url))}|{self.backend.model}"

    def line(self, custom_id: str, prompt: ChatPrompt) -> bytes:
        """The batch line of ``prompt``: ``{"key", "request"}``."""
        rec = {"key": custom_id, "request": generate_content_request(prompt, self.backend)}
        return (json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")

    def _call(self, what: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """``fn(...)`` with the SDK's errors as ``BackendError`` (retryable: 408/409/429, 5xx, transport)."""
        from google.genai import errors

        from lmms_eval_autorater.judges.backends.openai_api import _transport_errors

        try:
            return fn(*args, **kwargs)
        except errors.APIError as exc:
            status = int(exc.code) if isinstance(exc.code, int) else None
            message = self.backend.scrub(f"gemini/{self.model}: {what}: HTTP {status}: {exc.message or exc}")
            raise BackendError(message, status=status, retryable=line_status_retryable(status)) from None
        except _transport_errors() as exc:
            err = BackendError(
                self.backend.scrub(
                    f"gemini/{self.model}: {what}: connection error: {type(exc).__name__}: {exc}"
                ),
                retryable=True,
            )
            err.connection = True  # type: ignore[attr-defined]
            raise err from None

    def submit(self, lines: list[bytes], token: str) -> tuple[str, str | None]:
        """Upload the JSONL through the Files API and create a batch job over it."""
        from google.genai import types

        uploaded = self._call(
            "upload",
            self._client.files.upload,
            file=io.BytesIO(b"".join(lines)),
            config=types.UploadFileConfig(display_name=token, mime_type="jsonl"),
        )
        job = self._call(
            "create batch",
            self._client.batches.create,
            model=self.model,
            src=uploaded.name,
            config=types.CreateBatchJobConfig(display_name=token),
        )
        return str(job.name), str(uploaded.name)

    def find(self, token: str) -> str | None:
        """The batch job whose ``display_name`` is ``token`` (among the newest ``list_limit``)."""

        def scan() -> str | None:
            for seen, job in enumerate(self._client.batches.list(config={"page_size": 100})):
                if job.display_name == token:
                    return str(job.name)
                if seen + 1 >= self.list_limit:
                    break
            return None

        return self._call("list batches", scan)

    def status(self, batch_id: str) -> JobStatus:
        """``client.batches.get`` as a ``JobStatus``; results: the responses file."""
        job = self._call("get batch", self._client.batches.get, name=batch_id)
        raw_state = getattr(job.state, "name", None) or str(job.state)
        state = _STATES.get(raw_state)
        if state is None:
            raise BackendError(f"batch {batch_id}: unknown state {raw_state!r}", retryable=True)
        results: list[Any] = []
        dest = getattr(job, "dest", None)
        if dest is not None and dest.file_name:
            results.append(dest.file_name)
        error = getattr(job, "error", None)
        return JobStatus(state=state, message=str(error) if error else None, results=results)  # type: ignore[arg-type]

    def results(self, status: JobStatus) -> Iterator[tuple[str, Completion | LineError]]:
        """Every line of the job's responses file."""
        for handle in status.results:
            data = self._call("download results", self._client.files.download, file=handle)
            yield from parse_response_lines(data.decode("utf-8").splitlines(), self.model)
