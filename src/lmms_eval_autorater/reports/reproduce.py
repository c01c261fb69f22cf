"""The ``reproduce`` command: plan and run every row of Table 2 through lmms-eval, then build the table.

The plan is every paper row (``catalog/paper.yaml``) x column with the lmms-eval arguments the README
gives; each job (one lmms-eval run) is checked for what it needs (API key, local weights, data) and
skipped with the reason when it cannot run. Jobs run as ``lmms-eval`` subprocesses writing to
``DIR/runs/<job>/`` (the response and specialist caches are reused as usual); each job's results file is
verified (lmms-eval exits 0 on failure). ``DIR/reproduce_state.json`` records finished jobs, so an
interrupted ``reproduce`` resumes; ``table`` is then built from ``DIR/runs`` into ``DIR/table``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmms_eval_autorater.catalog import models as catalog_models
from lmms_eval_autorater.catalog.models import default_args
from lmms_eval_autorater.errors import UsageError
from lmms_eval_autorater.judges.args import parse_model_args
from lmms_eval_autorater.reports import paper as paper_data
from lmms_eval_autorater.reports.table import row_spec
from lmms_eval_autorater.tasks.catalog import task_info

HELP = "plan and run every row of Table 2, then build the table"

STATE_FILE = "reproduce_state.json"
#: a plan whose estimated direct-API cost (USD) is above this asks for --yes
DEFAULT_MAX_USD = 5.0

#: the baselines' lmms-eval arguments and batch sizes, as the README's "Reproducing Table 2" gives them
#: (the model catalog's checkpoints)
BASELINE_ARGS = {e.id: (default_args(e.id), e.batch_size) for e in catalog_models.baselines()}
#: the batch size of the local InternVL judge (README)
INTERNVL_BATCH = catalog_models.MODELS["autorater_internvl"].batch_size
#: the AutoRater judges (specialists and ``--judge_args`` apply to them); the paper's variants are not
#: planned (each row runs its base judge with its own tools=)
JUDGE_MODELS = tuple(e.id for e in catalog_models.judges(variants=False))
#: model args naming weights to check: hub id or local folder
WEIGHT_ARGS = ("checkpoint", "base_model", "tokenizer", "pretrained", "processor")


@dataclass
class Job:
    """One lmms-eval run of the plan: a row on some tasks, its arguments, and why it cannot run (if so)."""

    id: str
    row: str
    model: str
    model_args: str
    tasks: list[str]
    batch_size: int | None = None
    limit: int | None = None
    blockers: list[str] = field(default_factory=list)
    #: columns of this row that cannot run here (task -> why); the row runs on the rest
    skipped_tasks: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    estimate: dict[str, Any] | None = None
    estimate_note: str | None = None

    def command(self, out: Path) -> list[str]:
        """The lmms-eval command line of this job, writing under ``out``."""
        cmd = [str(Path(sys.executable).with_name("lmms-eval")), "--model", self.model]
        if self.model_args:
            cmd += ["--model_args", self.model_args]
        cmd += ["--tasks", ",".join(self.tasks)]
        if self.batch_size:
            cmd += ["--batch_size", str(self.batch_size)]
        if self.limit is not None:
            cmd += ["--limit", str(self.limit)]
        return [*cmd, "--output_path", str(out), "--log_samples"]

    def signature(self) -> str:
        """What makes two jobs the same run (a finished job is reused only when this is unchanged)."""
        return json.dumps([self.model, self.model_args, self.tasks, self.batch_size, self.limit])


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _join_args(*parts: str) -> str:
    return ",".join(p for p in parts if p)


def _merge_args(base: str, extra: str) -> str:
    """``base`` with the ``k=v`` items of ``extra``: a key of both takes ``extra``'s value, a new key is added."""
    merged = parse_model_args(base, strict=False)
    merged.update(parse_model_args(extra))
    return ",".join(f"{k}={v}" for k, v in merged.items())


def parse_overrides(items: Sequence[str]) -> dict[str, str]:
    """``--model_args KEY=ARGS`` items as {key: args}; KEY is a paper row name or a planned lmms-eval model.

    A bad item (no ``=``, an unknown key, an ARGS that is not ``k=v,...``) is a ``UsageError`` naming it.
    """
    rows = [r["row"] for r in paper_data.table2()]
    models = sorted({row_spec(r)[0] for r in rows})
    out: dict[str, str] = {}
    for item in items:
        key, sep, args = item.partition("=")
        key = key.strip()
        if not sep or not key or not args.strip():
            raise UsageError(f"--model_args {item!r}: expected ROW=K=V,... or MODEL=K=V,...")
        if key not in rows and key not in models:
            raise UsageError(
                f"--model_args {item!r}: {key!r} is neither a Table 2 row ({', '.join(rows)}) "
                f"nor a planned model ({', '.join(models)})"
            )
        try:
            parse_model_args(args)
        except ValueError as exc:
            raise UsageError(f"--model_args {item!r}: {exc}") from None
        out[key] = _merge_args(out.get(key, ""), args)
    return out


def plan_jobs(
    rows: Sequence[str] | None = None,
    tasks: Sequence[str] | None = None,
    checkpoints: dict[str, str] | None = None,
    limit: int | None = None,
    judge_args: str = "",
    overrides: dict[str, str] | None = None,
) -> list[Job]:
    """The jobs of Table 2 (selected rows and tasks), before any check; ``judge_args`` (``k=v,k=v``) are
    added to every AutoRater judge's model args (e.g. ``concurrency=32`` or a proxy's ``base_url=``);
    ``overrides`` (``parse_overrides``) merge into the model args of one lmms-eval model's jobs, then of one
    row's (e.g. a local server's ``base_url=``, a local ``pretrained=`` or ``checkpoint=``)."""
    columns = list(paper_data.paper()["columns"])
    tasks = list(tasks or columns)
    bad = [t for t in tasks if t not in columns]
    if bad:
        raise ValueError(f"unknown task(s) {', '.join(bad)}; Table 2's columns: {', '.join(columns)}")
    names = [r["row"] for r in paper_data.table2()]
    for r in rows or []:
        paper_data.table2_row(r)  # KeyError listing the rows
    checkpoints = checkpoints or {}
    jobs: list[Job] = []
    for name in rows or names:
        model, kind = row_spec(name)
        prow = paper_data.table2_row(name)
        base = Job(id=_slug(name), row=name, model=model, model_args="", tasks=tasks, limit=limit)
        if kind is None:
            args, batch = BASELINE_ARGS[model]
            base.model_args, base.batch_size = args, batch
            entry = catalog_models.MODELS[model]
            for task in [t for t in tasks if not entry.applies_to(task_info(t).task_kind)]:
                base.tasks = [t for t in base.tasks if t != task]
                base.skipped_tasks[task] = f"{model} scores {entry.task_kind} tasks only"
            jobs.append(base)
        elif kind == "grid":
            for task in tasks:
                subset = "+".join(prow["grid"][task])
                jobs.append(
                    Job(
                        id=f"{_slug(name)}__{task}",
                        row=name,
                        model=model,
                        model_args=f"tools={subset}",
                        tasks=[task],
                        limit=limit,
                    )
                )
        elif kind in ("ft_tools", "ft_notools"):
            ckpt = checkpoints.get(kind.removeprefix("ft_"))
            tools = "all" if kind == "ft_tools" else "none"
            base.model_args = _join_args(f"pretrained={ckpt}" if ckpt else "", f"tools={tools}")
            base.batch_size = INTERNVL_BATCH
            if not ckpt:
                flag = "tools" if kind == "ft_tools" else "notools"
                base.blockers.append(
                    f"needs a fine-tuned checkpoint (lmms-eval-autorater train): --checkpoint {flag}=PATH"
                )
            jobs.append(base)
        else:
            if model == "autorater_internvl":
                from lmms_eval_autorater.judges.factory import PRESETS

                base.model_args = f"pretrained={PRESETS[model].model}"
                base.batch_size = INTERNVL_BATCH
            base.model_args = _join_args(base.model_args, "" if kind == "none" else f"tools={kind}")
            jobs.append(base)
    if judge_args:
        for job in jobs:
            if job.model in JUDGE_MODELS:
                job.model_args = _join_args(job.model_args, judge_args)
    for job in jobs:
        for key in (job.model, job.row):
            if key in (overrides or {}):
                job.model_args = _merge_args(job.model_args, overrides[key])
    return jobs


# ---------------------------------------------------------------------------------------------
# what a job needs


def _hub_cached(repo_id: str, repo_type: str = "model") -> bool:
    """Whether the Hugging Face cache holds a snapshot of ``repo_id``."""
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / f"{repo_type}s--{repo_id.replace('/', '--')}" / "snapshots"
    return folder.is_dir() and any(folder.iterdir())


def _offline() -> bool:
    from lmms_eval_autorater.runtime import hf_offline

    return hf_offline()


def _check_weights(ref: str, what: str) -> tuple[str | None, str | None]:
    """(blocker, note) for one model reference: a local folder, a cached hub id, or a download."""
    if Path(ref).expanduser().exists():
        return None, None
    if ref.startswith((".", "/", "~")) or ref.count("/") > 1 or os.sep != "/" and os.sep in ref:
        return f"{what} {ref}: no such local folder", None
    if _hub_cached(ref):
        return None, None
    if _offline():
        return f"{what} {ref}: not in the Hugging Face cache and HF_HUB_OFFLINE is set", None
    return None, f"downloads {what} {ref} from the Hugging Face hub"


def _specialists(job: Job) -> list[str]:
    """The specialist codes a job may run (all applicable for all/auto; the subset for fixed ones)."""
    from lmms_eval_autorater.judges.args import parse_tools
    from lmms_eval_autorater.specialists.registry import applicable
    from lmms_eval_autorater.tasks.catalog import TASKS

    args = parse_model_args(job.model_args, strict=False)
    if job.model not in JUDGE_MODELS:
        return []
    tools = parse_tools(args.get("tools", "none"))
    if isinstance(tools, list):
        return tools
    return [c for c in dict.fromkeys(c for t in job.tasks for c in applicable(TASKS[t].task_kind))]


def _check_data(task: str, docs: dict[str, list[dict]]) -> str | None:
    """None when the task's docs can be built now (locally or from the hub cache), else the reason."""
    from lmms_eval_autorater.tasks.catalog import build_docs
    from lmms_eval_autorater.tasks.common import data_dir

    if task in docs:
        return None
    local = data_dir()
    folder = {"psr": "psr", "imagereward_pair": "ImageRewardDB", "imagereward_point": "ImageRewardDB"}.get(
        task, task
    )
    if (local is None or not (local / folder).exists()) and task == "psr":
        return "PSR's human votes are not public: needs $AUTORATER_DATA_DIR/psr/ (see tasks/psr/README.md)"
    if local is None or not (local / folder).exists():
        from lmms_eval_autorater.tasks.aigiqa.utils import HUB_CSV_REPO
        from lmms_eval_autorater.tasks.imagereward_pair.utils import HUB_REPO

        repo = HUB_CSV_REPO if task == "aigiqa" else HUB_REPO
        if task == "aigiqa" or not _hub_cached(repo, "dataset"):
            if _offline():
                return f"no $AUTORATER_DATA_DIR/{folder}/ and HF_HUB_OFFLINE is set (the hub holds {repo})"
            return None  # lmms-eval downloads it; the estimate says n/a
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"  # a check never downloads
    try:
        docs[task] = build_docs(task)
    except Exception as exc:  # DataError, or a hub/cache problem: the first line names it
        return f"{task} data: {str(exc).splitlines()[0][:300]}"
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old
    return None


def check_jobs(jobs: list[Job], estimate: bool = True) -> list[Job]:
    """Fill each job's blockers (API key, weights, data), notes and estimate (calls, cached calls, USD)."""
    from lmms_eval_autorater.judges.factory import PRESETS
    from lmms_eval_autorater.specialists.registry import SPECS

    docs: dict[str, list[dict]] = {}
    for job in jobs:
        preset = PRESETS.get(job.model)
        if preset and preset.key_env and not os.environ.get(preset.key_env):
            job.blockers.append(f"needs ${preset.key_env} (not set)")
        args = parse_model_args(job.model_args, strict=False)
        for key in WEIGHT_ARGS:
            if key in args and args[key]:
                blocker, note = _check_weights(args[key], key)
                job.blockers += [blocker] if blocker else []
                job.notes += [note] if note else []
        for code in _specialists(job):
            ref = args.get(f"{code.lower()}_model") or SPECS[code].default_model
            if "/" in ref:
                blocker, note = _check_weights(ref, f"specialist {code}")
                job.blockers += [blocker] if blocker else []
                job.notes += [note] if note else []
            else:
                job.notes.append(
                    f"specialist {code} ({ref}): its weights are found when it loads (not checked)"
                )
        for task in list(job.tasks):
            reason = _check_data(task, docs)
            if reason:
                job.skipped_tasks[task] = reason
                job.tasks.remove(task)
        if not job.tasks:
            job.blockers += [f"{t}: {why}" for t, why in job.skipped_tasks.items()]
            job.tasks = list(job.skipped_tasks)
        if estimate:
            _estimate(job, docs)
    return jobs


def _estimate(job: Job, docs: dict[str, list[dict]]) -> None:
    from lmms_eval_autorater.judges.factory import PRESETS

    preset = PRESETS.get(job.model)
    if preset is None or preset.kind == "local":
        job.estimate = {"local": True, "usd_direct": 0.0, "usd_batch": 0.0}
        job.estimate_note = "local model: no API call, no API cost"
        return
    if any(t not in docs for t in job.tasks):
        job.estimate_note = "n/a: the data is not available here"
        return
    from lmms_eval_autorater.experiments.estimate import estimate_run

    args = parse_model_args(job.model_args, strict=False)
    try:
        job.estimate = estimate_run(job.model, args, job.tasks, job.limit, docs=docs)
    except Exception as exc:  # the estimate is advice: its failure is shown, not fatal
        job.estimate_note = f"n/a: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"


# ---------------------------------------------------------------------------------------------
# state, verification, execution


def _results_files(out: Path) -> dict[Path, float]:
    return {p: p.stat().st_mtime for p in out.rglob("*_results.json")} if out.exists() else {}


def verify_results(
    out: Path, tasks: Sequence[str], before: dict[Path, float] | None = None
) -> tuple[Path | None, str]:
    """The newest results file under ``out`` holding every task's headline metric (one not in ``before``,
    the files seen before the run started, or rewritten since), or (None, what is wrong)."""
    from lmms_eval_autorater.tasks.catalog import TASKS

    found = _results_files(out)
    if before is not None:
        found = {p: m for p, m in found.items() if before.get(p) != m}
    files = sorted(found, key=lambda p: (found[p], p.name))
    if not files:
        return None, f"no results file under {out}"
    path = files[-1]
    try:
        results = json.loads(path.read_text(encoding="utf-8")).get("results", {})
    except (OSError, json.JSONDecodeError) as exc:
        return None, f"{path}: unreadable ({exc})"
    for task in tasks:
        metric = f"{TASKS[task].metric},none"
        value = (results.get(task) or {}).get(metric)
        if not isinstance(value, (int, float)):
            return None, f"{path}: task {task} has no {metric.split(',')[0]}"
    return path, ""


def load_state(out: Path) -> dict[str, Any]:
    path = out / STATE_FILE
    if not path.exists():
        return {"jobs": {}}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON ({exc.msg}); delete it to start over") from None


def save_state(out: Path, state: dict[str, Any]) -> None:
    path = out / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def _run_subprocess(cmd: list[str], log: Path) -> int:
    with log.open("w", encoding="utf-8") as fh:
        return subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT).returncode


def _log_error(log: Path) -> str:
    """The last line of an lmms-eval log saying why the evaluation failed (lmms-eval still exits 0)."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    hits = [ln for ln in lines if "Error during evaluation" in ln] or [ln for ln in lines if "Error" in ln]
    if not hits:
        return ""
    text = re.sub(r"\x1b\[[0-9;]*m", "", hits[-1])
    return text.split("Error during evaluation:", 1)[-1].strip()[:300]


def execute(
    jobs: list[Job], out: Path, runner: Callable[[list[str], Path], int] = _run_subprocess
) -> dict[str, Any]:
    """Run the runnable jobs not finished yet, verifying each results file; the state is saved after each."""
    out.mkdir(parents=True, exist_ok=True)
    state = load_state(out)
    for job in jobs:
        entry = state["jobs"].get(job.id)
        job_dir = out / "runs" / job.id
        if job.blockers:
            state["jobs"][job.id] = {"row": job.row, "status": "skipped", "reasons": job.blockers}
            save_state(out, state)
            continue
        if entry and entry.get("status") == "done" and entry.get("signature") == job.signature():
            path, _ = verify_results(job_dir, job.tasks)
            if path is not None and str(path) == entry.get("results_file"):
                print(f"reproduce: {job.id}: finished before ({path}); not rerun")
                continue
        job_dir.mkdir(parents=True, exist_ok=True)
        cmd = job.command(job_dir)
        print(f"reproduce: {job.id}: {shlex.join(cmd)}")
        before = _results_files(job_dir)
        rc = runner(cmd, job_dir / "lmms_eval.log")
        path, problem = verify_results(job_dir, job.tasks, before=before)
        entry = {"row": job.row, "tasks": job.tasks, "signature": job.signature(), "command": cmd, "rc": rc}
        if path is None:
            said = _log_error(job_dir / "lmms_eval.log")
            entry.update(
                status="failed",
                reason=f"{problem} (exit {rc}{'; ' + said if said else ''}; log {job_dir / 'lmms_eval.log'})",
            )
            print(f"reproduce: {job.id}: FAILED: {entry['reason']}")
        else:
            entry.update(status="done", results_file=str(path))
        state["jobs"][job.id] = entry
        save_state(out, state)
    return state


# ---------------------------------------------------------------------------------------------
# command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``reproduce`` command's arguments."""
    parser.add_argument(
        "--output", required=True, metavar="DIR", help="runs, state file and the table go here"
    )
    parser.add_argument("--rows", nargs="+", metavar="ROW", help="paper row names (default: every row)")
    parser.add_argument("--tasks", nargs="+", metavar="TASK", help="Table 2 columns (default: all four)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and its cost; run nothing")
    parser.add_argument("--yes", action="store_true", help="run a plan above --max_usd (or of unknown cost)")
    parser.add_argument("--max_usd", type=float, default=DEFAULT_MAX_USD, help="cost that needs --yes (USD)")
    parser.add_argument("--limit", type=int, default=None, help="lmms-eval --limit per task (a smoke run)")
    parser.add_argument("--judge_args", default="", metavar="K=V,...",
                        help="added to every AutoRater judge's model args (concurrency=, cache_dir=, base_url=)")  # fmt: skip
    parser.add_argument("--checkpoint", action="append", default=[], metavar="tools|notools=PATH",
                        help="fine-tuned InternVL checkpoints for the two fine-tuned rows")  # fmt: skip
    parser.add_argument("--model_args", action="append", default=[], metavar="ROW|MODEL=K=V,...",
                        help="merged into the model args of one row (its paper name) or of every row of one "
                        "lmms-eval model: a local server's base_url=, local weights (pretrained=, checkpoint=)")  # fmt: skip


def _fmt_estimate(job: Job) -> str:
    if job.estimate is None or job.estimate.get("local"):
        return job.estimate_note or "n/a"
    e = job.estimate
    usd = e.get("usd_direct")
    usd_text = (
        "unknown price" if usd is None else f"${usd:.2f} direct, ${(e.get('usd_batch') or 0):.2f} batch"
    )
    return f"{e.get('calls', 0)} calls ({e.get('cached_calls', 0)} cached), {usd_text}"


def print_plan(jobs: list[Job], out: Path) -> None:
    for job in jobs:
        status = "SKIP" if job.blockers else "run "
        print(f"[{status}] {job.row} | {','.join(job.tasks)} | {job.model} {job.model_args}".rstrip())
        for reason in job.blockers:
            print(f"         skipped: {reason}")
        if not job.blockers:
            for task, reason in job.skipped_tasks.items():
                print(f"         column {task} skipped: {reason}")
        for note in job.notes:
            print(f"         note: {note}")
        print(f"         judge calls / cost: {_fmt_estimate(job)}")
        if not job.blockers:
            print(f"         {shlex.join(job.command(out / 'runs' / job.id))}")
    ready = [j for j in jobs if not j.blockers]
    print(f"reproduce: {len(ready)} of {len(jobs)} jobs can run; {len(jobs) - len(ready)} skipped")


def plan_cost(jobs: list[Job]) -> tuple[float, list[str]]:
    """The estimated direct USD of the runnable jobs, and the ones whose cost is unknown."""
    total, unknown = 0.0, []
    for job in jobs:
        if job.blockers:
            continue
        usd = (job.estimate or {}).get("usd_direct")
        if usd is None:
            unknown.append(job.id)
        else:
            total += float(usd)
    return total, unknown


def _parse_checkpoints(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, path = item.partition("=")
        if not sep or key not in ("tools", "notools") or not path:
            raise ValueError(f"--checkpoint {item!r}: expected tools=PATH or notools=PATH")
        out[key] = path
    return out


def run(args: argparse.Namespace) -> int:
    """Run the ``reproduce`` command; returns the exit code."""
    from lmms_eval_autorater.errors import UsageError
    from lmms_eval_autorater.reports.runs import RunsError
    from lmms_eval_autorater.reports.table import TableError, build_from_folders

    out = Path(args.output).resolve()  # the state file's paths hold from any working folder
    try:
        jobs = plan_jobs(
            args.rows,
            args.tasks,
            _parse_checkpoints(args.checkpoint),
            args.limit,
            args.judge_args,
            parse_overrides(args.model_args),
        )
    except (KeyError, ValueError) as exc:
        raise UsageError(str(exc.args[0] if exc.args else exc)) from None
    check_jobs(jobs)
    print_plan(jobs, out)
    if args.dry_run:
        return 0
    total, unknown = plan_cost(jobs)
    if not args.yes and (total > args.max_usd or unknown):
        why = f"estimated ${total:.2f} > --max_usd {args.max_usd:.2f}" if total > args.max_usd else ""
        if unknown:
            why = (why + "; " if why else "") + f"unknown cost for {', '.join(unknown)}"
        raise UsageError(f"reproduce: {why}: rerun with --yes to run it")
    if not any(not j.blockers for j in jobs):
        raise UsageError("reproduce: no job can run here (see the reasons above)")
    try:
        state = execute(jobs, out)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    failed = [f"{k}: {v['reason']}" for k, v in state["jobs"].items() if v.get("status") == "failed"]
    # the table of every verified run in DIR (this plan's and earlier ones'), each in its planned row
    done = [v for v in state["jobs"].values() if v.get("status") == "done"]
    if done:
        try:
            rows = [f"{v['row']}={v['results_file']}" for v in done]
            build_from_folders([v["results_file"] for v in done], str(out / "table"), rows)
            print(f"reproduce: table written to {out / 'table'}/table2.md")
        except (TableError, RunsError) as exc:
            raise UsageError(f"reproduce: the runs finished but the table failed: {exc}") from None
    if failed:
        raise UsageError("reproduce: failed jobs: " + "; ".join(failed))
    return 0
