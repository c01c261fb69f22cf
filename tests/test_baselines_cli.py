"""The baselines (imagereward, hpsv3, qsit) through the real lmms-eval CLI on the four tasks (tiny weights)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.clitools import TASKS, metric, run_cli

# the qsit_folder fixture comes from tests/conftest.py (tests/tinymodels.py builds it); without torch or
# transformers the whole module is skipped
pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = pytest.mark.slow
FIX = Path(__file__).parent / "fixtures" / "parity"


def _check_all_scored(results, docs):
    for task in TASKS:
        assert metric(results, task, "n_scored") == len(docs[task]), task
        assert metric(results, task, "parse_failures") == 0 and metric(results, task, "api_failures") == 0


def _expected_metrics(score, docs) -> dict[str, float]:
    """Each task's headline computed here from ``score(prompts, images)`` (the library scorer on the same
    checkpoint): pairwise accuracy with a tie counted wrong, pointwise Pearson r (scipy) against the targets."""
    from scipy.stats import pearsonr

    out = {}
    for task in TASKS:
        task_docs = docs[task]
        prompts = [d["request"] for d in task_docs]
        s1 = score(prompts, [d["image_1"] for d in task_docs])
        if task_docs[0]["paradigm"] == "pairwise":
            s2 = score(prompts, [d["image_2"] for d in task_docs])
            right = [(1 if a > b else 2 if b > a else 0) == d["label"] for a, b, d in zip(s1, s2, task_docs)]
            out[task] = sum(right) / len(task_docs)
        else:
            out[task] = float(pearsonr(s1, [d["target"] for d in task_docs])[0])
    return out


def _check_values(results, expected):
    for task, value in expected.items():
        name = "accuracy" if task in ("psr", "imagereward_pair") else "pearson"
        assert metric(results, task, name) == pytest.approx(value, rel=1e-4, abs=1e-6), task


def imagereward_args(tasks: str) -> tuple[str, ...]:
    """lmms-eval arguments for the imagereward baseline on the tiny parity checkpoint."""
    ir = FIX / "imagereward"
    return (
        "--model",
        "imagereward",
        "--model_args",
        f"checkpoint={ir / 'ImageReward.pt'},tokenizer={ir / 'bert-base-uncased'},device=cpu",
        "--tasks",
        tasks,
    )


def test_imagereward_cli_matches_its_scorer(tmp_path, data):
    from lmms_eval_autorater.baselines.imagereward import ImageRewardScorer

    root, docs = data
    ir = FIX / "imagereward"
    args = imagereward_args("autorater_bench")
    results, log = run_cli(tmp_path, {"AUTORATER_DATA_DIR": str(root), "HF_HUB_OFFLINE": "1"}, *args)
    assert results is not None, log[-3000:]
    _check_all_scored(results, docs)
    scorer = ImageRewardScorer(ir / "ImageReward.pt", tokenizer=str(ir / "bert-base-uncased"), device="cpu")
    pair = docs["imagereward_pair"]
    s1 = scorer.score([d["request"] for d in pair], [d["image_1"] for d in pair])
    s2 = scorer.score([d["request"] for d in pair], [d["image_2"] for d in pair])
    preds = [1 if a > b else 2 if b > a else 0 for a, b in zip(s1, s2)]
    expected = sum(p == d["label"] for p, d in zip(preds, pair)) / len(pair)
    assert metric(results, "imagereward_pair", "accuracy") == pytest.approx(expected)
    sample_file = next((tmp_path / "out0").rglob("*_samples_imagereward_pair.jsonl"))
    resp = json.loads(sample_file.read_text().splitlines()[0])["filtered_resps"]
    envelope = json.loads(resp[0] if isinstance(resp, list) else resp)
    assert len(envelope["meta"]["scores"]) == 2


def test_hpsv3_cli(tmp_path, data):
    root, docs = data
    hps = FIX / "hpsv3"
    args = (
        "--model",
        "hpsv3",
        "--model_args",
        f"checkpoint={hps / 'HPSv3.safetensors'},base_model={hps / 'base'},device=cpu",
        "--tasks",
        "autorater_bench",
    )
    results, log = run_cli(tmp_path, {"AUTORATER_DATA_DIR": str(root), "HF_HUB_OFFLINE": "1"}, *args)
    assert results is not None, log[-3000:]
    _check_all_scored(results, docs)
    from lmms_eval_autorater.baselines.hpsv3 import HPSv3Scorer

    scorer = HPSv3Scorer(
        checkpoint=str(hps / "HPSv3.safetensors"), base_model=str(hps / "base"), device="cpu"
    )
    _check_values(results, _expected_metrics(scorer.score, docs))


def test_qsit_cli(tmp_path, data, qsit_folder):
    root, docs = data
    args = (
        "--model",
        "qsit",
        "--model_args",
        f"pretrained={qsit_folder},device=cpu",
        "--tasks",
        "autorater_bench",
    )
    results, log = run_cli(tmp_path, {"AUTORATER_DATA_DIR": str(root), "HF_HUB_OFFLINE": "1"}, *args)
    assert results is not None, log[-3000:]
    _check_all_scored(results, docs)
    from lmms_eval_autorater.specialists.qs import QSiTScorer

    scorer = QSiTScorer(pretrained=qsit_folder, device="cpu")
    _check_values(results, _expected_metrics(lambda prompts, images: scorer.score(images), docs))


def test_baseline_treats_a_corrupt_image_as_an_input_error(tmp_path):
    """The baselines check images as the judges do: the corrupt doc is counted, the others are scored."""
    from tests.datafactory import make_psr

    root = tmp_path / "data"
    folder = make_psr(root, [{"id": f"s{i}", "votes": ["1", "1", "1"]} for i in range(3)])
    (folder / "images" / "s1_e1.png").write_bytes(b"GIF89a but no image follows")
    args = imagereward_args("psr")
    results, log = run_cli(tmp_path, {"AUTORATER_DATA_DIR": str(root), "HF_HUB_OFFLINE": "1"}, *args)
    assert results is not None, log[-3000:]
    assert metric(results, "psr", "input_errors") == 1
    assert metric(results, "psr", "n_scored") == 2
    assert "task 'psr', doc 's1', field 'image_1'" in log
