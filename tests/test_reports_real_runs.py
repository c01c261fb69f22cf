"""``report``, ``submission``, ``validate`` and ``leaderboard`` on the outputs of REAL lmms-eval runs.

Two runs of ``autorater_openai`` over the four small tasks, each against its own local OpenAI-compatible
server, made by one ``lmms-eval --config`` process: "strong" answers from the truth table with every third
pair judged wrong (``TruthResponder``), "weak" always prefers Image 1 and scores from the same table. Every
number asserted below is computed here from the docs and those answers.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml

from lmms_eval_autorater.cli import main
from tests.clitools import LMMS_EVAL, TASKS, TruthResponder, metric, sha_of_url
from tests.openai_server import OpenAIServer, image_urls

pytestmark = pytest.mark.slow
PAIRWISE = ("psr", "imagereward_pair")


class FirstImageResponder:
    """Always prefers Image 1; scores every image as the truth table does."""

    def __init__(self, truth: TruthResponder):
        self.truth = truth

    def __call__(self, request_json: dict) -> str:
        shas = [sha_of_url(u) for u in image_urls(request_json)]
        if len(shas) >= 2 and (shas[-2], shas[-1]) in self.truth.pair:
            return json.dumps({"analysis": "the first one", "preferred": 1})
        return self.truth(request_json)


def _expected(docs: dict, truth: TruthResponder) -> dict[str, dict[str, float]]:
    """Each run's headline per task, from the answers the servers give: accuracy from the labels, Pearson
    1.0 (the Likert score orders the images exactly as the targets do)."""
    out: dict[str, dict[str, float]] = {"strong": {}, "weak": {}}
    for task in TASKS:
        if task in PAIRWISE:
            labels = [d["label"] for d in docs[task]]
            out["strong"][task] = truth.expected_correct[task] / len(labels)
            out["weak"][task] = labels.count(1) / len(labels)
        else:
            out["strong"][task] = out["weak"][task] = 1.0
    return out


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory, data):
    root, docs = data
    tmp = tmp_path_factory.mktemp("real_runs")
    truth = TruthResponder(docs)
    with OpenAIServer(truth) as strong, OpenAIServer(FirstImageResponder(truth)) as weak:
        configs = [
            {
                "model": "autorater_openai",
                "model_args": f"base_url={server.url},model={name}-1,concurrency=4,cache_dir={tmp / name / 'cache'}",
                "tasks": ",".join(TASKS),
                "output_path": str(tmp / name),
                "log_samples": True,
            }
            for name, server in (("strong", strong), ("weak", weak))
        ]
        (tmp / "runs.yaml").write_text(yaml.safe_dump(configs))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "GEMINI"))}
        env.update(AUTORATER_DATA_DIR=str(root), OPENAI_API_KEY="sk-test")
        proc = subprocess.run(
            [LMMS_EVAL, "--config", str(tmp / "runs.yaml")],
            cwd=tmp, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        n = sum(len(v) for v in docs.values())
        assert strong.request_count == n and weak.request_count == n, (proc.stdout + proc.stderr)[-3000:]
    results = {}
    for name in ("strong", "weak"):
        files = list((tmp / name).rglob("*_results.json"))
        assert len(files) == 1, (proc.stdout + proc.stderr)[-3000:]
        results[name] = json.loads(files[0].read_text())
    expected = _expected(docs, truth)
    for name in ("strong", "weak"):  # the runs themselves hold the numbers computed here
        for task in TASKS:
            m = "accuracy" if task in PAIRWISE else "pearson"
            assert metric(results[name], task, m) == pytest.approx(expected[name][task]), (name, task)
    return root, docs, tmp, results, expected


def test_submission_validate_leaderboard_on_real_runs(real_runs, tmp_path, monkeypatch, capsys):
    root, docs, runs, results, expected = real_runs
    subs = {}
    for name in ("strong", "weak"):
        path = tmp_path / f"{name}.json"
        assert main(["submission", "--results", str(runs / name), "--output", str(path), "--name", name]) == 0
        subs[name] = path
        sub = json.loads(path.read_text())
        assert set(sub["tasks"]) == set(TASKS)
        for task, entry in sub["tasks"].items():
            assert entry["n_docs"] == len(docs[task]) == len(entry["predictions"])
            assert entry["metrics"][entry["metric"]] == pytest.approx(expected[name][task])
            assert entry["metrics"]["n_scored"] == len(docs[task])
            assert entry["metrics"]["parse_failures"] == entry["metrics"]["api_failures"] == 0
        assert sub["model"]["name"] == name
    # validate recomputes every metric from the predictions and checks the docs against the local data
    monkeypatch.setenv("AUTORATER_DATA_DIR", str(root))
    capsys.readouterr()
    assert main(["validate", str(subs["strong"]), str(subs["weak"])]) == 0
    assert (
        "verified against local data: psr, imagereward_pair, imagereward_point, aigiqa"
        in capsys.readouterr().out
    )
    # one wrong prediction more is caught: the stated accuracy no longer follows from the predictions
    bad = json.loads(subs["strong"].read_text())
    pred = bad["tasks"]["psr"]["predictions"][1]
    pred["pred"] = 3 - pred["pred"]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert main(["validate", str(tmp_path / "bad.json")]) == 1

    out = tmp_path / "lb"
    assert main(["leaderboard", str(subs["weak"]), str(subs["strong"]), "--output", str(out)]) == 0
    board = json.loads((out / "leaderboard.json").read_text())
    for task in PAIRWISE:
        order = sorted(("strong", "weak"), key=lambda n: -expected[n][task])
        entries = board["benchmarks"][task]
        assert [e["name"] for e in entries] == order, task
        assert [e["value"] for e in entries] == pytest.approx([expected[n][task] for n in order])
        assert all(e["verified"] for e in entries)
    overall = {e["name"]: e["value"] for e in board["overall"]}
    for name in ("strong", "weak"):
        assert overall[name] == pytest.approx(sum(expected[name].values()) / len(TASKS))


def test_report_page_on_a_real_run(real_runs, tmp_path):
    _, docs, runs, results, _ = real_runs
    page = tmp_path / "report.html"
    assert (
        main(["report", "--results", str(runs / "strong"), "--output", str(page), "--thumb-size", "32"]) == 0
    )
    text = page.read_text()
    raw = text.split('id="run-data"', 1)[1].split(">", 1)[1].split("</script>", 1)[0]
    data = json.loads(raw)
    assert len(data["docs"]) == sum(len(v) for v in docs.values())
    # the docs judged wrong: every third pair of each pairwise task (TruthResponder), no pointwise doc
    wrong = {t: sum(1 for d in data["docs"] if d["task"] == t and d["wrong"]) for t in PAIRWISE}
    assert wrong == {t: sum(1 for i in range(len(docs[t])) if i % 3 == 0) for t in PAIRWISE}
