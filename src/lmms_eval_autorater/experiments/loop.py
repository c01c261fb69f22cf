"""The one evaluation loop of every experiment (grid, ablation, and whatever comes next).

A task's docs become requests once; their images are checked once (a doc whose image does not decode
is an input error in every variant and is never sent); each specialist runs once over every doc (the
pre-pass fills the assessment cache); then each variant (a subset of specialists, a setup of judge and
tools) is judged on the docs asked for, each (variant, doc) once, and turned into the records the
lmms-eval tasks score (``tasks.common.verdict_record``). Summaries come from ``metrics.summary.summarize``
(by paradigm), differences from the prompt/set-clustered paired bootstrap (``metrics.paired``).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

#: the counts each row of an experiment reports beside its metric (``metrics.summary``'s fields)
COUNT_FIELDS = ("n_scored", "input_errors", "parse_failures", "api_failures")


def count_unique_inputs(pool: Any, code: str, reqs: list) -> int:
    """Distinct inputs of one specialist over the requests, by the pool's own cache key
    (what its invocations must equal on a cold run)."""
    from lmms_eval_autorater.specialists.base import SpecialistInput
    from lmms_eval_autorater.specialists.cache import AssessmentCache

    sp = pool.specialist(code)
    hashes: dict[str, str] = {}
    return len(
        {
            AssessmentCache.key(sp.spec, sp.version, SpecialistInput(r.request, c, r.source), hashes)
            for r in reqs
            for c in r.candidates
        }
    )


class EvaluationLoop:
    """Judges (variant, doc) pairs once each for one task: requests built and images checked once (by
    ``judge``, whose decode memo every ``with_tools`` copy shares), a specialist pre-pass, records memoised.

    ``variant`` is any hashable name of what is judged (a subset, a setup); the caller passes the judge
    that stands for it. Verdicts are memoised here (the response cache would answer a repeat for free,
    but it would count a hit).
    """

    def __init__(self, judge: Any, task: str, docs: list[dict], *, n_resamples: int = 1000, seed: int = 0):
        from lmms_eval_autorater.judges.judge import require_some_inputs
        from lmms_eval_autorater.tasks.catalog import task_info
        from lmms_eval_autorater.tasks.common import doc_to_request

        self.judge, self.task, self.docs = judge, task, docs
        self.info = task_info(task)
        self.paradigm, self.n_resamples, self.seed = self.info.paradigm, n_resamples, seed
        self.reqs = [doc_to_request(d, task, i) for i, d in enumerate(docs)]
        bad = judge.check(self.reqs)
        require_some_inputs(bad)
        self.good = [e is None for e in bad]
        self.good_idx = [i for i, ok in enumerate(self.good) if ok]
        self.good_reqs = [self.reqs[i] for i in self.good_idx]
        self.memo: dict[tuple[Hashable, int], dict] = {}
        self.verdicts: dict[tuple[Hashable, int], Any] = {}
        #: specialist runs of the pre-pass, per code; distinct inputs per code (what a cold run must equal)
        self.invocations: dict[str, int] = {}
        self.unique: dict[str, int] = {}

    def prepass(self, judge: Any, codes: Sequence[str]) -> None:
        """Each specialist of ``codes`` once over every good doc, through ``judge``'s pool (then released)."""
        pool = judge.pool
        before = dict(pool.invocations)
        for code in codes:
            judge.assess(code, self.good_reqs)
        self.unique.update({code: count_unique_inputs(pool, code, self.good_reqs) for code in codes})
        for c, n in pool.invocations.items():
            if n > before.get(c, 0):
                self.invocations[c] = self.invocations.get(c, 0) + n - before.get(c, 0)

    def calls(self) -> tuple[int, int]:
        """(calls made, cache hits) of the judge's completer so far."""
        stats = self.judge.completer.stats()
        return int(stats.get("calls_made", 0)), int(stats.get("cache_hits", 0))

    def all_docs(self) -> list[int]:
        return list(range(len(self.docs)))

    def records(self, variant: Hashable, judge: Any, idx: Sequence[int] | None = None) -> list[dict]:
        """The records of ``variant`` (judged by ``judge``) on the docs ``idx`` (default: all), in order;
        only docs not judged yet for this variant are sent."""
        from lmms_eval_autorater.tasks.common import make_record, verdict_record

        idx = self.all_docs() if idx is None else list(idx)
        todo = [i for i in idx if self.good[i] and (variant, i) not in self.memo]
        if todo:
            verdicts = judge.judge_all([self.reqs[i] for i in todo])
            for i, v in zip(todo, verdicts):
                self.verdicts[(variant, i)] = v
                self.memo[(variant, i)] = verdict_record(self.docs[i], v, self.paradigm)
        return [
            self.memo[(variant, i)]
            if self.good[i]
            else make_record(self.docs[i], self.paradigm, "input_error", None)
            for i in idx
        ]

    def judged(self, variant: Hashable, idx: Sequence[int] | None = None) -> list[Any]:
        """The verdicts of ``variant`` on the good docs among ``idx`` (already judged by ``records``)."""
        idx = self.all_docs() if idx is None else list(idx)
        return [self.verdicts[(variant, i)] for i in idx if self.good[i]]

    def metric(self, records: list[dict], n_resamples: int | None = None) -> tuple[float, float, float, dict]:
        """``headline`` of ``records`` for this task (``n_resamples`` default: the loop's)."""
        return headline(self.paradigm, records, self.n_resamples if n_resamples is None else n_resamples)

    def paired(self, a: list[dict], b: list[dict], n_resamples: int | None = None) -> Any:
        """``paired(a, b)`` for this task, with the loop's seed (``n_resamples`` default: the loop's)."""
        n = self.n_resamples if n_resamples is None else n_resamples
        return paired(self.paradigm, a, b, n, self.seed)


def headline(paradigm: str, records: list[dict], n_resamples: int) -> tuple[float, float, float, dict]:
    """(headline metric, CI low, CI high, summary) of ``records`` (``metrics.summary.summarize``); the
    pairwise CI is ``summarize_pairwise``'s, computed from per-doc sums (``metrics.paired.accuracy_ci``:
    the same numbers, fast for the many rows of a grid)."""
    from lmms_eval_autorater.metrics.summary import HEADLINE, summarize

    m = HEADLINE[paradigm]
    pairwise = paradigm == "pairwise"
    s = summarize(paradigm, records, n_resamples=0 if pairwise else n_resamples)
    low, high = s[f"{m}_ci_low"], s[f"{m}_ci_high"]
    if pairwise and n_resamples > 0 and s["n_scored"]:
        from lmms_eval_autorater.metrics.paired import accuracy_ci, record_arrays

        pred, labels, groups = record_arrays(records, paradigm)
        ok = np.isfinite(pred)
        low, high = accuracy_ci(
            labels[ok], pred[ok], [g for g, k in zip(groups, ok) if k], n_resamples=n_resamples
        )
    return s[m], low, high, s


def paired(paradigm: str, a: list[dict], b: list[dict], n_resamples: int, seed: int = 0) -> Any:
    """``metric(a) - metric(b)`` on the same docs, prompt/set-clustered paired bootstrap."""
    from lmms_eval_autorater.metrics.paired import paired_records

    return paired_records(a, b, paradigm, n_resamples=n_resamples, seed=seed)


def counts(summary: dict) -> dict[str, int]:
    """The count fields of a summary (``COUNT_FIELDS``), as ints."""
    return {k: int(summary[k]) for k in COUNT_FIELDS}


def nan_last(metric: float) -> tuple[bool, float]:
    """Sort key: best metric first, nan last."""
    return (math.isnan(metric), -metric if not math.isnan(metric) else 0.0)


__all__ = [
    "COUNT_FIELDS",
    "EvaluationLoop",
    "count_unique_inputs",
    "counts",
    "headline",
    "nan_last",
    "paired",
]
