"""The ``ablation`` command: the paper's Table 3, run on our checkpoints with the paper's numbers beside ours.

Six setups (``reports/paper.py`` ``table3()``, the one place the setups and numbers are stated): fine-tuned
or not x trained with tools or not x inference with tools or not, each an ``autorater_internvl`` judge built
by the judge factory (``pretrained=`` the base model, the checkpoint trained with tools or the one trained
without) judging the same task docs (``tasks.catalog.build_docs``) with the specialists (``tools=all`` by
default) or none. Records and metrics come from the functions the lmms-eval tasks use; every number has its
95% bootstrap CI (resampling prompts), and each setup's difference from the base model without tools (setup
5) has a paired bootstrap CI over the same docs. Specialists run once per unique input (a first pass fills
the assessment cache, before any judge is loaded); each judge model is loaded once and released before the
next one, so only one InternVL is in memory at a time.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lmms_eval_autorater.errors import UsageError
from lmms_eval_autorater.experiments.loop import EvaluationLoop, counts

HELP = "the paper's Table 3: fine-tuned or not x trained with tools or not x inference with tools or not"

#: which ``--`` option holds the model of a setup
ROLE_OF = {(False, False): "base", (True, True): "ft_tools", (True, False): "ft_notools"}


@dataclass
class SetupRow:
    """One setup's result next to the paper's."""

    setup: str
    finetuned: bool
    trained_with_tools: bool
    inference_with_tools: bool
    model: str
    tools: list[str]
    metric: float
    ci_low: float
    ci_high: float
    n_scored: int
    input_errors: int
    parse_failures: int
    api_failures: int
    paper: float | None
    #: ours minus setup 5 (base, no tools) on the same docs, with its paired bootstrap CI
    vs_base: dict | None = None


@dataclass
class AblationResult:
    """The table, the task, and the conventions that produced the numbers."""

    task: str
    metric_name: str
    n_docs: int
    rows: list[SetupRow]
    conventions: dict = field(default_factory=dict)
    specialist_invocations: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "task": self.task,
            "metric": self.metric_name,
            "n_docs": self.n_docs,
            "rows": [asdict(r) for r in self.rows],
            "conventions": self.conventions,
            "specialist_invocations": self.specialist_invocations,
        }

    def markdown(self) -> str:
        """Table 3 as markdown: our value with its CI, the paper's, the difference, the counts."""

        def num(v: float | None) -> str:
            return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"

        def yes(b: bool) -> str:
            return "yes" if b else "no"

        m = self.metric_name
        lines = [
            f"# Table 3 on {self.task}: {m} of InternVL ({self.n_docs} docs)",
            "",
            f"| setup | fine-tuned | trained w/ tools | inference w/ tools | ours ({m}) | 95% CI | paper | "
            "ours - paper | vs setup 5 (paired 95% CI) | scored | input errors | parse failures | API failures |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            diff = None if r.paper is None or math.isnan(r.metric) else r.metric - r.paper
            vs = r.vs_base
            vs_text = (
                "—"
                if not vs or vs.get("diff") is None or math.isnan(vs["diff"])
                else f"{vs['diff']:+.4f} [{num(vs['ci_low'])}, {num(vs['ci_high'])}]"
            )
            lines.append(
                f"| {r.setup} | {yes(r.finetuned)} | {yes(r.trained_with_tools)} | {yes(r.inference_with_tools)} "
                f"| {num(r.metric)} | [{num(r.ci_low)}, {num(r.ci_high)}] | {num(r.paper)} | "
                f"{'—' if diff is None else f'{diff:+.4f}'} | {vs_text} | {r.n_scored} | {r.input_errors} | "
                f"{r.parse_failures} | {r.api_failures} |"
            )
        c = self.conventions
        lines += [
            "",
            f"Models: base `{c.get('base')}`, trained with tools `{c.get('ft_tools')}`, trained without "
            f"`{c.get('ft_notools')}`; inference with tools = `tools={c.get('inference_tools')}`.",
            f"CIs: {c.get('ci')}. Failed docs (input, parse, API) are counted, never scored.",
            f"Paper: {c.get('paper')}",
        ]
        if c.get("limit") is not None:
            lines.append(f"Only the first {c['limit']} docs (--limit): a trial, not a result.")
        return "\n".join(lines) + "\n"


def setups() -> list[dict]:
    """Table 3's setups in the paper's order (``reports.paper.table3``)."""
    from lmms_eval_autorater.reports.paper import table3

    return table3()


def check_checkpoint(path: str, expected_tools: str, option: str) -> None:
    """Refuse a checkpoint whose ``autorater_training.json`` says it was trained the other way."""
    from lmms_eval_autorater.training.train import TRAINING_INFO

    info_file = Path(path) / TRAINING_INFO
    if not info_file.is_file():
        return  # a checkpoint not written by ``train`` (hub id, someone else's): taken as given
    tools = json.loads(info_file.read_text()).get("tools")
    if tools != expected_tools:
        raise UsageError(
            f"{option} {path}: trained --tools {tools} (its {TRAINING_INFO}), but {option} is the model "
            f"trained --tools {expected_tools}"
        )


def run_ablation(
    task: str,
    models: dict[str, str],
    *,
    model_args: dict | None = None,
    inference_tools: str | list[str] = "all",
    limit: int | None = None,
    n_resamples: int = 1000,
    docs: list[dict] | None = None,
    pool: Any = None,
    progress: bool = True,
) -> AblationResult:
    """Run Table 3's six setups on ``task``; ``models`` maps ``base``, ``ft_tools``, ``ft_notools`` to
    ``pretrained=`` values. ``pool``: a specialist pool to share (default: the factory's)."""
    from lmms_eval_autorater.judges.factory import build_judge, build_pool, judge_config
    from lmms_eval_autorater.reports.paper import citation
    from lmms_eval_autorater.specialists.registry import applicable
    from lmms_eval_autorater.tasks.catalog import build_docs, task_info

    info = task_info(task)
    extra = {k: v for k, v in (model_args or {}).items() if k not in ("pretrained", "tools")}
    if docs is None:
        docs = build_docs(task)
    if limit is not None:
        docs = docs[:limit]
    if not docs:
        raise UsageError(f"task {task!r} has no docs")
    table = setups()
    order = list(dict.fromkeys(ROLE_OF[(s["finetuned"], s["trained_with_tools"])] for s in table))
    if pool is None:
        pool = build_pool(judge_config("autorater_internvl", {**extra, "pretrained": models[order[0]]}))
    judges = {
        role: build_judge(
            "autorater_internvl", {**extra, "pretrained": models[role]}, pool=pool, progress=progress
        )
        for role in order
    }
    first = judges[order[0]]
    loop = EvaluationLoop(first, task, docs, n_resamples=n_resamples)
    codes = inference_tools if isinstance(inference_tools, list) else applicable(info.task_kind)
    if inference_tools != "auto":  # every specialist once over every doc, before any judge model is loaded
        loop.prepass(first.with_tools(inference_tools), codes)
    records_by_setup: dict[str, list[dict]] = {}
    rows: list[SetupRow] = []
    for role in order:
        judge = judges[role]
        for s in (s for s in table if ROLE_OF[(s["finetuned"], s["trained_with_tools"])] == role):
            setup = str(s["setup"])
            tools = inference_tools if s["inference_with_tools"] else []
            records = records_by_setup[setup] = loop.records(setup, judge.with_tools(tools))
            value, low, high, summ = loop.metric(records)
            shown = list(dict.fromkeys(c for v in loop.judged(setup) for c in v.meta.get("tools", [])))
            paper_value = s.get("pearson") if task == "aigiqa" and info.metric == "pearson" else None
            rows.append(
                SetupRow(
                    setup=setup,
                    finetuned=bool(s["finetuned"]),
                    trained_with_tools=bool(s["trained_with_tools"]),
                    inference_with_tools=bool(s["inference_with_tools"]),
                    model=models[role],
                    tools=shown,
                    metric=float(value),
                    ci_low=float(low),
                    ci_high=float(high),
                    **counts(summ),
                    paper=None if paper_value is None else float(paper_value),
                )
            )
        if judge.backend is not None:
            judge.backend.release()  # one InternVL in memory at a time
    reference = next(
        (str(s["setup"]) for s in table if not s["finetuned"] and not s["inference_with_tools"]), None
    )
    rows.sort(key=lambda r: [str(s["setup"]) for s in table].index(r.setup))
    for r in rows:
        if reference is not None and r.setup != reference:
            diff = loop.paired(records_by_setup[r.setup], records_by_setup[reference])
            r.vs_base = {"reference": reference, **diff.to_json()}
    conventions = {
        "base": models["base"],
        "ft_tools": models["ft_tools"],
        "ft_notools": models["ft_notools"],
        "inference_tools": inference_tools if isinstance(inference_tools, str) else "+".join(inference_tools),
        "model_args": extra,
        "ci": f"95% percentile bootstrap, {n_resamples} resamples, seed 0, resampling prompts (doc groups); "
        f"'vs setup {reference}': paired bootstrap of the difference on the same docs",
        "limit": limit,
        "paper": citation(),
    }
    return AblationResult(
        task=task,
        metric_name=info.metric,
        n_docs=len(docs),
        rows=rows,
        conventions=conventions,
        specialist_invocations=dict(getattr(pool, "invocations", {}) or {}),
    )


def write(result: AblationResult, output: str | Path) -> tuple[Path, Path]:
    """``table3.md`` and ``table3.json`` in ``output``."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "table3.md", out / "table3.json"
    md.write_text(result.markdown())
    js.write_text(json.dumps(result.to_json(), indent=2, default=str) + "\n")
    return md, js


# -- the command -------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``ablation`` command's arguments."""
    from lmms_eval_autorater.judges.factory import PRESETS

    parser.add_argument("--task", default="aigiqa", help="the task (the paper's Table 3 is on aigiqa)")
    parser.add_argument(
        "--base", default=PRESETS["autorater_internvl"].model, help="the base model (setups 4 and 5)"
    )
    parser.add_argument("--ft_tools", required=True, metavar="CKPT", help="`train --tools with` checkpoint")
    parser.add_argument(
        "--ft_notools", required=True, metavar="CKPT", help="`train --tools without` checkpoint"
    )
    parser.add_argument("--output", required=True, help="folder for table3.md and table3.json")
    parser.add_argument(
        "--model_args",
        default="",
        help="arguments for every judge, as for lmms-eval (max_patches=, *_model=, specialist_device=, ...); "
        "no pretrained= or tools=",
    )
    parser.add_argument(
        "--tools", default="all", help="the specialists of 'inference with tools' (all or A+B)"
    )
    parser.add_argument("--limit", type=int, default=None, help="first N docs only (a trial, not a result)")
    parser.add_argument("--n_resamples", type=int, default=1000, help="bootstrap resamples for the 95%% CIs")


def run(args: argparse.Namespace) -> int:
    """Run the ``ablation`` command; returns the exit code."""
    from lmms_eval_autorater.judges.args import ModelArgError, parse_model_args, parse_tools
    from lmms_eval_autorater.judges.factory import judge_config
    from lmms_eval_autorater.tasks.catalog import TASKS

    if args.task not in TASKS:
        raise UsageError(f"--task must be one of {', '.join(TASKS)}; got {args.task!r}")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be >= 1")
    try:
        model_args = parse_model_args(args.model_args)
        tools = parse_tools(args.tools, TASKS[args.task].task_kind)
        for key in ("pretrained", "tools"):
            if key in model_args:
                raise UsageError(f"--model_args must not set {key}=: the ablation chooses it per setup")
        judge_config("autorater_internvl", model_args)  # unknown or bad arguments stop here, before loading
    except ModelArgError as exc:  # judges.args' own class: one line without its type name
        raise UsageError(str(exc)) from exc
    if tools in ([], "auto"):
        raise UsageError(f"--tools {args.tools}: 'inference with tools' needs specialists (all or codes)")
    for option, path, expected in (
        ("--ft_tools", args.ft_tools, "with"),
        ("--ft_notools", args.ft_notools, "without"),
    ):
        if not Path(path).is_dir():
            raise UsageError(f"{option} {path}: no such checkpoint folder")
        check_checkpoint(path, expected, option)
    models = {"base": args.base, "ft_tools": args.ft_tools, "ft_notools": args.ft_notools}
    result = run_ablation(
        args.task,
        models,
        model_args=model_args,
        inference_tools=tools,
        limit=args.limit,
        n_resamples=args.n_resamples,
    )
    md, js = write(result, args.output)
    print(result.markdown())
    print(f"wrote {md} and {js}")
    return 0
