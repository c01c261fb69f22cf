"""The words every floor shares: a verdict's statuses and the count and usage metrics (ground floor).

Defined once here and imported by the judge core, the metrics, the tasks, the commands and the reports,
so a new status or count is taught in one place. Imports nothing of ours.
"""

from __future__ import annotations

from typing import Literal

#: what became of one doc: ``ok`` (a usable answer), or why not. ``budget_skipped``: not sent because
#: ``max_cost_usd`` was reached (neither an answer nor a failure)
Status = Literal["ok", "input_error", "parse_failure", "api_error", "budget_skipped"]
STATUSES: tuple[str, ...] = ("ok", "input_error", "parse_failure", "api_error", "budget_skipped")
#: the statuses that are failures (counted, never guessed); ``budget_skipped`` is not one of them
FAILURE_STATUSES: tuple[str, ...] = ("input_error", "parse_failure", "api_error")

#: the count metric of each status other than ``ok``
STATUS_COUNTS: dict[str, str] = {
    "input_error": "input_errors",
    "parse_failure": "parse_failures",
    "api_error": "api_failures",
    "budget_skipped": "budget_skipped",
}
#: counts every task (and every summary) reports next to its metric: what was scored and each kind of
#: failure, then the budget skips
COUNT_METRICS: tuple[str, ...] = ("n_scored", *STATUS_COUNTS.values())
#: what a run spent
USAGE_METRICS: tuple[str, ...] = ("cost_usd", "prompt_tokens", "completion_tokens")
#: what the judge estimated, before sending, that the run would spend (``judges.estimate``), beside cost_usd
ESTIMATE_METRICS: tuple[str, ...] = ("estimated_usd",)

#: the scoring modes of a judge (``scoring=``): ``argmax`` (the integer verdict, the paper's protocol) and
#: ``expected`` (from the judge's token probabilities)
SCORING_MODES: tuple[str, ...] = ("argmax", "expected")
#: ``scoring=expected``: ok docs whose answer had no usable probabilities (they keep the integer verdict)
PROBABILITY_COUNTS: tuple[str, ...] = ("expected_fallbacks",)
#: pairwise metrics of the probabilities (``scoring=expected`` or ``samples=N``; nan without them): Brier
#: score and expected calibration error with CIs, and the tie-aware accuracy with its threshold
PAIRWISE_PROBABILITY_METRICS: tuple[str, ...] = (
    "brier",
    "brier_ci_low",
    "brier_ci_high",
    "ece",
    "ece_ci_low",
    "ece_ci_high",
    "tie_accuracy",
    "tie_threshold",
)

#: the metrics of a pairwise task, in the order lmms-eval reports them
PAIRWISE_METRICS: tuple[str, ...] = (
    "accuracy",
    "accuracy_ci_low",
    "accuracy_ci_high",
    *COUNT_METRICS,
    "predicted_ties",
    "flip_rate",
    *PAIRWISE_PROBABILITY_METRICS,
    *PROBABILITY_COUNTS,
    *USAGE_METRICS,
    *ESTIMATE_METRICS,
)
#: the metrics of a pointwise task
POINTWISE_METRICS: tuple[str, ...] = (
    "pearson",
    "pearson_ci_low",
    "pearson_ci_high",
    "spearman",
    "spearman_ci_low",
    "spearman_ci_high",
    "kendall",
    "kendall_ci_low",
    "kendall_ci_high",
    "plcc_logistic",
    "plcc_logistic_ci_low",
    "plcc_logistic_ci_high",
    *COUNT_METRICS,
    *PROBABILITY_COUNTS,
    *USAGE_METRICS,
    *ESTIMATE_METRICS,
)
#: the metrics of a four-label task (GenAI-Bench): its own accuracy (every item, a failure wrong) and ours
#: (``accuracy_scored``: failures excluded and counted) beside it; a scalar scorer's run also gets EditReward's
#: ``accuracy_tie_calibrated`` (nan for judges)
FOUR_LABEL_METRICS: tuple[str, ...] = (
    "accuracy",
    "accuracy_ci_low",
    "accuracy_ci_high",
    "accuracy_scored",
    *COUNT_METRICS,
    "predicted_ties",
    "flip_rate",
    "accuracy_tie_calibrated",
    *USAGE_METRICS,
    *ESTIMATE_METRICS,
)
#: the metrics of an EditReward-Bench task: ``accuracy`` is its individual accuracy, ``group_accuracy`` the
#: share of groups with every comparison right (EditReward's evaluation scripts), ``accuracy_scored`` ours; a
#: scalar scorer's run also gets EditReward's reward-model rule (``*_tie_calibrated``, ``tie_epsilon``; nan for
#: judges)
EDITREWARD_METRICS: tuple[str, ...] = (
    "accuracy",
    "accuracy_ci_low",
    "accuracy_ci_high",
    "group_accuracy",
    "accuracy_scored",
    *COUNT_METRICS,
    "predicted_ties",
    "flip_rate",
    "accuracy_tie_calibrated",
    "group_accuracy_tie_calibrated",
    "tie_epsilon",
    *USAGE_METRICS,
    *ESTIMATE_METRICS,
)
#: a task template's kind (``tasks/_<kind>.yaml``) -> its metrics, in the order lmms-eval reports them
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "pairwise": PAIRWISE_METRICS,
    "pointwise": POINTWISE_METRICS,
    "four_label": FOUR_LABEL_METRICS,
    "editreward": EDITREWARD_METRICS,
}
#: the metrics where more is better (lmms-eval's ``higher_is_better``); every other metric: less is better
HIGHER_IS_BETTER: frozenset[str] = frozenset(
    {"accuracy", "accuracy_ci_low", "accuracy_ci_high", "pearson", "pearson_ci_low", "pearson_ci_high"}
    | {"spearman", "kendall", "n_scored", "mean_score", "mean_score_ci_low", "mean_score_ci_high"}
    | {"accuracy_scored", "group_accuracy", "accuracy_tie_calibrated", "group_accuracy_tie_calibrated"}
    | {"spearman_ci_low", "spearman_ci_high", "kendall_ci_low", "kendall_ci_high"}
    | {"plcc_logistic", "plcc_logistic_ci_low", "plcc_logistic_ci_high", "tie_accuracy"}
)


def count_statuses(statuses) -> dict[str, int]:
    """How many of ``statuses`` fall under each count metric other than ``n_scored`` (status ``ok`` is not
    counted here); an unknown status raises ``ValueError``."""
    out = dict.fromkeys(STATUS_COUNTS.values(), 0)
    for status in statuses:
        if status == "ok":
            continue
        if status not in STATUS_COUNTS:
            raise ValueError(f"unknown status {status!r}, expected one of {STATUSES}")
        out[STATUS_COUNTS[status]] += 1
    return out


__all__ = [
    "COUNT_METRICS",
    "EDITREWARD_METRICS",
    "ESTIMATE_METRICS",
    "FAILURE_STATUSES",
    "FOUR_LABEL_METRICS",
    "HIGHER_IS_BETTER",
    "PAIRWISE_METRICS",
    "PAIRWISE_PROBABILITY_METRICS",
    "POINTWISE_METRICS",
    "PROBABILITY_COUNTS",
    "SCORING_MODES",
    "STATUSES",
    "STATUS_COUNTS",
    "TASK_METRICS",
    "Status",
    "USAGE_METRICS",
    "count_statuses",
]
