"""``lmms-eval-autorater arena``: rank image generators by pairwise AutoRater judgements.

    lmms-eval-autorater arena --input sdxl.jsonl --input flux.jsonl --input mine.jsonl \\
        --model autorater_gpt4o --output arena/

Each ``--input`` is one generator's generations file (JSONL, see ``generations.jsonl``), named by the file's
stem or by the ``--name`` given in the same position. Rows are matched across generators by ``id``; every id
must have the same prompt (and the same source image, for edits) in every file that holds it, or the command
fails naming the id and the two files before anything is judged. Every two generators are compared on every
id both hold (``--pairs sample:N``: N pairs drawn per id, seeded, for many generators), judged in both
image orders (the judge's ``swap=true``; a verdict that flips with the order is a tie, and each pair's flip
rate is reported) unless ``--one-order``. Failed judgements (input errors, parse failures, API failures) are
counted per pair and left out, never guessed; comparisons not sent because ``max_cost_usd`` was reached are
counted apart as ``budget_skipped`` (neither judged nor failed).

Ratings are Bradley-Terry (``metrics.bradley_terry``, fitted by ``choix``) on an Elo-like scale with 95%
percentile-bootstrap CIs over prompts. ``DIR/arena.json`` holds everything (with its ``conventions``),
``DIR/arena.md`` the tables, ``DIR/arena.png`` the chart, ``DIR/disagreements.html`` the comparisons whose
two orders disagreed (self-contained: images embedded). A short ranked table goes to stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmms_eval_autorater.generations.score import add_root_arguments
from lmms_eval_autorater.judges.factory import judge_names
from lmms_eval_autorater.vocabulary import FAILURE_STATUSES

HELP = "rank generators by pairwise AutoRater judgements (Bradley-Terry ratings, bootstrap CIs)"

#: one virtual tie between every two rated generators (see metrics.bradley_terry)
PRIOR_TIES = 1.0
CONFIDENCE = 0.95


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options."""
    parser.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="FILE",
        help="one generator's generations JSONL (id, prompt, image [+ source]); repeat, at least twice",
    )
    parser.add_argument(
        "--name",
        action="append",
        default=None,
        metavar="NAME",
        help="the generators' names, in --input order (default: each file's stem)",
    )
    parser.add_argument("--model", required=True, choices=judge_names(), help="the judge")
    parser.add_argument("--model_args", default="", help="as for lmms-eval, without swap= (see --one-order)")
    parser.add_argument(
        "--output", required=True, metavar="DIR", help="folder for arena.json/.md/.png, disagreements.html"
    )
    parser.add_argument(
        "--pairs",
        default="all",
        help="'all' (every two generators on every shared id) or 'sample:N' (N pairs drawn per id, seeded)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the pair sample and of the bootstrap")
    parser.add_argument(
        "--one-order",
        dest="one_order",
        action="store_true",
        help="judge each comparison once (first generator as image 1) instead of in both orders",
    )
    parser.add_argument("--n_resamples", type=int, default=1000, help="bootstrap resamples for the 95%% CI")
    add_root_arguments(parser)


# -- planning ------------------------------------------------------------------------------------


def parse_pairs(text: str) -> int | None:
    """``all`` -> None; ``sample:N`` -> N (>= 1); anything else is an error."""
    from lmms_eval_autorater.errors import UsageError

    value = str(text).strip().lower()
    if value == "all":
        return None
    kind, _, number = value.partition(":")
    if kind == "sample":
        try:
            n = int(number)
        except ValueError:
            n = 0
        if n >= 1:
            return n
    raise UsageError(f"--pairs must be 'all' or 'sample:N' with N >= 1; got {text!r}")


@dataclass(frozen=True)
class Match:
    """One comparison to judge: generators ``a`` < ``b`` (indices in --input order) on prompt ``id``."""

    id: str
    a: int
    b: int


def _same_file(p: str | None, q: str | None) -> bool:
    if p == q:
        return True
    if p is None or q is None:
        return False

    def digest(path: str) -> str:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()

    return digest(p) == digest(q)


def load_generators(
    inputs: list[str], names: list[str] | None, *, root: str | None = None, allow_outside_root: bool = False
) -> tuple[list[str], list[dict]]:
    """The generators' names and rows (id -> row, in file order); every problem before anything is judged."""
    from lmms_eval_autorater.errors import DataError, UsageError
    from lmms_eval_autorater.generations.jsonl import generator_name, read_generations

    if len(inputs) < 2:
        raise UsageError(f"the arena needs at least two --input files (one per generator); got {len(inputs)}")
    if names is not None and len(names) != len(inputs):
        raise UsageError(
            f"--name given {len(names)} times for {len(inputs)} --input files: give one per input, or none"
        )
    gen_names = [generator_name(p, names[k] if names else None) for k, p in enumerate(inputs)]
    seen: dict[str, str] = {}
    for name, path in zip(gen_names, inputs):
        if name in seen:
            raise UsageError(
                f"two generators are named {name!r} ({seen[name]} and {path}): name them with --name"
            )
        seen[name] = path
    rows = [
        {r.id: r for r in read_generations(p, root=root, allow_outside_root=allow_outside_root)}
        for p in inputs
    ]
    first: dict[str, int] = {}  # id -> the first generator holding it
    for k, by_id in enumerate(rows):
        for row_id, row in by_id.items():
            if row_id not in first:
                first[row_id] = k
                continue
            j = first[row_id]
            other = rows[j][row_id]
            if row.prompt != other.prompt:
                raise DataError(
                    f"id {row_id!r}: the prompt differs between {inputs[j]} (line {other.line}: {other.prompt!r}) "
                    f"and {inputs[k]} (line {row.line}: {row.prompt!r}); rows are matched by id"
                )
            if not _same_file(row.source, other.source):
                raise DataError(
                    f"id {row_id!r}: the source image differs between {inputs[j]} (line {other.line}: "
                    f"{other.source}) and {inputs[k]} (line {row.line}: {row.source}); rows are matched by id"
                )
    return gen_names, rows


def plan_matches(rows: list[dict], sample: int | None = None, seed: int = 0) -> list[Match]:
    """The comparisons: per id (in order of first appearance), every two generators holding it, or
    ``sample`` of those pairs drawn with a generator seeded by (seed, id) (so an id's draw does not depend
    on the other ids)."""
    import numpy as np

    order: list[str] = []
    seen: set[str] = set()
    for by_id in rows:
        for row_id in by_id:
            if row_id not in seen:
                seen.add(row_id)
                order.append(row_id)
    out: list[Match] = []
    for row_id in order:
        holders = [k for k, by_id in enumerate(rows) if row_id in by_id]
        pairs = list(itertools.combinations(holders, 2))
        if sample is not None and sample < len(pairs):
            key = int.from_bytes(hashlib.sha256(row_id.encode("utf-8")).digest()[:8], "big")
            rng = np.random.default_rng([seed, key])
            pairs = [pairs[i] for i in sorted(rng.choice(len(pairs), size=sample, replace=False).tolist())]
        out.extend(Match(row_id, a, b) for a, b in pairs)
    return out


# -- tallying ------------------------------------------------------------------------------------


@dataclass
class PairTally:
    a: int
    b: int
    a_wins: int = 0
    b_wins: int = 0
    ties: int = 0
    flips: int = 0
    failures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAILURE_STATUSES, 0))
    #: comparisons not sent because ``max_cost_usd`` was reached (neither judged nor failed)
    budget_skipped: int = 0
    ids: set[str] = field(default_factory=set)

    @property
    def judged(self) -> int:
        return self.a_wins + self.b_wins + self.ties

    @property
    def n_failures(self) -> int:
        return sum(self.failures.values())


@dataclass
class Tally:
    """What the judgements say: per pair of generators, the comparison list, the disagreements."""

    pairs: dict[tuple[int, int], PairTally]
    comparisons: list[tuple[int, int, int]]
    groups: list[str]
    disagreements: list[tuple[Match, Any]]
    first_failure: str | None = None


def tally(matches: list[Match], results: list, n_gens: int) -> Tally:
    """Count wins, ties, flips, failures and budget skips per pair; failures and skips are left out of
    everything else."""
    pairs = {(a, b): PairTally(a, b) for a, b in itertools.combinations(range(n_gens), 2)}
    comps: list[tuple[int, int, int]] = []
    groups: list[str] = []
    disagreements = []
    first_failure = None
    for m, res in zip(matches, results):
        p = pairs[(m.a, m.b)]
        p.ids.add(m.id)
        if res.status == "budget_skipped":
            p.budget_skipped += 1
            continue
        if res.status != "ok" or res.preferred not in (0, 1, 2):
            status = res.status if res.status in FAILURE_STATUSES else "parse_failure"
            p.failures[status] += 1
            first_failure = first_failure or f"{m.id}: {res.status}: {res.error}"
            continue
        if res.preferred == 1:
            p.a_wins += 1
        elif res.preferred == 2:
            p.b_wins += 1
        else:
            p.ties += 1
        if res.meta.get("swap_flipped") is True:
            p.flips += 1
            disagreements.append((m, res))
        comps.append((m.a, m.b, int(res.preferred)))
        groups.append(m.id)
    return Tally(pairs, comps, groups, disagreements, first_failure)


def rate(
    n_gens: int, t: Tally, n_resamples: int, seed: int
) -> tuple[list[float | None], list[float | None], list[float | None]]:
    """Elo-like Bradley-Terry ratings and 95% CIs per generator; None for a generator with no usable
    comparison (it is left out of the fit, so it does not move the others)."""
    from lmms_eval_autorater.metrics.bradley_terry import ELO_SCALE, bootstrap_ratings, fit_ratings

    rated = sorted({i for a, b, _ in t.comparisons for i in (a, b)})
    index = {g: k for k, g in enumerate(rated)}
    comps = [(index[a], index[b], o) for a, b, o in t.comparisons]
    ratings: list[float | None] = [None] * n_gens
    lows: list[float | None] = [None] * n_gens
    highs: list[float | None] = [None] * n_gens
    if not rated:
        return ratings, lows, highs
    kw = dict(ties="half", prior=PRIOR_TIES, scale=ELO_SCALE)
    point = fit_ratings(len(rated), comps, **kw)
    low, high = bootstrap_ratings(
        len(rated), comps, t.groups, n_resamples=n_resamples, confidence=CONFIDENCE, seed=seed, **kw
    )
    for g, k in index.items():
        ratings[g] = float(point[k])
        lows[g] = float(low[k]) if math.isfinite(low[k]) else None
        highs[g] = float(high[k]) if math.isfinite(high[k]) else None
    return ratings, lows, highs


# -- outputs -------------------------------------------------------------------------------------


def conventions(both_orders: bool, sample: int | None, n_resamples: int, seed: int) -> dict[str, str]:
    """What every number of the output means (written into arena.json and arena.md)."""
    return {
        "matching": "rows are matched across generators by id; an id is judged for every two generators "
        "that hold it (same prompt and source required); n_prompts counts the ids judged at least once",
        "pairs": "every pair of generators on every shared id"
        if sample is None
        else f"sample:{sample}: {sample} generator pairs per id, drawn without replacement by a generator "
        f"seeded with (seed={seed}, the id's sha256), so an id's draw does not depend on the other ids",
        "orders": "both: each comparison is judged twice, the images in both orders (swap=true); a verdict "
        "that flips with the order counts as a tie and as a flip"
        if both_orders
        else "one: each comparison is judged once, generator a (earlier --input) as image 1",
        "flip_rate": "flips / usable comparisons of the pair (null when judged in one order or none usable)",
        "ties": "a tie counts as half a win for each side in the Bradley-Terry fit",
        "rating": "Bradley-Terry log-strength times 400/ln(10) (Elo-like points: a 400-point gap is 10:1 "
        "odds), centred at mean 0 over the rated generators; the maximum of the likelihood plus a prior of "
        f"{PRIOR_TIES:g} virtual tie between every two rated generators (keeps ratings finite when a "
        "generator wins or loses everything); fitted by choix.ilsr_pairwise_dense; null for a generator "
        "with no usable comparison",
        "ci": f"{CONFIDENCE:.0%} percentile bootstrap over prompts: ids drawn with replacement (all their "
        f"comparisons kept) and refitted, {n_resamples} resamples, seed {seed}",
        "failures": "input errors, parse failures and API failures are counted per pair (failures, "
        "failures_by_status) and left out of wins, ties, flips and ratings; never guessed",
        "budget_skipped": "comparisons not sent because max_cost_usd was reached, counted per pair and "
        "generator (budget_skipped), neither judged nor failed; a rerun with a larger max_cost_usd "
        "continues from the response cache",
        "wins_losses_ties": "per generator, summed over its pairs",
    }


def _fmt(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _ci(lo: float | None, hi: float | None) -> str:
    return "n/a" if lo is None or hi is None else f"[{lo:.1f}, {hi:.1f}]"


def ranked_table(gens: list[dict]) -> str:
    """The stdout table: rank, generator, rating, CI, W/T/L."""
    width = max([len("generator"), *(len(g["name"]) for g in gens)])
    head = f"{'rank':>4}  {'generator':<{width}}  {'rating':>7}  {'95% CI':>17}  {'W':>5} {'T':>5} {'L':>5}"
    lines = [head]
    for g in gens:
        lines.append(
            f"{g['rank'] or '-':>4}  {g['name']:<{width}}  {_fmt(g['rating']):>7}  "
            f"{_ci(g['ci_low'], g['ci_high']):>17}  {g['wins']:>5} {g['ties']:>5} {g['losses']:>5}"
        )
    return "\n".join(lines)


def markdown(report: dict) -> str:
    """``arena.md``: the ranked table, the pairs, the conventions (names through ``cells.md_cell``)."""
    from lmms_eval_autorater.cells import md_cell

    lines = [
        "# Arena",
        "",
        f"Judge {md_cell(report['judge'])}; {len(report['generators'])} generators, {report['n_prompts']} prompts, "
        f"{report['n_comparisons']} usable comparisons, {report['n_failures']} failed, "
        f"{report['n_budget_skipped']} not sent (budget_skipped); "
        f"orders: {report['orders']}.",
        "",
        "| rank | generator | rating | 95% CI | wins | ties | losses | failures |",
        "|---:|---|---:|---|---:|---:|---:|---:|",
    ]
    for g in report["generators"]:
        lines.append(
            f"| {g['rank'] or '-'} | {md_cell(g['name'])} | {_fmt(g['rating'])} | {_ci(g['ci_low'], g['ci_high'])} | "
            f"{g['wins']} | {g['ties']} | {g['losses']} | {g['failures']} |"
        )
    lines += [
        "",
        "## Pairs",
        "",
        "| a | b | a wins | b wins | ties | failures | flip rate |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for p in report["pairs"]:
        flip = "n/a" if p["flip_rate"] is None else f"{p['flip_rate']:.1%}"
        lines.append(
            f"| {md_cell(p['a'])} | {md_cell(p['b'])} | {p['a_wins']} | {p['b_wins']} | {p['ties']} | {p['failures']} | {flip} |"
        )
    lines += ["", "## Conventions", ""]
    lines += [f"- **{k}**: {v}" for k, v in report["conventions"].items()]
    return "\n".join(lines) + "\n"


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def disagreement_items(t: Tally, names: list[str], rows: list[dict]) -> list[dict]:
    """The page's entries: per flipped comparison, what each order preferred and its analysis."""
    items = []
    for m, res in t.disagreements:
        row_a, row_b = rows[m.a][m.id], rows[m.b][m.id]
        swapped = res.meta.get("swapped_answer") or {}
        second = swapped.get("preferred_in_original_order")
        first = None if second is None else 3 - int(second)

        who = {1: names[m.a], 2: names[m.b]}

        items.append(
            {
                "id": m.id,
                "prompt": row_a.prompt,
                "source": row_a.source,
                "a": names[m.a],
                "b": names[m.b],
                "image_a": row_a.image,
                "image_b": row_b.image,
                "first": {"preferred": who.get(first, "?"), "analysis": res.analysis},
                "second": {"preferred": who.get(second, "?"), "analysis": swapped.get("analysis", "")},
            }
        )
    return items


def run(args: argparse.Namespace) -> int:
    """Run the command; raise on failure (the CLI prints one line)."""
    from lmms_eval_autorater.api import AutoRater
    from lmms_eval_autorater.errors import UsageError
    from lmms_eval_autorater.judges.args import parse_model_args
    from lmms_eval_autorater.redact import public_model_args
    from lmms_eval_autorater.reports.arena_page import write_disagreements_html, write_ratings_png

    sample = parse_pairs(args.pairs)
    if args.n_resamples < 1:
        raise UsageError(f"--n_resamples must be >= 1, got {args.n_resamples}")
    model_args = parse_model_args(args.model_args)
    if "swap" in model_args:
        raise UsageError(
            "--model_args must not set swap: the arena judges both orders (swap=true) unless --one-order"
        )
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--output {out_dir}: not a folder")
    names, rows = load_generators(
        list(args.input), args.name, root=args.root, allow_outside_root=args.allow_outside_root
    )  # every data problem fails here
    matches = plan_matches(rows, sample, args.seed)
    if not matches:
        raise UsageError(
            "no id is held by two of the --input files: nothing to compare (rows are matched by id)"
        )
    both = not args.one_order
    rater = AutoRater(args.model, progress=True, **model_args, swap=both)
    sources = [rows[m.a][m.id].source for m in matches]
    results = rater.compare_many(
        [rows[m.a][m.id].prompt for m in matches],
        [rows[m.a][m.id].image for m in matches],
        [rows[m.b][m.id].image for m in matches],
        sources if any(s is not None for s in sources) else None,
        ids=[f"{m.id} ({names[m.a]} vs {names[m.b]})" for m in matches],
    )
    t = tally(matches, results, len(names))
    if not t.comparisons:
        skipped = sum(p.budget_skipped for p in t.pairs.values())
        if skipped:
            raise UsageError(
                f"none of the {len(matches)} comparisons was judged: {skipped} not sent because max_cost_usd was "
                f"reached (budget_skipped), the others failed; first failure: {t.first_failure}"
            )
        raise UsageError(
            f"every one of the {len(matches)} comparisons failed (nothing was judged); first: {t.first_failure}"
        )
    ratings, lows, highs = rate(len(names), t, args.n_resamples, args.seed)

    gens = []
    for k, name in enumerate(names):
        wins = losses = ties = failures = skipped = 0
        for p in t.pairs.values():
            if k not in (p.a, p.b):
                continue
            mine, theirs = (p.a_wins, p.b_wins) if k == p.a else (p.b_wins, p.a_wins)
            wins, losses, ties, failures, skipped = (
                wins + mine,
                losses + theirs,
                ties + p.ties,
                failures + p.n_failures,
                skipped + p.budget_skipped,
            )
        gens.append(
            {
                "name": name,
                "input": str(Path(args.input[k]).resolve()),
                "rating": ratings[k],
                "ci_low": lows[k],
                "ci_high": highs[k],
                "wins": wins,
                "losses": losses,
                "ties": ties,
                "failures": failures,
                "budget_skipped": skipped,
                "n_prompts": len(rows[k]),
            }
        )
    gens.sort(key=lambda g: (g["rating"] is None, -(g["rating"] or 0.0)))
    rank = 0
    for g in gens:
        g["rank"] = None if g["rating"] is None else (rank := rank + 1)
    pairs = []
    for p in t.pairs.values():
        if not p.ids:
            continue
        pairs.append(
            {
                "a": names[p.a],
                "b": names[p.b],
                "n_prompts": len(p.ids),
                "a_wins": p.a_wins,
                "b_wins": p.b_wins,
                "ties": p.ties,
                "failures": p.n_failures,
                "failures_by_status": dict(p.failures),
                "budget_skipped": p.budget_skipped,
                "flips": p.flips if both else None,
                "flip_rate": p.flips / p.judged if both and p.judged else None,
            }
        )
    n_failures = sum(p.n_failures for p in t.pairs.values())
    n_skipped = sum(p.budget_skipped for p in t.pairs.values())
    report = {
        "judge": args.model,
        "model_args": public_model_args(model_args),
        "orders": "both" if both else "one",
        "pairs_mode": args.pairs,
        "seed": args.seed,
        "n_resamples": args.n_resamples,
        "n_prompts": len({m.id for m in matches}),
        "n_comparisons": len(t.comparisons),
        "n_failures": n_failures,
        "n_budget_skipped": n_skipped,
        "n_disagreements": len(t.disagreements),
        "generators": gens,
        "pairs": pairs,
        "conventions": conventions(both, sample, args.n_resamples, args.seed),
        "completer": rater.stats(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_text(out_dir / "arena.json", json.dumps(report, indent=2, default=str, allow_nan=False) + "\n")
    _write_text(out_dir / "arena.md", markdown(report))
    write_ratings_png(
        out_dir / "arena.png",
        [g["name"] for g in gens],
        [g["rating"] for g in gens],
        [g["ci_low"] for g in gens],
        [g["ci_high"] for g in gens],
        title=f"Arena ratings ({args.model}, {report['n_prompts']} prompts, {CONFIDENCE:.0%} CI)",
        xlabel="Bradley-Terry rating (Elo-like points, mean 0)",
    )
    note = (
        f"Judge {args.model}: comparisons whose verdict flipped when the images swapped places (counted as ties)."
        if both
        else f"Judge {args.model}, one order only (--one-order): no order disagreements can be seen."
    )
    write_disagreements_html(out_dir / "disagreements.html", disagreement_items(t, names, rows), note=note)
    print(ranked_table(gens))
    print(
        f"{report['n_comparisons']} comparisons on {report['n_prompts']} prompts "
        f"({'both orders' if both else 'one order'}), {n_failures} failed, "
        + (f"{n_skipped} not sent (budget_skipped: max_cost_usd reached), " if n_skipped else "")
        + f"{len(t.disagreements)} order "
        f"disagreements; wrote {out_dir}/arena.json, arena.md, arena.png, disagreements.html"
    )
    return 0
