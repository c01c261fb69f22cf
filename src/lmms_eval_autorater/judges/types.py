"""Data types shared by the judge core: requests, chat prompts, completions, verdicts.

Pure dataclasses, no lmms-eval and no heavy imports, so the core can be tested alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from lmms_eval_autorater.specialists.types import Assessment
from lmms_eval_autorater.vocabulary import Status

TaskKind = Literal["generation", "editing"]
Paradigm = Literal["pointwise", "pairwise"]
__all__ = ["Status"]  # the statuses are the vocabulary's (``vocabulary.STATUSES``), re-exported here


@dataclass(frozen=True)
class JudgeRequest:
    """What the judge must decide for one doc; images are lazy references (see ``images.py``)."""

    doc_key: str
    task_kind: TaskKind
    paradigm: Paradigm
    request: str
    candidates: tuple[str, ...]
    source: str | None = None
    assessments: tuple[Assessment, ...] = ()
    #: pairwise answer classes: 2 (Image 1 or 2) or 4 (also both good / both bad: GenAI-Bench's labels)
    classes: int = 2


@dataclass(frozen=True)
class ChatImage:
    """Image bytes inside a chat prompt."""

    data: bytes
    mime: str = "image/png"


@dataclass(frozen=True)
class ChatPrompt:
    """A backend-neutral single-turn prompt: system text plus user parts (text and images in order).

    ``json_schema`` is the structured-output contract where the backend supports it.
    """

    system: str
    parts: tuple[str | ChatImage, ...]
    json_schema: dict | None = None
    schema_name: str = "verdict"
    #: self-consistency (``samples=N``): which of the N answers this is (0 for the first, or the only one);
    #: part of the cache key from 1 on, and the API backends send ``seed + sample``
    sample: int = 0


def usage_known(usage: dict | None) -> bool:
    """Whether an answer said what it used: both token counts present (an answer without a ``usage``
    field is priced as unknown and charged its reservation against the budget, never 0)."""
    return (
        bool(usage) and usage.get("prompt_tokens") is not None and usage.get("completion_tokens") is not None
    )


@dataclass
class Completion:
    """A backend answer with the facts a leaderboard needs to reproduce it."""

    text: str
    model: str = ""
    fingerprint: str | None = None
    usage: dict = field(default_factory=dict)
    cached: bool = False
    finish_reason: str | None = None
    #: the HTTP response headers (lower-case names) where the backend has them; never cached
    headers: dict = field(default_factory=dict, repr=False, compare=False)
    #: ``scoring=expected``: OpenAI's ``choices[0].logprobs.content`` (token, logprob, bytes, top_logprobs)
    #: as plain dicts, or None when the answer carried none
    logprobs: list | None = field(default=None, repr=False)


class BackendError(Exception):
    """A call that failed for good (retries exhausted, or a non-retryable 4xx)."""

    def __init__(
        self, message: str, *, status: int | None = None, retryable: bool = False, headers: dict | None = None
    ):
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        #: the HTTP response headers (lower-case names) of the failed attempt, where there was a response
        self.headers = dict(headers or {})


class BudgetSkippedError(BackendError):
    """A prompt not sent because sending it could pass ``max_cost_usd``: counted as ``budget_skipped``."""


@dataclass
class Verdict:
    """The judge's decision for one doc. ``status`` says whether ``score``/``preferred`` is usable."""

    status: Status
    analysis: str = ""
    score: int | None = None
    #: 1 or 2, or 0 for a tie (only from swap=true disagreement); four-class requests also 3 (both good)
    #: and 4 (both bad)
    preferred: int | None = None
    raw: str = ""
    error: str | None = None
    meta: dict = field(default_factory=dict)
