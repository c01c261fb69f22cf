"""The reward models (scalar scorers) on the field's benchmarks, scored the way each benchmark's authors score a
scalar reward model, and their rows in ``table --columns field``.

The reference rules are EditReward's own functions, copied verbatim below from TIGER-AI-Lab/EditReward
``EditReward/evaluate/eval_bench.py`` (commit edb027e), so that our implementation is checked against theirs;
MMRB2's reward models are scored on its single-image subset (its README marks EditReward's 67.2 with "*").
The CLI tests run pickscore and a tiny random EditReward through the real lmms-eval CLI and recompute every
table cell from the scores in the logged samples.
"""

from __future__ import annotations

import json
import random
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from lmms_eval_autorater.metrics.field import (
    editreward_summary,
    four_label_summary,
    tie_calibrated_accuracy,
    tie_walk_accuracy,
)
from tests.fielddata import make_editreward, make_genaibench, make_mmrb2
from tests.test_editreward import tiny_editreward  # noqa: F401  (the tiny EditReward checkpoint fixture)

# ---------------------------------------------------------------------------------------------
# EditReward's eval_bench.py (commit edb027e), verbatim but for the prints: the reference implementation


def suff_stats(h, m, epsilon):
    C = D = Th = Tm = Thm = 0
    for hi, mi in zip(h, m):
        if hi == 0 and abs(mi) <= epsilon:
            Thm += 1
        elif hi == 0:
            Th += 1
        elif abs(mi) <= epsilon:
            Tm += 1
        elif hi * mi > 0:
            C += 1
        else:
            D += 1
    return C, D, Th, Tm, Thm


def calc_acc(C, D, Th, Tm, Thm):
    return (C + Thm) / (C + D + Th + Tm + Thm)


def calc_accuracy_with_ties(h, m):
    C, D, Th, Tm, Thm = suff_stats(h, m, -1)
    sorted_pairs = sorted(zip(h, m), key=lambda x: abs(x[1]))
    acc_star = float("-inf")
    epsilon_curr = -1
    current_stat = {"C": C, "D": D, "Th": Th, "Tm": Tm, "Thm": Thm}
    for hi, mi in sorted_pairs:
        if hi == 0 and abs(mi) < epsilon_curr:
            current_stat["Thm"] -= 1
        elif hi == 0:
            current_stat["Th"] -= 1
        elif abs(mi) < epsilon_curr:
            current_stat["Tm"] -= 1
        elif hi * mi > 0:
            current_stat["C"] -= 1
        else:
            current_stat["D"] -= 1
        epsilon_curr = abs(mi)
        if hi == 0 and abs(mi) <= epsilon_curr:
            current_stat["Thm"] += 1
        elif hi == 0:
            current_stat["Th"] += 1
        elif abs(mi) <= epsilon_curr:
            current_stat["Tm"] += 1
        elif hi * mi > 0:
            current_stat["C"] += 1
        else:
            current_stat["D"] += 1
        acc_curr = calc_acc(**current_stat)
        if acc_curr > acc_star:
            acc_star = acc_curr
    return acc_star


def calc_accuracy_without_ties(h, m):
    C, D, Th, Tm, Thm = suff_stats(h, m, -1)
    return C / (C + D + Tm)


def calc_accuracy_with_ties_for_edit_reward_bench(h, m):
    if not h:
        return 0.0, 0.0
    unique_diffs = sorted(list(set([abs(s) for s in m])))
    thresholds = [0.0] + unique_diffs
    best_acc = -1.0
    best_epsilon = -1.0
    for epsilon in thresholds:
        C, D, Th, Tm, Thm = suff_stats(h, m, epsilon)
        acc = calc_acc(C, D, Th, Tm, Thm)
        if acc > best_acc:
            best_acc = acc
            best_epsilon = epsilon
    return best_acc, best_epsilon


def strict_correct(gt, scores, optimal_epsilon):
    """``evaluate_edit_reward_bench``'s strict (group) accuracy of one item."""
    if gt == "tie":
        return abs(scores[0] - scores[1]) <= optimal_epsilon
    return tuple(int(i) for i in np.argsort(scores)[::-1]) == gt


# ---------------------------------------------------------------------------------------------
# the rules against theirs


def _random_case(rng: random.Random, n: int, ties: bool) -> tuple[list[int], list[float]]:
    h = [rng.choice([1, -1, 0] if ties else [1, -1]) for _ in range(n)]
    # rounded margins: repeated |m| and exact zeros, where the two threshold rules differ most
    m = [round(rng.uniform(-1, 1), 1) for _ in range(n)]
    return h, m


@pytest.mark.parametrize("seed", range(40))
def test_tie_rules_equal_editreward_eval_bench(seed):
    rng = random.Random(seed)
    h, m = _random_case(rng, rng.randint(1, 30), ties=seed % 4 != 0)
    assert tie_calibrated_accuracy(h, m) == calc_accuracy_with_ties_for_edit_reward_bench(h, m)
    assert tie_walk_accuracy(h, m) == pytest.approx(calc_accuracy_with_ties(h, m))


def test_tie_calibrated_accuracy_by_hand():
    # h: A, B, tie, tie; |m| 0.5, 0.1, 0.05, 0.3. eps 0: 2 right of 4 (no tie). eps 0.05: + the 0.05 tie = 3.
    # eps 0.1: the 0.1 preference becomes a tie (wrong): 2. eps 0.3: both ties right, 0.1 wrong: 3 (not better).
    acc, eps = tie_calibrated_accuracy([1, -1, 0, 0], [0.5, -0.1, 0.05, 0.3])
    assert (acc, eps) == (0.75, 0.05)
    assert all(np.isnan(x) for x in tie_calibrated_accuracy([], []))


def _rec(label, margin, group, status="ok"):
    pred = None if margin is None else (1 if margin > 0 else 2 if margin < 0 else 0)
    return {"label": label, "pred": pred, "status": status, "group": group, "margin": margin}


def test_editreward_summary_of_a_scalar_scorer_by_hand():
    # 2pair (one comparison per group): labels A, B, tie, tie, A; margins 0.4, -0.2, 0.1, 0.6, -0.3
    recs = [_rec(1, 0.4, "a"), _rec(2, -0.2, "b"), _rec(0, 0.1, "c"), _rec(0, 0.6, "d"), _rec(1, -0.3, "e")]
    s = editreward_summary(recs, n_resamples=0)
    # exact-tie rule: a, b right; ties never predicted: 2 / 5
    assert s["accuracy"] == pytest.approx(2 / 5)
    # eps 0.1: a, b, c right (3/5); eps 0.2: b becomes a tie: 2/5; eps 0.6: c, d right, a, b, e wrong... 2/5
    assert s["accuracy_tie_calibrated"] == pytest.approx(3 / 5) and s["tie_epsilon"] == pytest.approx(0.1)
    # strict: a (sign), b (sign), c (|0.1| <= 0.1) right; d and e wrong
    assert s["group_accuracy_tie_calibrated"] == pytest.approx(3 / 5)
    # a judge's records (no margin): the scalar rules do not apply
    judge = [{**r, "margin": None} for r in recs]
    assert np.isnan(editreward_summary(judge, n_resamples=0)["accuracy_tie_calibrated"])


def test_editreward_summary_3pair_scalar_equals_their_rule():
    # one 3-candidate group ranked A>B>C, candidate scores 0.9, 0.2, 0.5 -> their argsort ranks A, C, B: wrong
    scores = {"A": 0.9, "B": 0.2, "C": 0.5}
    recs = []
    h, m = [], []
    for x, y in combinations("ABC", 2):
        d = scores[x] - scores[y]
        recs.append(_rec(1, d, "g"))  # A>B>C: the first letter always wins
        h.append(1)
        m.append(d)
    s = editreward_summary(recs, n_resamples=0)
    assert s["accuracy"] == pytest.approx(calc_accuracy_without_ties(h, m)) == pytest.approx(2 / 3)
    assert s["accuracy_tie_calibrated"] == pytest.approx(2 / 3)
    gt = (0, 1, 2)
    expected_group = float(strict_correct(gt, [scores[c] for c in "ABC"], 0.0))
    assert s["group_accuracy"] == s["group_accuracy_tie_calibrated"] == expected_group == 0.0


def test_four_label_summary_of_a_scalar_scorer_by_hand():
    # labels A, B, both good, both bad; margins 0.3, 0.2, 0.05, -0.01
    recs = [_rec(1, 0.3, "0"), _rec(2, 0.2, "1"), _rec(3, 0.05, "2"), _rec(4, -0.01, "3")]
    s = four_label_summary(recs, n_resamples=0)
    assert s["accuracy"] == pytest.approx(1 / 4)  # GenAI-Bench's rule: no exact tie, only item 0 right
    # EditReward's walk: both ties one class; ties by |m|: 0.01 (right), 0.05 (right) -> 3/4 at two ties
    assert s["accuracy_tie_calibrated"] == pytest.approx(3 / 4)
    assert s["accuracy_tie_calibrated"] == pytest.approx(
        calc_accuracy_with_ties([1, -1, 0, 0], [0.3, 0.2, 0.05, -0.01])
    )


def test_a_scalar_scorer_on_a_multi_image_mmrb2_response_is_counted(tmp_path, monkeypatch):
    from lmms_eval_autorater.judges.envelope import encode_verdict
    from lmms_eval_autorater.judges.types import Verdict
    from lmms_eval_autorater.tasks.catalog import build_docs
    from lmms_eval_autorater.tasks.field_common import mmrb2_record

    monkeypatch.setenv("AUTORATER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AUTORATER_CACHE_DIR", str(tmp_path / "cache"))
    make_mmrb2(tmp_path / "data", "edit", [{"id": "m", "chosen": "A", "n_a": 3}, {"id": "s", "chosen": "B"}])
    docs = {d["doc_id"]: d for d in build_docs("mmrb2_edit")}
    assert docs["m:fwd"]["response_images"] == "3,1" and docs["m:rev"]["response_images"] == "1,3"
    scalar = encode_verdict(Verdict("ok", preferred=1, meta={"model": "x", "scores": [2.0, 1.0]}), "pairwise")
    judge = encode_verdict(Verdict("ok", preferred=1, raw='{"preferred": 1}'), "pairwise")
    assert mmrb2_record(docs["m:fwd"], [scalar])["status"] == "input_error"
    assert mmrb2_record(docs["m:rev"], [scalar])["status"] == "input_error"
    assert mmrb2_record(docs["s:fwd"], [scalar])["status"] == "ok"
    assert mmrb2_record(docs["m:fwd"], [judge])["status"] == "ok"  # a VLM judge sees the montage


# ---------------------------------------------------------------------------------------------
# the field table with reward-model rows (written runs, hand-computed cells)


def test_field_table_puts_reward_models_in_their_group(tmp_path, monkeypatch):
    from lmms_eval_autorater.cli import main
    from lmms_eval_autorater.judges.types import Verdict
    from lmms_eval_autorater.tasks.catalog import build_docs
    from tests.runfiles import write_run

    monkeypatch.setenv("AUTORATER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AUTORATER_CACHE_DIR", str(tmp_path / "cache"))
    make_editreward(tmp_path / "data", 2, [("e1", "A>B"), ("e2", "B>A"), ("e3", "A=B"), ("e4", "A>B")])
    docs = {"editreward_bench_2": build_docs("editreward_bench_2")}
    margins = {"e1": 0.4, "e2": -0.2, "e3": 0.1, "e4": -0.3}

    def scored(task, i, doc):
        m = margins[doc["doc_id"]]
        return Verdict(
            "ok", preferred=1 if m > 0 else 2, meta={"model": "editreward", "scores": [1.0 + m, 1.0]}
        )

    write_run(tmp_path / "runs", docs, scored, model="editreward", model_args="device=cpu", model_name="")
    out = tmp_path / "table"
    assert (
        main(["table", "--columns", "field", "--results", str(tmp_path / "runs"), "--output", str(out)]) == 0
    )
    data = json.loads((out / "field.json").read_text())
    rows = {r["row"]: r for r in data["rows"]}
    ours = rows["EditReward (ours)"]
    assert ours["group"] == "reward models" and rows["GPT-4o"]["group"] == "judges"
    cell = ours["cells"]["editreward_bench_2"]
    # labels A, B, tie, A; margins 0.4, -0.2, 0.1, -0.3: exact rule 2/4; eps 0.1 -> e1, e2, e3 right: 3/4
    assert cell["metric"] == "accuracy_tie_calibrated" and cell["value"] == pytest.approx(75.0)
    assert cell["accuracy"] == pytest.approx(50.0)
    assert cell["group_accuracy_tie_calibrated"] == pytest.approx(75.0)
    order = [r["group"] for r in data["rows"]]
    assert order == sorted(order, key=["judges", "reward models"].index)  # judges first, then reward models
    assert rows["EditReward"]["cells"]["editreward_bench_3"] == {
        "value": 36.0,
        "metric": "group_accuracy",
        "source": rows["EditReward"]["cells"]["editreward_bench_3"]["source"],
    }
    md = (out / "field.md").read_text()
    assert "| **reward models** |" in md and "75.00 (tie-calibrated)" in md and "; accuracy 50.00" in md


# ---------------------------------------------------------------------------------------------
# the real lmms-eval CLI: pickscore (generation) and a tiny EditReward (editing)

FIX = Path(__file__).parent / "fixtures" / "parity"
T2I = [{"id": f"t{k}", "chosen": "AB"[k % 3 == 1]} for k in range(5)]
EDIT = [{"id": "m0", "chosen": "A", "n_a": 3}, {"id": "s1", "chosen": "B"}, {"id": "s2", "chosen": "A"}]
GEN_VOTES = ["leftvote", "rightvote", "tievote", "bothbad_vote", "leftvote", "rightvote", "tievote"]
EDIT_VOTES = ["rightvote", "bothbad_vote", "leftvote", "tievote", "bothbad_vote"]
ER2 = [("e1", "A>B"), ("e2", "B>A"), ("e3", "A=B"), ("e4", "A>B"), ("e5", "A=B")]
ER3 = [("g1", "A>B>C"), ("g2", "C>A>B")]


def _samples(out: Path, task: str) -> dict[str, dict]:
    """doc id -> the scorer's two logged scores, for one task of a run folder."""
    path = next(out.rglob(f"*_samples_{task}.jsonl"))
    rows = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        resp = row["filtered_resps"]
        env = json.loads(resp[0] if isinstance(resp, list) else resp)
        # our doc id (the record's), for the join with the labels this test wrote; the scores are the scorer's
        rows[str(row["accuracy"]["doc_id"])] = {"scores": env["meta"]["scores"]}
    return rows


def _mmrb2_expected(samples: dict[str, dict], pairs: list[dict]) -> float:
    """MMRB2 over both orders, single-image pairs only; a tie (equal scores) is a judgment and wrong."""
    correct = total = 0
    for p in pairs:
        if p.get("n_a", 1) > 1:
            continue
        for order in ("fwd", "rev"):
            s = samples[f"{p['id']}:{order}"]["scores"]
            judgement = "A" if s[0] > s[1] else "B" if s[1] > s[0] else "tie"
            if judgement != "tie" and order == "rev":
                judgement = {"A": "B", "B": "A"}[judgement]
            total += 1
            correct += judgement == p["chosen"]
    return 100 * correct / total


def _genaibench_expected(samples: dict[str, dict], votes: list[str]) -> tuple[float, float]:
    """(GenAI-Bench's accuracy with A=B only on equal scores, EditReward's tie-calibrated walk) in %."""
    right, h, m = 0, [], []
    for k, vote in enumerate(votes):
        s1, s2 = samples[str(k)]["scores"]
        pred = "leftvote" if s1 > s2 else "rightvote" if s2 > s1 else "tie"
        right += pred == vote or (pred == "tie" and vote in ("tievote", "bothbad_vote"))
        h.append({"leftvote": 1, "rightvote": -1}.get(vote, 0))
        m.append(s1 - s2)
    return 100 * right / len(votes), 100 * calc_accuracy_with_ties(h, m)


def _editreward2_expected(samples: dict[str, dict]) -> tuple[float, float, float]:
    """(exact-tie accuracy, tie-calibrated accuracy, strict accuracy) of the 2pair set in %, their code."""
    h, m, items = [], [], []
    for gid, ranking in ER2:
        s = samples[gid]["scores"]
        gt = {"A>B": 1, "B>A": -1}.get(ranking, 0)
        h.append(gt)
        m.append(s[0] - s[1])
        items.append(({1: (0, 1), -1: (1, 0), 0: "tie"}[gt], s))
    exact = sum((hi == 0 and mi == 0) or hi * mi > 0 for hi, mi in zip(h, m)) / len(h)
    acc, eps = calc_accuracy_with_ties_for_edit_reward_bench(h, m)
    strict = sum(strict_correct(gt, s, eps) for gt, s in items) / len(items)
    return 100 * exact, 100 * acc, 100 * strict


def _editreward3_expected(samples: dict[str, dict]) -> tuple[float, float]:
    """(pairwise accuracy without ties, strict group accuracy) of the 3pair set in %, their code."""
    h, m, strict = [], [], 0
    for gid, ranking in ER3:
        order = ranking.split(">")
        letter = {}
        for x, y in combinations("ABC", 2):
            s = samples[f"{gid}_{x}vs{y}"]["scores"]
            letter.setdefault(x, s[0])
            letter.setdefault(y, s[1])
            assert letter[x] == pytest.approx(s[0]) and letter[y] == pytest.approx(s[1])
        scores = [letter[c] for c in "ABC"]
        gt = tuple("ABC".index(c) for c in order)
        strict += strict_correct(gt, scores, 0.0)
        for i, j in combinations(range(3), 2):
            h.append(1 if gt.index(i) < gt.index(j) else -1)
            m.append(scores[i] - scores[j])
    return 100 * calc_accuracy_without_ties(h, m), 100 * strict / len(ER3)


@pytest.mark.slow
def test_reward_models_through_lmms_eval_make_the_field_rows(tmp_path, tiny_editreward):  # noqa: F811
    pytest.importorskip("transformers")
    from lmms_eval_autorater.cli import main
    from tests.clitools import metric, run_cli

    data = tmp_path / "data"
    make_mmrb2(data, "t2i", T2I)
    make_mmrb2(data, "edit", EDIT, seed=300)
    make_genaibench(data, "image_generation", GEN_VOTES)
    make_genaibench(data, "image_edition", EDIT_VOTES, seed=900)
    make_editreward(data, 2, ER2)
    make_editreward(data, 3, ER3, seed=800)
    env = {"HF_HUB_OFFLINE": "1", "AUTORATER_DATA_DIR": str(data)}

    pick = (
        "--model",
        "pickscore",
        "--model_args",
        f"checkpoint={FIX / 'clip'},processor={FIX / 'clip'},device=cpu",
    )
    results, log = run_cli(tmp_path, env, *pick, "--tasks", "mmrb2_t2i,genaibench_gen")
    assert results is not None, log[-3000:]
    pick_out = tmp_path / "out0"
    assert metric(results, "mmrb2_t2i", "n_scored") == 2 * len(T2I)

    ckpt, base, _sd, _model = tiny_editreward
    er = ("--model", "editreward", "--model_args", f"checkpoint={ckpt},base_model={base},device=cpu")
    tasks = "mmrb2_edit,genaibench_edit,editreward_bench_2,editreward_bench_3"
    results, log = run_cli(tmp_path, env, *er, "--tasks", tasks)
    assert results is not None, log[-3000:]
    er_out = tmp_path / "out1"
    # the 3-image response: both orders of its pair left out and counted, with one line for the task
    assert metric(results, "mmrb2_edit", "input_errors") == 2
    assert metric(results, "mmrb2_edit", "n_scored") == 2 * (len(EDIT) - 1)
    assert sum("single-image subset" in ln for ln in log.splitlines()) == 1, log[-3000:]

    # a generation scorer on an editing field task: refused at start with one line
    refused, log = run_cli(tmp_path, env, *pick, "--tasks", "mmrb2_edit")
    assert refused is None
    lines = [ln for ln in log.splitlines() if "refused" in ln]
    assert len(lines) == 1 and "pickscore" in lines[0] and "mmrb2_edit" in lines[0], log[-3000:]

    out = tmp_path / "table"
    assert (
        main(["table", "--columns", "field", "--results", str(pick_out), str(er_out), "--output", str(out)])
        == 0
    )
    rows = {r["row"]: r for r in json.loads((out / "field.json").read_text())["rows"]}
    pick_row, er_row = rows["PickScore (ours)"], rows["EditReward (ours)"]
    assert pick_row["group"] == er_row["group"] == "reward models"
    assert (
        rows["PickScore"]["kind"] == "published" and rows["PickScore"]["cells"]["mmrb2_t2i"]["value"] == 58.6
    )

    def cell(row, task):
        return row["cells"][task]

    s = _samples(pick_out, "mmrb2_t2i")
    assert cell(pick_row, "mmrb2_t2i")["value"] == pytest.approx(_mmrb2_expected(s, T2I), abs=0.006)
    s = _samples(pick_out, "genaibench_gen")
    theirs, walk = _genaibench_expected(s, GEN_VOTES)
    c = cell(pick_row, "genaibench_gen")
    assert c["metric"] == "accuracy" and c["value"] == pytest.approx(theirs, abs=0.006)
    assert c["accuracy_tie_calibrated"] == pytest.approx(walk, abs=0.006)

    s = _samples(er_out, "mmrb2_edit")
    assert cell(er_row, "mmrb2_edit")["value"] == pytest.approx(_mmrb2_expected(s, EDIT), abs=0.006)
    s = _samples(er_out, "genaibench_edit")
    theirs, walk = _genaibench_expected(s, EDIT_VOTES)
    assert cell(er_row, "genaibench_edit")["value"] == pytest.approx(theirs, abs=0.006)
    assert cell(er_row, "genaibench_edit")["accuracy_tie_calibrated"] == pytest.approx(walk, abs=0.006)
    exact, calibrated, strict = _editreward2_expected(_samples(er_out, "editreward_bench_2"))
    c = cell(er_row, "editreward_bench_2")
    assert c["metric"] == "accuracy_tie_calibrated" and c["value"] == pytest.approx(calibrated, abs=0.006)
    assert c["accuracy"] == pytest.approx(exact, abs=0.006)
    assert c["group_accuracy_tie_calibrated"] == pytest.approx(strict, abs=0.006)
    individual, group = _editreward3_expected(_samples(er_out, "editreward_bench_3"))
    c = cell(er_row, "editreward_bench_3")
    assert c["value"] == pytest.approx(individual, abs=0.006)
    assert c["group_accuracy"] == pytest.approx(group, abs=0.006)
    assert all(c["partial"] for r in (pick_row, er_row) for c in r["cells"].values())
