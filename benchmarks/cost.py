"""What the paper's GPT-4o and Gemini rows of Table 2 cost: naive plan against this plugin's defaults.

The plan: for each judge (GPT-4o, Gemini-2.5-Pro) and each of the four benchmarks at full size, the
rows base, + Auto (two passes), + All and + Grid (subsets of 1..3 specialists: 41 for editing, 14 for
generation). Two ways to run it:

* naive: direct calls at the list price, the exhaustive grid (every subset on every doc), no cache;
* plugin defaults: the Batch API price (``batch=true``), the successive-halving grid (``grid --strategy
  halving``: ``experiments.grid.halving_calls`` on the grid's own schedule, counted without early
  stops: an upper bound), and the response cache (a rerun of any row costs nothing; answers shared
  between rows are counted only where the prompts are identical: see ``shared_calls``).

Per-call prompt tokens come from the package's token counter (``judges/tokens.py``) on the real prompts
(``judges/prompts.py``) built over synthetic images of each benchmark's typical size, with the typical
specialist sections of the specialists' specs (``typical_value``/``typical_text``); completion tokens are the stated assumptions below.
Prices from ``judges/prices.yaml``. Run from the repository root:
``.venv/bin/python benchmarks/cost.py --output cost.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmms_eval_autorater.catalog.paper import full_docs  # noqa: E402
from lmms_eval_autorater.experiments.grid import (  # noqa: E402
    DEFAULT_ETA,
    DEFAULT_MAX_SIZE,
    DEFAULT_MIN_GROUPS,
    halving_calls,
    subsets,
)
from lmms_eval_autorater.judges import prices, tokens  # noqa: E402
from lmms_eval_autorater.judges.estimate import typical_assessment  # noqa: E402
from lmms_eval_autorater.judges.factory import PRESETS  # noqa: E402
from lmms_eval_autorater.judges.prompts import (  # noqa: E402
    build_selection_prompt,
    build_verdict_prompt,
    tool_menu,
)
from lmms_eval_autorater.judges.types import JudgeRequest  # noqa: E402
from lmms_eval_autorater.specialists.registry import applicable  # noqa: E402
from lmms_eval_autorater.specialists.render import render_assessments  # noqa: E402
from lmms_eval_autorater.tasks.catalog import TASKS  # noqa: E402

#: the benchmarks at full size (``catalog/paper.yaml``), their bootstrap groups (prompts or sets: the halving
#: grid samples groups), the typical image size (width, height) and a typical request length in words.
#: PSR: PhotoshopRequests photos, typically larger than 1024 px (4:3); ImageReward: Stable Diffusion 1.x
#: at 512x512; AIGIQA-20K: 15 generators, 512 to 1024 px: 1024x1024 counted (the dearer end).
#: AIGIQA's prompts are nearly unique per image (train split: 13,624 prompts for 14,000 images).
BENCHMARKS = {
    "psr": {"docs": full_docs("psr"), "groups": 444, "image": (1024, 768), "request_words": 14},
    "imagereward_pair": {
        "docs": full_docs("imagereward_pair"),
        "groups": 466,
        "image": (512, 512),
        "request_words": 22,
    },
    "imagereward_point": {
        "docs": full_docs("imagereward_point"),
        "groups": 466,
        "image": (512, 512),
        "request_words": 22,
    },
    "aigiqa": {"docs": full_docs("aigiqa"), "groups": 4000, "image": (1024, 1024), "request_words": 16},
}
#: assumed completion tokens per call (analysis + answer; an Auto selection is shorter). Gemini 2.5 Pro
#: thinks before it answers and bills the thinking as output: THINKING_TOKENS more per call.
COMPLETION = {"verdict": 250, "selection": 80}
THINKING_TOKENS = {"gemini": 800, "openai": 0}
JUDGES = ("autorater_gpt4o", "autorater_gemini")


def _request(task: str, folder: Path) -> JudgeRequest:
    from PIL import Image

    info, bench = TASKS[task], BENCHMARKS[task]
    w, h = bench["image"]
    paths = []
    for k in range(3 if info.task_kind == "editing" else (2 if info.paradigm == "pairwise" else 1)):
        path = folder / f"{task}_{k}.png"
        Image.new("RGB", (w, h), (40 * k, 90, 160)).save(path)
        paths.append(str(path))
    source = paths.pop(0) if info.task_kind == "editing" else None
    words = " ".join(["word"] * bench["request_words"])
    return JudgeRequest(f"{task}/0", info.task_kind, info.paradigm, words, tuple(paths), source)


def _with(req: JudgeRequest, codes) -> JudgeRequest:
    from dataclasses import replace

    return replace(
        req,
        assessments=tuple(typical_assessment(c, k) for c in codes for k in range(1, len(req.candidates) + 1)),
    )


def _verdict_tokens(req: JudgeRequest, codes, rule: str) -> int:
    one = _with(req, codes)
    evidence = render_assessments(list(one.assessments), len(one.candidates)) if codes else ""
    return tokens.prompt_tokens(build_verdict_prompt(one, evidence), rule)


def per_call_tokens(task: str, rule: str, folder: Path) -> dict:
    """Prompt tokens of one call of each row on a typical doc of ``task`` (grid: the mean over subsets)."""
    req = _request(task, folder)
    app = applicable(req.task_kind)
    grid = [_verdict_tokens(req, s, rule) for s in subsets(app, DEFAULT_MAX_SIZE)]
    return {
        "base": _verdict_tokens(req, [], rule),
        "auto_selection": tokens.prompt_tokens(build_selection_prompt(req, tool_menu(app), app), rule),
        "auto_verdict": _verdict_tokens(req, app, rule),  # every applicable specialist: an upper bound
        "all": _verdict_tokens(req, app, rule),
        "grid_mean": sum(grid) / len(grid),
        "n_subsets": len(grid),
    }


def plan(judge: str, folder: Path) -> dict:
    """Calls and USD of one judge's four rows over the four benchmarks, naive and with the plugin."""
    from lmms_eval_autorater.judges.factory import judge_config

    cfg = judge_config(judge, {})
    model, rule = cfg.backend["model"], tokens.rule_for(PRESETS[judge].provider)
    price = prices.lookup(model)
    think = THINKING_TOKENS["gemini" if rule == "gemini" else "openai"]
    out_v, out_s = COMPLETION["verdict"] + think, COMPLETION["selection"] + think

    def usd(p_tok: float, c_tok: float, batch: bool) -> float:
        return prices.cost_usd({"prompt_tokens": p_tok, "completion_tokens": c_tok}, model, batch=batch)

    tasks, naive, ours = {}, {"calls": 0, "usd": 0.0}, {"calls": 0, "usd": 0.0}
    for task, bench in BENCHMARKS.items():
        t = per_call_tokens(task, rule, folder)
        n = bench["docs"]
        rows = {  # (calls, prompt tokens, completion tokens) of each row, naive
            "base": (n, n * t["base"], n * out_v),
            "auto": (2 * n, n * (t["auto_selection"] + t["auto_verdict"]), n * (out_s + out_v)),
            "all": (n, n * t["all"], n * out_v),
            "grid": (t["n_subsets"] * n, t["n_subsets"] * n * t["grid_mean"], t["n_subsets"] * n * out_v),
        }
        h_calls, h_rounds = halving_calls(t["n_subsets"], n, bench["groups"])
        ours_rows = dict(rows)
        ours_rows["grid"] = (h_calls, h_calls * t["grid_mean"], h_calls * out_v)
        task_naive = {k: {"calls": c, "usd": usd(p, o, False)} for k, (c, p, o) in rows.items()}
        task_ours = {k: {"calls": c, "usd": usd(p, o, True)} for k, (c, p, o) in ours_rows.items()}
        tn = {
            "calls": sum(r["calls"] for r in task_naive.values()),
            "usd": sum(r["usd"] for r in task_naive.values()),
        }
        to = {
            "calls": sum(r["calls"] for r in task_ours.values()),
            "usd": sum(r["usd"] for r in task_ours.values()),
        }
        tasks[task] = {
            "docs": n,
            "per_call_prompt_tokens": t,
            "naive": {"rows": task_naive, **tn},
            "plugin": {"rows": task_ours, **to, "halving_rounds": h_rounds},
        }
        for acc, part in ((naive, tn), (ours, to)):
            acc["calls"] += part["calls"]
            acc["usd"] += part["usd"]
    return {
        "judge": judge,
        "model": model,
        "price_per_mtok": {
            "direct": price.per_mtok(False),
            "batch": price.per_mtok(True),
            "source": price.source,
        },
        "completion_tokens": {"verdict": out_v, "selection": out_s},
        "tasks": tasks,
        "naive": naive,
        "plugin": {**ours, "shared_calls": 0},
        "ratio_usd": ours["usd"] / naive["usd"],
        "ratio_calls": ours["calls"] / naive["calls"],
    }


def main(argv: list[str] | None = None) -> dict:
    """Print the table and write the JSON (``--output``)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", default=None, help="write the plan as JSON here")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        judges = {j: plan(j, Path(tmp)) for j in JUDGES}
    result = {
        "assumptions": {
            "benchmarks": BENCHMARKS,
            "completion_tokens": COMPLETION,
            "thinking_tokens": THINKING_TOKENS,
            "halving": {
                "eta": DEFAULT_ETA,
                "min_groups": DEFAULT_MIN_GROUPS,
                "calls": "experiments.grid.halving_calls on experiments.grid.halving_schedule",
                "early_stop": "not counted",
            },
            "auto_verdict": "counted with every applicable specialist (upper bound)",
            "shared_calls": (
                "0 counted: with subsets of at most 3, no grid subset equals All (4 or 6 codes); "
                "Auto verdicts "
                "that pick a subset the grid judged, or none (the base prompt), are cached too but cannot be "
                "known before the run"
            ),
            "prices": f"judges/prices.yaml, recorded {prices.lookup(judges[JUDGES[0]]['model']).recorded}",
        },
        "judges": judges,
        "total": {
            "naive_usd": sum(j["naive"]["usd"] for j in judges.values()),
            "plugin_usd": sum(j["plugin"]["usd"] for j in judges.values()),
        },
    }
    result["total"]["ratio_usd"] = result["total"]["plugin_usd"] / result["total"]["naive_usd"]
    print(table(result))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2))
    return result


def table(result: dict) -> str:
    """The plan per judge and benchmark: calls and USD, naive against plugin defaults, and the ratio."""
    lines = [
        f"{'judge':<18} {'benchmark':<18} {'naive calls':>11} {'naive USD':>10} {'plugin calls':>12} "
        f"{'plugin USD':>10} {'ratio':>6}"
    ]
    for j in result["judges"].values():
        for task, t in j["tasks"].items():
            lines.append(
                f"{j['model']:<18} {task:<18} {t['naive']['calls']:>11,} {t['naive']['usd']:>10,.0f} "
                f"{t['plugin']['calls']:>12,} {t['plugin']['usd']:>10,.0f} "
                f"{t['plugin']['usd'] / t['naive']['usd']:>6.3f}"
            )
        lines.append(
            f"{j['model']:<18} {'all four':<18} {j['naive']['calls']:>11,} {j['naive']['usd']:>10,.0f} "
            f"{j['plugin']['calls']:>12,} {j['plugin']['usd']:>10,.0f} {j['ratio_usd']:>6.3f}"
        )
    tot = result["total"]
    lines.append(
        f"both judges: naive US${tot['naive_usd']:,.0f}, plugin defaults US${tot['plugin_usd']:,.0f}, "
        f"ratio {tot['ratio_usd']:.3f}"
    )
    a = result["assumptions"]
    lines.append(
        f"assumptions: completion tokens {a['completion_tokens']} (+ thinking {a['thinking_tokens']}); "
        f"halving eta {a['halving']['eta']}, min groups {a['halving']['min_groups']} "
        f"({a['halving']['calls']}, "
        "no early stop); Auto verdicts with every specialist; images: "
        + ", ".join(f"{k} {v['image'][0]}x{v['image'][1]}" for k, v in a["benchmarks"].items())
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
