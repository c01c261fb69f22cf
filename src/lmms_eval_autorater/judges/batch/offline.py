"""Offline batches for a local teacher or judge: write the Batch API JSONL, run ``vllm run-batch`` on
it, read its output into the response cache; the next run answers from the cache.

``export_jsonl(judge, reqs, path)`` runs the judge over ``reqs`` with a completer that answers from
the cache and records every prompt it does not have (nothing is sent), then writes one line per
recorded prompt (``custom_id`` = the cache key, ``body`` = the direct request). ``import_output(judge,
path)`` parses a ``vllm run-batch`` (or Batch API) output file as direct answers and caches them.
With ``tools=auto`` the second pass depends on the first one's answers: export, run, import, and
export again until nothing is left (``export_jsonl`` returns 0).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from loguru import logger

from lmms_eval_autorater.judges.batch.openai_batch import read_output_file, request_line
from lmms_eval_autorater.judges.batch.protocol import LineError
from lmms_eval_autorater.judges.cache import ResponseCache
from lmms_eval_autorater.judges.pipeline import api_cache_key
from lmms_eval_autorater.judges.types import BackendError, ChatPrompt, Completion

NOT_SENT = "exported for an offline batch, not sent"
#: the module whose per-doc failure lines an export silences (an exported prompt is not a failure)
_JUDGE_LOGGER = "lmms_eval_autorater.judges.judge"


class _Recorder:
    """A ``complete_all`` that answers from the cache and records (and fails) every other prompt."""

    def __init__(self, backend: Any, cache: ResponseCache | None) -> None:
        self.backend, self.cache = backend, cache
        self.prompts: dict[str, ChatPrompt] = {}

    def __call__(self, prompts: list[ChatPrompt]) -> list[Completion | BackendError]:
        keys = [api_cache_key(self.backend, p) for p in prompts]
        cached = self.cache.get_many(keys) if self.cache is not None else {}
        out: list[Completion | BackendError] = []
        for k, p in zip(keys, prompts):
            if k in cached:
                out.append(cached[k])
            else:
                self.prompts.setdefault(k, p)
                out.append(BackendError(NOT_SENT, retryable=False))
        return out


def write_jsonl(backend: Any, prompts: dict[str, ChatPrompt], path: str | Path) -> int:
    """Write the Batch API lines of ``{custom_id: prompt}`` to ``path``; returns how many."""
    with open(path, "wb") as fh:
        for key, prompt in prompts.items():
            fh.write(request_line(key, backend.request_kwargs(prompt)))
    return len(prompts)


def export_jsonl(judge: Any, reqs: list, path: str | Path) -> int:
    """Write the JSONL of every prompt ``judge`` would send for ``reqs`` that has no cached answer; returns
    how many lines (0: everything is answered, run the evaluation). The judge's counters are left as they were."""
    cache = getattr(judge.completer, "cache", None)
    recorder = _Recorder(judge.backend, cache)
    saved_complete, saved_stats = judge.complete_all, copy.deepcopy(judge.stats)
    judge.complete_all = recorder
    # an exported prompt is no API failure: the judge's per-doc failure lines would say it is
    logger.disable(_JUDGE_LOGGER)
    try:
        judge.judge_all(reqs)
    finally:
        logger.enable(_JUDGE_LOGGER)
        judge.complete_all, judge.stats = saved_complete, saved_stats
    n = write_jsonl(judge.backend, recorder.prompts, path)
    logger.info(f"autorater: {n} prompt(s) of {len(reqs)} doc(s) {NOT_SENT} ({path})")
    return n


def import_output(backend: Any, cache: ResponseCache, path: str | Path) -> dict[str, int]:
    """Cache the answers of a ``vllm run-batch`` / Batch API output file, parsed as direct answers of
    ``backend``; returns ``{"answers", "errors", "empty"}`` (errors and empty answers are not cached)."""
    counts = {"answers": 0, "errors": 0, "empty": 0}
    for custom_id, result in read_output_file(path, backend):
        if isinstance(result, LineError):
            counts["errors"] += 1
            status = f"HTTP {result.status}: " if result.status else ""
            logger.warning(
                f"autorater: {path}: line {custom_id} answered an error, not cached: {status}{result.message}"
            )
        elif not result.text:
            counts["empty"] += 1
            logger.warning(f"autorater: {path}: line {custom_id} has an empty answer, not cached")
        else:
            cache.put(custom_id, result)
            counts["answers"] += 1
    return counts


def import_into_judge(judge: Any, path: str | Path) -> dict[str, int]:
    """``import_output`` into ``judge``'s response cache (the judge must have ``cache=true``)."""
    cache = getattr(judge.completer, "cache", None)
    if cache is None:
        raise ValueError("importing a batch output needs the judge's response cache (cache=true)")
    return import_output(judge.backend, cache, path)
