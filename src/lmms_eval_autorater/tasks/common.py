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

from lmms_eval_autorater.errors import DataError
from lmms_eval_autorater.vocabulary import COUNT_METRICS as COUNT_METRICS  # re-exported (tests, table)
from lmms_eval_autorater.vocabulary import (  # the metric names are the vocabulary's
    ESTIMATE_METRICS,
    HIGHER_IS_BETTER,
    PAIRWISE_METRICS,
    POINTWISE_METRICS,
    TASK_METRICS,
    USAGE_METRICS,
)

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
    "response_images",  # MMRB2: images in Image 1's and Image 2's response ("3,1"); None elsewhere
)


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


def hub_snapshot(
    repo_id: str,
    *,
    allow_patterns: Sequence[str],
    layout: str,
    repo_type: str = "dataset",
    readme: str | None = None,
) -> Path:
    """Download (or reuse from the HF cache) the needed files of a hub repo; honours HF_HUB_OFFLINE.

    Any failure (network, offline mode without a cached snapshot, 401/404, ...) becomes one
    ``DataError`` naming the repo, the reason, ``$AUTORATER_DATA_DIR`` and the task's local ``layout``.
    """
    logger.info(
        f"lmms-eval-autorater: fetching {repo_id} ({', '.join(allow_patterns)}) from the Hugging Face hub"
    )
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(repo_id=repo_id, repo_type=repo_type, allow_patterns=list(allow_patterns))
    except Exception as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = type(exc).__name__ + (f": {lines[0][:300]}" if lines else "")
        raise DataError(
            f"cannot download {repo_id} from the Hugging Face hub ({reason}); set {DATA_ENV} to a local copy "
            f"laid out as in {readme or 'the README' + chr(39) + 's Data section'}\nExpected layout:\n{layout}"
        ) from exc
    return Path(path)


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
# doc -> the judge's request (the mapping lives with the schema it reads)

NOT_OUR_DOC = (
    "task {task!r} doc {doc_id} has no field {field!r}: AutoRater judges run on the AutoRater tasks "
    "(psr, imagereward_pair, imagereward_point, aigiqa), whose docs carry the structured fields"
)


def doc_to_request(doc: dict, task: str, doc_id: int | str):
    """The judge's structured ``JudgeRequest`` for a doc; a doc missing a field gives an error naming it."""
    from lmms_eval_autorater.judges.types import JudgeRequest

    for name in ("task_kind", "paradigm", "request", "image_1"):
        if name not in doc or doc[name] is None:
            raise DataError(NOT_OUR_DOC.format(task=task, doc_id=doc_id, field=name))
    if doc["paradigm"] == "pairwise" and not doc.get("image_2"):
        raise DataError(NOT_OUR_DOC.format(task=task, doc_id=doc_id, field="image_2"))
    candidates = (doc["image_1"],) if doc["paradigm"] == "pointwise" else (doc["image_1"], doc["image_2"])
    from lmms_eval_autorater.tasks.catalog import TASKS

    info = TASKS.get(task)
    return JudgeRequest(
        classes=info.classes if info is not None else 2,
        doc_key=f"{task}/{doc.get('doc_id', doc_id)}",
        task_kind=doc["task_kind"],
        paradigm=doc["paradigm"],
        request=doc["request"],
        candidates=candidates,
        source=doc.get("source_image") or None,
    )


# ---------------------------------------------------------------------------------------------
# results


def make_record(doc: dict, paradigm: str, status: str, value, meta: dict | None = None) -> dict:
    """One doc's outcome for the metrics: truth, prediction (None unless ok), status, group, usage."""
    meta = meta or {}
    ok = status == "ok" and value is not None
    rec = {
        "doc_id": doc["doc_id"],
        "group": doc["group"],
        "status": status if status != "ok" or ok else "parse_failure",
        "usage": meta.get("usage"),
        "cached": bool(meta.get("cached")),
        "estimated_usd": (meta.get("estimate") or {}).get("usd"),
    }
    # scoring=expected / samples=N: the score used (expected or mean) and p(image 1 preferred); a doc whose
    # answer had no usable probabilities keeps its integer verdict and is marked (expected_fallbacks)
    rec["fallback"] = ok and "expected_fallback" in meta
    if paradigm == "pairwise":
        p = meta.get("p_first") if ok else None
        rec.update(
            label=int(doc["label"]),
            pred=value if ok else None,
            flipped=meta.get("swap_flipped"),
            p=float(p) if p is not None else None,
        )
    else:
        used = meta.get("score_used", value) if ok else None
        rec.update(target=float(doc["target"]), pred=float(used) if ok else None)
    return rec


def verdict_record(doc: dict, verdict, paradigm: str) -> dict:
    """The record of a ``Verdict`` directly (grid, commands): the same fields ``process_results`` makes."""
    value = verdict.preferred if paradigm == "pairwise" else verdict.score
    return make_record(doc, paradigm, verdict.status, value, verdict.meta)


def pairwise_record(doc: dict, results: Sequence[str]) -> dict:
    """One doc's outcome for the pairwise metrics, from the model's output string."""
    from lmms_eval_autorater.judges.envelope import decode_output

    out = decode_output(results[0] if results else "", "pairwise")
    return make_record(doc, "pairwise", out.status, out.value, out.meta)


def pointwise_record(doc: dict, results: Sequence[str]) -> dict:
    """One doc's outcome for the pointwise metrics, from the model's output string."""
    from lmms_eval_autorater.judges.envelope import decode_output

    out = decode_output(results[0] if results else "", "pointwise")
    return make_record(doc, "pointwise", out.status, out.value, out.meta)


def process_pairwise(doc: dict, results: Sequence[str]) -> dict:
    """lmms-eval ``process_results`` for pairwise tasks: the same record under every metric key."""
    record = pairwise_record(doc, results)
    return {name: record for name in PAIRWISE_METRICS}


def process_pointwise(doc: dict, results: Sequence[str]) -> dict:
    """lmms-eval ``process_results`` for pointwise tasks."""
    record = pointwise_record(doc, results)
    return {name: record for name in POINTWISE_METRICS}


#: the record fields the summaries read
PAIRWISE_KEYS = ("label", "pred", "status", "group", "p", "fallback")
POINTWISE_KEYS = ("target", "pred", "status", "group", "fallback")


def _freeze(records: list[dict], keys: Sequence[str]) -> tuple:
    return tuple(tuple(r.get(k) for k in keys) for r in records)


#: the record fields each kind's summary reads
_SUMMARY_FIELDS = {
    "pairwise": PAIRWISE_KEYS,
    "pointwise": POINTWISE_KEYS,
    "four_label": ("label", "pred", "status", "group", "margin"),
    "editreward": ("label", "pred", "status", "group", "margin"),
}


@lru_cache(maxsize=16)
def _summary(kind: str, frozen: tuple) -> dict:
    """The summary of one task's records (computed once per kind and record set): ours for pairwise and
    pointwise, the authors' rules for the field's benchmarks (``metrics.field``)."""
    from lmms_eval_autorater.metrics import field, summarize_pairwise, summarize_pointwise

    summarize = {
        "pairwise": summarize_pairwise,
        "pointwise": summarize_pointwise,
        "four_label": field.four_label_summary,
        "editreward": field.editreward_summary,
    }[kind]
    return summarize([dict(zip(_SUMMARY_FIELDS[kind], row)) for row in frozen])


def _usage_sum(records: list[dict], key: str) -> float | None:
    """What this run spent: one usage field (USD, prompt or completion tokens) summed over docs answered
    by the backend in this run; answers read from the cache cost nothing (their own usage stays in the samples).
    A cost that is not known is not zero: if any answer of this run has an unknown price, the sum is None."""
    total = 0.0
    for r in records:
        usage = r.get("usage")
        if r.get("cached") or not usage:
            continue
        if key == "cost_usd" and usage.get(key, 0.0) is None:
            return None
        total += float(usage.get(key) or 0.0)
    return total


def _estimate_sum(records: list[dict]) -> float | None:
    """The run's estimated USD: the per-doc estimates summed; None when any doc has none (a local judge,
    a foreign model, an unknown price)."""
    total = 0.0
    for r in records:
        value = r.get("estimated_usd")
        if value is None:
            return None
        total += float(value)
    return total


def _flip_rate(records: list[dict]) -> float:
    flags = [r["flipped"] for r in records if r.get("flipped") is not None]
    return float(sum(flags) / len(flags)) if flags else float("nan")


def aggregation(kind: str, name: str) -> Callable[[list[dict]], float | None]:
    """The aggregation function of metric ``name`` for tasks of template ``kind`` (``TASK_METRICS``): usage and
    estimate sums, the flip rate, or one field of the kind's summary (computed once)."""

    def aggregate(records: list[dict]) -> float | None:
        if name in USAGE_METRICS:
            return _usage_sum(records, name)
        if name in ESTIMATE_METRICS:
            return _estimate_sum(records)
        if name == "flip_rate":
            return _flip_rate(records)
        value = _summary(kind, _freeze(records, _SUMMARY_FIELDS[kind]))[name]
        return float("nan") if value is None else float(value)

    aggregate.__name__ = f"{kind}_{name}"
    return aggregate


def pairwise_aggregation(name: str) -> Callable[[list[dict]], float | None]:
    """The aggregation function of metric ``name`` for pairwise tasks."""
    return aggregation("pairwise", name)


def pointwise_aggregation(name: str) -> Callable[[list[dict]], float | None]:
    """The aggregation function of metric ``name`` for pointwise tasks."""
    return aggregation("pointwise", name)


# Module-level aggregation functions (``agg_pairwise_accuracy``, ``agg_four_label_accuracy``, ...), one per
# metric of each template kind.
for _kind, _names in TASK_METRICS.items():
    for _name in _names:
        globals()[f"agg_{_kind}_{_name}"] = aggregation(_kind, _name)
del _kind, _names, _name


def metric_list(kind: str) -> list[dict]:
    """lmms-eval's ``metric_list`` of a task of template ``kind`` (a paradigm, or ``four_label`` /
    ``editreward``), from the one list of metric names (the task templates do not repeat it:
    ``lmms_task.AutoraterTask`` fills it)."""
    if kind not in TASK_METRICS:
        raise ValueError(f"kind must be one of {', '.join(TASK_METRICS)}, got {kind!r}")
    return [
        {
            "metric": n,
            "aggregation": globals()[f"agg_{kind}_{n}"],
            "higher_is_better": n in HIGHER_IS_BETTER,
        }
        for n in TASK_METRICS[kind]
    ]


def log_construction(task: str, message: str) -> None:
    """One info line per task build: what was kept and dropped, and why."""
    logger.info(f"{task}: {message}")


def task_readme(task: str) -> str:
    """Where a task's data layout is documented: its README in the installed package."""
    return str(Path(__file__).resolve().parent / task / "README.md")


def check_paths_exist(paths: dict[str, Path], layout: str, readme: str | None = None) -> None:
    """Raise ``DataError`` naming the missing files and where the layout is documented (its first line,
    the one a command prints), then the expected layout on the following lines."""
    missing = [f"{name} {path}" for name, path in paths.items() if not path.exists()]
    if missing:
        where = readme or "the README's Data section"
        raise DataError(
            f"missing data file(s): {'; '.join(missing)} (set {DATA_ENV} to a local copy laid out as in {where})"
            f"\nExpected layout:\n{layout}"
        )
