"""``lmms-eval-autorater reproduce --yes`` end to end: the real command, the real lmms-eval CLI per row.

The API rows (GPT-4o, Gemini-2.5-Pro) are pointed at two local OpenAI-compatible servers, the InternVL row
at a tiny random InternVL, the baseline rows at tiny HPSv3, ImageReward and Q-SiT checkpoints, all through
``--model_args ROW|MODEL=K=V,...``. The first ``reproduce`` is killed once its first job has finished; the
rerun does not rerun it (one results file in its folder, "not rerun" in the output) and ends in a Table 2
built from the six real results files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.clitools import TASKS, TruthResponder, sha_of_url
from tests.openai_server import OpenAIServer, image_urls

pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = pytest.mark.slow
FIX = Path(__file__).parent / "fixtures" / "parity"
CLI = str(Path(sys.executable).with_name("lmms-eval-autorater"))
ROWS = ("GPT-4o", "Gemini-2.5-Pro", "InternVL3-8B", "HPSv3", "ImageReward", "Q-SiT")
JOBS = ("gpt_4o", "gemini_2_5_pro", "internvl3_8b", "hpsv3", "imagereward", "q_sit")


class FirstImageResponder:
    """The Gemini stand-in: always prefers Image 1; scores every image as the truth table does."""

    def __init__(self, truth: TruthResponder):
        self.truth = truth

    def __call__(self, request_json: dict) -> str:
        shas = [sha_of_url(u) for u in image_urls(request_json)]
        if len(shas) >= 2 and (shas[-2], shas[-1]) in self.truth.pair:
            return json.dumps({"analysis": "the first one", "preferred": 1})
        return self.truth(request_json)


def _results_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*_results.json"))


def test_reproduce_runs_every_kind_of_row_resumes_and_builds_table2(tmp_path, data, qsit_folder):
    from tests.test_internvl_backend import _build_tiny_internvl

    root, docs = data
    internvl = tmp_path / "tiny-internvl"
    _build_tiny_internvl(internvl)
    hps, ir = FIX / "hpsv3", FIX / "imagereward"
    out = tmp_path / "repro"
    truth = TruthResponder(docs)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "GEMINI"))}
    env.update(
        AUTORATER_DATA_DIR=str(root),
        AUTORATER_CACHE_DIR=str(tmp_path / "cache"),
        HF_HUB_OFFLINE="1",
        OPENAI_API_KEY="sk-test",
        GEMINI_API_KEY="sk-test",
        OMP_NUM_THREADS="2",
    )
    with OpenAIServer(truth) as gpt, OpenAIServer(FirstImageResponder(truth)) as gemini:
        argv = [
            CLI, "reproduce", "--output", str(out), "--yes", "--rows", *ROWS,
            "--model_args", f"GPT-4o=base_url={gpt.url},concurrency=4",
            "--model_args", f"autorater_gemini=base_url={gemini.url},concurrency=4",
            "--model_args", f"autorater_internvl=pretrained={internvl},max_new_tokens=8,max_patches=1",
            "--model_args", f"hpsv3=checkpoint={hps / 'HPSv3.safetensors'},base_model={hps / 'base'},device=cpu",
            "--model_args", f"imagereward=checkpoint={ir / 'ImageReward.pt'},tokenizer={ir / 'bert-base-uncased'},device=cpu",
            "--model_args", f"qsit=pretrained={qsit_folder},device=cpu",
        ]  # fmt: skip
        # the first reproduce, killed (with its lmms-eval child) as soon as its first job has finished
        state_file = out / "reproduce_state.json"
        first = subprocess.Popen(
            argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and first.poll() is None:
            if state_file.exists():
                try:
                    jobs = json.loads(state_file.read_text())["jobs"]
                except json.JSONDecodeError:  # being replaced
                    jobs = {}
                if jobs.get("gpt_4o", {}).get("status") == "done":
                    break
            time.sleep(0.2)
        killed = first.poll() is None
        os.killpg(first.pid, signal.SIGKILL)
        first_out = first.communicate()[0]
        assert killed, first_out[-3000:]
        state = json.loads(state_file.read_text())["jobs"]
        assert state["gpt_4o"]["status"] == "done", first_out[-3000:]
        assert [j for j in JOBS if state.get(j, {}).get("status") == "done"] == ["gpt_4o"]
        n_docs = {t: len(docs[t]) for t in TASKS}
        assert gpt.request_count == sum(n_docs.values())  # one call per doc of the four tasks

        # the rerun: the finished job is not rerun, the others run, the table is built
        proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log[-4000:]
        assert "reproduce: gpt_4o: finished before" in log and "not rerun" in log
        assert gpt.request_count == sum(n_docs.values())
        assert gemini.request_count == sum(n_docs.values())
    state = json.loads(state_file.read_text())["jobs"]
    assert {j: state[j]["status"] for j in JOBS} == {j: "done" for j in JOBS}
    files = {}
    for job in JOBS:
        found = _results_files(out / "runs" / job)
        assert len(found) == 1, (job, found)  # one lmms-eval run per job: gpt_4o was run once
        assert state[job]["results_file"] == str(found[0])
        files[job] = json.loads(found[0].read_text())
    # each job ran its row's model with the overridden arguments, on all four tasks
    models = {job: files[job]["config"]["model"] for job in JOBS}
    assert models == dict(zip(JOBS, ("autorater_gpt4o", "autorater_gemini", "autorater_internvl",
                                      "hpsv3", "imagereward", "qsit")))  # fmt: skip
    assert f"pretrained={internvl}" in str(files["internvl3_8b"]["config"]["model_args"])

    # the API rows' values, known from the answers the servers gave
    def m(job: str, task: str, name: str) -> float:
        return files[job]["results"][task][f"{name},none"]

    for task in ("psr", "imagereward_pair"):
        labels = [d["label"] for d in docs[task]]
        assert m("gpt_4o", task, "accuracy") == pytest.approx(truth.expected_correct[task] / len(labels))
        assert m("gemini_2_5_pro", task, "accuracy") == pytest.approx(labels.count(1) / len(labels))
    for task in ("imagereward_point", "aigiqa"):
        assert m("gpt_4o", task, "pearson") == pytest.approx(1.0)
        assert m("gemini_2_5_pro", task, "pearson") == pytest.approx(1.0)
    for job in JOBS:
        for task in TASKS:
            assert m(job, task, "api_failures") == 0 and m(job, task, "input_errors") == 0, (job, task)
            scored = m(job, task, "n_scored") + m(job, task, "parse_failures")
            assert scored == n_docs[task], (job, task)

    # Table 2, built by reproduce from these six results files: each cell is its file's number
    table = json.loads((out / "table" / "table2.json").read_text())
    rows = {r["row"]: r for r in table["rows"]}
    assert list(rows) == ["HPSv3", "ImageReward", "Q-SiT", "GPT-4o", "Gemini-2.5-Pro", "InternVL3-8B"]
    for row, job in zip(ROWS, JOBS):
        for task in TASKS:
            cell = rows[row]["cells"][task]
            metric = "accuracy" if task in ("psr", "imagereward_pair") else "pearson"
            value = files[job]["results"][task][f"{metric},none"]
            assert cell["results_file"] == state[job]["results_file"]
            assert cell["value"] == value or (value != value and cell["value"] != cell["value"])
            assert (cell["n_docs"], cell["partial"]) == (n_docs[task], True)
    md = (out / "table" / "table2.md").read_text()
    assert f"PARTIAL {n_docs['psr']}/444 docs" in md and f"PARTIAL {n_docs['aigiqa']}/4000 docs" in md
