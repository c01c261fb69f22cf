"""Leaderboard submissions: submission -> validate -> leaderboard, tampering caught, HF model-index metadata."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lmms_eval_autorater.cli import main
from lmms_eval_autorater.judges.types import Verdict
from lmms_eval_autorater.reports import leaderboard, submission, validate
from lmms_eval_autorater.tasks.catalog import docs_hash
from tests.runfiles import write_run


def judge_every_third_wrong(task, i, doc):
    """Pairs: every third doc judged wrong; points: a score ordering docs as the targets do, one parse failure."""
    meta = {"model": "judge-1-2024-08-06", "fingerprint": "fp_test", "usage": {"prompt_tokens": 10}}
    if doc["paradigm"] == "pairwise":
        pref = doc["label"] if i % 3 else 3 - doc["label"]
        return Verdict(
            "ok", analysis="compared", preferred=pref, raw=json.dumps({"preferred": pref}), meta=meta
        )
    if i == 1:
        return Verdict("parse_failure", analysis="", raw="no idea", error="no score", meta=meta)
    score = max(1, min(10, int(round(doc["target"] * (2 if task == "aigiqa" else 1)))))
    return Verdict("ok", analysis="looked", score=score, raw=json.dumps({"score": score}), meta=meta)


def judge_always_one(task, i, doc):
    """A weak judge: always image 1, always score 5 (plus one API failure)."""
    if i == 0:
        return Verdict("api_error", error="HTTP 503")
    if doc["paradigm"] == "pairwise":
        return Verdict("ok", preferred=1, raw='{"preferred": 1}', meta={"model": "weak"})
    return Verdict("ok", score=5 + (i % 2), raw='{"score": 5}', meta={"model": "weak"})


@pytest.fixture(scope="module")
def subs(data, tmp_path_factory):
    """Two submissions (strong, weak) made by the ``submission`` command from written runs."""
    root, docs = data
    tmp = tmp_path_factory.mktemp("subs")
    write_run(tmp / "strong", docs, judge_every_third_wrong)
    write_run(
        tmp / "weak",
        docs,
        judge_always_one,
        model_args="base_url=http://127.0.0.1:9/v1,model=weak-1,tools=GD+QS,swap=true",
        model_name="weak-1",
    )
    out = {}
    for name in ("strong", "weak"):
        path = tmp / f"{name}.json"
        assert main(["submission", "--results", str(tmp / name), "--output", str(path), "--name", name]) == 0
        out[name] = path
    return root, docs, out


def test_round_trip_validates_against_local_data(subs, monkeypatch, capsys):
    root, docs, paths = subs
    sub = json.loads(paths["strong"].read_text())
    results = json.loads(next((paths["strong"].parent / "strong").rglob("*_results.json")).read_text())
    for task, entry in sub["tasks"].items():
        assert entry["n_docs"] == len(docs[task]) == len(entry["predictions"])
        assert entry["docs_hash"] == docs_hash(docs[task])
        for name in ("n_scored", "input_errors", "parse_failures", "api_failures", entry["metric"]):
            assert entry["metrics"][name] == results["results"][task][f"{name},none"]
        assert entry["conventions"] == results["configs"][task]["metadata"]["conventions"]
    assert sub["tasks"]["aigiqa"]["metrics"]["parse_failures"] == 1
    from lmms_eval_autorater.judges.contract import PARSER_VERSION
    from lmms_eval_autorater.judges.prompts import TEMPLATE_VERSION

    assert sub["judge"] == {
        "tools": "none",
        "swap": False,
        "scoring": "argmax",
        "samples": 1,
        "prompt_version": TEMPLATE_VERSION,
        "parser_version": PARSER_VERSION,
    }
    assert sub["model"]["snapshots"] == ["judge-1-2024-08-06"] and sub["model"]["name"] == "strong"
    weak = json.loads(paths["weak"].read_text())
    assert weak["judge"]["tools"] == "GD+QS" and weak["judge"]["swap"] is True
    assert weak["tasks"]["psr"]["metrics"]["api_failures"] == 1

    monkeypatch.setenv("AUTORATER_DATA_DIR", str(root))
    assert main(["validate", str(paths["strong"]), str(paths["weak"])]) == 0
    assert (
        "verified against local data: psr, imagereward_pair, imagereward_point, aigiqa"
        in capsys.readouterr().out
    )

    # without local data: what was checked passes, what was not is said, and the exit code tells
    monkeypatch.delenv("AUTORATER_DATA_DIR")
    assert main(["validate", str(paths["strong"])]) == validate.EXIT_UNVERIFIED
    out = capsys.readouterr().out
    assert "tasks.psr: not checked against local data (AUTORATER_DATA_DIR is not set)" in out


def _tamper_metric(sub):
    sub["tasks"]["psr"]["metrics"]["accuracy"] = 0.99
    return "tasks.psr.metrics.accuracy: reported 0.99, recomputed"


def _tamper_prediction(sub):
    p = sub["tasks"]["imagereward_pair"]["predictions"][1]
    p["pred"] = 3 - p["pred"]
    return "tasks.imagereward_pair.metrics.accuracy: reported"


def _tamper_drop(sub):
    dropped = sub["tasks"]["psr"]["predictions"].pop(0)
    return f"tasks.psr.predictions: 1 local doc(s) missing, e.g. ['{dropped['doc_id']}']"


def _tamper_hash(sub):
    sub["tasks"]["aigiqa"]["docs_hash"] = "sha256:" + "0" * 64
    return "tasks.aigiqa.docs_hash: 'sha256:" + "0" * 64 + "', but the local data hashes to"


def _tamper_consistent_labels(sub):
    """A careful forger: labels changed to the predictions, hash and every metric redone to match."""
    task = sub["tasks"]["psr"]
    for p in task["predictions"]:
        p["label"] = p["pred"]
    task["docs_hash"] = docs_hash(task["predictions"])
    task["metrics"].update(validate.recompute("pairwise", validate._records(task, None)))
    return "tasks.psr.predictions[0].label: "


def _tamper_schema(sub):
    del sub["judge"]
    sub["tasks"]["psr"]["predictions"][0]["status"] = "fine"
    return "'judge' is a required property"


@pytest.mark.parametrize(
    "tamper",
    [
        _tamper_metric,
        _tamper_prediction,
        _tamper_drop,
        _tamper_hash,
        _tamper_consistent_labels,
        _tamper_schema,
    ],
)
def test_each_tampering_fails_naming_it(subs, monkeypatch, tamper):
    root, _, paths = subs
    monkeypatch.setenv("AUTORATER_DATA_DIR", str(root))
    sub = json.loads(paths["strong"].read_text())
    assert validate.validate_submission(copy.deepcopy(sub)).ok
    expected = tamper(sub)
    outcome = validate.validate_submission(sub)
    assert not outcome.ok
    assert any(expected in p for p in outcome.problems), outcome.problems
    if tamper is _tamper_schema:
        assert any("tasks.psr.predictions[0].status" in p and '"fine"' in p for p in outcome.problems)
    if tamper is _tamper_consistent_labels:  # self-consistent: only the local data shows it
        assert validate.validate_submission(sub, use_local_data=False).ok


def test_validate_command_fails_with_the_field(subs, tmp_path, monkeypatch, capsys):
    root, _, paths = subs
    monkeypatch.setenv("AUTORATER_DATA_DIR", str(root))
    sub = json.loads(paths["strong"].read_text())
    _tamper_metric(sub)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(sub))
    assert main(["validate", str(bad)]) == 1
    captured = capsys.readouterr()
    assert f"{bad}: FAIL tasks.psr.metrics.accuracy: reported 0.99" in captured.out
    assert "2 problem(s) in 1 submission(s)" in captured.err  # from its own predictions, and against the data
    # the leaderboard refuses a submission that does not validate
    assert main(["leaderboard", str(paths["strong"]), str(bad), "--output", str(tmp_path / "lb")]) == 1
    assert f"{bad} does not validate: tasks.psr.metrics.accuracy" in capsys.readouterr().err


def test_model_index_metadata_structure(subs):
    _, _, paths = subs
    sub = json.loads(paths["strong"].read_text())
    meta = submission.model_index(sub)
    (entry,) = meta["model-index"]
    assert entry["name"] == "strong"
    assert [r["dataset"]["config"] for r in entry["results"]] == list(sub["tasks"])
    psr = entry["results"][0]
    assert psr["task"] == {"type": "other", "name": "Image assessment (AutoRater)"}
    assert (
        psr["dataset"]["split"] == "test" and psr["dataset"]["revision"] == sub["tasks"]["psr"]["docs_hash"]
    )
    assert psr["metrics"] == [
        {
            "type": "accuracy",
            "value": sub["tasks"]["psr"]["metrics"]["accuracy"],
            "name": "psr accuracy",
            "config": "psr",
            "verified": False,
        }
    ]
    aigiqa = entry["results"][3]
    assert aigiqa["dataset"]["type"] == "strawhat/aigciqa-20k" and aigiqa["metrics"][0]["type"] == "pearson"
    card = paths["strong"].with_name("strong.model-index.yaml")
    import yaml

    assert yaml.safe_load(card.read_text()) == meta


def test_tie_groups_on_a_hand_made_case():
    entries = [
        {"name": "D", "value": 0.69, "ci_low": 0.60, "ci_high": 0.76},
        {"name": "A", "value": 0.80, "ci_low": 0.75, "ci_high": 0.85},
        {"name": "C", "value": 0.70, "ci_low": 0.66, "ci_high": 0.74},
        {"name": "E", "value": None, "ci_low": None, "ci_high": None},
        {"name": "B", "value": 0.78, "ci_low": 0.72, "ci_high": 0.84},
    ]
    ranked = leaderboard.rank_entries(entries)
    assert [(e["name"], e["rank"], e["group"]) for e in ranked] == [
        ("A", 1, 1),  # nothing lies above A
        ("B", 1, 1),  # overlaps A: tied with it
        ("C", 2, 2),  # A's CI lies entirely above C's; C opens the next group
        ("D", 1, 2),  # overlaps everyone, so no entry beats it significantly; tied with C, its group leader
        ("E", None, None),  # no value: unranked
    ]


def test_leaderboard_ranks_and_writes(subs, tmp_path, monkeypatch, capsys):
    root, _, paths = subs
    monkeypatch.setenv("AUTORATER_DATA_DIR", str(root))
    out = tmp_path / "lb"
    assert main(["leaderboard", str(paths["weak"]), str(paths["strong"]), "--output", str(out)]) == 0
    board = json.loads((out / "leaderboard.json").read_text())
    strong = json.loads(paths["strong"].read_text())
    psr = board["benchmarks"]["psr"]
    assert [e["name"] for e in psr][0] == "strong" and psr[0]["value"] == strong["tasks"]["psr"]["metrics"][
        "accuracy"
    ]
    assert all(e["verified"] for e in psr)
    (top, _) = board["overall"]
    values = [strong["tasks"][t]["metrics"][strong["tasks"][t]["metric"]] for t in strong["tasks"]]
    assert top["name"] == "strong" and top["value"] == pytest.approx(sum(values) / len(values))
    assert top["ci_low"] < top["value"] < top["ci_high"]
    assert "mean of the headline metrics" in board["aggregation"]
    md = (out / "leaderboard.md").read_text()
    assert "## overall" in md and "| strong |" in md
    html_page = (out / "leaderboard.html").read_text()
    assert "<table>" in html_page and "strong" in html_page

    # a submission over another doc set of a benchmark is not ranked with the others
    other = json.loads(paths["weak"].read_text())
    task = other["tasks"]["psr"]
    task["predictions"].pop()
    task["n_docs"] -= 1
    task["docs_hash"] = docs_hash(task["predictions"])
    task["metrics"].update(validate.recompute("pairwise", validate._records(task, None)))
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps(other))
    rc = main(["leaderboard", str(paths["strong"]), str(odd), "--output", str(out), "--no-local-data"])
    assert rc == 1
    assert f"task psr: {odd} and {paths['strong']} differ in docs_hash" in capsys.readouterr().err


def test_schema_statuses_are_the_metrics_statuses():
    """The schema's list of doc statuses is the one the metrics count (one fact, checked in one place)."""
    from lmms_eval_autorater.metrics.summary import STATUSES

    status = validate.schema()["$defs"]["task"]["properties"]["predictions"]["items"]["properties"]["status"]
    assert tuple(status["enum"]) == STATUSES


def test_data_parallel_order_round_trip(tmp_path, monkeypatch):
    """Samples chained rank by rank (a 2-process run): the CIs are recomputed in the order lmms-eval used."""
    from lmms_eval_autorater.tasks.catalog import build_docs
    from tests.datafactory import make_psr

    sets = [
        {"id": f"e{k:02d}", "votes": ["1", "1", "1", "2"] if k % 3 else ["2", "2", "2"]} for k in range(100)
    ]
    make_psr(tmp_path / "data", sets)
    monkeypatch.setenv("AUTORATER_DATA_DIR", str(tmp_path / "data"))
    docs = {"psr": build_docs("psr")}
    wrong = {k for k in range(100) if (k * k + 3 * k) % 7 < 3}

    def verdict(task, i, doc):
        pref = 3 - doc["label"] if i in wrong else doc["label"]
        return Verdict("ok", preferred=pref, raw="{}", meta={"model": "m"})

    write_run(tmp_path / "dp", docs, verdict, ranks=2)
    sub_path = tmp_path / "dp.json"
    assert main(["submission", "--results", str(tmp_path / "dp"), "--output", str(sub_path)]) == 0
    sub = json.loads(sub_path.read_text())
    task = sub["tasks"]["psr"]
    ids = [p["doc_id"] for p in task["predictions"]]
    assert ids[:2] == ["e00", "e02"]  # rank 0's docs first
    by_doc = [task["predictions"][ids.index(d["doc_id"])] for d in docs["psr"]]
    recomputed = validate.recompute("pairwise", validate._records(dict(task, predictions=by_doc), None))
    ci = ("accuracy_ci_low", "accuracy_ci_high")
    assert [recomputed[k] for k in ci] != [task["metrics"][k] for k in ci]  # the order matters to the CI
    outcome = validate.validate_submission(sub)
    assert outcome.ok and outcome.verified == ["psr"], outcome.problems


def test_push_without_token_stops_before_writing(subs, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_OIDC_RESOURCE", raising=False)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))  # no stored token either
    out = tmp_path / "s.json"
    results = subs[2]["strong"].parent / "strong"
    assert main(["submission", "--results", str(results), "--output", str(out), "--push", "me/model"]) == 1
    assert "--push needs a Hugging Face token" in capsys.readouterr().err
    assert not out.exists()


def _push(results: Path, out: Path, hub_url: str, token: str, repo: str) -> subprocess.CompletedProcess:
    """The real ``lmms-eval-autorater submission --push`` against the local Hub stand-in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update({"HF_ENDPOINT": hub_url, "HF_TOKEN": token, "HF_HUB_DISABLE_TELEMETRY": "1"})
    cmd = [
        str(Path(sys.executable).with_name("lmms-eval-autorater")),
        "submission",
        "--results",
        str(results),
    ]
    cmd += ["--output", str(out), "--name", "strong", "--push", repo]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def test_push_creates_the_repository_then_updates_its_card(subs, tmp_path):
    import yaml

    from tests.hub_server import HubServer

    results = subs[2]["strong"].parent / "strong"
    sub = json.loads(subs[2]["strong"].read_text())
    expected = {t: e["metrics"][e["metric"]] for t, e in sub["tasks"].items()}
    with HubServer(token="hf_test") as hub:
        for attempt in (1, 2):  # a first push to a repository that does not exist yet, then an update
            proc = _push(results, tmp_path / f"s{attempt}.json", hub.url, "hf_test", "me/new-judge")
            assert proc.returncode == 0, proc.stderr
            assert f"pushed {len(expected)} result(s)" in proc.stdout
            card = hub.repos["me/new-judge"]["README.md"].decode()
            meta = yaml.safe_load(card.split("---")[1])
            [entry] = meta["model-index"]
            got = {r["metrics"][0]["config"]: r["metrics"][0]["value"] for r in entry["results"]}
            assert got == expected  # one result per task, the submission's own values, none doubled
        assert ("POST", "/api/repos/create") in hub.requests
        assert hub.commits == 2
        proc = _push(results, tmp_path / "s3.json", hub.url, "wrong-token", "me/other")
        assert proc.returncode == 1
        [line] = proc.stderr.strip().splitlines()
        assert "--push to me/other: the Hub answered 401" in line, line
        assert "me/other" not in hub.repos
