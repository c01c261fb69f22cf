"""What a batch protocol (OpenAI Batch API, Gemini Batch API) offers the ``BatchCompleter``.

A protocol turns a prompt into one JSONL line, submits lines as one provider batch (named by a
token recorded in the ledger first), finds a batch by that token, reports a batch's state, and
reads its per-line results back. Provider calls raise ``BackendError`` (retryable or not), as the
direct backends do.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from lmms_eval_autorater.judges.types import ChatPrompt, Completion

#: the states the completer acts on; each protocol maps its provider's states onto these
State = Literal["running", "completed", "expired", "cancelled", "failed"]

#: HTTP statuses of a failed line worth asking again in a new batch
RETRYABLE_LINE_STATUSES = frozenset({408, 409, 429})


log = logging.getLogger(__name__)


def keyed_records(lines: Iterable[str | bytes], id_field: str, what: str) -> Iterator[tuple[str, dict]]:
    """(id, record) per JSON line of a batch output file; blank lines skipped, unreadable ones logged and skipped."""
    for raw in lines:
        raw = raw.strip()
        if not raw:
            continue
        try:
            rec = json.loads(raw)
        except ValueError:
            log.warning("%s: skipped a line that is not JSON: %r", what, raw[:200])
            continue
        key = rec.get(id_field) if isinstance(rec, dict) else None
        if not isinstance(key, str):
            log.warning("%s: skipped a line without %s: %r", what, id_field, raw[:200])
            continue
        yield key, rec


def line_status_retryable(status: int | None) -> bool:
    """Whether a line that failed with HTTP ``status`` (None: no status) may succeed when asked again."""
    return status is None or status in RETRYABLE_LINE_STATUSES or status >= 500


@dataclass
class JobStatus:
    """A provider batch's state, its progress as the provider reports it, and what is needed to read it."""

    state: State
    done: int = 0
    failed: int = 0
    total: int = 0
    message: str | None = None
    #: provider-specific handles of the results (file ids, inlined responses)
    results: list[Any] = field(default_factory=list)


@dataclass
class LineError:
    """One line that the provider answered with an error."""

    message: str
    status: int | None = None
    retryable: bool = True


class BatchProtocol(Protocol):
    """The provider side of ``BatchCompleter``."""

    #: short label (``openai``, ``gemini``)
    name: str
    #: provider limits per input file; ``BatchCompleter`` splits to them
    max_lines: int
    max_bytes: int

    @property
    def scope(self) -> str:
        """Ledger scope: protocol, endpoint and model (batch ids mean nothing elsewhere)."""
        ...

    def line(self, custom_id: str, prompt: ChatPrompt) -> bytes:
        """One JSONL line (with its newline) asking ``prompt`` under ``custom_id``."""
        ...

    def submit(self, lines: list[bytes], token: str) -> tuple[str, str | None]:
        """Upload ``lines`` and create one batch named by ``token``; (batch id, input file id)."""
        ...

    def find(self, token: str) -> str | None:
        """The id of the batch created under ``token``, or None if there is none."""
        ...

    def status(self, batch_id: str) -> JobStatus:
        """The batch's state now."""
        ...

    def results(self, status: JobStatus) -> Iterator[tuple[str, Completion | LineError]]:
        """(custom_id, answer or line error) for every line the provider has a result for."""
        ...
