"""Grid search over specialist subsets (the "Grid" rows of Table 2).

For one judge and one task, every subset of 1..3 applicable specialists is evaluated (41 for
editing, 14 for generation). Each specialist runs once per unique input (a first pass fills the
assessment cache, one specialist at a time); the judge's answers are cached by content, so a rerun
makes no call at all. Metrics come from the same functions the lmms-eval tasks use.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from lmms_eval_autorater.tasks.catalog import TASKS, task_info
from lmms_eval_autorater.tasks.common import doc_to_request, make_record, verdict_record

GRID_TASKS = tuple(TASKS)


def subsets(codes: list[str], max_size: int = 3) -> list[tuple[str, ...]]:
    """Every subset of ``codes`` of size 1..``max_size``, in registry order."""
    return [c for k in range(1, max_size + 1) for c in combinations(codes, k)]


@dataclass
class GridRow:
    """One subset's result."""

    subset: tuple[str, ...]
    metric: float
    ci_low: float
    ci_high: float
    n_scored: int
    input_errors: int
    parse_failures: int
    api_failures: int


@dataclass
class GridResult:
    """The ranked rows plus the counts that show nothing ran twice."""

    task: str
    metric_name: str
    rows: list[GridRow]
    n_docs: int
    specialist_invocations: dict[str, int] = field(default_factory=dict)
    unique_inputs: dict[str, int] = field(default_factory=dict)
    judge_calls: int = 0
    judge_cache_hits: int = 0

    @property
    def best(self) -> GridRow | None:
        return self.rows[0] if self.rows and not math.isnan(self.rows[0].metric) else None

    def table(self) -> str:
        """A ranked text table; the best subset is marked with '*' (Table 2's subscript)."""
        head = (
            f"{'rank':>5}  {'subset':<12} {self.metric_name:>9}  {'95% CI':<17} {'scored':>6} "
            f"{'input_err':>9} {'parse_fail':>10} {'api_fail':>8}"
        )
        lines = [f"grid search on {self.task}: {len(self.rows)} subsets, {self.n_docs} docs", head]
        for i, r in enumerate(self.rows, start=1):
            mark = "*" if i == 1 and self.best is not None else " "
            lines.append(
                f"{mark}{i:>4}  {'+'.join(r.subset):<12} {r.metric:>9.4f}  [{r.ci_low:.4f}, {r.ci_high:.4f}] "
                f"{r.n_scored:>6} {r.input_errors:>9} {r.parse_failures:>10} {r.api_failures:>8}"
            )
        lines.append(
            f"specialist invocations: {self.specialist_invocations} (unique inputs: {self.unique_inputs}); "
            f"judge calls: {self.judge_calls}, judge cache hits: {self.judge_cache_hits}"
        )
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "task": self.task,
            "metric": self.metric_name,
            "n_docs": self.n_docs,
            "best": "+".join(self.best.subset) if self.best else None,
            "rows": [{**r.__dict__, "subset": "+".join(r.subset)} for r in self.rows],
            "specialist_invocations": self.specialist_invocations,
            "unique_inputs": self.unique_inputs,
            "judge_calls": self.judge_calls,
            "judge_cache_hits": self.judge_cache_hits,
        }


def _summary(paradigm: str, records: list[dict], n_resamples: int) -> tuple[float, float, float, dict]:
    from lmms_eval_autorater.metrics import summarize_pairwise, summarize_pointwise

    if paradigm == "pairwise":
        s = summarize_pairwise(records, n_resamples=n_resamples)
        return s["accuracy"], s["accuracy_ci_low"], s["accuracy_ci_high"], s
    s = summarize_pointwise(records, n_resamples=n_resamples)
    return s["pearson"], s["pearson_ci_low"], s["pearson_ci_high"], s


def count_unique_inputs(pool, code: str, reqs: list) -> int:
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


def run_grid(
    judge: Any,
    task: str,
    *,
    max_size: int = 3,
    limit: int | None = None,
    n_resamples: int = 1000,
    docs: list[dict] | None = None,
) -> GridResult:
    """Evaluate every subset for ``judge`` (from ``judges.factory.build_judge``) on ``task``.

    Images are checked once: a doc whose image does not decode is an input error in every row and is
    never sent. Each subset's judge shares the backend, the caches and the specialist pool.
    """
    from lmms_eval_autorater.judges.judge import require_some_inputs
    from lmms_eval_autorater.specialists.registry import applicable
    from lmms_eval_autorater.tasks.catalog import build_docs

    info = task_info(task)
    paradigm = info.paradigm
    if docs is None:
        docs = build_docs(task)
    if limit is not None:
        docs = docs[:limit]
    if not docs:
        raise ValueError(f"task {task!r} has no docs")
    reqs = [doc_to_request(d, task, i) for i, d in enumerate(docs)]
    bad = judge.check(reqs)  # decoded once here; every subset's judge shares the memo
    require_some_inputs(bad)
    good = [i for i, e in enumerate(bad) if e is None]
    good_reqs = [reqs[i] for i in good]
    codes = applicable(info.task_kind)
    first = judge.with_tools(codes)  # creates the shared specialist pool
    pool = first.pool
    for code in codes:  # one pass per specialist over all docs, then it is released
        first.assess(code, good_reqs)
    unique = {code: count_unique_inputs(pool, code, good_reqs) for code in codes}
    rows = []
    for subset in subsets(codes, max_size):
        verdicts = judge.with_tools(list(subset)).judge_all(good_reqs)
        by_doc = dict(zip(good, verdicts))
        records = [
            verdict_record(d, by_doc[i], paradigm)
            if i in by_doc
            else make_record(d, paradigm, "input_error", None)
            for i, d in enumerate(docs)
        ]
        value, low, high, s = _summary(paradigm, records, n_resamples)
        rows.append(
            GridRow(
                subset,
                value,
                low,
                high,
                int(s["n_scored"]),
                int(s["input_errors"]),
                int(s["parse_failures"]),
                int(s["api_failures"]),
            )
        )
    rows.sort(key=lambda r: (math.isnan(r.metric), -r.metric if not math.isnan(r.metric) else 0.0))
    stats = judge.completer.stats()
    return GridResult(
        task=task,
        metric_name=info.metric,
        rows=rows,
        n_docs=len(docs),
        specialist_invocations=dict(pool.invocations),
        unique_inputs=unique,
        judge_calls=int(stats.get("calls_made", 0)),
        judge_cache_hits=int(stats.get("cache_hits", 0)),
    )


def write(result: GridResult, path: str | Path) -> None:
    """Save the grid as JSON."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result.to_json(), indent=2))


# -- the ``grid`` command ------------------------------------------------------------------------

HELP = "evaluate every subset of 1..3 specialists for a judge on a task"


def add_arguments(parser: Any) -> None:
    """The ``grid`` command's arguments."""
    from lmms_eval_autorater.judges.factory import judge_names

    parser.add_argument("--model", required=True, choices=judge_names(), help="the judge")
    parser.add_argument("--model_args", default="", help="as for lmms-eval, without tools=")
    parser.add_argument("--task", required=True, help="psr, imagereward_pair, imagereward_point or aigiqa")
    parser.add_argument("--max_size", type=int, default=3)
    parser.add_argument(
        "--limit", type=int, default=None, help="first N docs only (for trials, not for results)"
    )
    parser.add_argument("--n_resamples", type=int, default=1000, help="bootstrap resamples for the 95%% CI")
    parser.add_argument("--output", default=None, help="write the ranked grid as JSON here")


def run(args: Any) -> int:
    """Run the ``grid`` command; returns the exit code."""
    from lmms_eval_autorater.cli import CommandError
    from lmms_eval_autorater.judges.args import parse_model_args
    from lmms_eval_autorater.judges.factory import build_judge

    if args.task not in GRID_TASKS:
        raise CommandError(f"--task must be one of {', '.join(GRID_TASKS)}; got {args.task!r}")
    model_args = parse_model_args(args.model_args)
    if "tools" in model_args:
        raise CommandError("--model_args must not set tools: the grid chooses the subsets")
    judge = build_judge(args.model, model_args)
    result = run_grid(
        judge, args.task, max_size=args.max_size, limit=args.limit, n_resamples=args.n_resamples
    )
    print(result.table())
    if args.output:
        write(result, args.output)
    return 0
