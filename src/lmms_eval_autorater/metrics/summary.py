"""Aggregate per-document judge results into the metrics lmms-eval tasks report (pure, no I/O)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from lmms_eval_autorater.vocabulary import STATUSES  # re-exported: the one list of statuses

from .bootstrap import bootstrap_ci
from .calibration import brier, ece, plcc_logistic, tie_calibrated_accuracy
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


def counts(
    records: Sequence[Mapping[str, Any]],
    scored: list[int],
    input_errors: int,
    parse_failures: int,
    api_failures: int,
    budget_skipped: int,
) -> dict[str, Any]:
    """The count fields every summary reports (what ``_triage`` split): totals, each failure count, coverage."""
    return {
        "n_total": len(records),
        "n_scored": len(scored),
        "input_errors": input_errors,
        "parse_failures": parse_failures,
        "api_failures": api_failures,
        "budget_skipped": budget_skipped,
        "coverage": _coverage(len(scored), len(records)),
    }


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
    out_probs = _probability_metrics(records, scored, n_resamples, seed)
    return {
        **out_probs,
        "accuracy": accuracy,
        "accuracy_ci_low": low,
        "accuracy_ci_high": high,
        **counts(records, scored, input_errors, parse_failures, api_failures, budget_skipped),
        "predicted_ties": sum(1 for p in preds if p == 0),
        "tie_policy": tie_policy,
    }


def _fallbacks(records: Sequence[Mapping[str, Any]], scored: list[int]) -> int:
    """Scored docs that kept their integer verdict for want of usable probabilities (``scoring=expected``)."""
    return sum(1 for i in scored if records[i].get("fallback"))


def _probability_metrics(
    records: Sequence[Mapping[str, Any]], scored: list[int], n_resamples: int, seed: int
) -> dict[str, Any]:
    """Brier, ECE (with prompt-clustered CIs) and the tie-calibrated accuracy of the scored docs that have a
    probability (``p``: p(image 1 preferred)); None for all when none has one (not measured, which lmms-eval
    reports as nan). A doc without one (an ``expected`` fallback) is left out of these and counted in
    ``expected_fallbacks``."""
    nan = None
    out: dict[str, Any] = dict.fromkeys(
        ("brier", "brier_ci_low", "brier_ci_high", "ece", "ece_ci_low", "ece_ci_high"), nan
    )
    out.update(tie_accuracy=nan, tie_threshold=nan, expected_fallbacks=_fallbacks(records, scored))
    with_p = [i for i in scored if records[i].get("p") is not None and records[i]["label"] in (1, 2)]
    if not with_p:
        return out
    labels = [records[i]["label"] for i in with_p]
    ps = [float(records[i]["p"]) for i in with_p]
    groups = [records[i]["group"] for i in with_p]
    out.update(dict.fromkeys(("brier_ci_low", "brier_ci_high", "ece_ci_low", "ece_ci_high"), float("nan")))
    for name, fn in (("brier", brier), ("ece", ece)):
        out[name] = fn(labels, ps)
        if n_resamples > 0:
            out[f"{name}_ci_low"], out[f"{name}_ci_high"] = bootstrap_ci(
                fn, labels, ps, groups=groups, n_resamples=n_resamples, seed=seed
            )
    tie = tie_calibrated_accuracy(labels, ps, groups, seed=seed)
    out.update(tie_accuracy=tie["tie_accuracy"], tie_threshold=tie["tie_threshold"])
    return out


def _usable_score(pred: Any) -> bool:
    if pred is None or isinstance(pred, bool):
        return False
    try:
        return math.isfinite(float(pred))
    except (TypeError, ValueError):
        return False


#: bootstrap resamples of the ``plcc_logistic`` CI (each one a 4-parameter curve fit)
PLCC_RESAMPLES = 200


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
    cis: dict[str, tuple[float, float]] = {}
    for name, fn, resamples in (
        ("pearson", pearson, n_resamples),
        ("spearman", spearman, n_resamples),
        ("kendall", kendall, n_resamples),
        # each resample is a curve fit: fewer resamples keep a summary within a second or two
        ("plcc_logistic", lambda a, b: plcc_logistic(b, a), min(n_resamples, PLCC_RESAMPLES)),
    ):
        cis[name] = (float("nan"), float("nan"))
        if resamples > 0 and scored:
            cis[name] = bootstrap_ci(fn, t, p, groups=groups, n_resamples=resamples, seed=seed)
    return {
        "pearson": pearson(t, p),
        "pearson_ci_low": cis["pearson"][0],
        "pearson_ci_high": cis["pearson"][1],
        "spearman": spearman(t, p),
        "spearman_ci_low": cis["spearman"][0],
        "spearman_ci_high": cis["spearman"][1],
        "kendall": kendall(t, p),
        "kendall_ci_low": cis["kendall"][0],
        "kendall_ci_high": cis["kendall"][1],
        "plcc_logistic": plcc_logistic(p, t),
        "plcc_logistic_ci_low": cis["plcc_logistic"][0],
        "plcc_logistic_ci_high": cis["plcc_logistic"][1],
        "expected_fallbacks": _fallbacks(records, scored),
        **counts(records, scored, input_errors, parse_failures, api_failures, budget_skipped),
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
