"""Grid search over specialist subsets (the "Grid" rows of Table 2), honest and cheap.

For one judge and one task, the subsets of 1..3 applicable specialists (41 for editing, 14 for
generation) are searched for the best, either exhaustively or by successive halving (every subset
on a small seeded sample of prompts/sets, the best third kept, the sample tripled, until one is
left or the best is ahead of every other by more than the paired-bootstrap CI of the difference).

``select_on`` makes the number honest: the subset is chosen on a selection part (a seeded share of
the prompts/sets, or a validation split) and reported on the rest; the subset chosen on the
reported docs themselves (what the paper's "+ Grid" rows do) stays in the output, labelled as
optimistic. Subsets within noise of the best (paired bootstrap on the same docs) are marked as tied.

Each specialist runs once per unique input (a first pass fills the assessment cache); the judge's
answers are cached by content, so a rerun, or an exhaustive grid after halving, pays only for what
was not asked yet. Metrics come from the same functions the lmms-eval tasks use.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from lmms_eval_autorater.errors import UsageError
from lmms_eval_autorater.experiments.loop import EvaluationLoop, counts, headline, nan_last, paired
from lmms_eval_autorater.tasks.catalog import TASKS, task_info

#: grid ranks subsets by the paradigm's headline (``loop.headline``), so only the tasks scored by it: not
#: GenAI-Bench's four labels nor EditReward-Bench's individual/group rule (their templates differ)
GRID_TASKS = tuple(t for t in TASKS if TASKS[t].template == TASKS[t].paradigm)
STRATEGIES = ("halving", "exhaustive")
#: the largest subset searched (the paper: 1..3 specialists)
DEFAULT_MAX_SIZE = 3
#: successive halving keeps the best 1/ETA of the subsets per round and multiplies the sample by ETA
DEFAULT_ETA = 3
#: the first halving round sees at least this many prompts/sets (fewer only when the data has fewer)
DEFAULT_MIN_GROUPS = 8
#: halving stops early (the best ahead of every other by more than the paired CI) only on a sample of at
#: least this many prompts/sets: a bootstrap over fewer says little
EARLY_STOP_MIN_GROUPS = 20
OPTIMISTIC = "optimistic: selected on the data it reports"


def subsets(codes: list[str], max_size: int = DEFAULT_MAX_SIZE) -> list[tuple[str, ...]]:
    """Every subset of ``codes`` of size 1..``max_size``, in registry order."""
    return [c for k in range(1, max_size + 1) for c in combinations(codes, k)]


@dataclass
class GridRow:
    """One subset's result on the docs it was last evaluated on (``n_docs``; halving: round ``round``)."""

    subset: tuple[str, ...]
    metric: float
    ci_low: float
    ci_high: float
    n_scored: int
    input_errors: int
    parse_failures: int
    api_failures: int
    n_docs: int = 0
    round: int | None = None  # halving: the last round it took part in (0-based); exhaustive: None
    tied: bool = False  # within noise of the best: the paired CI of (this - best) contains 0
    diff_to_best: float = math.nan  # this - best, on the same docs (nan: not compared)
    diff_ci_low: float = math.nan
    diff_ci_high: float = math.nan

    def to_json(self) -> dict:
        return {**self.__dict__, "subset": "+".join(self.subset)}


@dataclass
class RoundStat:
    """One round of the search: its sample, the subsets it judged, what it kept and what it paid."""

    round: int
    n_groups: int
    n_docs: int
    subsets: int
    kept: int
    judge_calls: int
    judge_cache_hits: int
    note: str = ""


@dataclass
class HeldOut:
    """The subset chosen on the selection part, reported on the docs it was not chosen on."""

    subset: tuple[str, ...]
    metric: float
    ci_low: float
    ci_high: float
    n_docs: int
    n_scored: int
    input_errors: int
    parse_failures: int
    api_failures: int

    def to_json(self) -> dict:
        return {
            **self.__dict__,
            "subset": "+".join(self.subset),
            "label": "selected on the selection part, reported on the rest",
        }


@dataclass
class GridResult:
    """The ranked rows, the rounds, the held-out and optimistic numbers, and the counts that show
    what was paid (``judge_calls``) and that nothing ran twice."""

    task: str
    metric_name: str
    rows: list[GridRow]
    n_docs: int
    specialist_invocations: dict[str, int] = field(default_factory=dict)
    unique_inputs: dict[str, int] = field(default_factory=dict)
    judge_calls: int = 0
    judge_cache_hits: int = 0
    strategy: str = "exhaustive"
    eta: int = DEFAULT_ETA
    seed: int = 0
    rounds: list[RoundStat] = field(default_factory=list)
    #: how the selection part was made (None: the rows are selected on the data they report)
    select_on: str | None = None
    selection_doc_ids: list = field(default_factory=list)
    report_doc_ids: list = field(default_factory=list)
    held_out: HeldOut | None = None
    #: the same search on the report part: the subset selected on the data it reports
    optimistic: GridResult | None = None
    #: optimistic best minus the held-out subset, paired on the report part
    selection_bias: dict | None = None

    @property
    def best(self) -> GridRow | None:
        return self.rows[0] if self.rows and not math.isnan(self.rows[0].metric) else None

    @property
    def tied_with_best(self) -> list[tuple[str, ...]]:
        """The subsets within noise of the best (the best first), or [] when the best is unique."""
        tied = [r.subset for r in self.rows if r.tied]
        return tied if len(tied) > 1 else []

    @property
    def label(self) -> str:
        return "selection part" if self.select_on else OPTIMISTIC

    def table(self) -> str:
        """A ranked text table: '*' marks a unique best (Table 2's subscript); '=' marks every subset
        within noise of the best when there is more than one."""
        head = (
            f"{'rank':>5}  {'subset':<12} {self.metric_name:>9}  {'95% CI':<17} {'docs':>5} {'scored':>6} "
            f"{'input_err':>9} {'parse_fail':>10} {'api_fail':>8} {'round':>5}  {'vs best [95% CI]'}"
        )
        how = self.strategy if self.strategy == "exhaustive" else f"halving, eta {self.eta}, seed {self.seed}"
        part = f"selection part ({self.select_on})" if self.select_on else OPTIMISTIC
        lines = [
            f"grid search on {self.task}: {len(self.rows)} subsets, {self.n_docs} docs ({how}; {part})",
            head,
        ]
        tied = set(self.tied_with_best)
        for i, r in enumerate(self.rows, start=1):
            mark = "=" if r.subset in tied else ("*" if i == 1 and self.best is not None else " ")
            vs = (
                ""
                if math.isnan(r.diff_to_best)
                else f"{r.diff_to_best:+.4f} [{r.diff_ci_low:+.4f}, {r.diff_ci_high:+.4f}]"
            )
            rnd = "" if r.round is None else str(r.round)
            lines.append(
                f"{mark}{i:>4}  {'+'.join(r.subset):<12} {r.metric:>9.4f}  [{r.ci_low:.4f}, {r.ci_high:.4f}] "
                f"{r.n_docs:>5} {r.n_scored:>6} {r.input_errors:>9} {r.parse_failures:>10} {r.api_failures:>8} "
                f"{rnd:>5}  {vs}"
            )
        if tied:
            lines.append(
                f"= {len(tied)} subsets tied with the best: the paired bootstrap 95% CI of their difference "
                "contains 0"
            )
        for st in self.rounds:
            lines.append(
                f"round {st.round}: {st.subsets} subsets on {st.n_docs} docs ({st.n_groups} groups), kept "
                f"{st.kept}; judge calls {st.judge_calls}, cache hits {st.judge_cache_hits}"
                + (f" ({st.note})" if st.note else "")
            )
        if self.held_out is not None:
            h = self.held_out
            lines.append(
                f"selected on the selection part, reported on the other {h.n_docs} docs: {'+'.join(h.subset)} "
                f"{self.metric_name} {h.metric:.4f} [{h.ci_low:.4f}, {h.ci_high:.4f}] (scored {h.n_scored})"
            )
        if self.optimistic is not None and self.optimistic.best is not None:
            o = self.optimistic.best
            line = (
                f"{OPTIMISTIC} (the report part): {'+'.join(o.subset)} {o.metric:.4f} "
                f"[{o.ci_low:.4f}, {o.ci_high:.4f}]"
            )
            if self.selection_bias is not None:
                b = self.selection_bias
                line += f"; optimistic - held out: {b['diff']:+.4f} [{b['ci_low']:+.4f}, {b['ci_high']:+.4f}]"
            lines.append(line)
        lines.append(
            f"specialist invocations: {self.specialist_invocations} (unique inputs: {self.unique_inputs}); "
            f"judge calls: {self.judge_calls}, judge cache hits: {self.judge_cache_hits}"
        )
        return "\n".join(lines)

    def to_json(self) -> dict:
        out = {
            "task": self.task,
            "metric": self.metric_name,
            "n_docs": self.n_docs,
            "strategy": self.strategy,
            "eta": self.eta,
            "seed": self.seed,
            "label": self.label,
            "best": "+".join(self.best.subset) if self.best else None,
            "tied_with_best": ["+".join(s) for s in self.tied_with_best],
            "rows": [r.to_json() for r in self.rows],
            "rounds": [st.__dict__ for st in self.rounds],
            "specialist_invocations": self.specialist_invocations,
            "unique_inputs": self.unique_inputs,
            "judge_calls": self.judge_calls,
            "judge_cache_hits": self.judge_cache_hits,
        }
        if self.select_on:
            out["split"] = {
                "select_on": self.select_on,
                "selection_doc_ids": self.selection_doc_ids,
                "report_doc_ids": self.report_doc_ids,
            }
            out["held_out"] = self.held_out.to_json() if self.held_out else None
            out["optimistic"] = self.optimistic.to_json() if self.optimistic else None
            out["selection_bias"] = self.selection_bias
        return out


def split_docs(docs: list[dict], fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """(selection, report) doc indices: a seeded ``fraction`` of the groups (prompts or sets; a group's
    docs stay together) to select on, the other groups to report on; each keeps the docs' order."""
    if not 0.0 < fraction < 1.0:
        raise UsageError(f"the selection fraction must be in (0, 1), got {fraction}")
    groups = list(dict.fromkeys(d["group"] for d in docs))
    if len(groups) < 2:
        raise UsageError(f"a split needs at least 2 groups (prompts/sets); the docs have {len(groups)}")
    order = np.random.default_rng(seed).permutation(len(groups))
    k = min(len(groups) - 1, max(1, round(fraction * len(groups))))
    chosen = {groups[int(j)] for j in order[:k]}
    sel = [i for i, d in enumerate(docs) if d["group"] in chosen]
    return sel, [i for i, d in enumerate(docs) if d["group"] not in chosen]


def halving_schedule(n_subsets: int, n_groups: int, eta: int, min_groups: int) -> list[int]:
    """Groups in the sample of each halving round: the last sees all ``n_groups``, each earlier one
    1/``eta`` as many (at least ``min_groups``); as many rounds as keeping ceil(k/eta) takes to get to 1."""
    if eta < 2:
        raise UsageError(f"eta must be at least 2, got {eta}")
    rounds, k = 0, n_subsets
    while k > 1:
        rounds, k = rounds + 1, math.ceil(k / eta)
    rounds = max(rounds, 1)
    return [
        min(n_groups, max(min_groups, math.ceil(n_groups / eta ** (rounds - 1 - r)))) for r in range(rounds)
    ]


def halving_calls(
    n_subsets: int, n_docs: int, n_groups: int, eta: int = DEFAULT_ETA, min_groups: int = DEFAULT_MIN_GROUPS
) -> tuple[int, list[dict]]:
    """Judge calls of ``grid --strategy halving`` without early stops (an upper bound): each round judges
    its surviving subsets on the docs its sample adds (earlier answers are reused); survivors
    ceil(k / eta); the samples are ``halving_schedule``'s, docs in proportion to the groups sampled."""
    alive, prev_docs, total, rounds = n_subsets, 0, 0, []
    for groups in halving_schedule(n_subsets, n_groups, eta, min_groups):
        docs = n_docs if groups >= n_groups else round(n_docs * groups / n_groups)
        calls = alive * (docs - prev_docs)
        rounds.append({"subsets": alive, "groups": groups, "docs": docs, "calls": calls})
        total, prev_docs, alive = total + calls, docs, max(1, math.ceil(alive / eta))
    return total, rounds


class _Evaluator:
    """The grid's view of the evaluation loop: one variant per subset, every subset judged by the same
    judge (backend, caches, pool shared) with those specialists; the pre-pass runs every applicable one."""

    def __init__(self, judge: Any, task: str, docs: list[dict], n_resamples: int, seed: int) -> None:
        from lmms_eval_autorater.specialists.registry import applicable

        self.loop = EvaluationLoop(judge, task, docs, n_resamples=n_resamples, seed=seed)
        self.judge, self.task, self.docs, self.seed = judge, task, docs, seed
        self.paradigm, self.n_resamples = self.loop.paradigm, n_resamples
        self.codes = applicable(self.loop.info.task_kind)
        self.loop.prepass(judge.with_tools(self.codes), self.codes)  # creates the shared specialist pool
        self.unique, self.invocations = self.loop.unique, self.loop.invocations

    def calls(self) -> tuple[int, int]:
        return self.loop.calls()

    def records(self, subset: tuple[str, ...], idx: list[int]) -> list[dict]:
        return self.loop.records(subset, self.judge.with_tools(list(subset)), idx)

    def metric(self, subset: tuple[str, ...], idx: list[int]) -> float:
        return headline(self.paradigm, self.records(subset, idx), 0)[0]

    def row(self, subset: tuple[str, ...], idx: list[int], rnd: int | None) -> GridRow:
        value, low, high, s = headline(self.paradigm, self.records(subset, idx), self.n_resamples)
        return GridRow(subset, value, low, high, **counts(s), n_docs=len(idx), round=rnd)

    def paired(self, a: tuple[str, ...], b: tuple[str, ...], idx: list[int]):
        """``metric(a) - metric(b)`` on the docs ``idx``, prompt/set-clustered paired bootstrap."""
        n = max(self.n_resamples, 1)
        return paired(self.paradigm, self.records(a, idx), self.records(b, idx), n, self.seed)


def _ranked(ev: _Evaluator, cands: list[tuple[str, ...]], idx: list[int]) -> list[tuple[float, tuple]]:
    """(metric, subset) best first; nan last; equal metrics keep registry order."""
    scored = [(ev.metric(s, idx), s) for s in cands]
    return sorted(scored, key=lambda ms: nan_last(ms[0]))


def _progress(items: list, desc: str):
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="subset", leave=False, disable=None)


def _search(
    ev: _Evaluator,
    idx: list[int],
    strategy: str,
    *,
    max_size: int,
    eta: int,
    min_groups: int,
) -> tuple[list[GridRow], list[RoundStat]]:
    """The rows (best first, ties marked) and rounds of one search over the docs ``idx``."""
    cands = subsets(ev.codes, max_size)
    rounds: list[RoundStat] = []
    if strategy == "exhaustive":
        calls0, hits0 = ev.calls()
        rows = [ev.row(s, idx, None) for s in _progress(cands, f"grid {ev.task}")]
        rows.sort(key=lambda r: nan_last(r.metric))
        calls1, hits1 = ev.calls()
        n_groups = len({ev.docs[i]["group"] for i in idx})
        rounds.append(
            RoundStat(0, n_groups, len(idx), len(cands), len(cands), calls1 - calls0, hits1 - hits0)
        )
        _mark_ties(ev, rows, idx)
        return rows, rounds
    if strategy != "halving":
        raise UsageError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")

    groups = list(dict.fromkeys(ev.docs[i]["group"] for i in idx))
    order = [groups[int(j)] for j in np.random.default_rng(ev.seed).permutation(len(groups))]
    rank_of = {g: k for k, g in enumerate(order)}
    schedule = halving_schedule(len(cands), len(groups), eta, min_groups)
    last: dict[tuple[str, ...], tuple[int, list[int]]] = {}  # subset -> (round, docs) it was last judged on
    alive = list(cands)
    final_idx = idx
    for rnd, n_groups in enumerate(schedule):
        sample = [i for i in idx if rank_of[ev.docs[i]["group"]] < n_groups]
        calls0, hits0 = ev.calls()
        for s in _progress(alive, f"grid {ev.task} round {rnd}"):
            ev.records(s, sample)
            last[s] = (rnd, sample)
        ranked = _ranked(ev, alive, sample)
        calls1, hits1 = ev.calls()
        full = n_groups == len(groups)
        note, keep = "", max(1, math.ceil(len(alive) / eta))
        if full:
            keep, note = len(alive), "all docs: ranked as they are"
        elif n_groups >= EARLY_STOP_MIN_GROUPS and all(
            ev.paired(ranked[0][1], s, sample).ci_low > 0 for _, s in ranked[1:]
        ):  # the best is ahead of every other by more than the CI of the difference
            keep, note = 1, "the best is ahead of the rest by more than their CIs"
        rounds.append(
            RoundStat(rnd, n_groups, len(sample), len(alive), keep, calls1 - calls0, hits1 - hits0, note)
        )
        alive = [s for _, s in ranked[:keep]]
        if full:
            final_idx = sample
            break
        if keep == 1:  # stopped early: the winner is judged on every doc, so its row reports them all
            calls0, hits0 = ev.calls()
            ev.records(alive[0], idx)
            last[alive[0]] = (rnd + 1, idx)
            calls1, hits1 = ev.calls()
            rounds.append(
                RoundStat(
                    rnd + 1,
                    len(groups),
                    len(idx),
                    1,
                    1,
                    calls1 - calls0,
                    hits1 - hits0,
                    "the winner on all docs",
                )
            )
            break
    rows = [ev.row(s, docs, rnd) for s, (rnd, docs) in last.items()]
    # later rounds first (they survived longer), then by metric; registry order breaks exact ties
    rows.sort(key=lambda r: (-(r.round or 0), *nan_last(r.metric)))
    top_round = rows[0].round
    finalists = [r for r in rows if r.round == top_round]
    _mark_ties(ev, finalists, final_idx if len(finalists) > 1 else idx)
    return rows, rounds


def _mark_ties(ev: _Evaluator, rows: list[GridRow], idx: list[int]) -> None:
    """Mark the rows (best first, all judged on ``idx``) within noise of the best, by a paired bootstrap."""
    if not rows or math.isnan(rows[0].metric):
        return
    best = rows[0]
    best.tied, best.diff_to_best, best.diff_ci_low, best.diff_ci_high = True, 0.0, 0.0, 0.0
    for r in rows[1:]:
        d = ev.paired(r.subset, best.subset, idx)
        r.diff_to_best, r.diff_ci_low, r.diff_ci_high = d.diff, d.ci_low, d.ci_high
        r.tied = d.within_noise and not math.isnan(r.metric)


def run_grid(
    judge: Any,
    task: str,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    limit: int | None = None,
    n_resamples: int = 1000,
    docs: list[dict] | None = None,
    strategy: str = "exhaustive",
    select_on: float | None = None,
    selection_docs: list[dict] | None = None,
    selection_split: str = "separate",
    seed: int = 0,
    eta: int = DEFAULT_ETA,
    min_groups: int = DEFAULT_MIN_GROUPS,
) -> GridResult:
    """Search the subsets for ``judge`` (from ``judges.factory.build_judge``) on ``task``.

    ``strategy``: "exhaustive" (every subset on every doc) or "halving". ``select_on`` (a fraction of
    the groups, seeded) or ``selection_docs`` (the ``selection_split``, e.g. validation; ``docs`` are
    then reported on):
    choose on the selection part, report the winner on the rest, and run the same search on the rest
    for the optimistic number. Images are checked once: a doc whose image does not decode is an input
    error in every row and is never sent. Each subset's judge shares the backend, caches and pool.
    """
    info = task_info(task)
    if strategy not in STRATEGIES:
        raise UsageError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if select_on is not None and selection_docs is not None:
        raise UsageError("give select_on (a fraction) or selection_docs (a split), not both")
    if docs is None:
        from lmms_eval_autorater.tasks.catalog import build_docs

        docs = build_docs(task)
    if limit is not None:
        docs = docs[:limit]
        selection_docs = None if selection_docs is None else selection_docs[:limit]
    if not docs:
        raise UsageError(f"task {task!r} has no docs")
    how = None
    if selection_docs is not None:
        if not selection_docs:
            raise UsageError(f"task {task!r}: the selection split has no docs")
        all_docs = list(selection_docs) + list(docs)
        sel = list(range(len(selection_docs)))
        rep = list(range(len(selection_docs), len(all_docs)))
        how = f"the {selection_split} split"
    else:
        all_docs = list(docs)
        sel, rep = list(range(len(all_docs))), []
        if select_on is not None:
            sel, rep = split_docs(all_docs, select_on, seed)
            how = f"{select_on:g} of the groups, seed {seed}"
    ev = _Evaluator(judge, task, all_docs, n_resamples, seed)
    calls0, hits0 = ev.calls()
    kw = {"max_size": max_size, "eta": eta, "min_groups": min_groups}
    rows, rounds = _search(ev, sel, strategy, **kw)
    result = GridResult(
        task=task,
        metric_name=info.metric,
        rows=rows,
        n_docs=len(sel),
        strategy=strategy,
        eta=eta,
        seed=seed,
        rounds=rounds,
        select_on=how,
    )
    if rep and result.best is not None:
        result.selection_doc_ids = [all_docs[i]["doc_id"] for i in sel]
        result.report_doc_ids = [all_docs[i]["doc_id"] for i in rep]
        w = ev.row(result.best.subset, rep, None)
        result.held_out = HeldOut(
            w.subset,
            w.metric,
            w.ci_low,
            w.ci_high,
            len(rep),
            w.n_scored,
            w.input_errors,
            w.parse_failures,
            w.api_failures,
        )
        o_calls, o_hits = ev.calls()
        o_rows, o_rounds = _search(ev, rep, strategy, **kw)
        o_calls1, o_hits1 = ev.calls()
        result.optimistic = GridResult(
            task=task,
            metric_name=info.metric,
            rows=o_rows,
            n_docs=len(rep),
            strategy=strategy,
            eta=eta,
            seed=seed,
            rounds=o_rounds,
            judge_calls=o_calls1 - o_calls,
            judge_cache_hits=o_hits1 - o_hits,
        )
        if result.optimistic.best is not None:
            result.selection_bias = ev.paired(result.optimistic.best.subset, w.subset, rep).to_json()
    calls1, hits1 = ev.calls()
    result.specialist_invocations = ev.invocations
    result.unique_inputs = ev.unique
    result.judge_calls, result.judge_cache_hits = calls1 - calls0, hits1 - hits0
    return result


def write(result: GridResult, path: str | Path) -> None:
    """Save the grid as JSON."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result.to_json(), indent=2))


# -- the ``grid`` command ------------------------------------------------------------------------

HELP = "search the subsets of 1..3 specialists for a judge on a task (halving or exhaustive, held out)"


def _fraction_or_split(value: str) -> float | str:
    try:
        f = float(value)
    except ValueError:
        return value
    if not 0.0 < f < 1.0:
        import argparse

        raise argparse.ArgumentTypeError(f"a selection fraction must be in (0, 1), got {value}")
    return f


def add_arguments(parser: Any) -> None:
    """The ``grid`` command's arguments."""
    from lmms_eval_autorater.judges.factory import judge_names

    parser.add_argument("--model", required=True, choices=judge_names(), help="the judge")
    parser.add_argument("--model_args", default="", help="as for lmms-eval, without tools=")
    parser.add_argument("--task", required=True, help="psr, imagereward_pair, imagereward_point or aigiqa")
    parser.add_argument("--max_size", type=int, default=DEFAULT_MAX_SIZE, help="subsets of 1..max_size")
    parser.add_argument(
        "--limit", type=int, default=None, help="first N docs only (for trials, not for results)"
    )
    parser.add_argument("--n_resamples", type=int, default=1000, help="bootstrap resamples for the 95%% CI")
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="halving",
        help="halving: successive halving over the subsets (a fraction of the calls); exhaustive: all of them",
    )
    parser.add_argument(
        "--select_on",
        type=_fraction_or_split,
        default=None,
        metavar="FRACTION|SPLIT",
        help="choose the subset on this share of the prompts/sets (seeded) or on this split (validation) "
        "and report it on the rest; without it the grid is selected on the data it reports (optimistic)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and of the halving samples")
    parser.add_argument("--eta", type=int, default=DEFAULT_ETA, help="halving keeps 1/eta per round")
    parser.add_argument(
        "--min_groups", type=int, default=DEFAULT_MIN_GROUPS, help="prompts/sets in the first halving round"
    )
    parser.add_argument("--output", default=None, help="write the ranked grid as JSON here")


def _split_docs(task: str, split: str) -> tuple[list[dict], list[dict]]:
    """(selection docs of ``split``, the task's docs), or a ``UsageError`` where the split is not there."""
    from lmms_eval_autorater.tasks import catalog

    if split == "test":
        raise UsageError("--select_on test: the test split is what the grid reports on; select on another")
    try:
        selection = catalog.build_docs(task, split=split)
    except ValueError as exc:  # the task has no such split
        raise UsageError(f"--select_on {split}: {exc}") from exc
    return selection, catalog.build_docs(task)


def run(args: Any) -> int:
    """Run the ``grid`` command; returns the exit code."""
    from lmms_eval_autorater.judges.args import parse_model_args
    from lmms_eval_autorater.judges.factory import build_judge

    if args.task not in GRID_TASKS:
        raise UsageError(f"--task must be one of {', '.join(GRID_TASKS)}; got {args.task!r}")
    model_args = parse_model_args(args.model_args)
    if "tools" in model_args:
        raise UsageError("--model_args must not set tools: the grid chooses the subsets")
    if args.eta < 2 or args.min_groups < 1:
        raise UsageError(f"--eta must be >= 2 and --min_groups >= 1; got {args.eta} and {args.min_groups}")
    select_on = getattr(args, "select_on", None)
    docs = selection_docs = None
    split = "separate"
    if isinstance(select_on, str):
        selection_docs, docs = _split_docs(args.task, select_on)
        split, select_on = select_on, None
    judge = build_judge(args.model, model_args)
    result = run_grid(
        judge,
        args.task,
        max_size=args.max_size,
        limit=args.limit,
        n_resamples=args.n_resamples,
        docs=docs,
        strategy=args.strategy,
        select_on=select_on,
        selection_docs=selection_docs,
        selection_split=split,
        seed=args.seed,
        eta=args.eta,
        min_groups=args.min_groups,
    )
    print(result.table())
    if args.output:
        write(result, args.output)
    return 0
