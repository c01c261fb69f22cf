"""The ``estimate`` command: the calls, tokens and USD of a run before anything is sent.

For every doc it builds the prompts the judge will send (``prompts.build_verdict_prompt`` /
``build_selection_prompt``: the text is exactly what is sent), counts their tokens the way the provider
bills them (``judges.tokens``), and looks each one up in the response cache: an answer already there
costs nothing and is counted in ``cached_calls``. Nothing is sent and no specialist runs:

* calls per doc: 1 (``tools=none|all|GD+QS``), 2 for ``tools=auto`` (selection pass + verdict pass),
  times 2 for ``swap=true`` on pairwise tasks (the selection pass is not swapped).
* Auto's verdict pass: when the selection answer is cached its subset is known exactly; otherwise the
  pass is estimated with every applicable specialist (an upper bound: the judge picks a subset).
* specialist sections: rendered from the assessment cache where it holds the doc's inputs, else from
  ``TYPICAL_ASSESSMENTS`` (a typical output per code, rendered by the real renderer).
* completion tokens: the mean of cached answers (of this plan, else of this model in the cache) per
  pass, else ``max_tokens`` (an upper bound); the output says which.
* USD at the direct and the batch price of ``judges/prices.yaml`` (``price_in=``/``price_out=`` override).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

HELP = "the calls, tokens and USD of a run before anything is sent"

#: a typical specialist output per code, used where the assessment cache does not hold a doc's inputs:
#: GD two detected objects, AE a critique of ~110 words (AesExpert answers in at most 200 tokens),
#: numbers rendered to 3 decimals like any real value
TYPICAL_TEXT = {
    "GD": "main object x1 (0.62); second object x2 (max 0.48)",
    "AE": (
        "The image has soft, even lighting that gives the scene a calm mood, although the highlights on the "
        "main subject are slightly overexposed. The composition places the subject near the centre with "
        "enough negative space around it, which keeps the eye on the subject, but the background feels a "
        "little empty. The colors are harmonious, dominated by warm tones with a few cooler accents that "
        "add contrast. Fidelity is good overall: edges are sharp and textures look natural, with minor "
        "smoothing in the darker areas and a few small distortions in fine details. Overall the image is "
        "aesthetically pleasing, with good lighting and color but room for improvement in composition."
    ),
}
TYPICAL_VALUE = {"GD": 3.0, "AE": None, "PA": 0.052, "QS": 0.618, "DF": 0.547, "DS": 0.803}

#: the passes a doc's calls belong to
PASSES = ("selection", "verdict")
#: the grid's largest subset (the paper: 1..3 specialists)
GRID_MAX_SIZE = 3
GRID_STRATEGIES = ("exhaustive", "halving")


def halving_calls(n_subsets: int, n_docs: int, n_groups: int) -> tuple[int, list[dict]]:
    """Judge calls of ``grid --strategy halving`` without early stops (an upper bound): each round judges
    its surviving subsets on the docs its sample adds (earlier answers are reused); survivors
    ceil(k / eta); the samples are the grid's own schedule (``grid.halving_schedule``), docs in
    proportion to the groups (prompts or sets) sampled."""
    import math

    from lmms_eval_autorater.grid import DEFAULT_ETA, DEFAULT_MIN_GROUPS, halving_schedule

    alive, prev_docs, total, rounds = n_subsets, 0, 0, []
    for groups in halving_schedule(n_subsets, n_groups, DEFAULT_ETA, DEFAULT_MIN_GROUPS):
        docs = n_docs if groups >= n_groups else round(n_docs * groups / n_groups)
        calls = alive * (docs - prev_docs)
        rounds.append({"subsets": alive, "groups": groups, "docs": docs, "calls": calls})
        total, prev_docs, alive = total + calls, docs, max(1, math.ceil(alive / DEFAULT_ETA))
    return total, rounds


def typical_assessment(code: str, candidate: int):
    """The ``Assessment`` standing for an uncached specialist output of ``code`` on one candidate."""
    from lmms_eval_autorater.specialists.types import Assessment

    return Assessment(
        code=code,
        value=TYPICAL_VALUE[code],
        text=TYPICAL_TEXT.get(code),
        version="typical",
        candidate=candidate,
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


class Estimator:
    """Counts what ``cfg``'s judge would send for a list of requests, without sending anything.

    ``backend`` and ``key`` default to the factory's backend (built keyless: nothing is sent) and the
    completer's cache key; ``pool`` (a ``SpecialistPool``) is only read through its assessment cache.
    """

    def __init__(
        self, cfg: Any, *, backend: Any = None, key: Any = None, cache: Any = None, pool: Any = None
    ):
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
        self._sizes_ok: dict[str, str | None] = {}

    @staticmethod
    def _cache_lookup(cfg: Any, backend: Any) -> tuple[Any, Any]:
        """(key function, response cache or None): the key the completers use (direct and batch share it;
        ``pipeline.api_cache_key``), and the cache file only where it exists (none is created)."""
        from lmms_eval_autorater.judges.cache import ResponseCache

        try:
            from lmms_eval_autorater.judges.pipeline import api_cache_key

            def key(prompt: Any) -> str:
                return api_cache_key(backend, prompt)
        except ImportError:  # older pipeline: the completer's own key
            from lmms_eval_autorater.judges import factory

            key = factory.build_completer(replace(cfg, cache=False), backend, progress=False).key
        path = cfg.cache_file("responses.sqlite")
        return key, (ResponseCache(path) if cfg.cache and os.path.exists(path) else None)

    # -- specialist sections ---------------------------------------------------------------------
    def _cached_assessments(self, code: str, reqs: Sequence[Any]) -> list[list[Any | None]]:
        """Per request, per candidate: the cached assessment of ``code`` or None (nothing is run)."""
        if self.pool is None:
            return [[None] * len(r.candidates) for r in reqs]
        from lmms_eval_autorater.specialists.base import SpecialistInput
        from lmms_eval_autorater.specialists.cache import AssessmentCache

        sp = self.pool.specialist(code)
        hashes: dict[str, str] = {}
        keys = [
            [
                AssessmentCache.key(sp.spec, sp.version, SpecialistInput(r.request, c, r.source), hashes)
                for c in r.candidates
            ]
            for r in reqs
        ]
        found = self.pool.cache.get_many([k for ks in keys for k in ks], code)
        return [[found.get(k) for k in ks] for ks in keys]

    def _with_assessments(
        self, reqs: list[Any], codes_per_req: list[list[str]], plans: list[DocPlan]
    ) -> list:
        codes = sorted({c for cs in codes_per_req for c in cs})
        per_req: list[list[Any]] = [[] for _ in reqs]
        for code in codes:
            idx = [i for i, cs in enumerate(codes_per_req) if code in cs]
            cached = self._cached_assessments(code, [reqs[i] for i in idx])
            for i, row in zip(idx, cached):
                for k, a in enumerate(row, start=1):
                    if a is None:
                        per_req[i].append(typical_assessment(code, k))
                        plans[i].sections_typical += 1
                    else:
                        per_req[i].append(replace(a, candidate=k))
                        plans[i].sections_cached += 1
        return [replace(r, assessments=tuple(a)) for r, a in zip(reqs, per_req)]

    # -- prompts ---------------------------------------------------------------------------------
    def _input_error(self, req: Any) -> str | None:
        """None when every image of ``req`` opens (header only), else the reason."""
        from lmms_eval_autorater.images import read_image_bytes
        from lmms_eval_autorater.judges.judge import request_images
        from lmms_eval_autorater.judges.tokens import image_size

        for field_name, ref in request_images(req):
            ref_key = ref if isinstance(ref, str) else repr(ref)
            if ref_key not in self._sizes_ok:
                try:
                    image_size(read_image_bytes(ref, sample=req.doc_key, field=field_name))
                    self._sizes_ok[ref_key] = None
                except Exception as exc:  # unreadable or undecodable: the judge counts it as an input error
                    self._sizes_ok[ref_key] = f"field {field_name!r}, file {ref}: {exc}"
            if self._sizes_ok[ref_key] is not None:
                return self._sizes_ok[ref_key]
        return None

    def _call(self, kind: str, prompt: Any, cached_answers: dict) -> CallPlan:
        from lmms_eval_autorater.judges import tokens

        tok = None if self.local else tokens.prompt_tokens(prompt, self.rule, self.detail)
        schema = 0 if self.local or self.rule != "openai" else tokens.schema_tokens(prompt)
        if self.key is None:
            return CallPlan(kind, tok, False, schema_tokens=schema)
        k = self.key(prompt)
        hit = cached_answers.get(k)
        if hit is None and self.cache is not None:
            hit = self.cache.get(k)
        if hit is None:
            return CallPlan(kind, tok, False, schema_tokens=schema)
        ct = hit.usage.get("completion_tokens")
        return CallPlan(kind, tok, True, None if ct is None else int(ct), schema)

    def plan(self, reqs: Sequence[Any], grid: bool = False) -> list[DocPlan]:
        """One ``DocPlan`` per request, in order; ``grid``: the verdicts of every subset of 1..3 applicable
        specialists (the exhaustive grid: ``tools=`` must be none)."""
        from lmms_eval_autorater.judges import contract
        from lmms_eval_autorater.judges.judge import swap_request
        from lmms_eval_autorater.judges.prompts import build_selection_prompt, build_verdict_prompt, tool_menu
        from lmms_eval_autorater.specialists.registry import applicable
        from lmms_eval_autorater.specialists.render import render_assessments

        reqs = list(reqs)
        plans = [DocPlan(r.doc_key) for r in reqs]
        for p, r in zip(plans, reqs):
            p.input_error = self._input_error(r)
        good = [i for i, p in enumerate(plans) if p.input_error is None]
        tools = self.cfg.tools
        if grid and tools:
            raise ValueError("a grid chooses the subsets itself: leave tools= out of --model_args")
        codes: dict[int, list[str]] = {}
        for i in good:
            r = reqs[i]
            app = applicable(r.task_kind)
            if tools == "all" or grid:
                codes[i] = app
            elif tools == "auto":
                sel = self._call("selection", build_selection_prompt(r, tool_menu(app), app), {})
                plans[i].calls.append(sel)
                subset = None
                if sel.cached:
                    text = self.cache.get(self.key(build_selection_prompt(r, tool_menu(app), app))).text
                    parsed = contract.parse_tool_selection(text, app)
                    subset = list(parsed.value) if parsed.ok else None
                plans[i].auto_subset_known = subset is not None
                codes[i] = app if subset is None else subset
            else:
                bad = [c for c in tools if c not in app]
                if bad:
                    raise ValueError(
                        f"tools {'+'.join(bad)} do not apply to {r.task_kind} tasks; "
                        f"applicable: {'+'.join(app)}"
                    )
                codes[i] = list(tools)
        ready = self._with_assessments(
            [reqs[i] for i in good], [codes[i] for i in good], [plans[i] for i in good]
        )
        for i, full in zip(good, ready):
            variants = [full]
            if grid:
                from lmms_eval_autorater.grid import subsets

                variants = [
                    replace(full, assessments=tuple(a for a in full.assessments if a.code in sub))
                    for sub in subsets(applicable(full.task_kind), GRID_MAX_SIZE)
                ]
            orders = []
            for req in variants:
                orders.append(req)
                if self.cfg.swap and req.paradigm == "pairwise":
                    orders.append(swap_request(req))
            for one in orders:
                evidence = (
                    render_assessments(list(one.assessments), len(one.candidates)) if one.assessments else ""
                )
                call = self._call("verdict", build_verdict_prompt(one, evidence), {})
                if plans[i].auto_subset_known is False:  # the real subset is unknown: no cache hit claimed
                    call.cached, call.cached_completion_tokens = False, None
                plans[i].calls.append(call)
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


def _notes(est: Estimator, means: dict[str, dict], grid: str | None = None) -> list[str]:
    from lmms_eval_autorater.judges import tokens

    notes = []
    if est.local:
        notes.append("local judge: calls only (no API tokens or price); the cache is not consulted")
    else:
        notes.append(f"prompt tokens: {tokens.RULE_NOTES[est.rule]}")
    for kind in PASSES:
        if kind == "selection" and est.cfg.tools != "auto":
            continue
        notes.append(
            f"completion tokens per {kind} call: {means[kind]['tokens']:.0f} ({means[kind]['source']})"
        )
    if est.cfg.tools == "auto":
        notes.append(
            "tools=auto: verdict passes whose selection is not cached are counted with every applicable "
            "specialist (an upper bound: the judge picks a subset)"
        )
    if grid == "halving":
        notes.append(
            "grid halving: the exhaustive plan scaled by the calls successive halving makes without early "
            "stops (estimate.halving_calls, the grid's own schedule): an upper bound"
        )
    if est.cfg.tools or grid:
        notes.append(
            "specialist sections: from the assessment cache where filled, else a typical output per code "
            "(judges/estimate.py TYPICAL_*); no specialist is run"
        )
    return notes


def expand_tasks(tasks: Sequence[str]) -> list[str]:
    """Task names with the groups (``autorater_bench``, ``field_bench``) expanded; an unknown name raises
    ``ValueError``."""
    from lmms_eval_autorater.tasks.catalog import GROUPS, task_info

    out: list[str] = []
    for t in tasks:
        t = t.strip()
        if not t:
            continue
        for name in GROUPS[t] if t in GROUPS else [task_info(t).name]:
            if name not in out:
                out.append(name)
    if not out:
        raise ValueError("no task given")
    return out


def estimate_run(
    model: str,
    model_args: dict | None,
    tasks: list[str],
    limit: int | None = None,
    *,
    pool: Any = None,
    docs: dict[str, list[dict]] | None = None,
    grid: str | None = None,
) -> dict:
    """The plan of ``lmms-eval --model model --model_args ... --tasks ...``: calls, cached calls, tokens and
    USD (direct and batch), in total and per task under ``tasks`` (the ``estimate --json`` object).

    Nothing is sent and no specialist runs. ``docs`` (task -> docs) replaces building them; ``pool``
    replaces the factory's specialist pool (only its assessment cache is read). ``grid`` ("exhaustive" or
    "halving") estimates ``lmms-eval-autorater grid --strategy ...`` on each task instead: every subset of
    1..3 specialists; halving as the exhaustive plan scaled by ``halving_calls``' share (an upper bound).
    """
    if grid is not None and grid not in GRID_STRATEGIES:
        raise ValueError(f"grid must be one of {', '.join(GRID_STRATEGIES)}, got {grid!r}")
    from lmms_eval_autorater.judges.factory import judge_config
    from lmms_eval_autorater.tasks.catalog import build_docs
    from lmms_eval_autorater.tasks.common import doc_to_request

    cfg = judge_config(model, model_args or {})
    est = Estimator(cfg, pool=pool)
    names = expand_tasks(tasks)
    plans: dict[str, list[DocPlan]] = {}
    scales: dict[str, float] = {}
    for name in names:
        task_docs = docs[name] if docs is not None and name in docs else build_docs(name)
        if limit is not None:
            task_docs = task_docs[:limit]
        reqs = [doc_to_request(d, name, i) for i, d in enumerate(task_docs)]
        plans[name] = est.plan(reqs, grid=grid is not None)
        scales[name] = 1.0
        good = [d for d, p in zip(task_docs, plans[name]) if p.input_error is None]
        if grid == "halving" and good:
            from lmms_eval_autorater.grid import subsets
            from lmms_eval_autorater.specialists.registry import applicable

            n_sub = len(subsets(applicable(reqs[0].task_kind), GRID_MAX_SIZE))
            h, _ = halving_calls(n_sub, len(good), len({d["group"] for d in good}))
            scales[name] = h / (n_sub * len(good))
    every = [p for ps in plans.values() for p in ps]
    means = est.completion_means(every)
    task_sums = {name: est.summarize(ps, means, scales[name]) for name, ps in plans.items()}
    totals: dict[str, Any] = {
        k: sum(t[k] for t in task_sums.values())
        for k in ("docs", "input_errors", "calls", "cached_calls", "completion_tokens")
    }
    for k in ("prompt_tokens", "usd_direct", "usd_batch", "schema_tokens_not_counted"):
        if any(k in t for t in task_sums.values()):
            vals = [t.get(k) for t in task_sums.values()]
            totals[k] = None if any(v is None for v in vals) else sum(vals)
    totals["specialist_sections"] = {
        k: sum(t["specialist_sections"][k] for t in task_sums.values()) for k in ("from_cache", "typical")
    }
    out = {
        "model": model,
        "judge_model": None if est.local else est.backend.model,
        "provider": None if est.local else est.backend.provider,
        "tools": cfg.tools if isinstance(cfg.tools, str) else ("+".join(cfg.tools) or "none"),
        "swap": cfg.swap,
        "batch": bool(getattr(cfg, "batch", False)),
        "limit": limit,
        "grid": grid,
        **totals,
        "completion_tokens_per_call": {k: round(v["tokens"], 1) for k, v in means.items()},
        "completion_tokens_source": {k: v["source"] for k, v in means.items()},
        "notes": _notes(est, means, grid),
        "tasks": task_sums,
    }
    if not est.local:
        from lmms_eval_autorater.judges import prices

        listed = prices.lookup(est.backend.model)
        out["price"] = {
            "price_in": cfg.backend.get("price_per_mtok_in"),
            "price_out": cfg.backend.get("price_per_mtok_out"),
            "listed": None if listed is None else {**listed.__dict__},
        }
    return out


def estimate_requests(judge: Any, reqs: Sequence[Any]) -> list[dict] | None:
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
    plans = est.plan(reqs)
    return est.per_doc(plans, est.completion_means(plans), batch=bool(getattr(cfg, "batch", False)))


# -- the command ---------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``estimate`` command's arguments."""
    from lmms_eval_autorater.judges.factory import judge_names

    parser.add_argument("--model", required=True, choices=judge_names(), help="the judge")
    parser.add_argument("--model_args", default="", help="as for lmms-eval (tools=, swap=, price_in=, ...)")
    parser.add_argument("--tasks", required=True, help="comma-separated tasks, or the group autorater_bench")
    parser.add_argument(
        "--limit", type=int, default=None, help="first N docs per task (as lmms-eval's --limit)"
    )
    parser.add_argument(
        "--grid",
        choices=GRID_STRATEGIES,
        default=None,
        help="estimate `lmms-eval-autorater grid --strategy ...` on each task instead (subsets of 1..3)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def _fmt_usd(x: float | None) -> str:
    return "unknown" if x is None else f"{x:,.2f}"


def table(result: dict) -> str:
    """The estimate as a readable table (one row per task, then the total and the notes)."""
    head = (
        f"{'task':<18} {'docs':>6} {'calls':>7} {'cached':>7} {'prompt tok':>12} {'compl tok':>11} "
        f"{'USD direct':>11} {'USD batch':>10}"
    )

    def row(name: str, r: dict) -> str:
        pt = "-" if r["prompt_tokens"] is None else f"{r['prompt_tokens']:,}"
        return (
            f"{name:<18} {r['docs']:>6} {r['calls']:>7} {r['cached_calls']:>7} {pt:>12} "
            f"{r['completion_tokens']:>11,} {_fmt_usd(r['usd_direct']):>11} {_fmt_usd(r['usd_batch']):>10}"
        )

    lines = [
        f"estimate for {result['model']} ({result['judge_model']}), tools={result['tools']}, "
        f"swap={str(result['swap']).lower()}"
        + (f", limit={result['limit']}" if result["limit"] else "")
        + (f", grid {result['grid']}" if result.get("grid") else ""),
        head,
    ]
    lines += [row(name, r) for name, r in result["tasks"].items()]
    lines.append(row("total", result))
    errs = result["input_errors"]
    if errs:
        lines.append(f"input errors: {errs} docs whose images do not open (not sent, not counted)")
    lines += [f"- {n}" for n in result["notes"]]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the ``estimate`` command; returns the exit code."""
    from lmms_eval_autorater.cli import CommandError
    from lmms_eval_autorater.judges.args import ModelArgError, parse_model_args

    if args.limit is not None and args.limit < 1:
        raise CommandError(f"--limit must be >= 1, got {args.limit}")
    try:
        result = estimate_run(
            args.model, parse_model_args(args.model_args), args.tasks.split(","), args.limit, grid=args.grid
        )
    except (ModelArgError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    print(json.dumps(result, indent=2, default=str) if args.json else table(result))
    return 0


__all__ = [
    "Estimator",
    "estimate_requests",
    "estimate_run",
    "expand_tasks",
    "halving_calls",
    "table",
    "typical_assessment",
]
