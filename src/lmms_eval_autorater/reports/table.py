"""The ``table`` command: Table 2 from lmms-eval results, with the paper's numbers and paired differences.

Rows are the paper's (``catalog/paper.yaml``), recognised from each run's model and model arguments
(``recognise``; the paper's variants such as ``autorater_gpt4o_grid`` name their row themselves); columns are the four benchmarks. Each cell is our headline metric with its 95% CI as the
results file holds it, the paper's number beside it and the difference; every AutoRater row also gets its
difference from its base VLM row, with a paired bootstrap CI over the same docs (clustered by prompt or
set: ``metrics.paired.paired_records``). Runs that disagree on a task's conventions are refused.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmms_eval_autorater.catalog import models as catalog_models
from lmms_eval_autorater.errors import DataError
from lmms_eval_autorater.redact import public_model_args
from lmms_eval_autorater.reports import paper as paper_data
from lmms_eval_autorater.reports.runs import Run, RunsError, TaskRun, is_number, load_runs

HELP = "build Table 2 from lmms-eval results, with the paper's numbers and paired differences"

#: lmms-eval judge model -> the paper's group of rows (``group`` in paper.yaml), from the model catalog
JUDGE_GROUPS = {e.id: e.paper_group for e in catalog_models.judges(variants=False) if e.paper_group}
#: the group of the specialist-free baselines; their lmms-eval model is the row name, lower-cased alnum
BASELINE_GROUP = "baselines"
#: where a fine-tuned checkpoint says how it was trained (written by ``lmms-eval-autorater train``)
TRAINING_FILES = ("autorater_training.json", "training_args.json")
#: the paired bootstrap of the base-vs-row differences (the tasks' own CI conventions)
N_RESAMPLES = 1000
SEED = 0
#: lmms-eval runs whose conventions must agree to share a column, and the metadata they come from
AGREE = ("conventions", "n_docs", "task_hash", "limit", "parser", "prompt", "scoring", "samples")


class TableError(DataError):
    """Runs that cannot make one table (conflicting conventions, two runs of one cell, no rows)."""


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def _rows() -> list[dict[str, Any]]:
    return paper_data.table2()


def _columns() -> list[str]:
    return list(paper_data.paper()["columns"])


def _unit(task: str) -> str:
    return str(paper_data.paper()["units"][task])


def _scale(task: str) -> float:
    """Results hold fractions; the paper prints pairwise accuracy in %."""
    return 100.0 if _unit(task).endswith("percent") else 1.0


def _group_rows(group: str) -> list[dict[str, Any]]:
    return [r for r in _rows() if r["group"] == group]


def _base_row(group: str) -> dict[str, Any]:
    return next(r for r in _group_rows(group) if not r.get("base"))


def _finetuned_row(trained_with_tools: bool) -> dict[str, Any] | None:
    """The fine-tuned InternVL row of Table 2, found through Table 3: the fine-tuned setup trained and run
    with (or without) tools has the same AIGIQA number as its Table 2 row."""
    setup = next(
        (
            s
            for s in paper_data.table3()
            if s["finetuned"]
            and s["trained_with_tools"] == trained_with_tools
            and s["inference_with_tools"] == trained_with_tools
        ),
        None,
    )
    if setup is None:
        return None
    group = JUDGE_GROUPS["autorater_internvl"]
    return next(
        (r for r in _group_rows(group) if r.get("base") and math.isclose(r["aigiqa"], setup["pearson"])), None
    )


@dataclass(frozen=True)
class Recognised:
    """The Table 2 row of a run (None with the reason when it is not one), and a Grid row's subset."""

    row: str | None
    reason: str = ""
    subset: str | None = None
    #: a ``_grid`` variant's run: the subset of each task (``subset_of``), read from its samples or arguments
    per_task: bool = False

    def subset_of(self, run: Run, task: str) -> str | None:
        """The specialist subset this run used on ``task`` (None when the row has no subset)."""
        return _variant_subset(run, task) if self.per_task else self.subset


def _tools(args: dict[str, str]) -> str | list[str]:
    from lmms_eval_autorater.judges.args import parse_tools

    return parse_tools(args.get("tools", "none"))


def _trained_with_tools(checkpoint: str) -> bool | None:
    """Whether a local fine-tuned checkpoint was trained with tools (its training file says), else None."""
    folder = Path(checkpoint).expanduser()
    for name in TRAINING_FILES:
        path = folder / name
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        for key in ("trained_with_tools", "with_tools"):
            if isinstance(data.get(key), bool):
                return data[key]
        value = str(data.get("tools", "")).strip().lower()
        if value in ("with", "all", "true"):
            return True
        if value in ("without", "none", "false"):
            return False
    return None


def recognise(run: Run) -> Recognised:
    """The paper's row of a run from its model and model args (see docs/table2.md for the rules)."""
    from lmms_eval_autorater.judges.factory import PRESETS

    args = run.model_args
    variant = catalog_models.MODELS.get(run.model)
    if variant is not None and variant.is_variant:
        return _recognise_variant(run, variant)
    baselines = {_norm(r["row"]): r["row"] for r in _group_rows(BASELINE_GROUP)}
    if _norm(run.model) in baselines:
        return Recognised(baselines[_norm(run.model)])
    reward = catalog_models.MODELS.get(run.model)
    if reward is not None and reward.paper_group == catalog_models.REWARD_GROUP:
        return Recognised(reward.row)
    group = JUDGE_GROUPS.get(run.model)
    if group is None:
        return Recognised(None, f"model {run.model!r} has no Table 2 row (name one with --row NAME=PATH)")
    if str(args.get("swap", "false")).lower() in ("1", "true", "yes", "on"):
        return Recognised(None, "swap=true: the paper's rows are judged without swap (name it with --row)")
    if scoring_of(args) != {"scoring": "argmax", "samples": 1}:
        mode = scoring_of(args)
        return Recognised(
            None,
            f"scoring={mode['scoring']}, samples={mode['samples']}: the paper's rows are one integer verdict per "
            "doc (name it with --row)",
        )
    try:
        tools = _tools(args)
    except ValueError as exc:
        return Recognised(None, str(exc))
    base = _base_row(group)
    preset = PRESETS[run.model]
    if run.model == "autorater_internvl":
        pretrained = args.get("pretrained", preset.model)
        if pretrained == preset.model:
            if tools:
                return Recognised(
                    None, "InternVL3-8B with tools, not fine-tuned, is Table 3's setup, not Table 2's"
                )
            return Recognised(base["row"])
        trained = _trained_with_tools(pretrained)
        if trained is None:
            return Recognised(
                None,
                f"fine-tuned checkpoint {pretrained}: no {' or '.join(TRAINING_FILES)} saying whether it was "
                "trained with tools (name its row with --row NAME=PATH)",
            )
        if bool(tools) != trained:
            return Recognised(None, "trained and judged with different tools: a Table 3 setup, not Table 2's")
        row = _finetuned_row(trained)
        return Recognised(row["row"]) if row else Recognised(None, "no fine-tuned row in the paper's Table 2")
    model = args.get("model", preset.model)
    if model != preset.model:
        return Recognised(
            None,
            f"model={model} is not the paper's judge ({preset.model}); name its row with --row NAME=PATH",
        )
    if tools == []:
        return Recognised(base["row"])
    if isinstance(tools, list):
        grid = next((r for r in _group_rows(group) if r.get("grid")), None)
        return Recognised(grid["row"], subset="+".join(tools)) if grid else Recognised(None, "no Grid row")
    name = f"{base['row']} + {tools.title()}"
    if any(r["row"] == name for r in _group_rows(group)):
        return Recognised(name)
    return Recognised(None, f"tools={tools}: no such row in the paper")


def _recognise_variant(run: Run, entry: catalog_models.ModelEntry) -> Recognised:
    """A paper variant's row: its base judge's rule with the tools the variant fixes (``tools=`` of the run
    cannot differ: the variant refuses it). A ``_grid`` run's subsets are per task; a fine-tuned variant
    whose checkpoint has no training file takes the row its name says."""
    assert entry.base is not None
    args = dict(run.model_args)
    grid = entry.tools == "grid"
    args["tools"] = "none" if grid else str(entry.tools)
    if entry.tools == "none" and "pretrained" not in args:
        return Recognised(None, f"{run.model} needs pretrained= (a fine-tuned checkpoint)")
    base_run = Run(
        path=run.path,
        model=entry.base,
        model_args=args,
        date=run.date,
        versions=run.versions,
        tasks=run.tasks,
    )
    if not grid:
        fine_tuned = entry.preset is not None and "pretrained" in entry.preset.required
        if fine_tuned and _trained_with_tools(args["pretrained"]) is None:
            row = _finetuned_row(entry.tools == "all")
            return (
                Recognised(row["row"])
                if row
                else Recognised(None, "no fine-tuned row in the paper's Table 2")
            )
        return recognise(base_run)
    base = recognise(base_run)
    if base.row is None:
        return base
    group = JUDGE_GROUPS[entry.base]
    row = paper_data.grid_row(group)
    if row is None:
        return Recognised(None, f"{run.model}: the paper has no + Grid row for {group}")
    return Recognised(row["row"], per_task=True)


def _variant_subset(run: Run, task: str) -> str | None:
    """The subset a ``_grid`` variant used on ``task``: what its samples' verdicts recorded (``subset``), else
    (no samples) the paper's subset when no ``grid_result=`` was given, else the grid file's if it is there."""
    tr = run.tasks.get(task)
    try:
        for rec in tr.records() if tr is not None else []:
            if (rec.get("meta") or {}).get("subset"):
                return str(rec["meta"]["subset"])
    except RunsError:
        pass
    entry = catalog_models.MODELS[run.model]
    path = run.model_args.get("grid_result")
    if not path:
        codes = paper_data.grid_subsets(entry.paper_group or "").get(task)
        return "+".join(codes) if codes else None
    from lmms_eval_autorater.judges.args import ModelArgError
    from lmms_eval_autorater.judges.factory import read_grid_results

    try:
        found = read_grid_results(path)
    except ModelArgError:
        return None
    return "+".join(found[task][0]) if task in found else None


def row_spec(name: str) -> tuple[str, str | None]:
    """The inverse of ``recognise``: (lmms-eval model, tools kind) of a paper row; kind is ``none``,
    ``auto``, ``all``, ``grid`` (the paper's subset per task), ``ft_tools`` / ``ft_notools`` (fine-tuned
    checkpoints) or None for the baselines."""
    row = paper_data.table2_row(name)
    if row.get("model"):  # a reward model's row (catalog.paper.reward_rows)
        return row["model"], None
    if row["group"] == BASELINE_GROUP:
        return _norm(name), None
    model = next(m for m, g in JUDGE_GROUPS.items() if g == row["group"])
    if not row.get("base"):
        return model, "none"
    if row.get("grid"):
        return model, "grid"
    for trained in (True, False):
        ft = _finetuned_row(trained) if model == "autorater_internvl" else None
        if ft and ft["row"] == name:
            return model, "ft_tools" if trained else "ft_notools"
    return model, name.rsplit("+ ", 1)[-1].strip().lower()


# ---------------------------------------------------------------------------------------------
# assembling the table


@dataclass
class Cell:
    """One row x task: the run it comes from and what the table shows."""

    row: str
    task: str
    run: Run
    task_run: TaskRun
    subset: str | None = None
    vs_base: dict[str, Any] | None = None


@dataclass
class Table:
    """Table 2 as data: cells by (row, task), the runs left out with their reasons, the conventions."""

    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)
    ignored: list[dict[str, str]] = field(default_factory=list)
    conventions: dict[str, dict[str, Any]] = field(default_factory=dict)


def _agreement(tr: TaskRun) -> dict[str, Any]:
    meta = (tr.config.get("metadata") or {}).get("versions") or {}
    return {
        "conventions": tr.conventions,
        "n_docs": tr.n_docs,
        "task_hash": tr.task_hash,
        "limit": tr.limit,
        "parser": meta.get("parser"),
        "prompt": meta.get("prompt"),
    }


def scoring_of(model_args: dict) -> dict[str, Any]:
    """A run's scoring mode and sample count from its model args (absent: argmax, 1 sample)."""
    scoring = str(model_args.get("scoring") or "argmax").strip().lower()
    try:
        samples = int(model_args.get("samples") or 1)
    except ValueError:
        samples = model_args.get("samples")
    return {"scoring": scoring, "samples": samples}


def _check_conventions(cells: list[Cell]) -> dict[str, dict[str, Any]]:
    """Per task, the conventions all its runs share; a difference is a ``TableError`` naming both files."""
    out: dict[str, dict[str, Any]] = {}
    first: dict[str, Cell] = {}
    for cell in cells:
        # the numbers follow the scores: integer verdicts and expected scores (or N-sample means) never share
        # a column
        here = {**_agreement(cell.task_run), **scoring_of(cell.run.model_args)}
        if cell.task not in first:
            first[cell.task], out[cell.task] = cell, here
            continue
        there = out[cell.task]
        for key in AGREE:
            a, b = there[key], here[key]
            if a is None and key in ("parser", "prompt") or b is None and key in ("parser", "prompt"):
                continue
            if a != b:
                other = first[cell.task]
                raise TableError(
                    f"task {cell.task}: runs disagree on {key} ({a!r} in {other.run.path} for row {other.row}; "
                    f"{b!r} in {cell.run.path} for row {cell.row}); refusing to mix them in one column"
                )
            if there[key] is None:
                there[key] = b
    return out


def build_table(runs: list[Run], overrides: dict[str, list[Path]] | None = None) -> Table:
    """Place each run's tasks in their rows, check conventions and compute the paired base differences."""
    from lmms_eval_autorater.metrics.paired import paired_records

    overrides = overrides or {}
    forced: dict[Path, str] = {}
    for name, paths in overrides.items():
        paper_data.table2_row(name)  # KeyError listing the known rows
        for p in paths:
            p = p.resolve()
            for r in runs:
                if r.path == p or p in r.path.parents:
                    forced[r.path] = name
    table = Table()
    columns = _columns()
    placed: list[Cell] = []
    for run in runs:
        rec = Recognised(forced[run.path]) if run.path in forced else recognise(run)
        if rec.row is None:
            table.ignored.append({"file": str(run.path), "reason": rec.reason})
            continue
        if rec.subset is None and run.path in forced and run.model_args.get("tools"):
            tools = _tools(run.model_args)
            if isinstance(tools, list) and tools:
                rec = Recognised(rec.row, subset="+".join(tools))
        for task, tr in run.tasks.items():
            if task not in columns:
                table.ignored.append(
                    {"file": str(run.path), "reason": f"task {task} is not a Table 2 column"}
                )
                continue
            key = (rec.row, task)
            if key in table.cells:
                other = table.cells[key].run.path
                raise TableError(
                    f"two runs of row {rec.row!r} on {task}: {other} and {run.path}; "
                    "keep one (or name one's row with --row NAME=PATH)"
                )
            cell = Cell(rec.row, task, run, tr, subset=rec.subset_of(run, task))
            table.cells[key] = cell
            placed.append(cell)
    if not placed:
        reasons = "; ".join(f"{i['file']}: {i['reason']}" for i in table.ignored) or "no runs"
        raise TableError(f"no run is a Table 2 row ({reasons})")
    table.conventions = _check_conventions(placed)
    for cell in placed:
        base = paper_data.table2_row(cell.row).get("base")
        if not base:
            continue
        base_cell = table.cells.get((base, cell.task))
        if base_cell is None:
            cell.vs_base = {"base": base, "missing": f"no {base} run on {cell.task}"}
            continue
        paradigm = cell.task_run.paradigm
        try:
            a = _by_doc(cell.task_run.records())
            b = _by_doc(base_cell.task_run.records())
        except RunsError as exc:  # a run made without --log_samples: the cell stands, the difference cannot
            cell.vs_base = {"base": base, "missing": str(exc)}
            continue
        if set(a) != set(b):
            raise TableError(
                f"{cell.task}: {cell.run.path} and {base_cell.run.path} judged different docs; "
                "the paired difference needs the same docs"
            )
        order = list(a)
        d = paired_records(
            [a[k] for k in order],
            [b[k] for k in order],
            paradigm,
            n_resamples=N_RESAMPLES,
            seed=SEED,
        )
        cell.vs_base = {"base": base, "base_file": str(base_cell.run.path), **d.to_json()}
    return table


def _by_doc(records: list[dict]) -> dict[str, dict]:
    return {r["doc_key"]: r for r in records}


# ---------------------------------------------------------------------------------------------
# outputs


def _value(cell: Cell) -> tuple[Any, Any, Any]:
    m = cell.task_run.headline or "accuracy"
    return (cell.task_run.metrics.get(m), cell.task_run.metrics.get(f"{m}_ci_low"),
            cell.task_run.metrics.get(f"{m}_ci_high"))  # fmt: skip


def _scaled(x: Any, task: str) -> float | None:
    return float(x) * _scale(task) if is_number(x) else None


def _digits(task: str) -> int:
    return 2 if _scale(task) == 100.0 else 4


def _fmt(x: float | None, task: str, signed: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{x:+.{_digits(task)}f}" if signed else f"{x:.{_digits(task)}f}"


def rank_marks(table: Table) -> dict[tuple[str, str], str]:
    """Per column, ``best`` and ``second`` for the two highest of our values (ties share the mark)."""
    marks: dict[tuple[str, str], str] = {}
    for task in _columns():
        values = sorted(
            {
                v
                for (row, t), c in table.cells.items()
                if t == task and (v := _scaled(_value(c)[0], task)) is not None
            },
            reverse=True,
        )
        for (row, t), c in table.cells.items():
            v = _scaled(_value(c)[0], task) if t == task else None
            if v is None:
                continue
            if v == values[0]:
                marks[(row, t)] = "best"
            elif len(values) > 1 and v == values[1]:
                marks[(row, t)] = "second"
    return marks


def table_json(table: Table) -> dict[str, Any]:
    """Everything the other formats show, with the values exactly as the results files hold them."""
    marks = rank_marks(table)
    rows = []
    for prow in _rows():
        cells = {}
        for task in _columns():
            cell = table.cells.get((prow["row"], task))
            if cell is None:
                continue
            value, low, high = _value(cell)
            ours = _scaled(value, task)
            cells[task] = {
                "metric": cell.task_run.headline,
                "value": value,
                "ci_low": low,
                "ci_high": high,
                "unit": _unit(task),
                "value_in_paper_unit": ours,
                "ci_low_in_paper_unit": _scaled(low, task),
                "ci_high_in_paper_unit": _scaled(high, task),
                "paper": prow.get(task),
                "diff_from_paper": None if ours is None or prow.get(task) is None else ours - prow[task],
                "counts": {k: cell.task_run.metrics.get(k) for k in _count_fields()},
                "n_docs": cell.task_run.n_docs,
                **_partial(cell.task_run.n_docs, task),
                "subset": cell.subset,
                "paper_subset": "+".join(prow["grid"][task]) if prow.get("grid") else None,
                "mark": marks.get((prow["row"], task)),
                "results_file": str(cell.run.path),
                "model": cell.run.model,
                "model_args": public_model_args(cell.run.model_args),
                "versions": cell.run.versions,
                "vs_base": _vs_base_json(cell),
            }
        if cells:
            rows.append(
                {"row": prow["row"], "group": prow["group"], "base": prow.get("base"), "cells": cells}
            )
    return {
        "citation": paper_data.citation(),
        "columns": _columns(),
        "units": {t: _unit(t) for t in _columns()},
        "paired_bootstrap": {
            "n_resamples": N_RESAMPLES,
            "seed": SEED,
            "confidence": 0.95,
            "clustered_by": "group",
        },
        "conventions": table.conventions,
        "rows": rows,
        "ignored": table.ignored,
    }


def _partial(n_docs: int | None, task: str) -> dict[str, Any]:
    """``full_docs`` (the benchmark's size, catalog/paper.yaml) and ``partial``: the run judged another
    number of docs (``--limit``, a subset of the data), so its value is no like-for-like match of the paper's
    and ``diff_from_paper`` is not shown against it (md, tex, png) and is flagged in json and csv."""
    full = paper_data.full_docs(task)
    return {"full_docs": full, "partial": n_docs is not None and full is not None and n_docs != full}


def _docs_of(c: dict[str, Any]) -> str:
    """``6/444 docs``: the doc count of a partial cell against the benchmark's full size."""
    return f"{c['n_docs']}/{c['full_docs']} docs"


def _vs_base_json(cell: Cell) -> dict[str, Any] | None:
    if cell.vs_base is None:
        return None
    out = dict(cell.vs_base)
    if "diff" in out:
        s = _scale(cell.task)
        out.update(
            diff_in_paper_unit=out["diff"] * s,
            ci_low_in_paper_unit=out["ci_low"] * s,
            ci_high_in_paper_unit=out["ci_high"] * s,
        )
    return out


def _md_cell(c: dict[str, Any], task: str, tex: bool = False) -> str:
    ours = c["value_in_paper_unit"]
    text = _fmt(ours, task)
    if c["mark"] == "best":
        text = f"\\textbf{{{text}}}" if tex else f"**{text}**"
    elif c["mark"] == "second":
        text = f"\\underline{{{text}}}" if tex else f"<ins>{text}</ins>"
    lo, hi = c["ci_low_in_paper_unit"], c["ci_high_in_paper_unit"]
    ci = f"[{_fmt(lo, task)}, {_fmt(hi, task)}]"
    paper = c["paper"]
    diff = c["diff_from_paper"]
    parts = [text, ci, f"paper {_fmt(paper, task)} ({_fmt(diff, task, signed=True)})", _scored(c)]
    if c["partial"]:  # first and bold; the paper's number stands without a difference
        mark = f"PARTIAL {_docs_of(c)}"
        parts[2] = f"paper {_fmt(paper, task)} (not comparable: {_docs_of(c)})"
        parts.insert(0, f"\\textbf{{{mark}}}" if tex else f"**{mark}**")
    if c["subset"]:
        subset = c["subset"] + ("" if c["subset"] == c["paper_subset"] else f"; paper: {c['paper_subset']}")
        parts.append(f"{{{subset}}}" if not tex else f"\\{{{subset}\\}}")
    vb = c["vs_base"]
    if vb and "diff" in vb:
        parts.append(
            f"vs base {_fmt(vb['diff_in_paper_unit'], task, signed=True)} "
            f"[{_fmt(vb['ci_low_in_paper_unit'], task, signed=True)}, "
            f"{_fmt(vb['ci_high_in_paper_unit'], task, signed=True)}]"
        )
    elif vb:
        parts.append(f"vs base n/a ({vb['missing']})")
    sep = " \\newline " if tex else "<br>"
    return sep.join(parts)


def _scored(c: dict[str, Any]) -> str:
    """``n 440/444`` and each nonzero failure count: what the metric is computed on."""
    counts = c["counts"]
    n = counts.get("n_scored")
    text = f"n {int(n) if is_number(n) else n}/{c['n_docs']}"
    failed = [
        f"{int(v)} {k.replace('_', ' ')}"
        for k, v in counts.items()
        if k not in ("n_scored", "cost_usd", "prompt_tokens", "completion_tokens") and is_number(v) and v
    ]
    return text + (f" ({', '.join(failed)})" if failed else "")


def _unit_label(task: str) -> str:
    return "acc. %" if _scale(task) == 100.0 else "Pearson r"


def write_markdown(data: dict[str, Any], path: Path) -> None:
    from lmms_eval_autorater.cells import md_cell

    cols = data["columns"]
    lines = [
        "# Table 2 (reproduced)",
        "",
        "Each cell: our value [95% CI], the paper's value (our difference), the specialist subset of Grid rows, "
        "and for AutoRater rows the paired difference from the base VLM [95% paired bootstrap CI over the same "
        "docs, clustered by prompt/set]. **Bold**: best of our values per column; <ins>underlined</ins>: second. "
        "**PARTIAL n/N docs**: a run on n of the benchmark's N docs; its difference from the paper is not shown.",
        "",
        "| row | " + " | ".join(f"{t} ({_unit_label(t)})" for t in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for row in data["rows"]:
        cells = [(_md_cell(row["cells"][t], t) if t in row["cells"] else "") for t in cols]
        lines.append(f"| {md_cell(row['row'])} | " + " | ".join(cells) + " |")
    lines += ["", f"Paper: {data['citation']}", ""]
    for task, conv in data["conventions"].items():
        lines.append(
            f"- `{task}` ({conv['n_docs']} docs, data hash `{str(conv['task_hash'])[:12]}`): {conv['conventions']}"
        )
    if data["ignored"]:
        lines += ["", "Runs left out:"] + [f"- `{i['file']}`: {i['reason']}" for i in data["ignored"]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _tex_escape(text: str) -> str:
    return text.replace("&", "\\&").replace("%", "\\%").replace("_", "\\_").replace("#", "\\#")


def write_latex(data: dict[str, Any], path: Path) -> None:
    cols = data["columns"]
    lines = [
        "% Table 2 reproduced by lmms-eval-autorater table (needs \\usepackage{booktabs}); "
        + _tex_escape(data["citation"]),
        "\\begin{tabular}{l" + "p{3.2cm}" * len(cols) + "}",
        "\\toprule",
        "Method & " + " & ".join(_tex_escape(f"{t} ({_unit_label(t)})") for t in cols) + " \\\\",
        "\\midrule",
    ]
    for row in data["rows"]:
        cells = [(_md_cell(row["cells"][t], t, tex=True) if t in row["cells"] else "") for t in cols]
        lines.append(_tex_escape(row["row"]) + " & " + " & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _count_fields() -> tuple[str, ...]:
    """The count and usage metrics every task reports (``tasks.common``), shown beside each cell."""
    from lmms_eval_autorater.tasks.common import COUNT_METRICS, USAGE_METRICS

    return (*COUNT_METRICS, *USAGE_METRICS)


CSV_FIELDS = (
    "row", "task", "metric", "unit", "value", "ci_low", "ci_high", "paper", "diff_from_paper",
    "vs_base", "vs_base_ci_low", "vs_base_ci_high", "vs_base_within_noise", "subset", "mark", "n_docs",
    "full_docs", "partial",
    *_count_fields(), "results_file",
)  # fmt: skip


def write_safe_row(writer: Any, row: dict[str, Any]) -> None:
    """``writer.writerow`` with every text cell through ``cells.csv_cell`` (no spreadsheet formulas)."""
    from lmms_eval_autorater.cells import csv_cell

    writer.writerow({k: csv_cell(v) for k, v in row.items()})


def write_csv(data: dict[str, Any], path: Path) -> None:
    """One line per cell; values in the paper's unit (pairwise %), written with full precision."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for row in data["rows"]:
            for task, c in row["cells"].items():
                vb = c["vs_base"] or {}
                write_safe_row(
                    w,
                    {
                        "row": row["row"],
                        "task": task,
                        "metric": c["metric"],
                        "unit": "percent" if _scale(task) == 100.0 else "pearson",
                        "value": _repr(c["value_in_paper_unit"]),
                        "ci_low": _repr(c["ci_low_in_paper_unit"]),
                        "ci_high": _repr(c["ci_high_in_paper_unit"]),
                        "paper": _repr(c["paper"]),
                        "diff_from_paper": _repr(c["diff_from_paper"]),
                        "vs_base": _repr(vb.get("diff_in_paper_unit")),
                        "vs_base_ci_low": _repr(vb.get("ci_low_in_paper_unit")),
                        "vs_base_ci_high": _repr(vb.get("ci_high_in_paper_unit")),
                        "vs_base_within_noise": vb.get("within_noise", ""),
                        "subset": c["subset"] or "",
                        "mark": c["mark"] or "",
                        "n_docs": c["n_docs"],
                        "full_docs": c["full_docs"],
                        "partial": c["partial"],
                        **{k: _repr(c["counts"].get(k)) for k in _count_fields()},
                        "results_file": c["results_file"],
                    },
                )


def _repr(x: Any) -> str:
    if x is None:
        return ""
    return repr(float(x)) if isinstance(x, (int, float)) and not isinstance(x, bool) else str(x)


def write_figures(data: dict[str, Any], out: Path) -> list[Path]:
    """One PNG per benchmark: our value with its CI as an error bar per row, the paper's value as a marker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for task in data["columns"]:
        rows = [(r["row"], r["cells"][task]) for r in data["rows"] if task in r["cells"]]
        if not rows:
            continue
        fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.4))
        for y, (_, c) in enumerate(rows):
            v, lo, hi = c["value_in_paper_unit"], c["ci_low_in_paper_unit"], c["ci_high_in_paper_unit"]
            if v is not None:
                err = [[v - lo if lo is not None else 0], [hi - v if hi is not None else 0]]
                ax.errorbar(
                    [v],
                    [y],
                    xerr=err,
                    fmt="o",
                    color="C0",
                    capsize=3,
                    label="ours (95% CI)" if y == 0 else None,
                )
            if c["paper"] is not None:  # hollow beside a partial run: shown, not set against it
                ax.plot(
                    [c["paper"]],
                    [y],
                    marker="D",
                    color="C3",
                    markerfacecolor="none" if c["partial"] else "C3",
                    linestyle="none",
                    label="paper" if y == 0 else None,
                )
        labels = [f"{name}\nPARTIAL {_docs_of(c)}" if c["partial"] else name for name, c in rows]
        ax.set_yticks(range(len(rows)), labels)
        ax.invert_yaxis()
        ax.set_xlabel(_unit_label(task))
        ax.set_title(f"Table 2: {task}")
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        path = out / f"table2_{task}.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def write_all(table: Table, out: Path) -> dict[str, Any]:
    """Write table2.{json,md,tex,csv} and the figures into ``out``; returns the JSON data."""
    out.mkdir(parents=True, exist_ok=True)
    data = table_json(table)
    (out / "table2.json").write_text(json.dumps(data, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    write_markdown(data, out / "table2.md")
    write_latex(data, out / "table2.tex")
    write_csv(data, out / "table2.csv")
    write_figures(data, out)
    return data


# ---------------------------------------------------------------------------------------------
# the field's benchmarks as columns (``table --columns field``)


def _field_row_name(run: Run) -> str:
    """Our row's name: the paper's row when the run is one (``recognise``; a reward model's catalog row name),
    else the model and its model name."""
    rec = recognise(run)
    if rec.row is not None:
        return f"{rec.row}{f' [{rec.subset}]' if rec.subset else ''} (ours)"
    return f"{run.model}{f' ({run.model_name})' if run.model_name else ''}"


def _field_group(run: Run) -> str:
    """``reward models`` for a scalar scorer of the model catalog (a score per image), else ``judges``."""
    entry = catalog_models.MODELS.get(run.model)
    return "reward models" if entry is not None and entry.kind == "baseline" else "judges"


def _pct(x: Any) -> float | None:
    return round(100.0 * float(x), 2) if is_number(x) and not math.isnan(float(x)) else None


def _field_spec(spec: dict[str, Any], group: str) -> tuple[str, str | None]:
    """(metric, metric beside it) of a column for a row group: a reward model's row follows its authors' rule
    for scalar scorers where the column names one (``reward_models`` in catalog/field.yaml)."""
    if group == "reward models" and spec.get("reward_models"):
        rm = spec["reward_models"]
        return str(rm["metric"]), rm.get("also")
    return str(spec["metric"]), spec.get("also")


def build_field_table(runs: list[Run]) -> dict[str, Any]:
    """The field's benchmarks as columns (``catalog/field.yaml``): the published rows with their sources, then
    one row per run (our headline by the authors' rule, its CI, the extra metric such as group accuracy, in %);
    a cell of a run with ``--limit`` or fewer docs than the benchmark holds is marked partial. Rows come in two
    groups, the judges and the reward models (scalar scorers), each with its published rows first; a reward
    model's cell uses its authors' rule for scalar scorers where the column names one (``metric`` says which)."""
    from lmms_eval_autorater.catalog import field as field_catalog

    cols = field_catalog.columns()
    rows: list[dict[str, Any]] = []
    for p in field_catalog.published():
        cells = {}
        for t in cols:
            found = field_catalog.published_cell(p, t)
            if found is None:
                continue
            value, metric = found
            cells[t] = {
                "value": value,
                "metric": metric or cols[t]["metric"],
                "source": field_catalog.source(p["source"][t]),
            }
        group = str(p.get("group", "judges"))
        rows.append(
            {"row": p["row"], "kind": "published", "group": group, "note": p.get("note"), "cells": cells}
        )
    ours: dict[str, dict[str, Any]] = {}
    ignored: list[dict[str, str]] = []
    for run in runs:
        name = _field_row_name(run)
        group = _field_group(run)
        for task, tr in run.tasks.items():
            if task not in cols:
                ignored.append({"file": str(run.path), "reason": f"task {task} is not a field column"})
                continue
            spec = cols[task]
            metric, also = _field_spec(spec, group)
            row = ours.setdefault(name, {"row": name, "kind": "ours", "group": group, "cells": {}})
            if task in row["cells"]:
                raise TableError(
                    f"two runs of {name!r} on {task}: {row['cells'][task]['file']} and {run.path}; keep one"
                )
            limit = tr.limit if tr.limit is not None else run.limit
            partial = limit is not None or (tr.n_docs is not None and tr.n_docs < int(spec["n_docs"]))
            cell = {
                "value": _pct(tr.metrics.get(metric)),
                "metric": metric,
                "ci": [_pct(tr.metrics.get(f"{metric}_ci_low")), _pct(tr.metrics.get(f"{metric}_ci_high"))],
                "n_docs": tr.n_docs,
                "partial": partial,
                "file": str(run.path),
            }
            if metric != spec["metric"]:  # the column's own metric stays beside the authors' scalar rule
                cell[spec["metric"]] = _pct(tr.metrics.get(spec["metric"]))
            if also:
                cell["also"] = also
                cell[also] = _pct(tr.metrics.get(also))
            row["cells"][task] = cell
    if not ours:
        reasons = "; ".join(f"{i['file']}: {i['reason']}" for i in ignored) or "no runs"
        raise TableError(f"no run has a field column ({reasons})")
    every = [*rows, *ours.values()]
    return {
        "columns": {t: {**spec, "unit": "accuracy_percent"} for t, spec in cols.items()},
        "rows": [r for g in field_catalog.GROUPS for r in every if r["group"] == g],
        "ignored": ignored,
    }


def _field_md_cell(cell: dict[str, Any] | None, spec: dict[str, Any]) -> str:
    from lmms_eval_autorater.catalog.field import metric_label

    if cell is None:
        return ""
    named = (
        f" ({metric_label(cell['metric'])})" if cell.get("metric", spec["metric"]) != spec["metric"] else ""
    )
    if "source" in cell:
        return f"{cell['value']:.2f}{named}"
    if cell["value"] is None:
        return f"n/a{named}"
    text = f"{cell['value']:.2f}{named}"
    if all(x is not None for x in cell["ci"]):
        text += f" [{cell['ci'][0]:.1f}, {cell['ci'][1]:.1f}]"
    if named and cell.get(spec["metric"]) is not None:
        text += f"; {metric_label(spec['metric'])} {cell[spec['metric']]:.2f}"
    also = cell.get("also")
    if also and cell.get(also) is not None:
        text += f"; {metric_label(also)} {cell[also]:.2f}"
    if cell["partial"]:
        text += f" (partial: {cell['n_docs']} of {spec['n_docs']} docs)"
    return text


def write_field(data: dict[str, Any], out: Path) -> list[Path]:
    """field.json, field.md (judges, then reward models; published rows, then ours; sources below) and
    field.csv in ``out``."""
    from lmms_eval_autorater.catalog import field as field_catalog

    out.mkdir(parents=True, exist_ok=True)
    cols = data["columns"]
    (out / "field.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    lines = [
        "| row | " + " | ".join(c["title"] for c in cols.values()) + " |",
        "|---|" + "---|" * len(cols),
    ]
    group = None
    for row in data["rows"]:
        if row.get("group") != group:
            group = row.get("group")
            lines.append(f"| **{group}** |" + " |" * len(cols))
        label = row["row"] + (" (published)" if row["kind"] == "published" else "")
        cells = [_field_md_cell(row["cells"].get(t), spec) for t, spec in cols.items()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Accuracy in %, each benchmark scored by its authors' rule (see docs/field.md); ours with the 95% CI. A "
        "metric in parentheses is not the column's: the published number's own metric, or the authors' rule for "
        "scalar reward models (EditReward's tie-calibrated accuracy, its threshold chosen on the same data).",
        "",
    ]
    lines += [f"- {k}: {field_catalog.source(k)}" for k in field_catalog.field_data()["sources"]]
    notes = [f"- {r['row']}: {r['note']}" for r in data["rows"] if r.get("note")]
    (out / "field.md").write_text("\n".join(lines + notes) + "\n", encoding="utf-8")
    with (out / "field.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["row", "kind", "group", "task", "metric", "value", "ci_low", "ci_high", "extra_metric", "extra",
             "n_docs", "partial", "source"]
        )  # fmt: skip
        for row in data["rows"]:
            for t, c in row["cells"].items():
                also = c.get("also") or cols[t].get("also") or ""
                ci = c.get("ci") or ["", ""]
                w.writerow([row["row"], row["kind"], row.get("group", ""), t, c.get("metric", ""), c["value"],
                            ci[0], ci[1], also if also in c else "", c.get(also, "") if also else "",
                            c.get("n_docs", ""), c.get("partial", ""), c.get("source", "")])  # fmt: skip
    return [out / "field.json", out / "field.md", out / "field.csv"]


# ---------------------------------------------------------------------------------------------
# command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``table`` command's arguments."""
    parser.add_argument(
        "--results",
        nargs="+",
        required=True,
        metavar="DIR",
        help="lmms-eval --output_path folders (searched recursively) or results files",
    )
    parser.add_argument(
        "--output", required=True, metavar="OUT", help="folder for table2.{md,tex,csv,json} and PNGs"
    )
    parser.add_argument(
        "--columns",
        choices=("paper", "field"),
        default="paper",
        help="paper: Table 2 (the four benchmarks); field: MMRB2, GenAI-Bench and EditReward-Bench beside their "
        "published numbers (catalog/field.yaml)",
    )
    parser.add_argument("--row", action="append", default=[], metavar="NAME=PATH",
                        help="put the runs under PATH (a folder or results file) in the paper's row NAME")  # fmt: skip


def parse_overrides(items: list[str]) -> dict[str, list[Path]]:
    """``--row NAME=PATH`` items as {name: [paths]}; a bad item or an unknown row is a ``TableError``."""
    out: dict[str, list[Path]] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise TableError(f"--row {item!r}: expected NAME=PATH")
        try:
            paper_data.table2_row(name.strip())
        except KeyError as exc:
            raise TableError(f"--row {item!r}: {exc.args[0]}") from None
        out.setdefault(name.strip(), []).append(Path(path.strip()))
    return out


def build_from_folders(results: list[str], output: str, rows: list[str] | None = None) -> dict[str, Any]:
    """``table`` as a function: load the runs, build and write the table; errors are ``TableError``/``RunsError``."""
    overrides = parse_overrides(rows or [])
    runs = load_runs(results)
    table = build_table(runs, overrides)
    return write_all(table, Path(output))


def run(args: argparse.Namespace) -> int:
    """Run the ``table`` command; returns the exit code."""
    from lmms_eval_autorater.errors import UsageError

    if getattr(args, "columns", "paper") == "field":
        try:
            data = build_field_table(load_runs(args.results))
            write_field(data, Path(args.output))
        except (TableError, RunsError) as exc:
            raise UsageError(str(exc)) from None
        print(f"table: {len(data['rows'])} rows -> {args.output}/field.md (.json .csv)")
        for item in data["ignored"]:
            print(f"table: left out {item['file']}: {item['reason']}")
        return 0
    try:
        data = build_from_folders(args.results, args.output, args.row)
    except (TableError, RunsError) as exc:
        raise UsageError(str(exc)) from None
    n = sum(len(r["cells"]) for r in data["rows"])
    print(f"table: {len(data['rows'])} rows, {n} cells -> {args.output}/table2.md (.tex .csv .json, PNGs)")
    for item in data["ignored"]:
        print(f"table: left out {item['file']}: {item['reason']}")
    return 0
