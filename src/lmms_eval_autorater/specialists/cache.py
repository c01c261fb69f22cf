"""A persistent assessment cache and a pool that runs each specialist only on what it has not seen.

The key is the specialist's version plus the content hashes of what it reads (candidate image,
source image if it uses one, request text if it uses it), so a specialist never runs twice on the
same input, across runs and across judges sharing the cache file.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lmms_eval_autorater.errors import (
    CacheError,
    CheckpointError,
    ConfigError,
    InputError,
    UsageError,
    first_line,
)
from lmms_eval_autorater.images import image_sha256, read_image_bytes
from lmms_eval_autorater.kvstore import SqliteStore, content_key, default_cache_dir
from lmms_eval_autorater.specialists.base import Specialist, SpecialistInput, SpecialistSpec
from lmms_eval_autorater.specialists.types import Assessment

log = logging.getLogger(__name__)


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

    def put_many(self, items: dict[str, Assessment], seconds: dict[str, float] | None = None) -> None:
        """Store assessments (one transaction); ``seconds``: the measured wall time per input (its batch's
        time over its size), kept for the pre-pass estimate (``measured_seconds``). Failures are never stored."""
        seconds = seconds or {}
        rows = {}
        for k, a in items.items():
            if a.failed:
                continue
            row = {"value": a.value, "text": a.text, "version": a.version}
            if k in seconds:
                row["seconds"] = round(float(seconds[k]), 6)
            rows[k] = row
        if rows:
            self._store.put_many(rows)

    def measured_seconds(self, version: str) -> tuple[float | None, int]:
        """(mean measured seconds per input, how many inputs measured) of one specialist version."""
        sql = (
            f"SELECT avg(json_extract(value, '$.seconds')), count(*) FROM {self._store.table} "
            "WHERE json_extract(value, '$.version') = ? AND json_extract(value, '$.seconds') IS NOT NULL"
        )
        mean, n = self._store._do(lambda c: c.execute(sql, (version,)).fetchone())
        return (None if mean is None else float(mean)), int(n)

    def __len__(self) -> int:
        return len(self._store)


def failure(code: str, version: str, exc: BaseException, reason: str | None = None) -> Assessment:
    """The assessment that stands for a specialist failing on one input (``Assessment.error``)."""
    if reason is None:
        reason = "input_error" if isinstance(exc, InputError) else "model_error"
    return Assessment(code=code, version=version, error=f"{reason}: {type(exc).__name__}: {first_line(exc)}")


@dataclass
class FillStats:
    """What one process did in a pre-pass of one specialist (``SpecialistPool.fill``); summed over ranks."""

    code: str
    #: distinct inputs (by cache key) over every doc, found in the cache before the pass, left to assess
    unique: int = 0
    cached: int = 0
    missing: int = 0
    #: of the missing inputs, this process's shard; assessed (and cached) and failed, by reason
    assigned: int = 0
    assessed: int = 0
    failed: Counter = field(default_factory=Counter)
    #: inputs whose image could not be read to compute their key (each counted once, not in ``unique``)
    unreadable: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "code": self.code,
            "unique": self.unique,
            "cached": self.cached,
            "missing": self.missing,
            "assigned": self.assigned,
            "assessed": self.assessed,
            "failed": dict(self.failed),
            "unreadable": self.unreadable,
            "seconds": round(self.seconds, 3),
        }


class SpecialistPool:
    """Specialists created on first use, each run only on inputs missing from the cache.

    ``kwargs_by_code`` maps a code to its constructor arguments (e.g. ``{"GD": {"model": ...}}``);
    ``factory(code, **kwargs)`` replaces ``create_specialist`` (tests, custom specialists, served ones);
    ``invocations[code]`` counts inputs actually sent to the model, ``hits[code]`` distinct inputs
    answered from the cache, ``failures[code]`` inputs the specialist failed on, by reason.

    A specialist that fails on one input (a bad decode, a model error, a server that failed for good) fails
    that input only: a batch that raises is run again one input at a time, each input that still fails gets
    a failure ``Assessment`` (``error`` set, never cached, so a rerun tries it again) and the pass goes on.
    Results are written to the cache batch by batch, so a killed pass resumes where it stopped.
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
        self.failures: dict[str, Counter[str]] = {}
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

    def _keys(
        self, sp: Specialist, items: list[SpecialistInput]
    ) -> tuple[list[str | None], dict[int, Assessment]]:
        """Cache key per input; an input whose image cannot be read has no key and a failure instead."""
        hashes: dict[str, str] = {}
        keys: list[str | None] = []
        failed: dict[int, Assessment] = {}
        for i, item in enumerate(items):
            try:
                keys.append(AssessmentCache.key(sp.spec, sp.version, item, hashes))
            except InputError as exc:
                keys.append(None)
                failed[i] = failure(sp.spec.code, sp.version, exc, "input_error")
        return keys, failed

    def assess(
        self, code: str, items: list[SpecialistInput], progress: Callable[[int], None] | None = None
    ) -> list[Assessment]:
        """Assessments for ``items`` in order: cached ones read back, the distinct misses run in batches
        (each batch cached as it finishes); a failed input gets a failure ``Assessment``."""
        code = code.upper()
        sp = self.specialist(code)
        keys, unreadable = self._keys(sp, items)
        self._count_failures(code, unreadable.values())
        unique = {k: item for k, item in zip(keys, items, strict=True) if k is not None}
        found = self.cache.get_many(list(unique), code)
        self.hits[code] += len(found)
        missing = {k: unique[k] for k in unique if k not in found}
        found.update(self._run(code, sp, missing, progress))
        return [unreadable[i] if k is None else found[k] for i, k in enumerate(keys)]

    def _run(
        self,
        code: str,
        sp: Specialist,
        todo: dict[str, SpecialistInput],
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Assessment]:
        """Run ``sp`` over ``todo`` (key -> input) in batches, caching each batch as it finishes."""
        out: dict[str, Assessment] = {}
        if not todo:
            return out
        sp.load()  # a missing checkpoint or package stops the pass here, before any input
        version = sp.version
        pending = list(todo.items())
        step = max(1, int(getattr(sp, "batch_size", 8) or 8))
        for start in range(0, len(pending), step):
            batch = pending[start : start + step]
            t0 = time.perf_counter()
            results = self._batch(code, sp, [item for _, item in batch])
            per_input = (time.perf_counter() - t0) / len(batch)
            fresh = {}
            for (k, _), a in zip(batch, results, strict=True):
                if not a.failed:
                    a = Assessment(
                        code=code,
                        value=None if a.value is None else float(a.value),
                        text=a.text,
                        version=version,
                    )
                fresh[k] = a
            self.invocations[code] += len(batch)
            self._count_failures(code, fresh.values())
            self.cache.put_many(fresh, seconds=dict.fromkeys(fresh, per_input))
            out.update(fresh)
            if progress is not None:
                progress(len(batch))
        return out

    def _batch(self, code: str, sp: Specialist, items: list[SpecialistInput]) -> list[Assessment]:
        """One batch; when it raises, each input alone, so that only the inputs that fail are failures."""
        try:
            return sp.assess_many(items)
        except (ConfigError, CacheError, CheckpointError, UsageError):
            raise  # the run's setup is wrong (a server that never answers, a damaged cache): stop, say it
        except Exception as exc:  # a model error or a bad decode: that input fails, the pass goes on
            if len(items) == 1:
                log.warning("specialist %s failed on %s: %s", code, items[0].image, first_line(exc))
                log.debug("specialist %s failure", code, exc_info=True)
                return [failure(code, sp.version, exc)]
        return [a for item in items for a in self._batch(code, sp, [item])]

    def _count_failures(self, code: str, assessments) -> None:
        for a in assessments:
            if a.failed:
                self.failures.setdefault(code, Counter())[a.error.split(":", 1)[0]] += 1

    def fill(
        self,
        code: str,
        items: list[SpecialistInput],
        *,
        rank: int = 0,
        world: int = 1,
        barrier: Callable[[], None] | None = None,
        progress: bool = True,
    ) -> FillStats:
        """Fill the cache for ``items`` (a pre-pass): this process assesses its shard of what is missing.

        The distinct inputs missing from the cache are sorted by key and dealt round-robin to ``world``
        processes (``rank``'s share: ``missing[rank::world]``): disjoint and deterministic, split by what is
        left. ``barrier`` (every process calls it) is passed once every process has looked the cache up,
        so no process sees another's writes before it has taken its share.
        """
        from tqdm import tqdm

        code = code.upper()
        stats = FillStats(code)
        sp = self.specialist(code)
        keys, unreadable = self._keys(sp, items)
        stats.unreadable = len(unreadable)
        unique = {k: item for k, item in zip(keys, items, strict=True) if k is not None}
        found = self.cache.get_many(list(unique), code)
        stats.unique, stats.cached = len(unique), len(found)
        missing = sorted(k for k in unique if k not in found)
        stats.missing = len(missing)
        if barrier is not None:
            barrier()
        shard = missing[rank::world]
        stats.assigned = len(shard)
        if shard:
            sp.load()  # outside the timed pass: ``seconds`` is the assessing alone
        t0 = time.perf_counter()
        with tqdm(
            total=len(shard),
            desc=f"assess {code}" + (f" [rank {rank}/{world}]" if world > 1 else ""),
            unit="input",
            disable=not progress,
        ) as bar:
            done = self._run(code, sp, {k: unique[k] for k in shard}, bar.update)
        stats.seconds = time.perf_counter() - t0
        stats.assessed = sum(not a.failed for a in done.values())
        stats.failed = Counter(a.error.split(":", 1)[0] for a in done.values() if a.failed)
        if unreadable:
            stats.failed["input_error"] += len(unreadable) if rank == 0 else 0
        return stats

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
