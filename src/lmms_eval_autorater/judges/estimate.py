"""The cost model: the calls, tokens and USD a judge would spend on some requests, before anything is sent.

It drives the real ``Judge`` (input checks, specialist selection, Auto's two passes, swap order and prompt
assembly are the judge's own) with a recording completer, as ``batch/offline.export_jsonl`` does, one
request at a time so that every call belongs to its doc. Each prompt is counted the way the provider
bills it (``judges.tokens``) and looked up in the response cache: an answer already there costs nothing
and is counted in ``cached_calls``. Nothing is sent and no specialist runs:

* Auto's selection pass: a cached answer is given to the judge (its subset is then exact); an uncached
  one is answered with every applicable specialist (an upper bound: the judge picks a subset), and no
  cache hit is claimed for that doc's verdict pass.
* specialist sections: the assessment cache where it holds the doc's inputs, else the spec's typical
  output (``SpecialistSpec.typical_value``/``typical_text``), rendered by the judge's own renderer.
* completion tokens: the mean of cached answers (of this plan, else of this model in the cache) per
  pass, else ``max_tokens`` (an upper bound); the output says which.
* USD at the direct and the batch price of ``judges/prices.yaml`` (``price_in=``/``price_out=`` override).

The command (``lmms-eval-autorater estimate``: tasks, grids, the table) is ``experiments/estimate.py``.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from lmms_eval_autorater.judges.types import ChatPrompt, Completion, JudgeRequest

#: the passes a doc's calls belong to
PASSES = ("selection", "verdict")


def typical_assessment(code: str, candidate: int) -> Any:
    """The ``Assessment`` standing for an uncached output of specialist ``code`` on one candidate."""
    from lmms_eval_autorater.specialists.registry import SPECS
    from lmms_eval_autorater.specialists.types import Assessment

    spec = SPECS[code]
    return Assessment(
        code=code, value=spec.typical_value, text=spec.typical_text, version="typical", candidate=candidate
    )


@dataclass
class CallPlan:
    """One call a doc will make: its pass, prompt tokens, and the cached answer's completion tokens."""

    kind: str
    prompt_tokens: int | None
    cached: bool
    cached_completion_tokens: int | None = None
    schema_tokens: int = 0


@dataclass
class DocPlan:
    """What one doc costs: its calls, or the input error that keeps it from being sent."""

    doc_key: str
    calls: list[CallPlan] = field(default_factory=list)
    input_error: str | None = None
    sections_cached: int = 0
    sections_typical: int = 0
    auto_subset_known: bool | None = None
    #: the specialists whose sections were counted (each once per doc, whatever the subsets driven)
    codes_counted: set = field(default_factory=set, repr=False)


def _stand_in(req: JudgeRequest) -> Completion:
    """A parseable answer for an uncached verdict, so that the judge goes on quietly (never sent, never cached)."""
    key = "preferred" if req.paradigm == "pairwise" else "score"
    return Completion(text=json.dumps({"analysis": "estimate", key: 1}), model="estimate")


class _Recorder:
    """The judge's ``complete_all`` during an estimate: records each prompt as a ``CallPlan`` of the
    current doc, answers from the response cache, and stands in for every other answer."""

    def __init__(self, est: Estimator) -> None:
        self.est = est
        self.req: JudgeRequest | None = None
        self.plan: DocPlan | None = None

    def __call__(self, prompts: list[ChatPrompt]) -> list[Completion]:
        from lmms_eval_autorater.specialists.registry import applicable

        assert self.req is not None and self.plan is not None
        out: list[Completion] = []
        for prompt in prompts:
            kind = "selection" if prompt.schema_name == "tool_selection" else "verdict"
            call, hit = self.est._call(kind, prompt)
            if kind == "selection":
                self.plan.auto_subset_known = hit is not None
                if hit is None:  # the subset is unknown: every applicable specialist (an upper bound)
                    every = applicable(self.req.task_kind)
                    hit = Completion(
                        text=json.dumps({"analysis": "estimate", "tools": every}), model="estimate"
                    )
            elif self.plan.auto_subset_known is False:  # the real subset is unknown: no cache hit claimed
                call.cached, call.cached_completion_tokens = False, None
            self.plan.calls.append(call)
            out.append(hit if hit is not None else _stand_in(self.req))
        return out


class Estimator:
    """Counts what ``cfg``'s judge would send for a list of requests, without sending anything.

    ``backend`` and ``key`` default to the factory's backend (built keyless: nothing is sent) and the
    response cache's key (``pipeline.api_cache_key``, shared by direct and batch calls); ``pool`` (a
    ``SpecialistPool``) is only read through its assessment cache.
    """

    def __init__(
        self, cfg: Any, *, backend: Any = None, key: Any = None, cache: Any = None, pool: Any = None
    ) -> None:
        from lmms_eval_autorater.judges import factory, tokens

        self.cfg = cfg
        self.local = cfg.kind != "api"
        if backend is None and not self.local:
            backend = factory.build_backend(replace(cfg, backend={**cfg.backend, "api_key_env": None}))
        self.backend = backend
        self.rule = None if self.local else tokens.rule_for(backend.provider)
        self.detail = None if self.local else getattr(backend, "image_detail", None)
        if key is None and backend is not None:
            key, cache = self._cache_lookup(cfg, backend)
        self.key = key
        self.cache = cache
        if pool is None and cfg.tools and os.path.exists(cfg.cache_file("assessments.sqlite")):
            pool = factory.build_pool(cfg)
        self.pool = pool
        self.max_tokens = int(cfg.backend.get("max_tokens") or cfg.backend.get("max_new_tokens") or 0)
        self._checked: dict[str, str | None] = {}  # the judges' decode memo (``Judge.checked_images``)
        self._hashes: dict[str, str] = {}
        self._assessments: dict[tuple[str, str], tuple[list[Any], int, int]] = {}
        self._recorder = _Recorder(self)

    @staticmethod
    def _cache_lookup(cfg: Any, backend: Any) -> tuple[Any, Any]:
        """(key function, response cache or None): the completers' key, and the cache file only where it
        exists (none is created)."""
        from lmms_eval_autorater.judges.cache import ResponseCache
        from lmms_eval_autorater.judges.pipeline import api_cache_key

        def key(prompt: ChatPrompt) -> str:
            return api_cache_key(backend, prompt)

        path = cfg.cache_file("responses.sqlite")
        return key, (ResponseCache(path) if cfg.cache and os.path.exists(path) else None)

    # -- the judge, driven -----------------------------------------------------------------------
    def judge(self, tools: Sequence[str] | str) -> Any:
        """The real ``Judge`` with ``tools``, wired as the factory wires it, over the recorder and the
        cached-or-typical specialist sections."""
        from lmms_eval_autorater.judges.judge import Judge
        from lmms_eval_autorater.judges.prompts import tool_menu
        from lmms_eval_autorater.specialists.registry import applicable
        from lmms_eval_autorater.specialists.render import render_assessments

        judge = Judge(
            self._recorder,
            tools=tools,
            swap=self.cfg.swap,
            assess=self._assess,
            render=render_assessments,
            applicable=applicable,
            tool_menu=tool_menu,
            # samples=N: N verdict prompts per order (each its own cache key); scoring=expected costs no
            # extra token (log-probabilities come with the answer) but is part of the cache key
            scoring=getattr(self.cfg, "scoring", "argmax"),
            samples=getattr(self.cfg, "samples", 1),
        )
        judge.config, judge.backend = self.cfg, self.backend
        judge.checked_images = self._checked
        return judge

    def _assess(self, code: str, reqs: list[JudgeRequest]) -> list[tuple[Any, ...]]:
        """``assess`` for the driven judge: per request, the cached assessment of ``code`` per candidate,
        else the typical one; the current doc's sections are counted once per code."""
        out = []
        plan = self._recorder.plan
        for req in reqs:
            memo = (req.doc_key, code)
            if memo not in self._assessments:
                self._assessments[memo] = self._lookup(code, req)
            found, n_cached, n_typical = self._assessments[memo]
            if plan is not None and code not in plan.codes_counted:
                plan.codes_counted.add(code)
                plan.sections_cached += n_cached
                plan.sections_typical += n_typical
            out.append(tuple(found))
        return out

    def _lookup(self, code: str, req: JudgeRequest) -> tuple[list[Any], int, int]:
        """(assessments per candidate, how many from the cache, how many typical); nothing is run."""
        cached: list[Any | None] = [None] * len(req.candidates)
        if self.pool is not None:
            from lmms_eval_autorater.specialists.base import SpecialistInput
            from lmms_eval_autorater.specialists.cache import AssessmentCache

            sp = self.pool.specialist(code)
            keys = [
                AssessmentCache.key(
                    sp.spec, sp.version, SpecialistInput(req.request, c, req.source), self._hashes
                )
                for c in req.candidates
            ]
            found = self.pool.cache.get_many(keys, code)
            cached = [found.get(k) for k in keys]
        out = [
            typical_assessment(code, k) if a is None else replace(a, candidate=k)
            for k, a in enumerate(cached, start=1)
        ]
        n_cached = sum(a is not None for a in cached)
        return out, n_cached, len(cached) - n_cached

    def _call(self, kind: str, prompt: ChatPrompt) -> tuple[CallPlan, Completion | None]:
        """The ``CallPlan`` of one prompt, and its cached answer (None when not cached)."""
        from lmms_eval_autorater.judges import tokens

        tok = None if self.local else tokens.prompt_tokens(prompt, self.rule, self.detail)
        schema = 0 if self.local or self.rule != "openai" else tokens.schema_tokens(prompt)
        hit = None if self.key is None or self.cache is None else self.cache.get(self.key(prompt))
        if hit is None:
            return CallPlan(kind, tok, False, schema_tokens=schema), None
        ct = hit.usage.get("completion_tokens")
        return CallPlan(kind, tok, True, None if ct is None else int(ct), schema), hit

    def plan(
        self, reqs: Sequence[JudgeRequest], tool_sets: Sequence[Sequence[str] | str] | None = None
    ) -> list[DocPlan]:
        """One ``DocPlan`` per request, in order: the calls the judge makes with ``cfg.tools``, or with each
        selection of ``tool_sets`` in turn (a grid: one verdict per subset). Inputs are checked by the
        judge; a doc with an input error makes no call."""
        reqs = list(reqs)
        plans = [DocPlan(r.doc_key) for r in reqs]
        sets = [self.cfg.tools] if tool_sets is None else list(tool_sets)
        judges = [self.judge(t) for t in sets]
        for p, problem in zip(plans, judges[0].check(reqs)):
            p.input_error = None if problem is None else str(problem)
        good = [i for i, p in enumerate(plans) if p.input_error is None]
        try:
            for judge in judges:
                for i in good:
                    self._recorder.req, self._recorder.plan = reqs[i], plans[i]
                    judge.judge_all([reqs[i]])
        finally:
            self._recorder.req = self._recorder.plan = None
        return plans

    # -- completion tokens -----------------------------------------------------------------------
    def _model_means(self) -> dict[str, tuple[float, int]]:
        """Mean completion tokens per pass over the cached answers of this model (any prompt)."""
        if self.cache is None or self.backend is None:
            return {}
        model = str(self.backend.model)
        sums: dict[str, list[float]] = {k: [] for k in PASSES}
        try:
            con = sqlite3.connect(f"file:{self.cache.path}?mode=ro", uri=True, timeout=5)
            rows = con.execute("SELECT value FROM responses ORDER BY created DESC LIMIT 20000").fetchall()
            con.close()
        except sqlite3.Error:
            return {}
        for (raw,) in rows:
            value = json.loads(raw)
            got = str(value.get("model") or "")
            ct = (value.get("usage") or {}).get("completion_tokens")
            if ct is None or not (got == model or got.startswith(model + "-")):
                continue
            try:
                answer = json.loads(value.get("text") or "")
            except ValueError:
                answer = None
            kind = "selection" if isinstance(answer, dict) and "tools" in answer else "verdict"
            sums[kind].append(float(ct))
        return {k: (sum(v) / len(v), len(v)) for k, v in sums.items() if v}

    def completion_means(self, plans: Sequence[DocPlan]) -> dict[str, dict]:
        """Per pass: the completion tokens assumed for an uncached call, and where the number comes from."""
        out: dict[str, dict] = {}
        model_means = None
        for kind in PASSES:
            hits = [c.cached_completion_tokens for p in plans for c in p.calls if c.kind == kind and c.cached]
            hits = [h for h in hits if h is not None]
            if hits:
                out[kind] = {"tokens": sum(hits) / len(hits), "source": f"mean of {len(hits)} cached answers"}
                continue
            if model_means is None:
                model_means = self._model_means()
            if kind in model_means:
                mean, n = model_means[kind]
                out[kind] = {"tokens": mean, "source": f"mean of {n} cached answers of this model"}
            else:
                out[kind] = {
                    "tokens": float(self.max_tokens),
                    "source": f"max_tokens={self.max_tokens} (upper bound)",
                }
        return out

    # -- money -----------------------------------------------------------------------------------
    def usd(self, prompt_tokens: float, completion_tokens: float, batch: bool) -> float | None:
        """USD at the listed (or the given ``price_in``/``price_out``) price; None when unknown or local."""
        if self.local:
            return None
        from lmms_eval_autorater.judges import prices

        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
        return prices.cost_usd(
            usage,
            self.backend.model,
            self.cfg.backend.get("price_per_mtok_in"),
            self.cfg.backend.get("price_per_mtok_out"),
            batch=batch,
        )

    def summarize(self, plans: Sequence[DocPlan], means: dict[str, dict], scale: float = 1.0) -> dict:
        """The totals of some docs: calls to send, cached calls, tokens, USD (direct and batch);
        ``scale`` multiplies the calls and tokens (the halving grid's share of the exhaustive one)."""
        calls = cached = 0.0
        prompt = completion = schema = 0.0
        for p in plans:
            for c in p.calls:
                if c.cached:
                    cached += scale
                    continue
                calls += scale
                prompt += scale * (c.prompt_tokens or 0)
                completion += scale * means[c.kind]["tokens"]
                schema += scale * c.schema_tokens
        calls, cached = int(round(calls)), int(round(cached))
        out = {
            "docs": len(plans),
            "input_errors": sum(p.input_error is not None for p in plans),
            "calls": calls,
            "cached_calls": cached,
            "prompt_tokens": None if self.local else int(prompt),
            "completion_tokens": int(round(completion)),
            "usd_direct": self.usd(prompt, completion, batch=False),
            "usd_batch": self.usd(prompt, completion, batch=True),
            "specialist_sections": {
                "from_cache": sum(p.sections_cached for p in plans),
                "typical": sum(p.sections_typical for p in plans),
            },
        }
        if self.rule == "openai":
            out["schema_tokens_not_counted"] = int(schema)
        return out

    def per_doc(self, plans: Sequence[DocPlan], means: dict[str, dict], batch: bool = False) -> list[dict]:
        """Per doc: the calls it will send and their estimated USD (0 when every answer is cached)."""
        out = []
        for p in plans:
            todo = [c for c in p.calls if not c.cached]
            prompt = sum(c.prompt_tokens or 0 for c in todo)
            completion = sum(means[c.kind]["tokens"] for c in todo)
            out.append(
                {
                    "calls": len(todo),
                    "cached_calls": len(p.calls) - len(todo),
                    "prompt_tokens": None if self.local else prompt,
                    "usd": self.usd(prompt, completion, batch=batch) if todo else 0.0,
                }
            )
        return out


def estimate_requests(judge: Any, reqs: Sequence[JudgeRequest]) -> list[dict] | None:
    """Per request, what ``judge`` (from the factory) is estimated to spend on it (``Estimator.per_doc``),
    at the batch price when the run uses ``batch=true``; None for a local judge. Nothing is sent."""
    cfg = getattr(judge, "config", None)
    if cfg is None or cfg.kind != "api":
        return None
    completer = judge.completer
    est = Estimator(
        cfg,
        backend=judge.backend,
        key=getattr(completer, "key", None),
        cache=getattr(completer, "cache", None),
        pool=judge.pool,
    )
    est._checked = judge.checked_images  # images the judge has decoded are not decoded again
    plans = est.plan(reqs)
    return est.per_doc(plans, est.completion_means(plans), batch=bool(getattr(cfg, "batch", False)))


__all__ = ["PASSES", "CallPlan", "DocPlan", "Estimator", "estimate_requests", "typical_assessment"]
