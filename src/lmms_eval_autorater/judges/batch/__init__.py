"""Batch APIs for the API judges (``batch=true``): the same prompts as batch jobs, at the batch price.

``BatchCompleter`` (``completer.py``) has the interface of ``pipeline.ApiCompleter`` and shares its
response cache and keys; the provider side is a protocol: ``OpenAIBatchProtocol`` (``/v1/files`` +
``/v1/batches``; its JSONL also feeds ``vllm run-batch``) or ``GeminiBatchProtocol`` (Gemini's
native Batch API through ``google-genai``). ``JobLedger`` (``jobs.py``) records the batch ids of a
run beside the cache, so a killed run re-attaches instead of paying twice. ``export_jsonl`` and
``import_into_judge`` (``offline.py``) are the offline path through ``vllm run-batch``. See ``docs/batch.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmms_eval_autorater.judges.batch.completer import BatchCompleter
from lmms_eval_autorater.judges.batch.jobs import JobLedger
from lmms_eval_autorater.judges.batch.offline import export_jsonl, import_into_judge
from lmms_eval_autorater.judges.cache import ResponseCache

#: the ledger file, beside ``responses.sqlite``
LEDGER_FILE = "batches.sqlite"


def make_protocol(backend: Any, **limits: Any) -> Any:
    """The batch protocol of an API backend: Gemini's native one for provider ``gemini``, else OpenAI's."""
    if getattr(backend, "provider", "openai") == "gemini":
        from lmms_eval_autorater.judges.batch.gemini_batch import GeminiBatchProtocol

        return GeminiBatchProtocol(backend, **limits)
    from lmms_eval_autorater.judges.batch.openai_batch import OpenAIBatchProtocol

    return OpenAIBatchProtocol(backend, **limits)


def build_batch_completer(
    backend: Any,
    *,
    cache: ResponseCache | None,
    ledger_path: str | Path,
    progress: bool = True,
    **kwargs: Any,
) -> BatchCompleter:
    """A ``BatchCompleter`` over ``backend`` with its protocol and the ledger at ``ledger_path``."""
    return BatchCompleter(
        backend,
        make_protocol(backend),
        cache=cache,
        ledger=JobLedger(ledger_path),
        progress=progress,
        **kwargs,
    )


__all__ = [
    "LEDGER_FILE",
    "BatchCompleter",
    "JobLedger",
    "build_batch_completer",
    "export_jsonl",
    "import_into_judge",
    "make_protocol",
]
