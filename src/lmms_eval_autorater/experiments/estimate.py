"""The ``estimate`` command: the calls, tokens and USD of a run (or of a grid search) before anything is sent.

The numbers come from the judge core's cost model (``judges/estimate.py``), which drives the real judge
with a recording completer; this module builds the tasks' docs, plans a grid with the grid's own subsets
and halving schedule (``experiments/grid.py``: ``--max_size``, ``--eta``, ``--min_groups``), and prints.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from lmms_eval_autorater.errors import UsageError
from lmms_eval_autorater.experiments.grid import (
    DEFAULT_ETA,
    DEFAULT_MAX_SIZE,
    DEFAULT_MIN_GROUPS,
    STRATEGIES,
    halving_calls,
    subsets,
)
from lmms_eval_autorater.judges.estimate import PASSES, DocPlan, Estimator

HELP = "the calls, tokens and USD of a run before anything is sent"


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
            "stops (experiments.grid.halving_calls, the grid's own schedule): an upper bound"
        )
    if est.cfg.tools or grid:
        notes.append(
            "specialist sections: from the assessment cache where filled, else a typical output per code "
            "(SpecialistSpec.typical_value/typical_text); no specialist is run"
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
        raise UsageError("no task given")
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
    max_size: int = DEFAULT_MAX_SIZE,
    eta: int = DEFAULT_ETA,
    min_groups: int = DEFAULT_MIN_GROUPS,
    gpus: int | None = None,
) -> dict:
    """The plan of ``lmms-eval --model model --model_args ... --tasks ...``: calls, cached calls, tokens and
    USD (direct and batch), in total and per task under ``tasks`` (the ``estimate --json`` object).

    Nothing is sent and no specialist runs. ``docs`` (task -> docs) replaces building them; ``pool``
    replaces the factory's specialist pool (only its assessment cache is read). ``grid`` ("exhaustive" or
    "halving") estimates ``lmms-eval-autorater grid --strategy ...`` on each task instead: the grid's
    subsets of 1..``max_size`` specialists; halving as the exhaustive plan scaled by ``halving_calls``'
    share with ``eta`` and ``min_groups`` (an upper bound).
    """
    if grid is not None and grid not in STRATEGIES:
        raise UsageError(f"grid must be one of {', '.join(STRATEGIES)}, got {grid!r}")
    from lmms_eval_autorater.judges.factory import judge_config
    from lmms_eval_autorater.specialists.registry import applicable
    from lmms_eval_autorater.tasks.catalog import build_docs, task_info
    from lmms_eval_autorater.tasks.common import doc_to_request

    cfg = judge_config(model, model_args or {})
    if grid is not None and cfg.tools:
        raise UsageError("a grid chooses the subsets itself: leave tools= out of --model_args")
    est = Estimator(cfg, pool=pool)
    names = expand_tasks(tasks)
    plans: dict[str, list[DocPlan]] = {}
    scales: dict[str, float] = {}
    for name in names:
        task_docs = docs[name] if docs is not None and name in docs else build_docs(name)
        if limit is not None:
            task_docs = task_docs[:limit]
        reqs = [doc_to_request(d, name, i) for i, d in enumerate(task_docs)]
        cands = (
            None
            if grid is None
            else [list(s) for s in subsets(applicable(task_info(name).task_kind), max_size)]
        )
        plans[name] = est.plan(reqs, tool_sets=cands)
        scales[name] = 1.0
        good = [d for d, p in zip(task_docs, plans[name]) if p.input_error is None]
        if grid == "halving" and good and cands:
            h, _ = halving_calls(len(cands), len(good), len({d["group"] for d in good}), eta, min_groups)
            scales[name] = h / (len(cands) * len(good))
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
    if grid is not None:
        out["grid_settings"] = {"max_size": max_size, "eta": eta, "min_groups": min_groups}
    if gpus is not None and (cfg.tools or grid is not None):
        from lmms_eval_autorater.experiments.assess import prepass_estimate
        from lmms_eval_autorater.judges.factory import build_pool

        every_req = [
            doc_to_request(d, name, i)
            for name in names
            for i, d in enumerate(
                (docs[name] if docs is not None and name in docs else build_docs(name))[:limit]
            )
        ]
        tools = "all" if grid is not None or cfg.tools == "auto" else cfg.tools
        tools = tools if isinstance(tools, str) else "+".join(tools)
        out["prepass"] = prepass_estimate(pool or build_pool(cfg), every_req, tools, gpus)
    if not est.local:
        from lmms_eval_autorater.judges import prices

        listed = prices.lookup(est.backend.model)
        out["price"] = {
            "price_in": cfg.backend.get("price_per_mtok_in"),
            "price_out": cfg.backend.get("price_per_mtok_out"),
            "listed": None if listed is None else {**listed.__dict__},
        }
    return out


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
        choices=STRATEGIES,
        default=None,
        help="estimate `lmms-eval-autorater grid --strategy ...` on each task instead",
    )
    parser.add_argument(
        "--max_size", type=int, default=DEFAULT_MAX_SIZE, help="with --grid: subsets of 1..max_size"
    )
    parser.add_argument(
        "--eta", type=int, default=DEFAULT_ETA, help="with --grid halving: keeps 1/eta per round"
    )
    parser.add_argument(
        "--min_groups",
        type=int,
        default=DEFAULT_MIN_GROUPS,
        help="with --grid halving: prompts/sets in the first round",
    )
    parser.add_argument(
        "--gpus",
        type=int,
        default=None,
        help="also estimate the wall time of the specialist pre-pass (assess) on N GPUs, from the per-input "
        "cost measured in the assessment cache",
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
    pre = result.get("prepass")
    if pre:
        parts = []
        for code, c in pre["specialists"].items():
            sec = "unknown" if c["seconds_per_input"] is None else f"{c['seconds_per_input']:.3g}s/input"
            parts.append(f"{code} {c['left']} left ({sec})")
        wall = "unknown" if pre["wall_seconds"] is None else f"{pre['wall_seconds'] / 60:,.1f} min"
        lines.append(f"specialist pre-pass on {pre['gpus']} GPU(s): {wall}: " + "; ".join(parts))
        lines.append(f"- {pre['note']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the ``estimate`` command; returns the exit code."""
    from lmms_eval_autorater.judges.args import parse_model_args

    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be >= 1, got {args.limit}")
    if args.max_size < 1 or args.eta < 2 or args.min_groups < 1:
        raise UsageError(
            f"--max_size must be >= 1, --eta >= 2 and --min_groups >= 1; "
            f"got {args.max_size}, {args.eta} and {args.min_groups}"
        )
    try:
        result = estimate_run(
            args.model,
            parse_model_args(args.model_args),
            args.tasks.split(","),
            args.limit,
            grid=args.grid,
            max_size=args.max_size,
            eta=args.eta,
            min_groups=args.min_groups,
            gpus=args.gpus,
        )
    except UsageError:
        raise
    except (
        ValueError
    ) as exc:  # an unknown task, or tools that do not apply (raised by the catalog, the judge)
        raise UsageError(str(exc)) from exc
    print(json.dumps(result, indent=2, default=str) if args.json else table(result))
    return 0


__all__ = ["add_arguments", "estimate_run", "expand_tasks", "halving_calls", "run", "table"]
