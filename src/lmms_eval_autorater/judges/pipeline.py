"""Glue from backends and specialists to ``Judge``: cached, concurrent ``complete_all`` functions and
the batched, cached specialist ``assess`` function.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from lmms_eval_autorater.judges.cache import ResponseCache
from lmms_eval_autorater.judges.prompts import TEMPLATE_VERSION
from lmms_eval_autorater.judges.types import BackendError, ChatPrompt, Completion, JudgeRequest, usage_known
from lmms_eval_autorater.redact import redact_url
from lmms_eval_autorater.specialists.types import Assessment

log = logging.getLogger(__name__)


#: providers whose model names are the provider's own (dated snapshots, as in the model catalog): their
#: answers are shared whatever endpoint (a proxy, a gateway) asked them
NAMED_PROVIDERS = frozenset({"openai", "gemini"})


def model_identity(backend: Any) -> str:
    """What identifies the answering model in a cache key: a named provider's model name, or, for any
    other OpenAI-compatible server (``autorater_openai``), the model name at the server's URL (without
    credentials): the same name on another server is another model."""
    if getattr(backend, "name", None) in NAMED_PROVIDERS:
        return backend.model
    url = getattr(backend, "base_url", None)
    return f"{backend.model}@{redact_url(str(url)).rstrip('/')}" if url else backend.model


def api_cache_key(backend: Any, prompt: ChatPrompt) -> str:
    """The response-cache key of ``prompt`` for an API backend: direct and batch calls share it."""
    return ResponseCache.key(
        backend.name, model_identity(backend), TEMPLATE_VERSION, prompt, backend.gen_params()
    )


class ApiCompleter:
    """``complete_all`` for an API backend: response cache, bounded concurrency, retries, cost per answer."""

    def __init__(
        self,
        backend: Any,
        *,
        cache: ResponseCache | None,
        concurrency: int | str = "auto",
        max_retries: int | None = None,
        retry_budget: float = 600.0,
        final_round: bool = True,
        backoff_base: float = 1.0,
        progress: bool = True,
        max_cost_usd: float | None = None,
    ) -> None:
        from lmms_eval_autorater.judges.runner import CallRunner, conservative_prompt_tokens

        self.backend = backend
        self.cache = cache
        self.usage_missing = 0  # answers without a usage field (priced as unknown)
        if (
            max_cost_usd is not None
            and backend.cost_usd({"prompt_tokens": 1, "completion_tokens": 1}) is None
        ):
            raise ValueError(
                f"max_cost_usd={max_cost_usd:g} needs a price for model {backend.model!r}, which the price "
                "table does not list: pass price_in= and price_out= (USD per million tokens)"
            )
        self.runner = CallRunner(
            backend.call,
            cache=cache,
            concurrency=concurrency,
            max_retries=max_retries,
            retry_budget=retry_budget,
            final_round=final_round,
            backoff_base=backoff_base,
            progress_desc=f"judge {backend.model}",
            progress=progress,
            max_cost_usd=max_cost_usd,
            cost_fn=backend.cost_usd,
            # the budget reserves, per request in flight, an upper bound of its prompt plus max_tokens
            estimate_fn=lambda p: (
                conservative_prompt_tokens(p),
                int(getattr(backend, "max_tokens", 0) or 0),
            ),
        )

    def key(self, prompt: ChatPrompt) -> str:
        """The response-cache key of ``prompt`` for this backend and its generation settings."""
        return api_cache_key(self.backend, prompt)

    def __call__(self, prompts: list[ChatPrompt]) -> list[Completion | BackendError]:
        results = self.runner.run([(self.key(p), p) for p in prompts])
        missing = 0
        for r in results:
            if isinstance(r, Completion):
                # a cached answer costs nothing in this run; an unknown price stays unknown (None), never 0,
                # and so does the price of an answer that did not say what it used (no ``usage`` field)
                if r.cached:
                    cost = 0.0
                elif usage_known(r.usage):
                    cost = self.backend.cost_usd(r.usage)
                else:
                    cost, missing = None, missing + 1
                r.usage = {**r.usage, "cost_usd": cost}
        if missing:
            self.usage_missing += missing
            log.warning(
                "%d answer(s) of %s came without a usage field: their cost_usd is unknown (null), and the "
                "budget charged each its reservation",
                missing,
                self.backend.model,
            )
        return results

    def stats(self) -> dict:
        """Calls, cache hits, retries, failures and tokens of this run; budget skips and concurrency;
        answers without usage; cache entries that failed their checksum (dropped and asked again)."""
        out = self.runner.stats() | self.runner.gate_stats() | {"usage_missing": self.usage_missing}
        if self.cache is not None:
            out["cache_rejected"] = self.cache.rejected
        return out


class LocalCompleter:
    """``complete_all`` for a local generator (InternVL): response cache, batched generation of the misses."""

    def __init__(self, backend: Any, *, cache: ResponseCache | None, progress: bool = True) -> None:
        self.backend = backend
        self.cache = cache
        self.progress = progress
        self.calls_made = 0
        self.cache_hits = 0

    def key(self, prompt: ChatPrompt) -> str:
        """Cache key: the local model's identity (weights fingerprint) stands in for the API snapshot,
        plus every setting that changes its output (``backend.gen_params()``)."""
        params = self.backend.gen_params()
        return ResponseCache.key(
            "transformers",
            f"{self.backend.model_name}@{self.backend.fingerprint}",
            TEMPLATE_VERSION,
            prompt,
            params,
        )

    def __call__(self, prompts: list[ChatPrompt]) -> list[Completion | BackendError]:
        keys = [self.key(p) for p in prompts]
        cached = self.cache.get_many(keys) if self.cache is not None else {}
        out: list[Completion | BackendError | None] = [cached.get(k) for k in keys]
        self.cache_hits += sum(o is not None for o in out)
        todo = [i for i, o in enumerate(out) if o is None]
        step = max(1, self.backend.batch_size)
        from tqdm import tqdm

        with tqdm(
            total=len(prompts),
            initial=len(prompts) - len(todo),
            desc=f"judge {self.backend.model_name}",
            unit="prompt",
            disable=not self.progress,
        ) as bar:
            for start in range(0, len(todo), step):
                idx = todo[start : start + step]
                completions = self.backend.generate([prompts[i] for i in idx])
                self.calls_made += len(idx)
                for i, c in zip(idx, completions):
                    out[i] = c
                    if self.cache is not None and c.text:  # written as it arrives: a killed run resumes here
                        self.cache.put(keys[i], c)
                bar.update(len(idx))
        return [o for o in out if o is not None]

    def stats(self) -> dict:
        return {"calls_made": self.calls_made, "cache_hits": self.cache_hits}


class SpecialistAssessor:
    """``assess`` for ``Judge``: each candidate of each request through a cached, batched specialist pool.

    ``Judge`` calls it once per specialist code with every request that needs it, so a specialist
    runs once over all docs (batched), then is released.
    """

    def __init__(self, pool: Any, release_after: bool = True) -> None:
        self.pool = pool
        self.release_after = release_after

    @staticmethod
    def inputs(reqs: list[JudgeRequest]) -> tuple[list[Any], list[tuple[int, int]]]:
        """Every candidate of every request as a ``SpecialistInput``, with its (request, candidate) owner."""
        from lmms_eval_autorater.specialists.base import SpecialistInput

        items, owners = [], []
        for j, req in enumerate(reqs):
            for k, cand in enumerate(req.candidates, start=1):
                items.append(SpecialistInput(req.request, cand, req.source))
                owners.append((j, k))
        return items, owners

    def fill(
        self,
        code: str,
        reqs: list[JudgeRequest],
        *,
        rank: int = 0,
        world: int = 1,
        barrier: Any = None,
        progress: bool = True,
    ) -> Any:
        """The pre-pass of ``__call__`` without the verdicts: fill the cache for ``code`` over ``reqs``, this
        process taking its shard of what is missing (``SpecialistPool.fill``); returns its ``FillStats``."""
        items, _ = self.inputs(reqs)
        try:
            return self.pool.fill(code, items, rank=rank, world=world, barrier=barrier, progress=progress)
        finally:
            if self.release_after:
                self.pool.release(code)

    def __call__(self, code: str, reqs: list[JudgeRequest]) -> list[tuple[Assessment, ...]]:
        items, owners = self.inputs(reqs)
        results = self.pool.assess(code, items)
        if (
            self.release_after
        ):  # one specialist in memory at a time (all six and an 8B judge fit one GPU in turn)
            self.pool.release(code)
        per_req: list[list[Assessment]] = [[] for _ in reqs]
        for (j, k), a in zip(owners, results):
            per_req[j].append(replace(a, candidate=k))
        return [tuple(a) for a in per_req]
