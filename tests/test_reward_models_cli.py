"""The reward models (pickscore, hpsv2, clipscore) through the real lmms-eval CLI on tiny checkpoints.

The checkpoints are the parity fixtures (``tests/fixtures/parity/{clip,hpsv2}``); the generation tasks are
scored and their metrics equal what the scorers give on the same docs; an editing task is refused before
anything is scored, with one line naming the model and the task.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.clitools import metric, run_cli

pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = pytest.mark.slow
FIX = Path(__file__).parent / "fixtures" / "parity"
GENERATION = ("imagereward_pair", "imagereward_point", "aigiqa")
ENV = {"HF_HUB_OFFLINE": "1"}


def _args(model: str, tasks: str) -> tuple[str, ...]:
    model_args = {
        "pickscore": f"checkpoint={FIX / 'clip'},processor={FIX / 'clip'},device=cpu",
        "clipscore": f"checkpoint={FIX / 'clip'},device=cpu",
        "hpsv2": f"checkpoint={FIX / 'hpsv2'},arch={FIX / 'hpsv2' / 'open_clip_config.json'},device=cpu",
    }[model]
    return ("--model", model, "--model_args", model_args, "--tasks", tasks)


def _pair_accuracy(scorer, docs) -> float:
    s1 = scorer.score([d["request"] for d in docs], [d["image_1"] for d in docs])
    s2 = scorer.score([d["request"] for d in docs], [d["image_2"] for d in docs])
    preds = [1 if a > b else 2 if b > a else 0 for a, b in zip(s1, s2)]
    return sum(p == d["label"] for p, d in zip(preds, docs)) / len(docs)


def test_pickscore_scores_the_generation_tasks(tmp_path, data):
    from lmms_eval_autorater.baselines.pickscore import PickScoreScorer

    root, docs = data
    results, log = run_cli(
        tmp_path, {**ENV, "AUTORATER_DATA_DIR": str(root)}, *_args("pickscore", ",".join(GENERATION))
    )
    assert results is not None, log[-3000:]
    for task in GENERATION:
        assert metric(results, task, "n_scored") == len(docs[task]), task
        assert metric(results, task, "parse_failures") == 0 and metric(results, task, "input_errors") == 0
    scorer = PickScoreScorer(str(FIX / "clip"), processor=str(FIX / "clip"), device="cpu")
    assert metric(results, "imagereward_pair", "accuracy") == pytest.approx(
        _pair_accuracy(scorer, docs["imagereward_pair"])
    )
    point = docs["aigiqa"]
    expected = scorer.score([d["request"] for d in point], [d["image_1"] for d in point])
    sample_file = next((tmp_path / "out0").rglob("*_samples_aigiqa.jsonl"))
    logged = {}
    for line in sample_file.read_text().splitlines():
        row = json.loads(line)
        resp = row["filtered_resps"]
        logged[row["doc_id"]] = json.loads(resp[0] if isinstance(resp, list) else resp)["meta"]["scores"]
    assert sorted(logged) == list(range(len(point)))  # lmms-eval's doc index: the builder's order
    for i, e in enumerate(expected):
        assert logged[i] == [pytest.approx(e, abs=1e-4)]


@pytest.mark.parametrize("model", ["hpsv2", "clipscore"])
def test_hpsv2_and_clipscore_score_a_pairwise_task(tmp_path, data, model):
    root, docs = data
    if model == "hpsv2":
        pytest.importorskip("open_clip")
        from lmms_eval_autorater.baselines.hpsv2 import HPSv2Scorer

        scorer = HPSv2Scorer(
            str(FIX / "hpsv2"), arch=str(FIX / "hpsv2" / "open_clip_config.json"), device="cpu"
        )
    else:
        from lmms_eval_autorater.baselines.clipscore import CLIPScoreScorer

        scorer = CLIPScoreScorer(str(FIX / "clip"), device="cpu")
    results, log = run_cli(
        tmp_path, {**ENV, "AUTORATER_DATA_DIR": str(root)}, *_args(model, "imagereward_pair")
    )
    assert results is not None, log[-3000:]
    assert metric(results, "imagereward_pair", "n_scored") == len(docs["imagereward_pair"])
    assert metric(results, "imagereward_pair", "accuracy") == pytest.approx(
        _pair_accuracy(scorer, docs["imagereward_pair"])
    )


def test_a_generation_scorer_refuses_an_editing_task(tmp_path, data):
    root, _docs = data
    results, log = run_cli(
        tmp_path, {**ENV, "AUTORATER_DATA_DIR": str(root)}, *_args("pickscore", "psr,imagereward_pair")
    )
    assert results is None
    lines = [ln for ln in log.splitlines() if "refused" in ln]
    assert len(lines) == 1, log[-3000:]
    assert "pickscore" in lines[0] and "psr" in lines[0] and "imagereward_pair" not in lines[0]
    assert "Traceback" not in log
