"""A persistent assessment cache and a pool that runs each specialist only on what it has not seen.

The key is the specialist's version plus the content hashes of what it reads (candidate image,
source image if it uses one, request text if it uses it), so a specialist never runs twice on the
same input, across runs and across judges sharing the cache file.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from lmms_eval_autorater.images import image_sha256, read_image_bytes
from lmms_eval_autorater.kvstore import SqliteStore, content_key, default_cache_dir
from lmms_eval_autorater.specialists.base import Specialist, SpecialistInput, SpecialistSpec
from lmms_eval_autorater.specialists.types import Assessment


class AssessmentCache:
    """Assessments in one SQLite file (default ``default_cache_dir()/assessments.sqlite``)."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_dir() / "assessments.sqlite"
        self._store = SqliteStore(self.path, table="assessments")

    @staticmethod
    def key(
        spec: SpecialistSpec, version: str, item: SpecialistInput, hashes: dict[str, str] | None = None
    ) -> str:
        """Cache key of ``item`` for a specialist; ``hashes`` memoises image reference -> sha256."""
        hashes = {} if hashes is None else hashes

        def sha(ref: str) -> str:
            if ref not in hashes:
                hashes[ref] = image_sha256(read_image_bytes(ref))
            return hashes[ref]

        if spec.uses_source and not item.source:
            raise ValueError(f"{spec.code} compares against the source image, but the input has none: {item}")
        return content_key(
            spec.code,
            version,
            sha(item.image),
            sha(item.source) if spec.uses_source else None,
            item.request if spec.uses_request else None,
        )

    def get_many(self, keys: list[str], code: str) -> dict[str, Assessment]:
        """Cached assessments for the keys present."""
        return {
            k: Assessment(code=code, value=v["value"], text=v["text"], version=v["version"])
            for k, v in self._store.get_many(keys).items()
        }

    def put_many(self, items: dict[str, Assessment]) -> None:
        """Store assessments (one transaction)."""
        self._store.put_many(
            {k: {"value": a.value, "text": a.text, "version": a.version} for k, a in items.items()}
        )

    def __len__(self) -> int:
        return len(self._store)


class SpecialistPool:
    """Specialists created on first use, each run only on inputs missing from the cache.

    ``kwargs_by_code`` maps a code to its constructor arguments (e.g. ``{"GD": {"model": ...}}``);
    ``factory(code, **kwargs)`` replaces ``create_specialist`` (tests, custom specialists);
    ``invocations[code]`` counts inputs actually sent to the model, ``hits[code]`` distinct inputs
    answered from the cache.
    """

    def __init__(
        self,
        kwargs_by_code: dict[str, dict] | None = None,
        device: str | None = None,
        cache: AssessmentCache | None = None,
        factory: Callable[..., Specialist] | None = None,
    ) -> None:
        self.kwargs_by_code = {k.upper(): dict(v or {}) for k, v in (kwargs_by_code or {}).items()}
        self.device = device
        self.cache = cache if cache is not None else AssessmentCache()
        self.factory = factory
        self.invocations: Counter[str] = Counter()
        self.hits: Counter[str] = Counter()
        self._specialists: dict[str, Specialist] = {}

    def specialist(self, code: str) -> Specialist:
        """The specialist for ``code``, created (not loaded) on first call."""
        from lmms_eval_autorater.specialists.registry import create_specialist

        code = code.upper()
        if code not in self._specialists:
            kwargs = dict(self.kwargs_by_code.get(code, {}))
            if self.device is not None:
                kwargs.setdefault("device", self.device)
            self._specialists[code] = (self.factory or create_specialist)(code, **kwargs)
        return self._specialists[code]

    def assess(self, code: str, items: list[SpecialistInput]) -> list[Assessment]:
        """Assessments for ``items`` in order: cached ones read back, the distinct misses run in batches."""
        code = code.upper()
        sp = self.specialist(code)
        version = sp.version
        hashes: dict[str, str] = {}
        keys = [AssessmentCache.key(sp.spec, version, item, hashes) for item in items]
        unique = dict(zip(keys, items, strict=True))  # first input per key; identical inputs run once
        found = self.cache.get_many(list(unique), code)
        self.hits[code] += len(found)
        missing = [k for k in unique if k not in found]
        if missing:
            results = sp.assess_many([unique[k] for k in missing])
            self.invocations[code] += len(missing)
            fresh = {
                k: Assessment(
                    code=code, value=None if a.value is None else float(a.value), text=a.text, version=version
                )
                for k, a in zip(missing, results, strict=True)
            }
            self.cache.put_many(fresh)
            found.update(fresh)
        return [found[k] for k in keys]

    def precompute(self, items_by_code: dict[str, list[SpecialistInput]]) -> dict[str, list[Assessment]]:
        """Run each specialist over all its inputs, then release it: one model in memory at a time."""
        out = {}
        for code, items in items_by_code.items():
            try:
                out[code] = self.assess(code, items)
            finally:
                self.release(code)
        return out

    def release(self, code: str) -> None:
        """Free one specialist's model (it reloads on next use)."""
        sp = self._specialists.get(code.upper())
        if sp is not None:
            sp.release()

    def release_all(self) -> None:
        """Free every loaded model."""
        for code in list(self._specialists):
            self.release(code)
