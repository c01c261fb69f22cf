"""Plumbing shared by the four tasks: the doc schema, data folders, the task class, results.

A task's docs are built by a pure function of the raw annotations (in the task's
``utils.py``), so construction rules are testable without lmms-eval. The task class
replaces lmms-eval's ``datasets.load_dataset`` call with that builder.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

from loguru import logger

DATA_ENV = "AUTORATER_DATA_DIR"

#: Every doc holds exactly these fields (``None`` where a field does not apply).
DOC_FIELDS = (
    "doc_id",  # stable id within the task
    "task_kind",  # "generation" | "editing"
    "paradigm",  # "pairwise" | "pointwise"
    "request",  # the prompt or the edit request
    "source_image",  # image reference of the source (editing only)
    "image_1",  # image reference of candidate 1
    "image_2",  # image reference of candidate 2 (pairwise only)
    "group",  # cluster id for the bootstrap (the prompt): pairs sharing it are not independent
    "label",  # pairwise: 1 or 2, the human preference
    "target",  # pointwise: the human score (MOS or overall rating)
)


class DataError(ValueError):
    """Raw annotations that cannot become docs; the message names the file, row and field."""


def data_dir() -> Path | None:
    """``$AUTORATER_DATA_DIR`` as a path, or None when unset (then tasks use the hub)."""
    value = os.environ.get(DATA_ENV)
    return Path(value).expanduser() if value else None


def make_doc(**fields) -> dict:
    """A doc with every field of ``DOC_FIELDS`` (missing ones None); unknown fields are a bug."""
    unknown = set(fields) - set(DOC_FIELDS)
    if unknown:
        raise TypeError(f"unknown doc fields: {sorted(unknown)}")
    return {name: fields.get(name) for name in DOC_FIELDS}


def require(row: dict, field: str, *, where: str):
    """``row[field]``, or a ``DataError`` naming ``where`` (file and row) and the field."""
    if field not in row or row[field] is None or (isinstance(row[field], float) and row[field] != row[field]):
        raise DataError(f"{where}: missing field {field!r}")
    return row[field]


def hub_snapshot(repo_id: str, *, allow_patterns: Sequence[str], repo_type: str = "dataset") -> Path:
    """Download (or reuse from the HF cache) the needed files of a hub repo; honours HF_HUB_OFFLINE."""
    from huggingface_hub import snapshot_download

    logger.info(
        f"lmms-eval-autorater: fetching {repo_id} ({', '.join(allow_patterns)}) from the Hugging Face hub"
    )
    return Path(snapshot_download(repo_id=repo_id, repo_type=repo_type, allow_patterns=list(allow_patterns)))


# ---------------------------------------------------------------------------------------------
# doc -> prompt for models that are not ours (any lmms-eval VLM can be evaluated on these tasks)


def doc_to_visual(doc: dict) -> list:
    """Images in the judge's order: source (editing), candidate 1, candidate 2."""
    from lmms_eval_autorater.images import load_image

    refs = [("source_image", doc["source_image"]), ("image_1", doc["image_1"]), ("image_2", doc["image_2"])]
    return [load_image(ref, sample=doc["doc_id"], field=name) for name, ref in refs if ref]


def doc_to_text(doc: dict) -> str:
    """A self-contained judging prompt for generic VLMs; our judge models build their own prompt."""
    from lmms_eval_autorater.judges.prompts import generic_prompt_text

    return generic_prompt_text(doc)


# ---------------------------------------------------------------------------------------------
# results


def pairwise_record(doc: dict, results: Sequence[str]) -> dict:
    """One doc's outcome for the pairwise metrics: label, prediction or failure, group, swap info."""
    from lmms_eval_autorater.judges.envelope import decode_output

    out = decode_output(results[0] if results else "", "pairwise")
    return {
        "doc_id": doc["doc_id"],
        "group": doc["group"],
        "label": int(doc["label"]),
        "pred": out.value if out.status == "ok" else None,
        "status": out.status,
        "flipped": out.meta.get("swap_flipped"),
        "usage": out.meta.get("usage"),
        "cached": bool(out.meta.get("cached")),
    }


def pointwise_record(doc: dict, results: Sequence[str]) -> dict:
    """One doc's outcome for the pointwise metrics: target, prediction or failure, group."""
    from lmms_eval_autorater.judges.envelope import decode_output

    out = decode_output(results[0] if results else "", "pointwise")
    return {
        "doc_id": doc["doc_id"],
        "group": doc["group"],
        "target": float(doc["target"]),
        "pred": float(out.value) if out.status == "ok" else None,
        "status": out.status,
        "usage": out.meta.get("usage"),
        "cached": bool(out.meta.get("cached")),
    }


PAIRWISE_METRICS = (
    "accuracy",
    "accuracy_ci_low",
    "accuracy_ci_high",
    "n_scored",
    "parse_failures",
    "api_failures",
    "predicted_ties",
    "flip_rate",
    "cost_usd",
    "prompt_tokens",
    "completion_tokens",
)
POINTWISE_METRICS = (
    "pearson",
    "pearson_ci_low",
    "pearson_ci_high",
    "spearman",
    "kendall",
    "n_scored",
    "parse_failures",
    "api_failures",
    "cost_usd",
    "prompt_tokens",
    "completion_tokens",
)


USAGE_METRICS = ("cost_usd", "prompt_tokens", "completion_tokens")


def process_pairwise(doc: dict, results: Sequence[str]) -> dict:
    """lmms-eval ``process_results`` for pairwise tasks: the same record under every metric key."""
    record = pairwise_record(doc, results)
    return {name: record for name in PAIRWISE_METRICS}


def process_pointwise(doc: dict, results: Sequence[str]) -> dict:
    """lmms-eval ``process_results`` for pointwise tasks."""
    record = pointwise_record(doc, results)
    return {name: record for name in POINTWISE_METRICS}


def _freeze(records: list[dict], keys: Sequence[str]) -> tuple:
    return tuple(tuple(r.get(k) for k in keys) for r in records)


@lru_cache(maxsize=16)
def _pairwise_summary(frozen: tuple) -> dict:
    from lmms_eval_autorater.metrics import summarize_pairwise

    records = [dict(zip(("label", "pred", "status", "group"), row)) for row in frozen]
    return summarize_pairwise(records)


@lru_cache(maxsize=16)
def _pointwise_summary(frozen: tuple) -> dict:
    from lmms_eval_autorater.metrics import summarize_pointwise

    records = [dict(zip(("target", "pred", "status", "group"), row)) for row in frozen]
    return summarize_pointwise(records)


def _usage_sum(records: list[dict], key: str) -> float:
    """What this run spent: one usage field (USD, prompt or completion tokens) summed over docs answered
    by the backend in this run; answers read from the cache cost nothing (their own usage stays in the samples)."""
    return float(sum((r.get("usage") or {}).get(key, 0.0) or 0.0 for r in records if not r.get("cached")))


def _flip_rate(records: list[dict]) -> float:
    flags = [r["flipped"] for r in records if r.get("flipped") is not None]
    return float(sum(flags) / len(flags)) if flags else float("nan")


def pairwise_aggregation(name: str) -> Callable[[list[dict]], float]:
    """The aggregation function of metric ``name`` for pairwise tasks (summaries are computed once)."""

    def aggregate(records: list[dict]) -> float:
        if name in USAGE_METRICS:
            return _usage_sum(records, name)
        if name == "flip_rate":
            return _flip_rate(records)
        summary = _pairwise_summary(_freeze(records, ("label", "pred", "status", "group")))
        return float(summary[name])

    aggregate.__name__ = f"pairwise_{name}"
    return aggregate


def pointwise_aggregation(name: str) -> Callable[[list[dict]], float]:
    """The aggregation function of metric ``name`` for pointwise tasks."""

    def aggregate(records: list[dict]) -> float:
        if name in USAGE_METRICS:
            return _usage_sum(records, name)
        summary = _pointwise_summary(_freeze(records, ("target", "pred", "status", "group")))
        return float(summary[name])

    aggregate.__name__ = f"pointwise_{name}"
    return aggregate


# Module-level aggregation functions, referenced from the YAMLs as ``!function``.
for _name in PAIRWISE_METRICS:
    globals()[f"agg_pairwise_{_name}"] = pairwise_aggregation(_name)
for _name in POINTWISE_METRICS:
    globals()[f"agg_pointwise_{_name}"] = pointwise_aggregation(_name)
del _name


def log_construction(task: str, message: str) -> None:
    """One info line per task build: what was kept and dropped, and why."""
    logger.info(f"{task}: {message}")


def check_paths_exist(paths: dict[str, Path], layout: str) -> None:
    """Raise ``DataError`` listing the missing files, with the expected layout."""
    missing = [f"{name}: {path}" for name, path in paths.items() if not path.exists()]
    if missing:
        raise DataError("missing data files:\n  " + "\n  ".join(missing) + f"\nExpected layout:\n{layout}")
