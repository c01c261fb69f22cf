"""The real ``lmms-eval`` CLI over the four tasks, against the local OpenAI-compatible server.

The CLI exits 0 even when an evaluation fails, so every test reads the results file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.datafactory import standard_data
from tests.openai_server import Fault, OpenAIServer, image_urls

pytestmark = pytest.mark.slow
LMMS_EVAL = str(Path(sys.executable).with_name("lmms-eval"))
TASKS = ("psr", "imagereward_pair", "imagereward_point", "aigiqa")


def sha_of_url(url: str) -> str:
    return hashlib.sha256(base64.b64decode(url.split(",", 1)[1])).hexdigest()


def sha_of_ref(ref: str) -> str:
    from lmms_eval_autorater.images import read_image_bytes

    return hashlib.sha256(read_image_bytes(ref)).hexdigest()


def run_cli(tmp: Path, env_extra: dict, *args: str) -> tuple[dict | None, str]:
    """Run lmms-eval; return (results json or None, combined output)."""
    out_dir = tmp / f"out{len(list(tmp.glob('out*')))}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "GEMINI"))}
    env.update(env_extra)
    proc = subprocess.run(
        [LMMS_EVAL, *args, "--output_path", str(out_dir), "--log_samples"],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    files = sorted(out_dir.rglob("*_results.json"))
    results = json.loads(files[-1].read_text()) if files else None
    return results, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = standard_data(tmp_path_factory.mktemp("data"))
    os.environ["AUTORATER_DATA_DIR"] = str(root)
    try:
        from lmms_eval_autorater.tasks.aigiqa.utils import build_docs as aig
        from lmms_eval_autorater.tasks.imagereward_pair.utils import build_docs as irp
        from lmms_eval_autorater.tasks.imagereward_point.utils import build_docs as irq
        from lmms_eval_autorater.tasks.psr.utils import build_docs as psr

        docs = {"psr": psr(), "imagereward_pair": irp(), "imagereward_point": irq(), "aigiqa": aig()}
    finally:
        del os.environ["AUTORATER_DATA_DIR"]
    return root, docs


class TruthResponder:
    """Answers from a table keyed by the candidate images' hashes: the test knows every verdict."""

    def __init__(self, docs: dict[str, list[dict]]):
        self.pair: dict[tuple[str, str], int] = {}
        self.point: dict[str, int] = {}
        self.expected_correct = {}
        for task, task_docs in docs.items():
            correct = 0
            for i, d in enumerate(task_docs):
                if d["paradigm"] == "pairwise":
                    a, b = sha_of_ref(d["image_1"]), sha_of_ref(d["image_2"])
                    answer = d["label"] if i % 3 else 3 - d["label"]  # every third doc judged wrong
                    correct += answer == d["label"]
                    self.pair[(a, b)] = answer
                    self.pair[(b, a)] = 3 - answer
                else:
                    # a Likert score in 1..10 that orders the images exactly as the targets do
                    self.point[sha_of_ref(d["image_1"])] = int(
                        round(2 * d["target"] if task == "aigiqa" else d["target"])
                    )
            self.expected_correct[task] = correct

    def __call__(self, request_json: dict) -> str:
        shas = [sha_of_url(u) for u in image_urls(request_json)]
        if len(shas) >= 2 and (shas[-2], shas[-1]) in self.pair:
            return json.dumps({"analysis": "compared both", "preferred": self.pair[(shas[-2], shas[-1])]})
        return json.dumps({"analysis": "looked closely", "score": self.point[shas[-1]]})


def metric(results: dict, task: str, name: str) -> float:
    return results["results"][task][f"{name},none"]


USAGE = ("prompt_tokens,none", "completion_tokens,none", "cost_usd,none")


def same_metrics(a: dict, b: dict) -> bool:
    """Equal task results (NaN equals NaN), leaving out what a run spent."""
    import math

    def norm(d):
        return {
            k: ("nan" if isinstance(v, float) and math.isnan(v) else v)
            for k, v in d.items()
            if k not in USAGE
        }

    return norm(a) == norm(b)


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


def test_faults_through_cli_are_never_wrong_answers(tmp_path, data):
    root, docs = data
    truth = TruthResponder(docs)
    env = {"AUTORATER_DATA_DIR": str(root), "AUTORATER_CACHE_DIR": str(tmp_path / "cache")}
    pair_docs = docs["imagereward_pair"]
    with OpenAIServer(truth) as server:
        server.inject(Fault.rate_limit("0.2"), times=2)
        server.inject(Fault.http(500), times=2)
        server.inject(Fault.malformed(), times=1)
        server.inject(Fault.timeout(3.0), times=1)
        server.inject(Fault.empty(), times=2, match="a blue ball")  # re-asked once, then a parse failure
        server.inject(Fault.http(503), times=100, match="a red cube")  # retries run out: API failures
        args = (
            "--model",
            "autorater_openai",
            "--model_args",
            f"base_url={server.url},model=judge-1,concurrency=2,max_retries=2,timeout=1,backoff_base=0.05",
            "--tasks",
            "imagereward_pair",
        )
        results, log = run_cli(tmp_path, env, *args)
        assert results is not None, log[-3000:]
    red = [d for d in pair_docs if d["request"] == "a red cube"]
    blue = [d for d in pair_docs if d["request"] == "a blue ball"]
    assert metric(results, "imagereward_pair", "api_failures") == len(red)
    assert metric(results, "imagereward_pair", "parse_failures") == 1
    scored = metric(results, "imagereward_pair", "n_scored")
    assert scored == len(blue) - 1
    assert "API failure" in log and "parse failure" in log
    # the accuracy is over the scored docs only: failures are not counted as wrong
    assert 0.0 <= metric(results, "imagereward_pair", "accuracy") <= 1.0


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
