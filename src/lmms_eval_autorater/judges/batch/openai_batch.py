"""The OpenAI Batch API protocol (``/v1/files`` + ``/v1/batches``), for OpenAI and any server that
implements it; its JSONL is also the input of ``vllm run-batch``.

A line is ``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}`` where ``body``
is exactly the request the direct path sends (``OpenAIChatBackend.request_kwargs``) and
``custom_id`` is the response-cache key; an output line's ``response.body`` is parsed as a direct
answer (``OpenAIChatBackend.completion_from_body``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from lmms_eval_autorater.judges.batch.protocol import (
    JobStatus,
    LineError,
    keyed_records,
    line_status_retryable,
)
from lmms_eval_autorater.judges.types import BackendError, ChatPrompt, Completion
from lmms_eval_autorater.redact import redact_url

log = logging.getLogger(__name__)

ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"
#: OpenAI's limits per batch input file
MAX_LINES = 50_000
MAX_BYTES = 200 * 1024 * 1024
#: line error codes that mean "not answered" (the line is resubmitted, not retried as an error)
UNANSWERED_CODES = frozenset({"batch_expired", "batch_cancelled"})

_STATES = {
    "validating": "running",
    "in_progress": "running",
    "finalizing": "running",
    "cancelling": "running",
    "completed": "completed",
    "expired": "expired",
    "cancelled": "cancelled",
    "failed": "failed",
}


def request_line(custom_id: str, body: dict) -> bytes:
    """One Batch API input line for a chat-completion ``body``."""
    line = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}
    return (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def parse_output_lines(
    lines: Iterable[str | bytes], parse_body: Callable[[dict], Completion]
) -> Iterator[tuple[str, Completion | LineError]]:
    """(custom_id, answer or error) per line of a Batch API (or ``vllm run-batch``) output or error file.

    Lines that were never answered (``batch_expired``, ``batch_cancelled``) are left out: the caller
    resubmits them. A body that is not a chat completion is a retryable line error.
    """
    for custom_id, rec in keyed_records(lines, "custom_id", "batch output"):
        error = rec.get("error")
        response = rec.get("response") or {}
        if error:
            code = error.get("code") if isinstance(error, dict) else None
            if code in UNANSWERED_CODES:
                continue
            message = error.get("message") if isinstance(error, dict) else str(error)
            yield custom_id, LineError(f"batch line error {code or ''}: {message}".strip(), None, True)
            continue
        status = response.get("status_code")
        body = response.get("body")
        if status != 200:
            detail = body.get("error", body) if isinstance(body, dict) else body
            if isinstance(detail, dict):
                detail = detail.get("message", detail)
            status_int = status if isinstance(status, int) else None
            yield (
                custom_id,
                LineError(
                    f"batch line HTTP {status}: {str(detail)[:500]}",
                    status_int,
                    line_status_retryable(status_int),
                ),
            )
            continue
        try:
            yield custom_id, parse_body(body)
        except BackendError as err:
            yield custom_id, LineError(str(err), None, err.retryable)


class OpenAIBatchProtocol:
    """``/v1/files`` (purpose ``batch``) + ``/v1/batches`` through the backend's ``openai`` client."""

    name = "openai"

    def __init__(
        self,
        backend: Any,
        *,
        max_lines: int = MAX_LINES,
        max_bytes: int = MAX_BYTES,
        timeout: float = 600.0,
        completion_window: str = COMPLETION_WINDOW,
        list_limit: int = 1000,
    ) -> None:
        self.backend = backend
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.completion_window = completion_window
        self.list_limit = list_limit
        self._client = backend.client.with_options(
            timeout=max(float(backend.timeout), timeout), max_retries=0
        )

    @property
    def scope(self) -> str:
        """``openai|<base_url>|<model>``."""
        return (
            f"openai|{redact_url(self.backend.base_url or 'https://api.openai.com/v1')}|{self.backend.model}"
        )

    def line(self, custom_id: str, prompt: ChatPrompt) -> bytes:
        """The Batch API line of ``prompt``: its body is what the direct path sends."""
        return request_line(custom_id, self.backend.request_kwargs(prompt))

    # -- provider calls ---------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` with the ``openai`` client's errors as ``BackendError`` (as for direct calls)."""
        import openai

        b = self.backend
        try:
            return fn(*args, **kwargs)
        except openai.APIStatusError as exc:
            err = b._status_error(exc)
        except openai.APITimeoutError:
            err = b._error(f"{what}: timed out", None, True)
        except openai.APIConnectionError as exc:
            err = b._connection_error(exc.__cause__ or exc)
        except openai.APIError as exc:
            err = b._error(f"{what}: unreadable response: {exc}", None, True)
        except (ValueError, UnicodeDecodeError) as exc:
            err = b._error(f"{what}: unreadable response: {type(exc).__name__}: {exc}", None, True)
        if err.status == 404 and what in ("upload", "create batch"):
            err = BackendError(
                f"{err} (does {b.base_url or 'the server'} implement the Batch API? For a server "
                "without it, write the JSONL and run `vllm run-batch` offline: see docs/batch.md)",
                status=404,
                retryable=False,
            )
        raise err

    def submit(self, lines: list[bytes], token: str) -> tuple[str, str | None]:
        """Upload one JSONL file and create a batch over it (metadata ``autorater_token``)."""
        data = b"".join(lines)
        uploaded = self._call(
            "upload",
            self._client.files.create,
            file=(f"{token}.jsonl", data, "application/jsonl"),
            purpose="batch",
        )
        batch = self._call(
            "create batch",
            self._client.batches.create,
            input_file_id=uploaded.id,
            endpoint=ENDPOINT,
            completion_window=self.completion_window,
            metadata={"autorater_token": token},
        )
        return str(batch.id), str(uploaded.id)

    def find(self, token: str) -> str | None:
        """The newest batch whose metadata carries ``token`` (looked up among the last ``list_limit``)."""

        def scan() -> str | None:
            for seen, batch in enumerate(self._client.batches.list(limit=100)):  # the SDK pages on by itself
                if (getattr(batch, "metadata", None) or {}).get("autorater_token") == token:
                    return str(batch.id)
                if seen + 1 >= self.list_limit:
                    break
            return None

        return self._call("list batches", scan)

    def status(self, batch_id: str) -> JobStatus:
        """``GET /v1/batches/{id}`` as a ``JobStatus``; results are the output and error file ids."""
        batch = self._call("get batch", self._client.batches.retrieve, batch_id)
        state = _STATES.get(str(batch.status))
        if state is None:
            raise BackendError(f"batch {batch_id}: unknown status {batch.status!r}", retryable=True)
        counts = getattr(batch, "request_counts", None)
        errors = getattr(getattr(batch, "errors", None), "data", None) or []
        message = "; ".join(str(getattr(e, "message", e)) for e in errors) or None
        files = [
            f for f in (getattr(batch, "output_file_id", None), getattr(batch, "error_file_id", None)) if f
        ]
        return JobStatus(
            state=state,  # type: ignore[arg-type]
            done=int(getattr(counts, "completed", 0) or 0),
            failed=int(getattr(counts, "failed", 0) or 0),
            total=int(getattr(counts, "total", 0) or 0),
            message=message,
            results=files,
        )

    def results(self, status: JobStatus) -> Iterator[tuple[str, Completion | LineError]]:
        """Every line of the batch's output and error files."""
        for file_id in status.results:
            content = self._call("download results", self._client.files.content, file_id)
            yield from parse_output_lines(content.text.splitlines(), self.backend.completion_from_body)


def read_output_file(path: str | Path, backend: Any) -> Iterator[tuple[str, Completion | LineError]]:
    """The lines of a Batch API or ``vllm run-batch`` output file, parsed as direct answers of ``backend``."""
    with open(path, encoding="utf-8") as fh:
        yield from parse_output_lines(fh, backend.completion_from_body)
