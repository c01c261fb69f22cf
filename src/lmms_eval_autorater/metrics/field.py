"""The field's benchmarks scored as their authors score them (pure functions, no I/O).

* GenAI-Bench (TIGER-AI-Lab/GenAI-Bench ``inference.py``): four human labels; a judge's vote is the
  first ``[[...]]`` of its answer (greedy, one line); accuracy = correct / every item, an unparsable
  answer counting as wrong. ``[[A=B]]`` (an unspecified tie) is right for both tie labels.
* MMRB2 (facebookresearch/MMRB2 ``evaluate/compute_scores/compute_accuracy.py``): each pair judged in
  both orders; accuracy = correct judgments / judgments present (a pair or order without a judgment is
  not in the denominator; a judgment that is neither "A" nor "B" counts, as wrong).
* EditReward-Bench (TIGER-AI-Lab/EditReward ``EditReward/evaluate/eval_bench.py``): groups of 2, 3 or
  4 edits; individual accuracy over the pairwise comparisons of a group, group accuracy = the whole
  ranking right.

Label codes used by our docs and predictions: 1 = A (image 1) better, 2 = B better, 3 = both good
(``A=B=Good``), 4 = both bad (``A=B=Bad``), 0 = a tie without a quality (``A=B``; also a pairwise
scorer's exactly equal scores).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np

from .bootstrap import bootstrap_ci
from .summary import _triage, counts

# ---------------------------------------------------------------------------------------------
# GenAI-Bench

#: the repository's ``human_vote`` / dataset ``vote_type`` values -> our label codes
GENAIBENCH_HUMAN = {"leftvote": 1, "rightvote": 2, "tievote": 3, "bothbad_vote": 4}
HUMAN_OF_CODE = {v: k for k, v in GENAIBENCH_HUMAN.items()}
#: the exact vote strings GenAI-Bench's ``parse_response`` credits -> our prediction codes
GENAIBENCH_VOTES = {
    "[[A>B]]": 1,
    "[[A>>B]]": 1,
    "[[B>A]]": 2,
    "[[B>>A]]": 2,
    "[[A=B=Good]]": 3,
    "[[A=B=Bad]]": 4,
    "[[A=B]]": 0,
}
#: our prediction code -> the vote string an export writes
VOTE_OF_CODE = {1: "[[A>B]]", 2: "[[B>A]]", 3: "[[A=B=Good]]", 4: "[[A=B=Bad]]", 0: "[[A=B]]"}
FOUR_LABELS = (1, 2, 3, 4)
_VOTE_RE = re.compile(r"\[\[.*\]\]")


def genaibench_extract_vote(response: str | None) -> str | None:
    """The vote string GenAI-Bench reads from an answer: the first greedy ``[[...]]`` match on a line."""
    if not response:
        return None
    m = _VOTE_RE.search(response)
    return m.group() if m else None


def genaibench_vote_code(vote: str | None) -> int | None:
    """Our prediction code of a vote string (exact match, as GenAI-Bench compares), None if it credits nothing."""
    return None if vote is None else GENAIBENCH_VOTES.get(vote)


def genaibench_correct(label: int, pred: int | None) -> bool:
    """GenAI-Bench's vote-matching rule: exact class, or an unspecified tie (0) for either tie label."""
    if pred is None:
        return False
    if label in (3, 4) and pred == 0:
        return True
    return pred == label


def _check_label(label: Any, i: int) -> int:
    if isinstance(label, bool) or label not in FOUR_LABELS:
        raise ValueError(f"labels[{i}] = {label!r} is not one of {FOUR_LABELS}")
    return int(label)


def genaibench_accuracy(labels: Sequence[int], preds: Sequence[int | None]) -> float:
    """GenAI-Bench's accuracy: correct / all items (a None prediction is wrong); nan when there is none."""
    if len(labels) != len(preds):
        raise ValueError(f"labels and preds differ in length: {len(labels)} vs {len(preds)}")
    if len(labels) == 0:
        return float("nan")
    lab = np.asarray([_check_label(x, i) for i, x in enumerate(labels)], dtype=np.int64)
    pred = np.asarray([-1 if p is None else int(p) for p in preds], dtype=np.int64)
    return _accuracy_codes(lab, pred)


def _accuracy_codes(lab: np.ndarray, pred: np.ndarray) -> float:
    """``genaibench_accuracy`` on checked int arrays (-1 = no prediction), vectorised for the bootstrap."""
    correct = (pred == lab) | ((pred == 0) & ((lab == 3) | (lab == 4)))
    return float(np.count_nonzero(correct)) / lab.size if lab.size else float("nan")


def four_label_summary(
    records: Sequence[Mapping[str, Any]], n_resamples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """GenAI-Bench's accuracy (every record in the denominator, failures wrong) with a clustered bootstrap CI,
    and ours beside it (``accuracy_scored``: failures excluded and counted), plus the failure counts; for a
    scalar scorer's records (with ``margin``) also EditReward's tie-calibrated accuracy (``four_label_scalar``)."""
    scored, input_errors, parse_failures, api_failures, budget_skipped = _triage(
        records, lambda p: p is not None and p in (0, *FOUR_LABELS)
    )
    ok = set(scored)
    labels = [_check_label(r["label"], i) for i, r in enumerate(records)]
    preds = [int(r["pred"]) if i in ok else None for i, r in enumerate(records)]
    groups = [r.get("group") for r in records]
    accuracy = genaibench_accuracy(labels, preds)
    low = high = float("nan")
    if n_resamples > 0 and records:
        codes = np.asarray([-1 if p is None else p for p in preds], dtype=np.int64)
        low, high = bootstrap_ci(
            _accuracy_codes,
            np.asarray(labels, dtype=np.int64),
            codes,
            groups=groups,
            n_resamples=n_resamples,
            seed=seed,
        )
    s_labels = [labels[i] for i in scored]
    s_preds = [preds[i] for i in scored]
    return {
        "accuracy": accuracy,
        "accuracy_ci_low": low,
        "accuracy_ci_high": high,
        "accuracy_scored": genaibench_accuracy(s_labels, s_preds) if scored else float("nan"),
        **counts(records, scored, input_errors, parse_failures, api_failures, budget_skipped),
        "predicted_ties": sum(1 for p in s_preds if p in (0, 3, 4)),
        **four_label_scalar(records),
    }


def scores_to_four_label(score_1: float, score_2: float) -> int:
    """A pairwise scorer on a four-label task: 1 or 2 by the higher score, 0 (``A=B``) only when exactly equal."""
    if score_1 > score_2:
        return 1
    if score_2 > score_1:
        return 2
    return 0


# ---------------------------------------------------------------------------------------------
# MMRB2


def flip_judgement(judgement: Any) -> Any:
    """A and B swapped (MMRB2's reverse order); anything else unchanged."""
    return {"A": "B", "B": "A"}.get(judgement, judgement)


def mmrb2_accuracy(predictions: Mapping[str, Mapping], chosen: Mapping[str, str]) -> dict[str, Any]:
    """MMRB2's both-orders accuracy of a predictions object (pair id -> ``forward``/``reverse`` lists whose first
    item has ``judgement``) against ``chosen`` (pair id -> "A"/"B"). The reverse judgment is flipped before it
    is compared; a missing or empty judgment is not counted; a pair absent from ``predictions`` is missing."""
    correct = evaluated = missing = 0
    for pair_id, truth in chosen.items():
        pred = predictions.get(pair_id)
        if pred is None:
            missing += 1
            continue
        for order in ("forward", "reverse"):
            items = pred.get(order) or []
            judgement = items[0].get("judgement") if items else None
            if not judgement:
                continue
            evaluated += 1
            if (flip_judgement(judgement) if order == "reverse" else judgement) == truth:
                correct += 1
    return {
        "accuracy": correct / evaluated if evaluated else 0.0,
        "correct": correct,
        "evaluated": evaluated,
        "missing_pairs": missing,
        "total_pairs": len(chosen),
    }


# ---------------------------------------------------------------------------------------------
# EditReward-Bench


def parse_ranking(ranking: str, n: int) -> tuple[int, ...] | str | None:
    """EditReward's ground truth of a group: ``"tie"`` for a 2-pair tie label, else the candidate indices
    best first (``"C>A>B"`` -> (2, 0, 1)); None when the string is not a ranking of ``n`` candidates."""
    if ranking in ("A=B=Good", "A=B=Bad"):
        return "tie"
    if ranking in ("B>A", "A<B"):
        return (1, 0)
    if "=" in ranking:
        return None
    letters = ranking.replace(">", "").replace("<", "").replace(" ", "")
    idx = tuple(ord(c) - ord("A") for c in letters)
    if len(idx) != n or sorted(idx) != list(range(n)):
        return None
    return idx


def pairwise_truth(ranking: tuple[int, ...] | str, i: int, j: int) -> int:
    """1 if candidate i is ranked above j, -1 if below, 0 for a tie group."""
    if ranking == "tie":
        return 0
    return 1 if ranking.index(i) < ranking.index(j) else -1


def editreward_group(ranking: tuple[int, ...] | str, prefs: Mapping[tuple[int, int], int | None]) -> dict:
    """One group's comparisons judged: ``prefs[(i, j)]`` is 1 (i better), -1 (j better), 0 (tie) or None (no
    verdict), for every i < j. Returns the number of comparisons, of judged ones, of correct ones, and
    whether the group is all correct (every comparison judged and right)."""
    n = len(ranking) if ranking != "tie" else 2
    pairs = list(combinations(range(n), 2))
    judged = correct = 0
    for i, j in pairs:
        p = prefs.get((i, j))
        if p is None:
            continue
        judged += 1
        correct += int(p == pairwise_truth(ranking, i, j))
    return {
        "comparisons": len(pairs),
        "judged": judged,
        "correct": correct,
        "group_correct": judged == len(pairs) and correct == len(pairs),
    }


def editreward_accuracy(groups: Sequence[Mapping]) -> dict[str, float]:
    """Individual accuracy (correct comparisons / judged comparisons) and group accuracy (all-correct groups /
    groups) over ``editreward_group`` outcomes; a group with a failed comparison is not all-correct."""
    judged = sum(g["judged"] for g in groups)
    correct = sum(g["correct"] for g in groups)
    return {
        "individual_accuracy": correct / judged if judged else float("nan"),
        "group_accuracy": sum(g["group_correct"] for g in groups) / len(groups) if groups else float("nan"),
        "comparisons": sum(g["comparisons"] for g in groups),
        "judged": judged,
        "groups": len(groups),
    }


#: EditReward-Bench's tie labels (2-candidate sets only): each is the truth "A=B" (``eval_bench.py``'s rule)
EDITREWARD_TIES = ("A=B", "A=B=Good", "A=B=Bad")
#: the statuses that EditReward's scripts keep as a result: an unparsable answer is their "Unknown" vote,
#: compared and wrong; an API or input failure returns no result and is left out
EDITREWARD_RESULT_STATUSES = ("ok", "parse_failure")


def editreward_label(ranking: Any, comparison_type: Any, n: int) -> int | None:
    """The truth of one EditReward-Bench comparison row as our label code: 1 if the first candidate of
    ``comparison_type`` ("AvsC": A shown as Image 1, C as Image 2) is preferred, 2 if the second, 0 for a tie
    (2-candidate sets only); None when ``ranking`` is not one of those (the caller names the row)."""
    if not isinstance(ranking, str) or not isinstance(comparison_type, str):
        return None
    first, sep, second = comparison_type.partition("vs")
    if not sep or len(first) != 1 or len(second) != 1:
        return None
    ranking = ranking.replace(" ", "")
    if n == 2 and ranking in EDITREWARD_TIES:
        return 0
    if ranking in (f"{first}>{second}", f"{second}<{first}"):
        return 1
    if ranking in (f"{second}>{first}", f"{first}<{second}"):
        return 2
    return None


def _editreward_codes(lab: np.ndarray, pred: np.ndarray) -> float:
    return float(np.count_nonzero(lab == pred)) / lab.size if lab.size else float("nan")


def editreward_summary(
    records: Sequence[Mapping[str, Any]], n_resamples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """EditReward's individual and group accuracy of per-comparison records (``label`` 0/1/2, ``pred``, ``status``,
    ``group``), as its ``inference_{2,3,4}pair_hf.py`` compute them, and ours beside them.

    * ``accuracy`` (individual): correct / comparisons with a result; an unparsable answer is a result and
      wrong, an API or input failure (and a budget skip) is no result; 95% CI clustered by group.
    * ``group_accuracy``: groups with every comparison a result and right / groups with at least one result.
    * ``accuracy_scored``: ours, failures of every kind excluded (and counted).
    A predicted tie (0) is right only on a tie label. For a scalar scorer's records (with ``margin``) also
    EditReward's rule for reward models (``editreward_scalar``: tie-calibrated accuracy and group accuracy)."""
    scored, input_errors, parse_failures, api_failures, budget_skipped = _triage(
        records, lambda p: p is not None and p in (0, 1, 2)
    )
    ok = set(scored)
    labels, preds, present_groups = [], [], []
    groups: dict[Any, dict[str, int]] = {}
    for i, r in enumerate(records):
        label = r.get("label")
        if isinstance(label, bool) or label not in (0, 1, 2):
            raise ValueError(f"records[{i}] has label {label!r}, expected 0, 1 or 2")
        g = groups.setdefault(r.get("group"), {"comparisons": 0, "judged": 0, "correct": 0})
        g["comparisons"] += 1
        if i not in ok and r.get("status") not in EDITREWARD_RESULT_STATUSES:
            continue
        pred = int(r["pred"]) if i in ok else -1
        g["judged"] += 1
        g["correct"] += int(pred == label)
        labels.append(int(label))
        preds.append(pred)
        present_groups.append(r.get("group"))
    outcomes = [
        {**g, "group_correct": g["judged"] == g["comparisons"] and g["correct"] == g["comparisons"]}
        for g in groups.values()
        if g["judged"]
    ]
    theirs = editreward_accuracy(outcomes)
    low = high = float("nan")
    if n_resamples > 0 and labels:
        low, high = bootstrap_ci(
            _editreward_codes,
            np.asarray(labels, dtype=np.int64),
            np.asarray(preds, dtype=np.int64),
            groups=present_groups,
            n_resamples=n_resamples,
            seed=seed,
        )
    s_preds = [int(records[i]["pred"]) for i in scored]
    s_labels = [int(records[i]["label"]) for i in scored]
    return {
        "accuracy": theirs["individual_accuracy"],
        "accuracy_ci_low": low,
        "accuracy_ci_high": high,
        "group_accuracy": theirs["group_accuracy"],
        "accuracy_scored": (
            sum(p == t for p, t in zip(s_preds, s_labels)) / len(scored) if scored else float("nan")
        ),
        **counts(records, scored, input_errors, parse_failures, api_failures, budget_skipped),
        "predicted_ties": sum(1 for p in s_preds if p == 0),
        "groups": theirs["groups"],
        **editreward_scalar(records),
    }


# ---------------------------------------------------------------------------------------------
# scalar reward models (a score per image): EditReward's tie-calibrated accuracy
#
# A scalar scorer says "tie" only on exactly equal scores, so a benchmark with human ties would count every
# human tie wrong. EditReward's ``eval_bench.py`` (TIGER-AI-Lab/EditReward, ``EditReward/evaluate/``) scores a
# reward model instead on the margin m = score(A) - score(B), calling |m| <= epsilon a tie, with epsilon chosen
# on the same data to maximise the accuracy (an in-sample, optimistic threshold, as the authors do). Human
# truth h: 1 (A better), -1 (B better), 0 (tie).


def _tie_stats(h: Sequence[int], m: Sequence[float], epsilon: float) -> tuple[int, int, int, int, int]:
    """eval_bench.py ``suff_stats``: (C, D, Th, Tm, Thm) = concordant, discordant, human-only tie,
    model-only tie, both tie; a model tie is |m| <= epsilon (epsilon < 0: never)."""
    c = d = th = tm = thm = 0
    for hi, mi in zip(h, m):
        if hi == 0 and abs(mi) <= epsilon:
            thm += 1
        elif hi == 0:
            th += 1
        elif abs(mi) <= epsilon:
            tm += 1
        elif hi * mi > 0:
            c += 1
        else:
            d += 1
    return c, d, th, tm, thm


def tie_calibrated_accuracy(h: Sequence[int], m: Sequence[float]) -> tuple[float, float]:
    """EditReward-Bench's pairwise accuracy of a scalar scorer (eval_bench.py
    ``calc_accuracy_with_ties_for_edit_reward_bench``): the best (C + Thm) / N over the thresholds
    {0} and every |m|, the smallest threshold winning a tie; returns (accuracy, epsilon); nan, nan when empty."""
    if len(h) != len(m):
        raise ValueError(f"h and m differ in length: {len(h)} vs {len(m)}")
    if not h:
        return float("nan"), float("nan")
    best, best_eps = -1.0, -1.0
    for eps in [0.0, *sorted({abs(float(x)) for x in m})]:
        c, d, th, tm, thm = _tie_stats(h, m, eps)
        acc = (c + thm) / (c + d + th + tm + thm)
        if acc > best:
            best, best_eps = acc, eps
    return best, best_eps


def tie_walk_accuracy(h: Sequence[int], m: Sequence[float]) -> float:
    """The accuracy-with-ties that EditReward's eval_bench.py reports for GenAI-Bench editing (its
    ``calc_accuracy_with_ties``, after arXiv:2305.14324): the pairs sorted by |m| (stably) become ties one at a
    time and the best (C + Thm) / N on the way is kept (at least one pair is a tie); nan when empty."""
    if len(h) != len(m):
        raise ValueError(f"h and m differ in length: {len(h)} vs {len(m)}")
    if not h:
        return float("nan")
    order = sorted(range(len(h)), key=lambda i: abs(float(m[i])))
    c, d, th, tm, thm = _tie_stats(h, m, -1.0)
    best = float("-inf")
    for k in range(len(order)):
        # the first k+1 pairs by |m| are ties, the rest are judged by the sign of m
        hi, mi = h[order[k]], float(m[order[k]])
        if hi == 0:
            th, thm = th - 1, thm + 1
        elif hi * mi > 0:
            c, tm = c - 1, tm + 1
        else:
            d, tm = d - 1, tm + 1
        best = max(best, (c + thm) / (c + d + th + tm + thm))
    return best


def scalar_margins(records: Sequence[Mapping[str, Any]]) -> list[int] | None:
    """The indices of the records that carry a scalar scorer's margin (``margin``: score of Image 1 minus
    score of Image 2), or None when a scored record has none (a judge's run: the scalar rules do not apply)."""
    idx = [i for i, r in enumerate(records) if isinstance(r.get("margin"), (int, float))]
    if not idx:
        return None
    if any(r.get("status") == "ok" and r.get("margin") is None for r in records):
        return None
    return idx


def editreward_scalar(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """EditReward's rule for a scalar scorer on EditReward-Bench (``evaluate_edit_reward_bench``), over the
    comparisons with a margin (a failed one has no score and no result, as in their script):

    * ``accuracy_tie_calibrated``: ``tie_calibrated_accuracy`` (on 3- and 4-candidate sets, without human ties,
      the best threshold is 0 and it equals the accuracy with an exact tie counted wrong);
    * ``tie_epsilon``: the threshold it chose;
    * ``group_accuracy_tie_calibrated``: their strict ranking accuracy: a group is right when each of its
      comparisons is, a human tie when |m| <= epsilon, a preference when m has its sign (an exactly equal
      pair on a preference is wrong here; their argsort would rank the later candidate first).
    All nan when the records are not a scalar scorer's."""
    idx = scalar_margins(records)
    nan = float("nan")
    if idx is None:
        return {"accuracy_tie_calibrated": nan, "tie_epsilon": nan, "group_accuracy_tie_calibrated": nan}
    sign = {1: 1, 2: -1, 0: 0}
    h = [sign[int(records[i]["label"])] for i in idx]
    m = [float(records[i]["margin"]) for i in idx]
    acc, eps = tie_calibrated_accuracy(h, m)
    groups: dict[Any, bool] = {}
    for hi, mi, i in zip(h, m, idx):
        right = abs(mi) <= eps if hi == 0 else hi * mi > 0
        g = records[i].get("group")
        groups[g] = groups.get(g, True) and right
    for r in records:  # a group with a comparison without a result is not all right
        if r.get("group") in groups and not isinstance(r.get("margin"), (int, float)):
            groups[r.get("group")] = False
    return {
        "accuracy_tie_calibrated": acc,
        "tie_epsilon": eps,
        "group_accuracy_tie_calibrated": sum(groups.values()) / len(groups),
    }


def four_label_scalar(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """A scalar scorer on GenAI-Bench the way EditReward's paper scores one there (eval_bench.py, benchmark
    ``genai_edit_bench``): both tie labels are one human tie, ``tie_walk_accuracy`` over the items with a
    margin (``accuracy_tie_calibrated``); nan when the records are not a scalar scorer's."""
    idx = scalar_margins(records)
    if idx is None:
        return {"accuracy_tie_calibrated": float("nan")}
    sign = {1: 1, 2: -1, 3: 0, 4: 0}
    h = [sign[int(records[i]["label"])] for i in idx]
    return {"accuracy_tie_calibrated": tie_walk_accuracy(h, [float(records[i]["margin"]) for i in idx])}
