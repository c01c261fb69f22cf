"""The ``assess`` command: the specialist pre-pass alone, filling the assessment cache for later runs.

For every doc of the tasks (``--tasks``) or of a training source (``--source``), each applicable specialist
(``--tools``) runs once per distinct input through the judge's own pre-pass code (``judges.pipeline.
SpecialistAssessor`` over ``specialists.cache.SpecialistPool``, built by the judge factory from the same
arguments as a judge's ``--model_args``) and its result goes to the assessment cache. Nothing else is
computed: a later judge run, grid, synthesis or report with the same ``cache_dir`` reads the cache and loads
no specialist model.

* Idempotent and resumable: what is cached is not assessed again; results are written batch by batch, so a
  killed pass resumes where it stopped.
* Sharded: under ``torchrun --nproc_per_node N`` or ``accelerate launch --num_processes N`` each process
  (rank) looks the cache up, then all meet at a barrier, then each assesses its share of the distinct
  inputs still missing (sorted by key, dealt round-robin: disjoint and deterministic), on its own device
  (``cuda:LOCAL_RANK`` unless ``specialist_device=`` says otherwise), writing into the one shared cache file
  (SQLite WAL; writers wait for each other). Rank 0 prints the totals.
* Failures are counted, never guessed: a doc whose image does not decode is an input error (as the judge
  decides), a specialist failing on one input fails that input only (by reason: ``input_error``,
  ``model_error``, ``api_error``, ``parse_failure``); failures are not cached, so a rerun tries them again.

Eight GPUs, one node::

    torchrun --nproc_per_node 8 -m lmms_eval_autorater.cli assess --tasks autorater_bench --tools all
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lmms_eval_autorater.errors import UsageError

HELP = "run the specialists over a benchmark's or a training source's images and fill the assessment cache"


@dataclass(frozen=True)
class Ranks:
    """This process's place in a multi-process launch (``torchrun`` / ``accelerate launch`` set the env)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, env: dict | None = None) -> Ranks:
        env = dict(os.environ if env is None else env)
        world = int(env.get("WORLD_SIZE", "1") or 1)
        rank = int(env.get("RANK", "0") or 0)
        local = int(env.get("LOCAL_RANK", str(rank)) or 0)
        if world < 1 or not 0 <= rank < world:
            raise UsageError(f"RANK={rank} and WORLD_SIZE={world} are not a valid launch")
        return cls(rank, world, local)


class Group:
    """Barrier and gather across the processes of a launch (``torch.distributed`` over gloo); one process:
    both trivial."""

    def __init__(self, ranks: Ranks) -> None:
        self.ranks = ranks
        self._dist: Any = None
        if ranks.world > 1:
            import datetime

            import torch.distributed as dist

            if not dist.is_initialized():
                # a shard can take hours: the barrier between specialists waits as long as the slowest rank
                dist.init_process_group("gloo", timeout=datetime.timedelta(hours=48))
            self._dist = dist

    def barrier(self) -> None:
        if self._dist is not None:
            self._dist.barrier()

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order (on every rank)."""
        if self._dist is None:
            return [obj]
        out: list[Any] = [None] * self.ranks.world
        self._dist.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if self._dist is not None and self._dist.is_initialized():
            self._dist.destroy_process_group()


def rank_device(device: str | None, ranks: Ranks) -> str | None:
    """The device of this rank: ``device`` as given (``cuda`` becomes ``cuda:LOCAL_RANK`` when several
    processes run), or ``cuda:LOCAL_RANK`` when CUDA is there and none was given, else None (the default)."""
    if device not in (None, "", "cuda"):
        return device
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    if device == "cuda" or (device in (None, "") and cuda and ranks.world > 1):
        return f"cuda:{ranks.local_rank}"
    return device or None


def collect_requests(
    tasks: list[str] | None,
    source: str | None,
    split: str | None,
    limit: int | None,
    max_samples: int | None = None,
    seed: int = 0,
) -> list[tuple[str, list[Any]]]:
    """(task or source name, its docs' ``JudgeRequest``s) for ``--tasks`` (groups expanded) or ``--source``."""
    from lmms_eval_autorater.tasks.common import doc_to_request

    out = []
    if source is not None:
        from lmms_eval_autorater.training.sources import build_source

        docs = build_source(source, split or "train", max_samples, seed).docs
        docs = docs[:limit] if limit is not None else docs
        out.append((source, [doc_to_request(d, source, d["doc_id"]) for d in docs]))
        return out
    from lmms_eval_autorater.experiments.estimate import expand_tasks
    from lmms_eval_autorater.tasks.catalog import build_docs

    for name in expand_tasks(tasks or []):
        docs = build_docs(name, split)
        docs = docs[:limit] if limit is not None else docs
        out.append((name, [doc_to_request(d, name, i) for i, d in enumerate(docs)]))
    return out


def plan_codes(tools: str, kinds: list[str]) -> dict[str, list[str]]:
    """task kind -> the codes to run on it (``all``: every applicable one; ``A+B``: those, each must apply)."""
    from lmms_eval_autorater.judges.args import ModelArgError, parse_tools
    from lmms_eval_autorater.specialists.registry import applicable

    out = {}
    for kind in kinds:
        try:
            parsed = parse_tools(tools, kind)
        except ModelArgError as exc:
            raise UsageError(f"--tools {tools}: {str(exc).removeprefix('model argument ')}") from exc
        if parsed == "auto" or parsed == []:
            raise UsageError(f"--tools {tools}: choose the specialists to run: all, or codes such as GD+QS")
        out[kind] = applicable(kind) if parsed == "all" else list(parsed)
    return out


def prepass(
    assessor: Any,
    requests: list[tuple[str, list[Any]]],
    tools: str,
    *,
    ranks: Ranks = Ranks(),
    barrier: Callable[[], None] | None = None,
    progress: bool = True,
) -> dict:
    """Run the pre-pass of this process: input check, then each code over its docs (this rank's shard).

    Returns this rank's summary: docs, input errors (docs whose image does not decode; first few named) and
    per code its ``FillStats`` as a dict.
    """
    from lmms_eval_autorater.judges.judge import check_inputs
    from lmms_eval_autorater.specialists.registry import SPECS

    seen: dict[str, str | None] = {}
    good: list[Any] = []
    problems: list[str] = []
    n_docs = 0
    for _, reqs in requests:
        n_docs += len(reqs)
        for req, problem in zip(reqs, check_inputs(reqs, seen)):
            if problem is None:
                good.append(req)
            else:
                problems.append(str(problem))
    by_kind = plan_codes(tools, sorted({r.task_kind for r in good}) or ["generation"])
    per_code: dict[str, dict] = {}
    for code in SPECS:  # the registry's order; one model in memory at a time
        reqs = [r for r in good if code in by_kind.get(r.task_kind, [])]
        if not reqs:
            continue
        stats = assessor.fill(
            code, reqs, rank=ranks.rank, world=ranks.world, barrier=barrier, progress=progress
        )
        per_code[code] = stats.as_dict()
    return {
        "rank": ranks.rank,
        "docs": n_docs,
        "input_errors": len(problems),
        "input_error_examples": problems[:5],
        "specialists": per_code,
    }


def combine(parts: list[dict], world: int = 1) -> dict:
    """The totals of every rank's summary: shared facts (docs, distinct inputs, cached before) from rank 0,
    work (assigned, assessed, failed, seconds) summed; ``per_rank`` keeps each rank's assessed counts."""
    first = parts[0]
    out: dict[str, Any] = {
        "world_size": world,
        "docs": first["docs"],
        "input_errors": first["input_errors"],
        "input_error_examples": first["input_error_examples"],
        "specialists": {},
    }
    for code, base in first["specialists"].items():
        rows = [p["specialists"][code] for p in parts]
        failed: Counter = Counter()
        for r in rows:
            failed.update(r["failed"])
        out["specialists"][code] = {
            "unique_inputs": base["unique"],
            "cached_before": base["cached"],
            "missing": base["missing"],
            "assessed": sum(r["assessed"] for r in rows),
            "failed": dict(failed),
            "unreadable": base["unreadable"],
            "assessed_per_rank": [r["assessed"] for r in rows],
            "assigned_per_rank": [r["assigned"] for r in rows],
            "seconds_max_rank": max(r["seconds"] for r in rows),
        }
    specs = out["specialists"].values()
    out["totals"] = {
        "unique_inputs": sum(s["unique_inputs"] for s in specs),
        "cached_before": sum(s["cached_before"] for s in specs),
        "assessed": sum(s["assessed"] for s in specs),
        "failed": sum(sum(s["failed"].values()) for s in specs),
    }
    return out


def summary_text(result: dict) -> str:
    """The summary as lines: per specialist, inputs assessed, already cached, failed by reason."""
    lines = [
        f"assess: {result['docs']} docs, {result['input_errors']} input error(s) (images that do not decode; "
        f"not assessed), {result['world_size']} process(es)"
    ]
    for code, s in result["specialists"].items():
        failed = ", ".join(f"{k} {v}" for k, v in sorted(s["failed"].items())) or "none"
        lines.append(
            f"  {code}: {s['unique_inputs']} distinct inputs: {s['cached_before']} already cached, "
            f"{s['assessed']} assessed, failed: {failed}"
        )
    t = result["totals"]
    lines.append(
        f"  total: {t['unique_inputs']} distinct inputs, {t['cached_before']} cached before, {t['assessed']} "
        f"assessed, {t['failed']} failed (failures are not cached: a rerun tries them again)"
    )
    lines += [f"  {p}" for p in result["input_error_examples"]]
    return "\n".join(lines)


def prepass_estimate(pool: Any, reqs: list[Any], tools: str, gpus: int = 1) -> dict:
    """The wall time of the pre-pass of ``reqs`` on ``gpus`` processes, from the per-input cost measured in
    the assessment cache (each row keeps its batch's seconds per input): per code, the distinct inputs, how
    many are cached, how many are left, the measured mean (and on how many inputs) and the estimate
    ``left * seconds / gpus`` (shards differ by one input at most); unknown (None) where nothing of that
    specialist version was measured. Nothing runs and no model loads; the inputs' images are hashed."""
    from lmms_eval_autorater.judges.judge import check_inputs
    from lmms_eval_autorater.specialists.registry import SPECS

    if gpus < 1:
        raise UsageError(f"--gpus must be >= 1, got {gpus}")
    good = [r for r, p in zip(reqs, check_inputs(reqs)) if p is None]
    by_kind = plan_codes(tools, sorted({r.task_kind for r in good}) or ["generation"])
    per_code: dict[str, dict] = {}
    for code in SPECS:
        mine = [r for r in good if code in by_kind.get(r.task_kind, [])]
        if not mine:
            continue
        from lmms_eval_autorater.judges.pipeline import SpecialistAssessor

        items, _ = SpecialistAssessor.inputs(mine)
        sp = pool.specialist(code)
        keys = {k for k in pool._keys(sp, items)[0] if k is not None}
        cached = len(pool.cache.get_many(list(keys), code))
        seconds, measured = pool.cache.measured_seconds(sp.version)
        left = len(keys) - cached
        per_code[code] = {
            "unique_inputs": len(keys),
            "cached": cached,
            "left": left,
            "seconds_per_input": seconds,
            "measured_inputs": measured,
            "wall_seconds": None if seconds is None else left * seconds / gpus,
        }
    walls = [c["wall_seconds"] for c in per_code.values()]
    return {
        "gpus": gpus,
        "specialists": per_code,
        "wall_seconds": None if any(w is None for w in walls) else sum(walls),
        "note": "from the measured per-input cost in the assessment cache (batch seconds / batch size) of "
        "the same specialist version; unknown where none is measured: run `assess --limit 50` first",
    }


# -- the command ---------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``assess`` command's arguments."""
    from lmms_eval_autorater.training.sources import SOURCES

    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--tasks", help="comma-separated tasks, or a group (autorater_bench, field_bench)")
    what.add_argument("--source", choices=sorted(SOURCES), help="a training source (as for synthesize)")
    parser.add_argument(
        "--split", default=None, help="tasks: test (default), validation or train; sources: train (default)"
    )
    parser.add_argument("--tools", default="all", help="all (default: every applicable) or codes, e.g. GD+QS")
    parser.add_argument("--limit", type=int, default=None, help="first N docs per task or source")
    parser.add_argument(
        "--model_args",
        default="",
        help="the specialists' judge arguments: *_model=, ae_base_url=, qs_base_url=, specialist_device=, "
        "specialist_batch_size=, cache_dir=",
    )
    parser.add_argument("--max_samples", type=int, default=None, help="sources: the draw (as for synthesize)")
    parser.add_argument("--seed", type=int, default=0, help="sources: seed of the draw")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Run the ``assess`` command; returns the exit code."""
    from lmms_eval_autorater.judges.args import ModelArgError, parse_model_args
    from lmms_eval_autorater.judges.factory import build_pool, specialist_config
    from lmms_eval_autorater.judges.pipeline import SpecialistAssessor

    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be >= 1, got {args.limit}")
    try:
        cfg = specialist_config(parse_model_args(args.model_args))
    except ModelArgError as exc:
        raise UsageError(str(exc)) from exc
    ranks = Ranks.from_env()
    try:
        requests = collect_requests(
            args.tasks.split(",") if args.tasks else None,
            args.source,
            args.split,
            args.limit,
            args.max_samples,
            args.seed,
        )
    except ValueError as exc:  # an unknown task or split (DataError names the missing file: kept)
        if type(exc) is not ValueError:
            raise
        raise UsageError(str(exc)) from exc
    plan_codes(args.tools, sorted({r.task_kind for _, reqs in requests for r in reqs}) or ["generation"])
    cfg.specialist_device = rank_device(cfg.specialist_device, ranks)
    group = Group(ranks)
    try:
        assessor = SpecialistAssessor(build_pool(cfg))
        mine = prepass(
            assessor,
            requests,
            args.tools,
            ranks=ranks,
            barrier=group.barrier if ranks.world > 1 else None,
            progress=not args.no_progress,
        )
        parts = group.gather(mine)
    finally:
        group.close()
    if ranks.rank == 0:
        result = combine(parts, ranks.world)
        print(json.dumps(result, indent=2) if args.json else summary_text(result))
    return 0


__all__ = [
    "Group",
    "Ranks",
    "add_arguments",
    "collect_requests",
    "combine",
    "plan_codes",
    "prepass",
    "prepass_estimate",
    "rank_device",
    "run",
    "summary_text",
]
