"""The ``submission`` command: one evaluated model's finished runs as one checkable leaderboard file.

The file (schema: ``submission.schema.json`` beside this module) holds the model's identity, the judge
configuration, per task every metric of the results file (headline, CI, ``n_scored``, each failure count,
usage), the conventions, provenance and every per-doc prediction (doc id, group, human truth, status,
prediction), so that ``validate`` can recompute each metric. ``docs_hash`` is ``tasks.catalog.docs_hash``
of the docs' ids, groups and human labels, computed here from the samples and by ``validate`` from the
local data. Beside it, the same results as Hugging Face model-index metadata (``<stem>.model-index.yaml``),
pushed to a model repository's card with ``--push MODEL_ID`` (huggingface_hub: creates the repository if needed; needs a token).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lmms_eval_autorater.catalog.models import baselines
from lmms_eval_autorater.redact import public_model_args as _public_model_args

HELP = "pack one model's finished runs as a checkable leaderboard submission"
FORMAT = "lmms-eval-autorater-submission"
FORMAT_VERSION = 1

#: model args that change how a run is executed, not what is evaluated: runs differing only there merge
OPERATIONAL_ARGS = frozenset(
    {
        "concurrency",
        "retry_budget",
        "timeout",
        "final_round",
        "max_retries",
        "backoff_base",
        "cache",
        "cache_dir",
        "specialist_device",
        "specialist_batch_size",
        "device",
        "batch_size",
        "max_batch_size",
        "base_url",
        "api_key_env",
        "max_cost_usd",
        "price_in",
        "price_out",
    }
)
#: the baselines are released checkpoints (the model catalog's)
OPEN_BASELINES = frozenset(e.id for e in baselines() if e.open_weights)


#: the Hugging Face dataset id and pretty name of each task (for the model-index metadata)
def _hf_datasets() -> dict[str, tuple[str, str]]:
    """task -> (hub dataset id, pretty name) for model-index metadata; the ids are the tasks' own."""
    from lmms_eval_autorater.tasks.aigiqa.utils import HUB_CSV_REPO
    from lmms_eval_autorater.tasks.field_common import EDITREWARD_HUB, GENAIBENCH_HUB, MMRB2_HUB
    from lmms_eval_autorater.tasks.imagereward_pair.utils import HUB_REPO

    return {
        "psr": ("psr", "PSR (editing preferences; not public)"),
        "imagereward_pair": (HUB_REPO, "ImageRewardDB test pairs"),
        "imagereward_point": (HUB_REPO, "ImageRewardDB test images"),
        "aigiqa": (HUB_CSV_REPO, "AIGIQA-20K test"),
        "mmrb2_t2i": (MMRB2_HUB, "MMRB2 text-to-image (both orders)"),
        "mmrb2_edit": (MMRB2_HUB, "MMRB2 image editing (both orders)"),
        "genaibench_gen": (GENAIBENCH_HUB, "GenAI-Bench image generation (four labels)"),
        "genaibench_edit": (GENAIBENCH_HUB, "GenAI-Bench image editing (four labels)"),
        **{
            f"editreward_bench_{n}": (EDITREWARD_HUB, f"EditReward-Bench {n}-candidate sets")
            for n in (2, 3, 4)
        },
    }


def _num(x: Any) -> float | int | None:
    """A metric value as JSON: NaN, ``"N/A"`` and non-numbers become null."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return None if isinstance(x, float) and not math.isfinite(x) else x


def public_model_args(args: Mapping[str, str]) -> dict[str, str]:
    """The model args a submission shows: the one redaction rule (``redact.public_model_args``)."""
    return {k: str(v) for k, v in _public_model_args(args).items()}


def identity_key(run) -> tuple:
    """What makes two runs the same evaluated model: the lmms-eval model and its non-operational args."""
    args = {k: v for k, v in run.model_args.items() if k not in OPERATIONAL_ARGS}
    return (run.model, tuple(sorted(args.items())))


def _safetensors_parameters(files: Sequence[Path]) -> int | None:
    """The number of parameters of safetensors files, read from their headers (no tensor is loaded)."""
    total = 0
    for f in files:
        with f.open("rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(size))
        for name, meta in header.items():
            if name != "__metadata__":
                total += math.prod(meta.get("shape") or [1])
    return total if files else None


def checkpoint_identity(ref: str | None) -> tuple[str | None, int | None]:
    """(checkpoint hash, parameter count) of a local checkpoint folder or a hub id in the local HF cache.

    A folder: sha256 over its config and weight files (names and bytes, sorted), parameters from the
    safetensors headers. A hub id found in the cache: ``hf:<repo>@<commit>``. Anything else: (None, None).
    """
    if not ref:
        return None, None
    folder = Path(ref).expanduser()
    commit = None
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(ref, local_files_only=True))
            commit = f"hf:{ref}@{folder.name}"
        except Exception:  # not a local folder, not in the cache: nothing to identify it by
            return None, None
    weights = sorted(
        p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".pth") and p.is_file()
    )
    params = _safetensors_parameters([p for p in weights if p.suffix == ".safetensors"])
    if commit:
        return commit, params
    digest = hashlib.sha256()
    for p in sorted([*weights, *(q for q in (folder / "config.json",) if q.is_file())]):
        digest.update(p.name.encode() + b"\0")
        with p.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return f"sha256:{digest.hexdigest()}", params


def _prediction(rec: Mapping, paradigm: str) -> dict:
    """One doc of a submission: id, group, human truth, status and the model's verdict."""
    pred = rec.get("pred")
    out: dict[str, Any] = {
        "doc_id": str(rec["doc_id"]),
        "group": None if rec.get("group") is None else str(rec["group"]),
        "status": rec["status"],
        "pred": _num(pred),
    }
    if paradigm == "pairwise":
        out["label"] = int(rec["label"])
        if rec.get("flipped") is not None:
            out["flipped"] = bool(rec["flipped"])
    else:
        out["target"] = float(rec["target"])
    return out


def task_entry(
    task: str,
    metrics: Mapping[str, Any],
    records: Sequence[Mapping],
    *,
    conventions: str | None,
    task_version: Any = None,
) -> dict:
    """The submission's entry of one task from its results-file metrics and per-doc records."""
    from lmms_eval_autorater.tasks.catalog import docs_hash, task_info

    info = task_info(task)
    predictions = [_prediction(r, info.paradigm) for r in records]
    return {
        "paradigm": info.paradigm,
        "metric": info.metric,
        "n_docs": len(predictions),
        "metrics": {k: _num(v) for k, v in metrics.items()},
        "conventions": conventions or "",
        "task_version": task_version,
        "docs_hash": docs_hash(predictions),
        "predictions": predictions,
    }


def build_submission(
    runs: Sequence,
    *,
    name: str | None = None,
    link: str | None = None,
    parameters: int | None = None,
    open_weights: bool | None = None,
) -> dict:
    """The submission of ``runs`` (``reports.runs.Run``), all of one evaluated model, each task once."""
    from lmms_eval_autorater.judges.contract import PARSER_VERSION
    from lmms_eval_autorater.judges.factory import PRESETS
    from lmms_eval_autorater.judges.prompts import TEMPLATE_VERSION
    from lmms_eval_autorater.tasks.catalog import TASKS

    if not runs:
        raise ValueError("no run to pack")
    keys = {identity_key(r) for r in runs}
    if len(keys) > 1:
        described = "; ".join(sorted(f"{m} {dict(a)}" for m, a in keys))
        raise ValueError(
            f"the runs are of {len(keys)} different models, one submission per model: {described}"
        )
    first = runs[0]
    tasks: dict[str, dict] = {}
    where: dict[str, Path] = {}
    snapshots: set[str] = set()
    fingerprints: set[str] = set()
    for run in runs:
        for task, tr in run.tasks.items():
            if task not in TASKS:
                continue
            if task in tasks:
                raise ValueError(f"task {task!r} is in two runs: {where[task]} and {run.path}; keep one")
            # in the samples file's order: the order lmms-eval aggregated in, which the bootstrap CI depends on
            records = sorted(tr.records(), key=lambda r: r.get("sample_line") or 0)
            for r in records:
                meta = r.get("meta") or {}
                if meta.get("model"):
                    snapshots.add(str(meta["model"]))
                if meta.get("fingerprint"):
                    fingerprints.add(str(meta["fingerprint"]))
            version = (tr.config.get("metadata") or {}).get("version")
            tasks[task] = task_entry(
                task, tr.metrics, records, conventions=tr.conventions, task_version=version
            )
            where[task] = run.path
    if not tasks:
        raise ValueError(f"no AutoRater task ({', '.join(TASKS)}) in the runs: {[str(r.path) for r in runs]}")
    args = first.model_args
    preset = PRESETS.get(first.model)
    ref = args.get("pretrained") or args.get("model") or (preset.model if preset else None)
    local = first.model in OPEN_BASELINES or (preset is not None and preset.kind == "local")
    ckpt, counted = checkpoint_identity(ref) if local or first.model == "autorater_openai" else (None, None)
    if open_weights is None:
        if local:
            open_weights = True
        elif preset is not None and preset.provider in ("openai", "gemini"):
            open_weights = False
    judge = None
    if preset is not None:
        from lmms_eval_autorater.judges.args import as_bool

        judge = {
            "tools": str(args.get("tools", "none")),
            "swap": as_bool("swap", args.get("swap", False)),
            # integer verdicts (argmax) or expected scores, and answers per prompt: the numbers follow them
            "scoring": str(args.get("scoring") or "argmax").lower(),
            "samples": int(args.get("samples") or 1),
            "prompt_version": TEMPLATE_VERSION,
            "parser_version": PARSER_VERSION,
        }
    versions = first.versions or {}
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": {
            "name": name or str(ref or first.model_name or first.model),
            "lmms_eval_model": first.model,
            "model_args": public_model_args(args),
            "snapshots": sorted(snapshots),
            "fingerprints": sorted(fingerprints),
            "checkpoint_hash": ckpt,
            "parameters": parameters if parameters is not None else counted,
            "open_weights": open_weights,
            "link": link,
        },
        "judge": judge,
        "provenance": {
            "plugin_version": versions.get("lmms_eval_autorater"),
            "lmms_eval_version": versions.get("lmms_eval"),
            "transformers_version": versions.get("transformers"),
            "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "run_dates": sorted({str(r.date) for r in runs}),
            "results_files": sorted({Path(p).name for p in where.values()}),
        },
        "tasks": {t: tasks[t] for t in TASKS if t in tasks},
    }


def model_index(sub: Mapping) -> dict:
    """The submission as Hugging Face model-index metadata (one result per task), for a model card."""
    from huggingface_hub import metadata_eval_result

    results = []
    for task, entry in sub["tasks"].items():
        dataset_id, dataset_name = _hf_datasets()[task]
        one = metadata_eval_result(
            model_pretty_name=sub["model"]["name"],
            task_pretty_name="Image assessment (AutoRater)",
            task_id="other",
            metrics_pretty_name=f"{task} {entry['metric']}",
            metrics_id=entry["metric"],
            metrics_value=entry["metrics"].get(entry["metric"]),
            metrics_config=task,
            dataset_pretty_name=dataset_name,
            dataset_id=dataset_id,
            dataset_config=task,
            dataset_split="test",
            dataset_revision=entry["docs_hash"],
        )
        results.extend(one["model-index"][0]["results"])
    return {"model-index": [{"name": sub["model"]["name"], "results": results}]}


def push(sub: Mapping, model_id: str) -> int:
    """Publish each task's headline metric to ``model_id``'s card (model-index metadata); returns how many.

    Creates the repository when it does not exist yet (a first push), then updates its card in one
    commit through ``huggingface_hub`` (``evaluate.push_to_hub`` is not used: it catches only
    ``requests`` errors, which huggingface_hub 2.x no longer raises, so a first push to a new
    repository failed). Honours ``HF_ENDPOINT``. A Hub error ends in one line naming the repository.
    """
    from huggingface_hub import HfApi, get_token, metadata_update
    from huggingface_hub.errors import HfHubHTTPError

    from lmms_eval_autorater.errors import ConfigError, UsageError

    if not get_token():
        raise UsageError("--push needs a Hugging Face token: set HF_TOKEN or run `hf auth login`")
    meta = model_index(sub)
    results = [r for r in meta["model-index"][0]["results"] if r["metrics"][0].get("value") is not None]
    meta["model-index"][0]["results"] = results
    if not results:
        return 0
    try:
        HfApi().create_repo(model_id, repo_type="model", exist_ok=True)
        metadata_update(
            model_id, meta, overwrite=True, commit_message=f"AutoRater results: {', '.join(sub['tasks'])}"
        )
    except HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", "?")
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--push to {model_id}: the Hub answered {status}: {first}") from None
    return len(results)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``submission`` command's arguments."""
    parser.add_argument(
        "--results",
        nargs="+",
        required=True,
        metavar="DIR",
        help="folders (or results files) of one model's finished lmms-eval runs",
    )
    parser.add_argument("--output", required=True, help="the submission JSON to write")
    parser.add_argument("--name", help="the model's display name (default: its model= / pretrained= arg)")
    parser.add_argument("--link", help="a URL describing the model (paper, card, repository)")
    parser.add_argument("--parameters", type=int, help="parameter count, where the checkpoint does not tell")
    parser.add_argument("--open-weights", choices=("yes", "no"), help="whether the weights are public")
    parser.add_argument(
        "--push",
        metavar="MODEL_ID",
        help="also publish the metrics to this Hugging Face model repo's card (needs HF_TOKEN)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the ``submission`` command; returns the exit code."""
    import yaml

    from lmms_eval_autorater.errors import UsageError
    from lmms_eval_autorater.reports.runs import RunsError, load_runs
    from lmms_eval_autorater.reports.validate import validate_submission

    if args.push:
        from huggingface_hub import get_token

        if not get_token():  # before anything is written: a push that cannot happen is asked in vain
            raise UsageError("--push needs a Hugging Face token: set HF_TOKEN or run `hf auth login`")
    try:
        runs = load_runs(args.results)
        sub = build_submission(
            runs,
            name=args.name,
            link=args.link,
            parameters=args.parameters,
            open_weights=None if args.open_weights is None else args.open_weights == "yes",
        )
    except (RunsError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    outcome = validate_submission(sub, args.output, use_local_data=False)
    if not outcome.ok:  # the results file disagrees with its own samples: never publish that
        raise UsageError(f"the runs are not self-consistent: {outcome.problems[0]}")
    write_json(args.output, sub)
    out = Path(args.output)
    card = out.with_name(f"{out.stem}.model-index.yaml")
    card.write_text(yaml.safe_dump(model_index(sub), sort_keys=False), encoding="utf-8")
    for task, entry in sub["tasks"].items():
        m = entry["metrics"]
        print(
            f"{task}: {entry['metric']} {m.get(entry['metric'])} "
            f"[{m.get(entry['metric'] + '_ci_low')}, {m.get(entry['metric'] + '_ci_high')}], "
            f"n_scored {m.get('n_scored')} of {entry['n_docs']}"
        )
    print(f"wrote {out} and {card}")
    if args.push:
        n = push(sub, args.push)
        print(f"pushed {n} result(s) to https://huggingface.co/{args.push}")
    return 0
