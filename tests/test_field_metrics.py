"""The field's scoring rules (metrics/field.py) and the four-class judge contract, on hand-computed cases."""

from __future__ import annotations

import math

import pytest

from lmms_eval_autorater.judges import contract
from lmms_eval_autorater.metrics import field


@pytest.mark.parametrize(
    "response, vote, code",
    [
        ("Image A is sharper. [[A>B]]", "[[A>B]]", 1),
        ("[[B>>A]]", "[[B>>A]]", 2),
        ("so both are fine [[A=B=Good]]", "[[A=B=Good]]", 3),
        ("[[A=B=Bad]] overall", "[[A=B=Bad]]", 4),
        ("[[A=B]]", "[[A=B]]", 0),
        # greedy on one line, as GenAI-Bench's regex: two votes on a line read as one unknown vote
        ("[[A>B]] no wait [[B>A]]", "[[A>B]] no wait [[B>A]]", None),
        ("[[ A>B ]]", "[[ A>B ]]", None),  # not one of the exact strings GenAI-Bench credits
        ("A is better", None, None),
        ("", None, None),
    ],
)
def test_genaibench_vote_extraction(response, vote, code):
    assert field.genaibench_extract_vote(response) == vote
    assert field.genaibench_vote_code(vote) == code


def test_genaibench_vote_matching_rule():
    # label: 1 left, 2 right, 3 tie (good), 4 both bad; pred 0 = [[A=B]]
    right = {(1, 1), (2, 2), (3, 3), (4, 4), (3, 0), (4, 0)}
    for label in (1, 2, 3, 4):
        for pred in (None, 0, 1, 2, 3, 4):
            assert field.genaibench_correct(label, pred) == ((label, pred) in right)


def test_genaibench_accuracy_counts_every_item():
    labels = [1, 2, 3, 4, 3, 1]
    preds = [1, 1, 0, None, 3, 2]
    # right: item 0 (1=1), item 2 ([[A=B]] on a tie), item 4 (3=3) -> 3 of 6; the None is wrong, not dropped
    assert field.genaibench_accuracy(labels, preds) == pytest.approx(3 / 6)
    with pytest.raises(ValueError, match=r"labels\[1\] = 5"):
        field.genaibench_accuracy([1, 5], [1, 1])
    assert math.isnan(field.genaibench_accuracy([], []))


def test_four_label_summary_both_conventions():
    recs = [
        {"label": 1, "pred": 1, "status": "ok", "group": "0"},
        {"label": 2, "pred": 1, "status": "ok", "group": "1"},
        {"label": 3, "pred": 0, "status": "ok", "group": "2"},
        {"label": 4, "pred": None, "status": "parse_failure", "group": "3"},
        {"label": 4, "pred": None, "status": "api_error", "group": "4"},
    ]
    s = field.four_label_summary(recs, n_resamples=200)
    assert s["accuracy"] == pytest.approx(2 / 5)  # GenAI-Bench: failures in the denominator, wrong
    assert s["accuracy_scored"] == pytest.approx(2 / 3)  # ours: the 3 with a verdict
    assert (s["n_scored"], s["parse_failures"], s["api_failures"]) == (3, 1, 1)
    assert s["predicted_ties"] == 1
    assert 0.0 <= s["accuracy_ci_low"] <= s["accuracy"] <= s["accuracy_ci_high"] <= 1.0


def test_scores_to_four_label():
    assert field.scores_to_four_label(0.7, 0.2) == 1
    assert field.scores_to_four_label(0.1, 0.2) == 2
    assert field.scores_to_four_label(0.5, 0.5) == 0  # A=B only when exactly equal


def test_mmrb2_both_orders_accuracy():
    chosen = {"p1": "A", "p2": "B", "p3": "A", "p4": "A"}
    preds = {
        "p1": {
            "forward": [{"judgement": "A"}],
            "reverse": [{"judgement": "B"}],
        },  # both right (reverse flipped)
        "p2": {
            "forward": [{"judgement": "A"}],
            "reverse": [{"judgement": None}],
        },  # wrong; reverse not counted
        "p4": {"forward": [{"judgement": "tie"}], "reverse": []},  # counted, wrong; reverse absent
    }  # p3 missing
    out = field.mmrb2_accuracy(preds, chosen)
    assert (out["correct"], out["evaluated"], out["missing_pairs"]) == (2, 4, 1)
    assert out["accuracy"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    "ranking, n, expected",
    [
        ("A>B", 2, (0, 1)),
        ("B>A", 2, (1, 0)),
        ("A=B=Good", 2, "tie"),
        ("C>A>B", 3, (2, 0, 1)),
        ("B>D>A>C", 4, (1, 3, 0, 2)),
        ("A>B", 3, None),
        ("A=B>C", 3, None),
    ],
)
def test_editreward_rankings(ranking, n, expected):
    assert field.parse_ranking(ranking, n) == expected


def test_editreward_individual_and_group_accuracy():
    # group 1: C>A>B; comparisons (0,1) A>B right, (0,2) A<C right, (1,2) B<C right -> all correct
    g1 = field.editreward_group((2, 0, 1), {(0, 1): 1, (0, 2): -1, (1, 2): -1})
    # group 2: A>B>C; (0,1) right, (0,2) wrong, (1,2) no verdict
    g2 = field.editreward_group((0, 1, 2), {(0, 1): 1, (0, 2): -1, (1, 2): None})
    # group 3: a 2-pair tie predicted as a tie
    g3 = field.editreward_group("tie", {(0, 1): 0})
    assert (g1["correct"], g1["group_correct"]) == (3, True)
    assert (g2["judged"], g2["correct"], g2["group_correct"]) == (2, 1, False)
    out = field.editreward_accuracy([g1, g2, g3])
    assert out["individual_accuracy"] == pytest.approx(5 / 6)
    assert out["group_accuracy"] == pytest.approx(2 / 3)
    assert out["comparisons"] == 7


@pytest.mark.parametrize(
    "text, value",
    [
        ('{"analysis": "both blurry", "verdict": "both_bad"}', 4),
        ('{"analysis": "x", "verdict": "both_good"}', 3),
        ('{"analysis": "x", "verdict": "2"}', 2),
        ('{"analysis": "x", "verdict": 1}', 1),
        ("Image A keeps the face. [[A>B]]", 1),
        ("Both fail the request.\n[[A=B=Bad]]", 4),
    ],
)
def test_parse_pairwise4(text, value):
    parsed = contract.parse_pairwise4(text)
    assert parsed.ok and parsed.value == value


@pytest.mark.parametrize(
    "text",
    ['{"analysis": "x", "verdict": "maybe"}', "[[A>B]] ... [[B>A]]", '{"analysis": "x"}', "no idea"],
)
def test_parse_pairwise4_refuses(text):
    assert not contract.parse_pairwise4(text).ok


def test_four_class_schema_and_prompt(tmp_path):
    from lmms_eval_autorater.judges.prompts import build_verdict_prompt
    from lmms_eval_autorater.judges.types import JudgeRequest
    from tests.datafactory import image_bytes

    for k in (1, 2):
        (tmp_path / f"{k}.png").write_bytes(image_bytes(k))
    req = JudgeRequest(
        "t/0", "generation", "pairwise", "a cat", (str(tmp_path / "1.png"), str(tmp_path / "2.png"))
    )
    two = build_verdict_prompt(req)
    four = build_verdict_prompt(JudgeRequest(**{**req.__dict__, "classes": 4}))
    assert two.json_schema["properties"]["preferred"]["enum"] == [1, 2]
    assert four.json_schema["properties"]["verdict"]["enum"] == ["1", "2", "both_good", "both_bad"]
    assert four.schema_name == "pairwise4_verdict" and "tie is allowed" in " ".join(
        p for p in four.parts if isinstance(p, str)
    )
