"""Persistent cache of judge answers, keyed by everything that can change an answer.

A rerun of the same prompts against the same model snapshot, template and generation
parameters is answered from disk with zero requests; a run killed halfway resumes where it
stopped. Only the completion fields are stored: never the API key, never the image bytes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable

from lmms_eval_autorater.judges.types import ChatImage, ChatPrompt, Completion
from lmms_eval_autorater.kvstore import SqliteStore, content_key, default_cache_dir

#: bump when the key recipe or the stored value layout changes
KEY_VERSION = "response-v1"


def _encode_parts(parts: Iterable[str | ChatImage]) -> list[dict]:
    """Text parts as text, images as (sha256, mime), in order: swapping two images changes the key."""
    out: list[dict] = []
    for part in parts:
        if isinstance(part, ChatImage):
            out.append({"image_sha256": hashlib.sha256(part.data).hexdigest(), "mime": part.mime})
        else:
            out.append({"text": str(part)})
    return out


class ResponseCache:
    """Key -> Completion store in one SQLite file (default ``default_cache_dir()/responses.sqlite``)."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = str(path) if path is not None else str(default_cache_dir() / "responses.sqlite")
        self._store = SqliteStore(self.path, table="responses")

    @staticmethod
    def key(backend: str, model: str, template_version: str, prompt: ChatPrompt, gen_params: dict) -> str:
        """Content key over backend, requested model, template version, prompt content and gen params."""
        return content_key(
            KEY_VERSION,
            backend,
            model,
            template_version,
            prompt.system,
            _encode_parts(prompt.parts),
            prompt.json_schema,
            prompt.schema_name if prompt.json_schema is not None else None,
            dict(gen_params),
        )

    @staticmethod
    def _to_value(completion: Completion) -> dict:
        return {
            "text": completion.text,
            "model": completion.model,
            "fingerprint": completion.fingerprint,
            "usage": dict(completion.usage),
            "finish_reason": completion.finish_reason,
        }

    @staticmethod
    def _from_value(value: dict) -> Completion:
        return Completion(
            text=value.get("text", ""),
            model=value.get("model", ""),
            fingerprint=value.get("fingerprint"),
            usage=dict(value.get("usage") or {}),
            cached=True,
            finish_reason=value.get("finish_reason"),
        )

    def get(self, key: str) -> Completion | None:
        """The cached completion (``cached=True``), or None."""
        value = self._store.get(key)
        return None if value is None else self._from_value(value)

    def get_many(self, keys: Iterable[str]) -> dict[str, Completion]:
        """Cached completions for the keys present; absent keys are left out."""
        return {k: self._from_value(v) for k, v in self._store.get_many(keys).items()}

    def put(self, key: str, completion: Completion) -> None:
        """Store one completion, committed at once (safe to call from worker threads)."""
        self._store.put(key, self._to_value(completion))

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, key: str) -> bool:
        return key in self._store
