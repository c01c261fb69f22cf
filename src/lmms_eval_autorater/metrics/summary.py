"""Aggregate per-document judge results into the metrics lmms-eval tasks report (pure, no I/O)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from lmms_eval_autorater.vocabulary import STATUSES  # re-exported: the one list of statuses

from .bootstrap import bootstrap_ci
from .correlation import _validate, kendall, pearson, spearman
from .pairwise import TIE_POLICIES, TiePolicy, pairwise_accuracy


def _triage(records: Sequence[Mapping[str, Any]], usable) -> tuple[list[int], int, int, int, int]:
    """Split record indices into scored ones and count input errors, parse and API failures, budget skips.

    A record is scored when its status is "ok" and ``usable(pred)``; status "ok" with an unusable pred
    counts as a parse failure. Unknown statuses raise ValueError naming the index.
    """
    scored: list[int] = []
    input_errors = parse_failures = api_failures = budget_skipped = 0
    for i, rec in enumerate(records):
        status = rec.get("status")
        if status not in STATUSES:
            raise ValueError(f"records[{i}] has status {status!r}, expected one of {STATUSES}")
        if status == "input_error":
            input_errors += 1
        elif status == "api_error":
            api_failures += 1
        elif status == "budget_skipped":
            budget_skipped += 1
        elif status == "parse_failure" or not usable(rec.get("pred")):
            parse_failures += 1
        else:
            scored.append(i)
    return scored, input_errors, parse_failures, api_failures, budget_skipped


def _coverage(n_scored: int, n_total: int) -> float:
    return n_scored / n_total if n_total else float("nan")


def summarize_pairwise(
    records: Sequence[Mapping[str, Any]],
    tie_policy: TiePolicy = "wrong",
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Pairwise accuracy over records with a usable prediction, with a prompt-clustered bootstrap CI.

    Failed records (parse or API) are counted, never scored as wrong nor guessed. ``n_resamples=0`` skips
    the CI (reported as nan).
    """
    if tie_policy not in TIE_POLICIES:
        raise ValueError(f"tie_policy must be one of {TIE_POLICIES}, got {tie_policy!r}")
    scored, input_errors, parse_failures, api_failures, budget_skipped = _triage(
        records, lambda p: p is not None
    )
    labels = [records[i]["label"] for i in scored]
    preds = [records[i]["pred"] for i in scored]
    groups = [records[i]["group"] for i in scored]
    accuracy = pairwise_accuracy(labels, preds, tie_policy)
    low = high = float("nan")
    if n_resamples > 0 and scored:
        low, high = bootstrap_ci(
            lambda lab, pred: pairwise_accuracy(lab, pred, tie_policy),
            labels,
            preds,
            groups=groups,
            n_resamples=n_resamples,
            seed=seed,
        )
    return {
        "accuracy": accuracy,
        "accuracy_ci_low": low,
        "accuracy_ci_high": high,
        "n_total": len(records),
        "n_scored": len(scored),
        "input_errors": input_errors,
        "parse_failures": parse_failures,
        "api_failures": api_failures,
        "budget_skipped": budget_skipped,
        "predicted_ties": sum(1 for p in preds if p == 0),
        "coverage": _coverage(len(scored), len(records)),
        "tie_policy": tie_policy,
    }


def _usable_score(pred: Any) -> bool:
    if pred is None or isinstance(pred, bool):
        return False
    try:
        return math.isfinite(float(pred))
    except (TypeError, ValueError):
        return False


def summarize_pointwise(
    records: Sequence[Mapping[str, Any]],
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Pearson (with prompt-clustered bootstrap CI), Spearman and Kendall tau-b of judge scores vs targets.

    Only records with status "ok" and a finite numeric pred are scored; the rest are counted as failures.
    ``n_resamples=0`` skips the CI (reported as nan).
    """
    scored, input_errors, parse_failures, api_failures, budget_skipped = _triage(records, _usable_score)
    targets = [records[i]["target"] for i in scored]
    preds = [float(records[i]["pred"]) for i in scored]
    groups = [records[i]["group"] for i in scored]
    t, p = _validate(targets, preds)
    low = high = float("nan")
    if n_resamples > 0 and scored:
        low, high = bootstrap_ci(pearson, t, p, groups=groups, n_resamples=n_resamples, seed=seed)
    return {
        "pearson": pearson(t, p),
        "pearson_ci_low": low,
        "pearson_ci_high": high,
        "spearman": spearman(t, p),
        "kendall": kendall(t, p),
        "n_total": len(records),
        "n_scored": len(scored),
        "input_errors": input_errors,
        "parse_failures": parse_failures,
        "api_failures": api_failures,
        "budget_skipped": budget_skipped,
        "coverage": _coverage(len(scored), len(records)),
    }


#: the headline metric of each paradigm (a key of its summary): accuracy for pairs, Pearson for points
HEADLINE = {"pairwise": "accuracy", "pointwise": "pearson"}


def summarize(
    paradigm: str, records: Sequence[Mapping[str, Any]], n_resamples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """The summary of ``records`` by paradigm (the one place the choice is made): ``summarize_pairwise``
    for "pairwise", ``summarize_pointwise`` for "pointwise"; another paradigm raises ValueError."""
    if paradigm == "pairwise":
        return summarize_pairwise(records, n_resamples=n_resamples, seed=seed)
    if paradigm == "pointwise":
        return summarize_pointwise(records, n_resamples=n_resamples, seed=seed)
    raise ValueError(f"paradigm must be 'pairwise' or 'pointwise', got {paradigm!r}")
