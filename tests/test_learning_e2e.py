"""The learning loop end to end on a tiny model: ``synthesize`` on each of the four training sources (against
the local OpenAI-compatible server as the teacher), ``train`` on the four folders, then the real ``lmms-eval``
CLI judging with the checkpoint (``--model autorater_internvl --model_args pretrained=CKPT``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

from tests import trainfixtures as tf  # noqa: E402
from tests.clitools import metric, run_cli  # noqa: E402
from tests.datafactory import standard_data  # noqa: E402
from tests.openai_server import OpenAIServer, prompt_text  # noqa: E402
from tests.test_sources import _aigiqa, _editreward, make_ir  # noqa: E402

pytestmark = pytest.mark.slow

#: the aigiqa request the teacher gets wrong (scores 3 above the label): one verdict_mismatch
WRONG = "prompt 2"


def teacher(request_json: dict) -> str:
    """Gives the hinted human judgement, except on the ``WRONG`` request."""
    text = prompt_text(request_json)
    m = re.search(r"preferred Image (\d)|rated it (\d+) on", text)
    if m.group(1):
        analysis = f"Image {m.group(1)} is cleaner and follows the request."
        return json.dumps({"analysis": analysis, "preferred": int(m.group(1))})
    score = int(m.group(2)) + (3 if f"Request: {WRONG}" in text else 0)
    return json.dumps(
        {"analysis": "The subject is clear and the lighting is natural.", "score": min(score, 10)}
    )


#: source -> (seen, kept, rejected verdict_mismatch, excluded)
EXPECTED = {
    "imagereward_pair": (5, 5, 0, {"same_rank_pairs": 1}),
    "imagereward_point": (4, 4, 0, None),
    "aigiqa": (3, 2, 1, None),
    "editreward": (2, 2, 0, {"ties": 1}),
}


def test_synthesize_train_then_lmms_eval_loads_the_checkpoint(
    tmp_path, tmp_path_factory, monkeypatch, capsys
):
    from lmms_eval_autorater.cli import main

    train_root = tmp_path / "train-data"
    make_ir(
        train_root,
        "train",
        [{"id": "t1", "prompt": "a red cube", "ranks": [1, 2, 2, 3], "ratings": [7, 4, 5, 1]}],
    )
    _aigiqa(train_root, [[f"TR_{i}.png", f"prompt {i}", str(1.0 + i)] for i in range(3)], ["SDXL_9999.png"])
    _editreward(train_root, ["leftvote", "tie", "rightvote"])
    monkeypatch.setenv("AUTORATER_DATA_DIR", str(train_root))
    monkeypatch.setenv("AUTORATER_CACHE_DIR", str(tmp_path / "cache"))
    dirs = []
    with OpenAIServer(teacher) as server:
        for source, (seen, kept, mismatch, excluded) in EXPECTED.items():
            out = tmp_path / "rows" / source
            args = f"base_url={server.url},model=teacher-14b,tools=none,concurrency=4"
            argv = ["synthesize", "--source", source, "--model", "autorater_openai", "--model_args", args]
            assert main([*argv, "--output", str(out), "--max_samples", "0"]) == 0, capsys.readouterr().err
            manifest = json.loads((out / "manifest.json").read_text())
            assert (manifest["seen"], manifest["kept"], manifest["rejected"]["verdict_mismatch"]) == (
                seen,
                kept,
                mismatch,
            ), source
            assert sum(manifest["rejected"].values()) == mismatch and manifest["tools"] == []
            if excluded:
                assert manifest["excluded"] == excluded
            dirs.append(out)
        assert server.request_count == sum(e[0] for e in EXPECTED.values())
    assert "CC-BY-NC-4.0" in json.loads((dirs[-1] / "manifest.json").read_text())["license"]

    # train on the four folders (13 rows: 1, 2 and 3 images), no specialist section in the prompts
    ckpt = tmp_path / "ckpt"
    base = tf.tiny_internvl(tmp_path_factory)
    args = tf.train_args(dirs, base, ckpt, tools="without", max_steps=4, batch_size=4)
    with tf.one_thread():
        assert args.func(args) == 0
    assert "train: 13 rows" in capsys.readouterr().out
    card = (ckpt / "README.md").read_text()
    assert all(s in card for s in EXPECTED) and "CC-BY-NC-4.0" in card
    # the module entry point that `accelerate launch -m` runs
    proc = subprocess.run(
        [sys.executable, "-m", "lmms_eval_autorater.training.train", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "--tools {with,without}" in proc.stdout

    # the checkpoint judges through the real lmms-eval CLI on the test tasks
    test_root = standard_data(tmp_path / "test-data")
    env = {"AUTORATER_DATA_DIR": str(test_root), "AUTORATER_CACHE_DIR": str(tmp_path / "cache2"),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}  # fmt: skip
    results, log = run_cli(
        tmp_path,
        env,
        "--model",
        "autorater_internvl",
        "--model_args",
        f"pretrained={ckpt},max_new_tokens=24,max_patches=1",
        "--tasks",
        "aigiqa,psr",
    )
    assert results is not None, log[-3000:]
    for task, n in (("aigiqa", 4), ("psr", 3)):
        counted = sum(metric(results, task, k) for k in ("n_scored", "parse_failures", "input_errors"))
        assert counted == n and metric(results, task, "api_failures") == 0, task
    sample = next((tmp_path / "out0").rglob("*_samples_aigiqa.jsonl")).read_text().splitlines()[0]
    resp = json.loads(sample)["filtered_resps"]
    envelope = json.loads(resp[0] if isinstance(resp, list) else resp)
    assert envelope["meta"]["model"] == "ckpt" and envelope["meta"]["usage"]["completion_tokens"] >= 1
