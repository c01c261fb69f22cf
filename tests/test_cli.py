"""The real ``lmms-eval`` CLI over the four tasks, against the local OpenAI-compatible server.

The CLI exits 0 even when an evaluation fails, so every test reads the results file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.clitools import LMMS_EVAL, TASKS, TruthResponder, metric, run_cli, same_metrics
from tests.openai_server import OpenAIServer, image_urls

pytestmark = pytest.mark.slow


def test_entry_point_module_is_light():
    code = (
        "import sys, lmms_eval_autorater.registry, lmms_eval_autorater.tasks.common, lmms_eval_autorater.judges.judge; "
        "bad = [m for m in ('torch', 'transformers', 'lmms_eval') if m in sys.modules]; print(bad); assert not bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tasks_resolve_without_include_path(tmp_path):
    proc = subprocess.run(
        [LMMS_EVAL, "--tasks", "list"], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    listed = proc.stdout + proc.stderr
    for name in (*TASKS, "autorater_bench"):
        assert f" - {name}\n" in listed, name


def test_foreign_model_free_text_through_cli(tmp_path, data):
    """A stock lmms-eval model (dummy) answering in free text: parsed by the same rules, no guessing."""
    root, docs = data
    results, log = run_cli(
        tmp_path,
        {"AUTORATER_DATA_DIR": str(root)},
        "--model",
        "dummy",
        "--model_args",
        "response=After comparing both. Final answer: Image 1",
        "--tasks",
        "psr,imagereward_pair,aigiqa",
    )
    assert results is not None, log[-3000:]
    assert "psr: 5 annotated sets; 1 dropped (mode < 50% of votes or < 2 votes ahead" in log
    assert "1 dropped (mode is 'tie'); 3 kept" in log
    for task in ("psr", "imagereward_pair"):
        labels = [d["label"] for d in docs[task]]
        assert metric(results, task, "n_scored") == len(labels)
        assert metric(results, task, "accuracy") == pytest.approx(labels.count(1) / len(labels))
    # the same text has no Likert score: every aigiqa doc is a parse failure, none is scored
    assert metric(results, "aigiqa", "parse_failures") == len(docs["aigiqa"])
    assert metric(results, "aigiqa", "n_scored") == 0


def test_judge_through_cli_metrics_and_cached_rerun(tmp_path, data):
    root, docs = data
    truth = TruthResponder(docs)
    env = {"AUTORATER_DATA_DIR": str(root), "AUTORATER_CACHE_DIR": str(tmp_path / "cache")}
    with OpenAIServer(truth) as server:
        args = (
            "--model",
            "autorater_openai",
            "--model_args",
            f"base_url={server.url},model=judge-1,concurrency=4",
            "--tasks",
            "autorater_bench",
        )
        results, log = run_cli(tmp_path, env, *args)
        assert results is not None, log[-3000:]
        n_docs = sum(len(v) for v in docs.values())
        assert server.request_count == n_docs
        for task in ("psr", "imagereward_pair"):
            assert metric(results, task, "accuracy") == pytest.approx(
                truth.expected_correct[task] / len(docs[task])
            )
            assert metric(results, task, "parse_failures") == 0 and metric(results, task, "api_failures") == 0
            assert (
                metric(results, task, "accuracy_ci_low")
                <= metric(results, task, "accuracy")
                <= metric(results, task, "accuracy_ci_high")
            )
        for task in ("imagereward_point", "aigiqa"):
            assert metric(results, task, "pearson") == pytest.approx(1.0)
            assert metric(results, task, "n_scored") == len(docs[task])
        assert "ImageReward" in results["configs"]["imagereward_pair"]["metadata"]["conventions"]
        # the logged samples carry the snapshot and fingerprint of every answer
        sample_file = next((tmp_path / "out0").rglob("*_samples_psr.jsonl"))
        sample = json.loads(sample_file.read_text().splitlines()[0])
        resp = sample["filtered_resps"]
        envelope = json.loads(resp[0] if isinstance(resp, list) else resp)
        assert envelope["meta"]["model"] == "judge-1-2024-08-06" and envelope["meta"]["fingerprint"]
        # images were sent in the order source, edit 1, edit 2 for editing
        psr_req = next(r for r in server.requests if "Edit request" in json.dumps(r.json))
        assert len(image_urls(psr_req.json)) == 3

        # a rerun of the finished evaluation makes zero requests and gives the same numbers
        before = server.request_count
        again, log = run_cli(tmp_path, env, *args)
        assert again is not None, log[-3000:]
        assert server.request_count == before
        for task in TASKS:
            assert same_metrics(again["results"][task], results["results"][task])
            assert (
                metric(results, task, "prompt_tokens") > 0 and metric(results, task, "completion_tokens") > 0
            )
            assert metric(again, task, "prompt_tokens") == 0  # this run spent nothing: all from the cache


def test_gpt4o_without_key_says_so(tmp_path, data):
    root, _ = data
    results, log = run_cli(
        tmp_path, {"AUTORATER_DATA_DIR": str(root)}, "--model", "autorater_gpt4o", "--tasks", "psr"
    )
    assert results is None
    assert "OPENAI_API_KEY" in log


def test_unknown_model_argument_is_named(tmp_path, data):
    root, _ = data
    results, log = run_cli(
        tmp_path,
        {"AUTORATER_DATA_DIR": str(root)},
        "--model",
        "autorater_openai",
        "--model_args",
        "base_url=http://127.0.0.1:9/v1,model=x,tool=all",
        "--tasks",
        "psr",
    )
    assert results is None
    assert "unknown model argument(s) tool" in log


def test_internvl_judge_through_cli_with_tiny_model(tmp_path, data):
    """autorater_internvl on a tiny random InternVL saved to a folder: the path a user runs, end to end.

    A random model writes gibberish, so every doc must come out as a counted parse failure
    (editing: three images per turn; generation: two), and a rerun is answered from the cache.
    """
    from tests.test_internvl_backend import _build_tiny_internvl

    root, docs = data
    model_dir = tmp_path / "tiny-internvl"
    _build_tiny_internvl(model_dir)
    env = {
        "AUTORATER_DATA_DIR": str(root),
        "AUTORATER_CACHE_DIR": str(tmp_path / "cache"),
        "HF_HUB_OFFLINE": "1",
    }
    args = (
        "--model",
        "autorater_internvl",
        "--model_args",
        f"pretrained={model_dir},max_new_tokens=8,max_patches=1",
        "--batch_size",
        "2",
        "--tasks",
        "psr,imagereward_pair",
    )
    results, log = run_cli(tmp_path, env, *args)
    assert results is not None, log[-3000:]
    for task in ("psr", "imagereward_pair"):
        n = len(docs[task])
        assert metric(results, task, "parse_failures") + metric(results, task, "n_scored") == n
        assert metric(results, task, "api_failures") == 0
        # the exact split: 8 new tokens of a random model are never a verdict of the contract, so every doc
        # is a parse failure and none is scored; each logged sample says so, with the text it could not parse
        assert (metric(results, task, "n_scored"), metric(results, task, "parse_failures")) == (0, n)
        assert metric(results, task, "input_errors") == 0
        lines = next((tmp_path / "out0").rglob(f"*_samples_{task}.jsonl")).read_text().splitlines()
        statuses = []
        for line in lines:
            resp = json.loads(line)["filtered_resps"]
            verdict = json.loads(resp[0] if isinstance(resp, list) else resp)
            statuses.append((verdict["status"], bool(verdict["raw"])))
        assert statuses == [("parse_failure", True)] * n
    sample_file = next((tmp_path / "out0").rglob("*_samples_psr.jsonl"))
    resp = json.loads(sample_file.read_text().splitlines()[0])["filtered_resps"]
    envelope = json.loads(resp[0] if isinstance(resp, list) else resp)
    assert envelope["meta"]["model"] == "tiny-internvl" and envelope["meta"]["usage"]["prompt_tokens"] > 0
    again, log = run_cli(tmp_path, env, *args)
    assert again is not None, log[-3000:]
    assert same_metrics(again["results"]["psr"], results["results"]["psr"])
    assert metric(again, "psr", "prompt_tokens") == 0  # answered from the cache


def test_internvl_data_parallel_two_processes(tmp_path, data):
    """Two processes (torchrun, gloo on CPU) split the docs by rank and gather one result, as on N GPUs."""
    from tests.test_internvl_backend import _build_tiny_internvl

    root, docs = data
    model_dir = tmp_path / "tiny-internvl"
    _build_tiny_internvl(model_dir)
    out = tmp_path / "dp"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "GEMINI"))}
    env.update(
        {
            "AUTORATER_DATA_DIR": str(root),
            "AUTORATER_CACHE_DIR": str(tmp_path / "cache"),
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
        }
    )
    proc = subprocess.run(
        [
            str(Path(sys.executable).with_name("torchrun")),
            "--nproc_per_node",
            "2",
            "-m",
            "lmms_eval",
            "--model",
            "autorater_internvl",
            "--model_args",
            f"pretrained={model_dir},max_new_tokens=4,max_patches=1",
            "--tasks",
            "imagereward_pair",
            "--output_path",
            str(out),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = proc.stdout + proc.stderr
    files = sorted(out.rglob("*_results.json"))
    assert files, log[-3000:]
    results = json.loads(files[-1].read_text())
    n = len(docs["imagereward_pair"])
    assert (
        metric(results, "imagereward_pair", "parse_failures")
        + metric(results, "imagereward_pair", "n_scored")
        == n
    )
    judged = [
        int(line.split("autorater: ")[1].split(" docs judged")[0])
        for line in log.splitlines()
        if "docs judged" in line
    ]
    assert sorted(judged) == [n // 2, n - n // 2]  # each rank judged its share, not every doc
