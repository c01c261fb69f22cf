"""Read finished lmms-eval runs (results and samples files) for the reports, tables and submissions.

lmms-eval 0.7.3 writes, under ``--output_path OUT`` (with ``--log_samples`` for the samples)::

    OUT/<model_name_sanitized>/<date>_results.json          one per run (every task of the run)
    OUT/<model_name_sanitized>/<date>_samples_<task>.jsonl   one line per doc, one file per task

``<model_name_sanitized>`` is the ``model=``/``pretrained=`` model argument with ``/`` written ``__``
(the files sit directly in OUT without one); ``<date>`` is ``YYYYMMDD_HHMMSS`` and is also the results'
``"date"``. A results file holds ``results[task]`` (metrics keyed ``"<metric>,none"``), ``configs[task]``
(the task config; our tasks' ``metadata.conventions`` and, from plugin 0.1.0 on, ``metadata.versions``),
``config`` (``model``, ``model_args`` as one ``k=v,k=v`` string, ``limit``), ``n-samples``,
``task_hashes``, ``lmms_eval_version`` and ``date``. A samples line holds ``doc_id`` (lmms-eval's index),
``filtered_resps`` (our models' JSON envelope: status, value, analysis, raw, error, meta; a foreign
model's free text), ``input`` (the task's prompt text), ``input_media`` (image references found in the
doc, in doc order), ``doc_hash`` and, under every metric name, the doc's record
(``tasks.common.make_record``: doc_id, group, status, label/target, pred, usage, cached, flipped).
The doc itself is not logged by lmms-eval: its request and images are recovered from ``input`` and
``input_media``. Reports read these files only; they never re-run a model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from lmms_eval_autorater import safejson
from lmms_eval_autorater.errors import DataError
from lmms_eval_autorater.judges.args import parse_model_args
from lmms_eval_autorater.vocabulary import COUNT_METRICS, USAGE_METRICS


class RunsError(DataError):
    """A results or samples file that cannot be read as a run; the message names the file."""


@dataclass
class TaskRun:
    """One task of one run: its metrics, conventions, config and (lazily) its per-doc records."""

    task: str
    metrics: dict[str, Any]
    n_docs: int | None
    conventions: str | None
    config: dict[str, Any]
    samples_path: Path | None
    results_path: Path
    task_hash: str | None = None
    limit: Any = None

    @property
    def paradigm(self) -> str | None:
        """``pairwise`` / ``pointwise`` for the AutoRater tasks (None for a task the plugin does not know)."""
        from lmms_eval_autorater.tasks.catalog import TASKS

        info = TASKS.get(self.task)
        return info.paradigm if info else None

    @property
    def headline(self) -> str | None:
        """The name of the task's headline metric (``accuracy`` or ``pearson``)."""
        from lmms_eval_autorater.tasks.catalog import TASKS

        info = TASKS.get(self.task)
        return info.metric if info else None

    def metric(self, name: str) -> Any:
        """One metric of this task (``KeyError`` naming the results file when absent)."""
        if name not in self.metrics:
            raise RunsError(f"{self.results_path}: task {self.task!r} has no metric {name!r}")
        return self.metrics[name]

    def records(self) -> list[dict[str, Any]]:
        """Per-doc records in lmms-eval's doc order (see ``_sample_record`` for the fields)."""
        return list(self._records)

    @cached_property
    def _records(self) -> tuple[dict[str, Any], ...]:
        if self.samples_path is None:
            raise RunsError(
                f"{self.results_path}: task {self.task!r} has no samples file "
                f"(<date>_samples_{self.task}.jsonl beside it): rerun lmms-eval with --log_samples"
            )
        out = []
        with self.samples_path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    sample = safejson.loads(line, f"{self.samples_path}: line {lineno}", allow_nan=True)
                except DataError as exc:
                    raise RunsError(str(exc)) from None
                out.append(_sample_record(sample, self.task, self.headline, f"{self.samples_path}:{lineno}"))
                # the file's order is the order lmms-eval aggregated in (rank by rank in data-parallel runs)
                out[-1]["sample_line"] = lineno
        out.sort(key=lambda r: (r["index"] is None, r["index"]))
        return tuple(out)


@dataclass
class Run:
    """One lmms-eval run: one results file and the samples files beside it."""

    path: Path  # the results file
    model: str  # lmms-eval model name, e.g. autorater_gpt4o
    model_args: dict[str, str]
    date: str
    versions: dict[str, str | None]
    tasks: dict[str, TaskRun] = field(default_factory=dict)
    model_name: str | None = None  # lmms-eval's model_name (the model=/pretrained= argument)
    limit: Any = None

    @property
    def folder(self) -> Path:
        return self.path.parent


def _sample_record(sample: dict, task: str, headline: str | None, where: str) -> dict[str, Any]:
    """One samples line as a flat record: ids, truth, prediction, status, the judge's text, the doc fields."""
    from lmms_eval_autorater.tasks.catalog import TASKS

    rec = sample.get(headline) if headline else None
    if not isinstance(rec, dict):
        rec = next((v for v in sample.values() if isinstance(v, dict) and "status" in v), None)
    if not isinstance(rec, dict):
        raise RunsError(f"{where}: no per-doc record under the metric {headline!r}")
    envelope = _envelope(sample.get("filtered_resps"))
    info = TASKS.get(task)
    doc_id = rec.get("doc_id")
    media = [m for m in sample.get("input_media") or [] if m not in (doc_id, rec.get("group"))]
    roles = ["image_1"] if info and info.paradigm == "pointwise" else ["image_1", "image_2"]
    if info and info.task_kind == "editing":
        roles = ["source_image", *roles]
    images = dict.fromkeys(("source_image", "image_1", "image_2"))
    if len(media) == len(roles):
        images.update(zip(roles, media))
    meta = (envelope or {}).get("meta") or {}
    return {
        "index": sample.get("doc_id"),
        "doc_id": doc_id,
        "doc_key": f"{task}/{doc_id}",
        "group": rec.get("group"),
        "label": rec.get("label"),
        "target": rec.get("target"),
        "prediction": rec.get("pred"),
        "pred": rec.get("pred"),
        "status": rec.get("status"),
        "flipped": rec.get("flipped"),
        "cached": rec.get("cached"),
        "usage": rec.get("usage"),
        "analysis": (envelope or {}).get("analysis"),
        "raw": (envelope or {}).get("raw") if envelope else _text(sample.get("filtered_resps")),
        "error": (envelope or {}).get("error"),
        "meta": meta,
        "request": _request_from_input(sample.get("input"), info),
        **images,
        "input_media": list(sample.get("input_media") or []),
        "input": sample.get("input"),
        "doc_hash": sample.get("doc_hash"),
    }


def _text(resp: Any) -> str | None:
    if isinstance(resp, list):
        resp = resp[0] if resp else None
    return resp if isinstance(resp, str) else None


def _envelope(resp: Any) -> dict | None:
    """Our models' JSON envelope from ``filtered_resps``, or None for a foreign model's text."""
    from lmms_eval_autorater.judges.envelope import MARKER

    text = _text(resp)
    if not text or not text.lstrip().startswith("{"):
        return None
    try:
        data = safejson.loads(text, "a sample's response", allow_nan=True)
    except DataError:
        return None
    return data if isinstance(data, dict) and MARKER in data else None


def _request_from_input(text: Any, info) -> str | None:
    """The doc's request, cut out of the prompt that ``judges.prompts.generic_prompt_text`` wrote."""
    if not isinstance(text, str) or info is None:
        return None
    from lmms_eval_autorater.judges.prompts import request_from_generic_prompt

    return request_from_generic_prompt(text, info.task_kind, info.paradigm)


def _load_results(path: Path) -> Run:
    try:
        data = safejson.load_file(path, allow_nan=True)
    except DataError as exc:
        raise RunsError(f"cannot read results file: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise RunsError(f"{path}: not an lmms-eval results file (no 'results')")
    config = data.get("config") or {}
    if "model" not in config:
        raise RunsError(f"{path}: no config.model in the results file")
    date = str(data.get("date") or path.name.split("_results.json")[0])
    configs = data.get("configs") or {}
    n_samples = data.get("n-samples") or {}
    hashes = data.get("task_hashes") or {}
    run_versions: dict[str, str | None] = {}
    tasks: dict[str, TaskRun] = {}
    for task, raw in data["results"].items():
        if task not in configs:  # a group's aggregate row, not a task
            continue
        metrics = {
            key.split(",", 1)[0]: value
            for key, value in raw.items()
            if "," in key and "_stderr" not in key.split(",", 1)[0]
        }
        cfg = configs[task] or {}
        meta = cfg.get("metadata") or {}
        for name, version in (meta.get("versions") or {}).items():
            run_versions.setdefault(name, version)
        samples = path.with_name(f"{date}_samples_{task}.jsonl")
        n = (n_samples.get(task) or {}).get("effective")
        tasks[task] = TaskRun(
            task=task,
            metrics=metrics,
            n_docs=int(n) if n is not None else None,
            conventions=meta.get("conventions"),
            config=cfg,
            samples_path=samples if samples.exists() else None,
            results_path=path,
            task_hash=hashes.get(task),
            limit=config.get("limit"),
        )
    versions = {
        "lmms_eval_autorater": run_versions.pop("lmms_eval_autorater", None),
        "lmms_eval": run_versions.pop("lmms_eval", None) or data.get("lmms_eval_version"),
        "transformers": run_versions.pop("transformers", None),
        **run_versions,
    }
    return Run(
        path=path,
        model=str(config["model"]),
        model_args=parse_model_args(config.get("model_args"), strict=False),
        date=date,
        versions=versions,
        tasks=tasks,
        model_name=data.get("model_name"),
        limit=config.get("limit"),
    )


def find_results(paths: Iterable[str | Path]) -> list[Path]:
    """Every ``*_results.json`` under the given folders (or the files themselves), sorted, deduplicated."""
    found: set[Path] = set()
    for p in paths:
        p = Path(p)
        if p.is_file():
            found.add(p.resolve())
        elif p.is_dir():
            found.update(f.resolve() for f in p.rglob("*_results.json"))
        else:
            raise RunsError(f"{p}: no such file or folder")
    return sorted(found)


def load_runs(paths: Sequence[str | Path]) -> list[Run]:
    """Every run found under ``paths`` (folders searched recursively, or results files), in path order.

    A folder holding no results file is an error naming it (a wrong ``--results`` is not an empty table).
    """
    runs = []
    for p in paths:
        files = find_results([p])
        if not files:
            raise RunsError(f"{p}: no lmms-eval results file (*_results.json) under it")
        runs.extend(_load_results(f) for f in files)
    seen: set[Path] = set()
    unique = []
    for r in runs:
        if r.path not in seen:
            seen.add(r.path)
            unique.append(r)
    return unique


def is_number(value: Any) -> bool:
    """A finite real metric value (not ``"N/A"``, None or NaN)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


#: the count metrics every AutoRater task reports, re-exported for the readers of runs
COUNTS = (*COUNT_METRICS, *USAGE_METRICS)
