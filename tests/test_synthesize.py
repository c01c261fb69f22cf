"""Rationale synthesis: the filters on synthetic teacher answers, the training-row format, and the real
``lmms-eval-autorater synthesize`` CLI against the local server (exact counts; kill and resume)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from lmms_eval_autorater.judges.types import BackendError, Completion
from lmms_eval_autorater.training import rows as R
from lmms_eval_autorater.training.synthesize import LEAK_PATTERNS, find_leak, judge_answer
from tests.openai_server import OpenAIServer, body_digest, image_digests, prompt_text
from tests.test_sources import TRAIN, make_ir

CLI = str(Path(sys.executable).with_name("lmms-eval-autorater"))

LEAKS = [
    "Matching the ground truth, Image 2 is sharper.",
    "Human annotators chose Image 1 because it is brighter.",
    "We are told that the second image wins, and indeed it has fewer artifacts.",
    "Since the label says 2, Image 2 is better.",
    "The correct answer is Image 1: cleaner edges.",
    "The raters preferred the first one for its colours.",
    "I was given the answer, so I agree with it.",
    "Consistent with the known preference, Image 2 has more detail.",
    "As stated in the prompt, the score is 7.",
    "This agrees with the human judgement of 6.",
]
CLEAN = [
    "Image 2 follows the request more closely and has fewer artifacts; a human rater would prefer it.",
    "The cube is red as requested, lighting is natural, and the edges are clean, so it rates well.",
    "The labelled parts of the scene are sharp; the background is preserved after the edit.",
    "The label on the jar reads 'jam' as requested, in crisp letters.",
]


def test_leak_patterns_catch_leaks_and_pass_clean_rationales():
    assert len(LEAK_PATTERNS) >= 8
    for text in LEAKS:
        assert find_leak(text), text
    for text in CLEAN:
        assert find_leak(text) is None, text


def _c(obj) -> Completion:
    return Completion(text=obj if isinstance(obj, str) else json.dumps(obj), model="teacher-1")


def test_filters_on_synthetic_teacher_answers():
    ok = judge_answer(_c({"analysis": "Image 2 is sharper.", "preferred": 2}), "pairwise", 2)
    assert (ok.reason, ok.rationale, ok.value) == (None, "Image 2 is sharper.", 2)
    assert judge_answer(_c({"analysis": "a", "preferred": 1}), "pairwise", 2).reason == "verdict_mismatch"
    leak = judge_answer(_c({"analysis": LEAKS[1], "preferred": 1}), "pairwise", 1)
    assert leak.reason == "leak" and "annotators chose" in leak.detail
    assert judge_answer(_c("I cannot tell."), "pairwise", 1).reason == "parse_failure"
    assert judge_answer(_c({"analysis": "", "preferred": 1}), "pairwise", 1).reason == "parse_failure"
    assert judge_answer(BackendError("503"), "pairwise", 1).reason == "api_failure"
    # pointwise: within 1 of the Likert-10 target
    for score, reason in ((6, None), (8, None), (5, "verdict_mismatch"), (9, "verdict_mismatch")):
        assert judge_answer(_c({"analysis": "fine", "score": score}), "pointwise", 7).reason == reason


def test_likert_mapping():
    assert [R.likert10(r, "overall_rating_1_7") for r in range(1, 8)] == [1, 3, 4, 6, 7, 9, 10]
    assert [R.likert10(m, "mos_0_5") for m in (0, 1.0, 2.5, 3.61, 5)] == [1, 3, 6, 7, 10]
    with pytest.raises(ValueError, match="unknown pointwise label scale"):
        R.likert10(3, "stars")


# ---- in-process synthesis with a cheap specialist: the row format and the training prompt ------------


def hinted_responder(request_json: dict) -> str:
    """A teacher that gives the hinted judgement, with an analysis naming the images it saw."""
    text = prompt_text(request_json)
    m = re.search(r"preferred Image (\d)|rated it (\d+) on", text)
    n = len(image_digests(request_json))
    analysis = (
        f"Looked at {n} image(s); the evidence section {'is' if 'Specialist' in text else 'is not'} there."
    )
    if m.group(1):
        return json.dumps({"analysis": analysis, "preferred": int(m.group(1))})
    return json.dumps({"analysis": analysis, "score": int(m.group(2))})


def test_rows_specialists_once_and_the_training_prompt_is_the_judges(tmp_path, monkeypatch):
    from lmms_eval_autorater.judges.factory import build_judge
    from lmms_eval_autorater.judges.prompts import build_verdict_prompt
    from lmms_eval_autorater.specialists.cache import AssessmentCache, SpecialistPool
    from lmms_eval_autorater.training.sources import build_source
    from lmms_eval_autorater.training.synthesize import synthesize_docs, write_output
    from tests import fakes

    monkeypatch.setenv("AUTORATER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AUTORATER_CACHE_DIR", str(tmp_path / "cache"))
    make_ir(tmp_path, "train", TRAIN)
    docs = build_source("imagereward_pair", "train", 0).docs  # 8 pairs over 7 images
    fakes.CALLS.clear()
    with OpenAIServer(hinted_responder) as server:
        pool = SpecialistPool(cache=AssessmentCache(tmp_path / "a.sqlite"), factory=fakes.fake_factory)
        args = {"base_url": server.url, "model": "teacher", "tools": "QS", "cache_dir": str(tmp_path / "c")}
        judge = build_judge("autorater_openai", args, pool=pool, progress=False)
        out = synthesize_docs(judge, "imagereward_pair", docs, chunk=3, progress=False)
        assert (out.seen, len(out.rows), sum(out.rejected.values())) == (8, 8, 0)
        assert fakes.CALLS["QS"] == 7  # once per unique image, across chunks
        assert server.request_count == 8
        hint = prompt_text(server.requests[0].json)
        assert "the human judgement is known" in hint and "Specialist assessments" in hint
        again = synthesize_docs(judge, "imagereward_pair", docs, progress=False)
        assert server.request_count == 8 and fakes.CALLS["QS"] == 7 and len(again.rows) == 8
    from lmms_eval_autorater.training import synthesize

    monkeypatch.setattr(synthesize, "SHARD_ROWS", 3)  # 8 rows: three shards, concatenated
    write_output(tmp_path / "ds", out, {"kept": 8})
    ds = R.load_rows(tmp_path / "ds")
    assert len(ds) == 8 and set(ds.features) == set(R.FEATURES)
    row = ds[0]
    R.check_row(row)
    assert row["completion"] == R.completion_text(row) and row["verdict"] == int(row["label"])
    assert row["tools"] == ["QS"] and json.loads(row["specialist_versions"])["QS"]
    req = replace(R.row_request(row), assessments=tuple(R.assessments_of(row)))
    assert judge.render(list(req.assessments), 2) == row["evidence"] != ""
    assert R.training_prompt(row, True) == judge._verdict_prompt(req)
    assert R.training_prompt(row, False) == build_verdict_prompt(req, "")
    from lmms_eval_autorater.images import image_sha256, read_image_bytes

    # what a judge with the same tools sends at inference for this doc is the training prompt, to the byte
    want = R.training_prompt(row, True)
    with OpenAIServer() as server:
        args = {"base_url": server.url, "model": "student", "tools": "QS", "cache": "false"}
        verdict = build_judge("autorater_openai", args, pool=pool, progress=False).judge_all(
            [R.row_request(row)]
        )
        assert verdict[0].status == "ok" and fakes.CALLS["QS"] == 7  # specialists from the cache
        sent = server.requests[0].json
    assert prompt_text(sent) == "\n".join([want.system, *[p for p in want.parts if isinstance(p, str)]])
    assert image_digests(sent) == [image_sha256(p.data) for p in want.parts if not isinstance(p, str)]

    for ref in R.row_request(row).candidates:  # stable content-addressed paths under the cache
        assert Path(ref).stem == image_sha256(read_image_bytes(ref)) and str(tmp_path / "cache") in ref


# ---- the real CLI ---------------------------------------------------------------------------------------

#: the fate the server gives each decodable doc, in doc order (the corrupt-image doc never reaches it)
FATES = ["agree", "disagree", "leak", "unparsable", "api", "agree", "agree", "disagree"]
CLI_TRAIN = [
    {"id": "p1", "prompt": "a red cube", "ranks": [1, 2, 3, 4], "ratings": [7, 5, 3, 1]},  # 6 pairs
    {"id": "p2", "prompt": "a blue ball", "ranks": [1, 1, 2], "ratings": [6, 6, 2]},  # 2 pairs + 1 same-rank
    {"id": "p3", "prompt": "a green cone", "ranks": [1, 2], "ratings": [6, 3]},  # 1 pair, a corrupt image
]
EXPECTED = {
    "seen": 9,
    "kept": 3,
    "rejected": {
        "verdict_mismatch": 2,
        "leak": 1,
        "parse_failure": 1,
        "api_failure": 1,
        "input_error": 1,
        "test_overlap": 0,
    },
    "excluded": {"same_rank_pairs": 1},
}


class FateResponder:
    """Answers by the fate of the doc whose two images the request carries."""

    def __init__(self, docs: list[dict]):
        from tests.clitools import sha_of_ref

        self.fate = {}
        good = [d for d in docs if d["group"] != "p3"]
        for d, fate in zip(good, FATES):
            self.fate[(sha_of_ref(d["image_1"]), sha_of_ref(d["image_2"]))] = fate
        self.api = [k for k, f in self.fate.items() if f == "api"]

    def __call__(self, request_json: dict) -> str:
        label = int(re.search(r"preferred Image (\d)", prompt_text(request_json)).group(1))
        fate = self.fate[tuple(image_digests(request_json))]
        if fate == "unparsable":
            return "Both images have their merits."
        if fate == "leak":
            return json.dumps({"analysis": "The ground truth says so.", "preferred": label})
        preferred = label if fate == "agree" else 3 - label
        return json.dumps({"analysis": f"Image {preferred} is cleaner.", "preferred": preferred})

    def is_api(self, request_json: dict) -> bool:
        return tuple(image_digests(request_json)) in self.api


@pytest.fixture
def cli_data(tmp_path):
    from lmms_eval_autorater.training.sources import build_source

    make_ir(tmp_path, "train", CLI_TRAIN, corrupt={"train-p3-1.webp"})
    env = {**os.environ, "AUTORATER_DATA_DIR": str(tmp_path), "AUTORATER_CACHE_DIR": str(tmp_path / "cache")}
    env = {k: v for k, v in env.items() if not k.startswith(("OPENAI", "GEMINI"))}
    old = os.environ.get("AUTORATER_DATA_DIR")
    os.environ["AUTORATER_DATA_DIR"] = str(tmp_path)
    try:
        docs = build_source("imagereward_pair", "train", 0).docs
    finally:
        os.environ.pop("AUTORATER_DATA_DIR") if old is None else os.environ.__setitem__(
            "AUTORATER_DATA_DIR", old
        )
    return tmp_path, env, docs


def _cmd(server: OpenAIServer, out: Path, concurrency: int = 4) -> list[str]:
    args = f"base_url={server.url},model=teacher-x,tools=none,max_retries=0,final_round=false,concurrency={concurrency}"
    return [CLI, "synthesize", "--source", "imagereward_pair", "--model", "autorater_openai"] + [
        "--model_args",
        args,
        "--output",
        str(out),
        "--max_samples",
        "0",
        "--seed",
        "3",
    ]


@pytest.mark.slow
def test_synthesize_cli_killed_then_resumed_exact_counts_no_repeated_call(cli_data):
    """A run killed with the 4th teacher call in flight, then rerun: the 3 answered calls are not asked
    again, and the resumed run's counts are exactly what the server's rule implies."""
    import datasets

    tmp, env, docs = cli_data
    responder = FateResponder(docs)
    gate = threading.Event()

    def held_at_fourth(request_json: dict) -> str:
        if server.request_count >= 4:  # one call at a time: the 4th stays in flight until the kill
            gate.wait(60)
        return responder(request_json)

    with OpenAIServer(held_at_fourth) as server:
        proc = subprocess.Popen(
            _cmd(server, tmp / "out", 1), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 90
        while server.request_count < 4 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.kill()
        proc.wait()
        gate.set()
        assert server.request_count == 4 and not (tmp / "out").exists()
        answered = {body_digest(r.json) for r in server.requests[:3]}
        server.reset()
        server.responder = responder
        server.outage(responder.is_api)
        done = subprocess.run(_cmd(server, tmp / "out"), env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        second = [body_digest(r.json) for r in server.requests]
    # 8 decodable docs (the corrupt-image doc is never sent), 3 answered before the kill
    assert len(second) == 8 - 3 and not answered & set(second)
    manifest = json.loads((tmp / "out" / "manifest.json").read_text())
    assert {k: manifest[k] for k in EXPECTED} == EXPECTED
    assert manifest["teacher_calls"]["cache_hits"] == 3
    assert (
        manifest["seed"] == 3
        and manifest["tools"] == []
        and manifest["teacher"]["judge"] == "autorater_openai"
    )
    assert manifest["teacher"]["snapshots"] == ["teacher-x-2024-08-06"]
    assert set(manifest["files"]) == {"metadata-train.parquet", "images/train/train_1.zip"}
    assert "kept 3" in done.stdout
    ds = datasets.load_from_disk(str(tmp / "out"))
    assert len(ds) == 3 and all(r["evidence"] == "" and r["tools"] == [] for r in ds)
    for row in R.load_rows(tmp / "out"):
        R.check_row(row)
    reasons = [json.loads(x)["reason"] for x in (tmp / "out" / "rejected.jsonl").read_text().splitlines()]
    assert sorted(reasons) == sorted(
        ["input_error", "api_failure", "parse_failure", "leak"] + ["verdict_mismatch"] * 2
    )


def test_cli_refuses_auto_and_tools_that_do_not_apply(tmp_path, capsys):
    from lmms_eval_autorater.cli import main

    base = [
        "synthesize",
        "--source",
        "imagereward_pair",
        "--model",
        "autorater_openai",
        "--output",
        str(tmp_path),
    ]
    assert main([*base, "--model_args", "base_url=http://127.0.0.1:9/v1,model=m,tools=auto"]) == 1
    assert "tools=auto is not for synthesis" in capsys.readouterr().err
    assert main([*base, "--model_args", "base_url=http://127.0.0.1:9/v1,model=m,tools=DS"]) == 1
    assert "DS" in capsys.readouterr().err
    assert main([*base, "--model_args", "base_url=http://127.0.0.1:9/v1,model=m", "--limit", "-1"]) == 1
    assert "--limit must be >= 0" in capsys.readouterr().err


@pytest.mark.parametrize("source", ["aigiqa", "editreward", "imagereward_point"])
def test_each_source_synthesizes_rows_in_the_judges_image_order(source, tmp_path, monkeypatch):
    from lmms_eval_autorater.images import image_sha256
    from lmms_eval_autorater.judges.factory import build_judge
    from lmms_eval_autorater.training.sources import build_source
    from lmms_eval_autorater.training.synthesize import synthesize_docs, write_output
    from tests.test_sources import _aigiqa, _editreward

    monkeypatch.setenv("AUTORATER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AUTORATER_CACHE_DIR", str(tmp_path / "cache"))
    if source == "aigiqa":
        _aigiqa(tmp_path, [["A_1.png", "a fox", "4.1"], ["A_2.png", "a fox", "0.4"]], ["B_1.png"])
    elif source == "editreward":
        _editreward(tmp_path, ["rightvote", "tie", "leftvote"])
    else:
        make_ir(tmp_path, "train", TRAIN[1:])
    docs = build_source(source, "train", 0).docs
    with OpenAIServer(hinted_responder) as server:
        args = {"base_url": server.url, "model": "teacher", "tools": "none"}
        out = synthesize_docs(
            build_judge("autorater_openai", args, progress=False), source, docs, progress=False
        )
        sent = [image_digests(r.json) for r in server.requests]
    assert (
        out.seen
        == len(out.rows)
        == len(docs)
        == {"aigiqa": 2, "editreward": 2, "imagereward_point": 3}[source]
    )
    write_output(tmp_path / "ds", out, {})
    ds = R.load_rows(tmp_path / "ds")
    # each row's images, in the order the teacher was sent them (requests arrive concurrently: compare as sets)
    assert sorted([image_sha256(R.image_bytes(x)) for x in row["images"]] for row in ds) == sorted(sent)
    for row in ds:
        R.check_row(row)
        fields = {"editreward": ["source_image", "image_1", "image_2"]}.get(source, ["image_1"])
        assert row["image_fields"] == fields and row["evidence"] == "" and row["tools"] == []
    if source == "aigiqa":
        assert [(r["label"], r["verdict"]) for r in ds] == [(4.1, 8), (0.4, 2)]
    if source == "editreward":
        assert [int(r["verdict"]) for r in ds] == [2, 1]


@pytest.mark.slow
def test_synthesize_cli_excludes_rows_of_test_prompts_and_goes_on(cli_data):
    """Issue 16 item 8: a training prompt that is also an ImageReward test prompt costs only its own rows:
    they are excluded before anything is asked, counted in rejected.test_overlap with their ids, one line."""
    tmp, env, docs = cli_data
    make_ir(tmp, "test", [{"id": "p2", "prompt": "a blue ball", "ranks": [1, 2], "ratings": [5, 3]}])
    p2 = sorted(d["doc_id"] for d in docs if d["group"] == "p2")
    assert len(p2) == 2
    responder = FateResponder(docs)
    with OpenAIServer(responder) as server:
        server.outage(responder.is_api)
        done = subprocess.run(_cmd(server, tmp / "out"), env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        sent = len(server.requests)
    manifest = json.loads((tmp / "out" / "manifest.json").read_text())
    assert manifest["rejected"]["test_overlap"] == 2 and sorted(manifest["test_overlap_ids"]) == p2
    assert manifest["seen"] == 9 - 2 and sent == 8 - 2  # the corrupt-image doc is never sent
    lines = [x for x in done.stdout.splitlines() if "test split" in x]
    assert len(lines) == 1 and all(i in lines[0] for i in p2)
    rejected = [json.loads(x) for x in (tmp / "out" / "rejected.jsonl").read_text().splitlines()]
    assert sorted(r["id"] for r in rejected if r["reason"] == "test_overlap") == p2
