"""Persistent cache of judge answers, keyed by everything that can change an answer.

A rerun of the same prompts against the same model snapshot, template and generation
parameters is answered from disk with zero requests; a run killed halfway resumes where it
stopped. Only the completion fields are stored: never the API key, never the image bytes.

The cache cannot lie: each stored answer carries ``checksum``, a SHA-256 over its key and its value. An
entry whose checksum does not match (edited, damaged, or moved under another key) is dropped, counted
(``rejected``, reported as ``cache_rejected`` in the backend stats) and asked again; the new answer
replaces it. Entries written before checksums existed (no ``checksum`` field) are treated the same way
(re-asked once, then stored with a checksum): an entry that cannot be verified is never used.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Iterable

from lmms_eval_autorater.judges.types import ChatImage, ChatPrompt, Completion
from lmms_eval_autorater.kvstore import SqliteStore, content_key, default_cache_dir

#: bump when the key recipe or the stored value layout changes
KEY_VERSION = "response-v1"

log = logging.getLogger(__name__)


def checksum(key: str, value: dict) -> str:
    """SHA-256 over the key and the stored value (without its own ``checksum`` field)."""
    return content_key("response-checksum-v1", key, {k: v for k, v in value.items() if k != "checksum"})


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
        #: entries dropped because their checksum did not match (or they had none): asked again
        self.rejected = 0
        self._lock = threading.Lock()

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
            *((("sample", prompt.sample),) if prompt.sample else ()),
        )

    @staticmethod
    def _to_value(key: str, completion: Completion) -> dict:
        value = {
            "text": completion.text,
            "model": completion.model,
            "fingerprint": completion.fingerprint,
            "usage": dict(completion.usage),
            "finish_reason": completion.finish_reason,
        }
        if completion.logprobs is not None:  # scoring=expected: the probabilities are part of the answer
            value["logprobs"] = completion.logprobs
        value["checksum"] = checksum(key, value)
        return value

    @staticmethod
    def _from_value(value: dict) -> Completion:
        return Completion(
            text=value.get("text", ""),
            model=value.get("model", ""),
            fingerprint=value.get("fingerprint"),
            usage=dict(value.get("usage") or {}),
            cached=True,
            finish_reason=value.get("finish_reason"),
            logprobs=value.get("logprobs"),
        )

    def _verified(self, found: dict) -> dict[str, Completion]:
        """The entries of ``found`` whose checksum matches; the others are counted and logged."""
        out: dict[str, Completion] = {}
        damaged, self._store.undecodable = self._store.undecodable, 0
        bad = damaged
        for key, value in found.items():
            if isinstance(value, dict) and value.get("checksum") == checksum(key, value):
                out[key] = self._from_value(value)
            else:
                bad += 1
        if bad:
            with self._lock:
                self.rejected += bad
            log.warning(
                "response cache %s: %d entr%s failed the checksum of key and value (edited, damaged or "
                "written before checksums): dropped and asked again",
                self.path,
                bad,
                "y" if bad == 1 else "ies",
            )
        return out

    def get(self, key: str) -> Completion | None:
        """The cached completion (``cached=True``), or None (also for an entry that fails its checksum)."""
        value = self._store.get(key)
        return None if value is None else self._verified({key: value}).get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, Completion]:
        """Cached completions for the keys present and verified; absent or rejected keys are left out."""
        return self._verified(self._store.get_many(keys))

    def put(self, key: str, completion: Completion) -> None:
        """Store one completion with its checksum, committed at once (safe to call from worker threads)."""
        self._store.put(key, self._to_value(key, completion))

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, key: str) -> bool:
        value = self._store.get(key)
        return isinstance(value, dict) and value.get("checksum") == checksum(key, value)
