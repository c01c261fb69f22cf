"""The specialist pre-pass (``assess``): sharding, resuming, per-input failures, served specialists.

Fast tests use cheap specialists (brightness fakes that count every input) and the served path against the
local OpenAI-compatible server with a fixed answer rule; the slow ones run the tiny random-weight Q-SiT and
AesExpert (``tests/tinymodels.py``) through ``torchrun --nproc_per_node 2`` and through a stand-in server
that runs the same checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lmms_eval_autorater.specialists.base import Specialist, SpecialistInput
from lmms_eval_autorater.specialists.cache import AssessmentCache, SpecialistPool
from lmms_eval_autorater.specialists.registry import SPECS
from lmms_eval_autorater.specialists.types import Assessment
from tests.openai_server import Fault, OpenAIServer, default_responder, image_digests, prompt_text

# ---- cheap specialists -------------------------------------------------------------------------------

SEEN: Counter = Counter()  # image reference -> times a fake specialist was given it


class Mean(Specialist):
    """Mean pixel value / 255 of the image (a real ``Specialist``; no network); counts every input."""

    spec = SPECS["QS"]
    fail_on: str | None = None  # an image name that raises (a model error on that input)
    stop_after: int | None = None  # batches after which a KeyboardInterrupt stands for a kill

    def _load(self) -> None:
        self.batches = 0

    def _assess_batch(self, items):
        if self.stop_after is not None and self.batches >= self.stop_after:
            raise KeyboardInterrupt  # the process is killed here
        self.batches += 1
        out = []
        for it in items:
            if self.fail_on and Path(it.image).name == self.fail_on:
                raise RuntimeError(f"CUDA error on {it.image}")
            SEEN[it.image] += 1
            value = float(np.asarray(Image.open(it.image).convert("L")).mean() / 255.0)
            out.append(Assessment("QS", value=value, version=self.version))
        return out


def make_images(folder: Path, n: int, dup: int = 0) -> list[str]:
    """``n`` distinct seeded PNGs, plus ``dup`` byte-identical copies of the first ones (same content key)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"im{i:02d}.png"
        Image.fromarray(np.random.RandomState(i).randint(0, 255, (8, 8, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    for i in range(dup):
        q = folder / f"copy{i:02d}.png"
        q.write_bytes(Path(paths[i]).read_bytes())
        paths.append(str(q))
    return paths


def rows(path: Path) -> dict[str, dict]:
    with sqlite3.connect(path) as con:
        return {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM assessments")}


def expected_mean(path: str) -> float:
    with Image.open(path) as im:
        return float(np.asarray(im.convert("L"), dtype=np.float64).mean() / 255.0)


def pool_for(cache: Path, **attrs) -> SpecialistPool:
    def factory(code, **kwargs):
        kwargs.pop("model", None)
        sp = Mean(**kwargs)
        for k, v in attrs.items():
            setattr(sp, k, v)
        return sp

    return SpecialistPool({"QS": {"batch_size": 3}}, cache=AssessmentCache(cache), factory=factory)


# ---- sharding ----------------------------------------------------------------------------------------


def test_two_shards_fill_the_union_of_one_each_input_once(tmp_path):
    """Two processes (threads with their own pools on one cache file, meeting at a barrier) fill exactly the
    cache one process fills, each distinct input assessed once; identical images count once."""
    images = make_images(tmp_path / "img", 11, dup=3)
    items = [SpecialistInput("a cat", p) for p in images]

    SEEN.clear()
    one = pool_for(tmp_path / "one.sqlite")
    stats = one.fill("QS", items, progress=False)
    assert (stats.unique, stats.cached, stats.assessed) == (11, 0, 11)
    single = rows(tmp_path / "one.sqlite")
    assert len(single) == 11

    SEEN.clear()
    shared = tmp_path / "two.sqlite"
    AssessmentCache(shared)  # created once, as the first rank to open it would
    barrier = threading.Barrier(2)
    results: dict[int, object] = {}

    def rank(r: int) -> None:
        results[r] = pool_for(shared).fill("QS", items, rank=r, world=2, barrier=barrier.wait, progress=False)

    threads = [threading.Thread(target=rank, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[r].assigned for r in (0, 1)] == [6, 5]  # 11 missing keys dealt round-robin
    assert results[0].assessed + results[1].assessed == 11
    assert set(SEEN.values()) == {1}  # no input assessed twice
    assert len(SEEN) == 11
    two = rows(shared)
    assert set(two) == set(single)
    for k, v in single.items():
        assert two[k]["value"] == pytest.approx(v["value"], abs=0) and two[k]["version"] == v["version"]
    by_value = sorted(v["value"] for v in two.values())
    assert by_value == pytest.approx(sorted(expected_mean(p) for p in images[:11]))

    # idempotent: a rerun on two ranks assesses nothing
    SEEN.clear()
    again = pool_for(shared).fill("QS", items, rank=1, world=2, progress=False)
    assert (again.cached, again.missing, again.assigned, again.assessed) == (11, 0, 0, 0)
    assert not SEEN


def test_killed_pass_resumes_from_the_cache(tmp_path):
    """A pass killed after two batches of 3 keeps those 6 in the cache; the rerun assesses the other 4."""
    images = make_images(tmp_path / "img", 10)
    items = [SpecialistInput("x", p) for p in images]
    cache = tmp_path / "c.sqlite"
    SEEN.clear()
    with pytest.raises(KeyboardInterrupt):
        pool_for(cache, stop_after=2).fill("QS", items, progress=False)
    assert len(rows(cache)) == 6
    first = set(SEEN)
    SEEN.clear()
    pool = pool_for(cache)
    stats = pool.fill("QS", items, progress=False)
    assert (stats.cached, stats.assessed) == (6, 4)
    assert pool.invocations["QS"] == 4
    assert set(SEEN).isdisjoint(first) and len(SEEN) == 4
    assert len(rows(cache)) == 10


def test_one_failing_input_fails_alone(tmp_path):
    """A model error on one image fails that image (counted, not cached); its batch mates are cached; the
    judge's evidence says the assessment is missing; a rerun tries that image again."""
    from lmms_eval_autorater.specialists.render import render_assessments

    images = make_images(tmp_path / "img", 5)
    items = [SpecialistInput("x", p) for p in images]
    cache = tmp_path / "c.sqlite"
    pool = pool_for(cache, fail_on="im01.png")
    out = pool.assess("QS", items)
    assert [a.failed for a in out] == [False, True, False, False, False]
    assert out[1].error.startswith("model_error: RuntimeError: CUDA error on")
    assert out[0].value == pytest.approx(expected_mean(images[0]))
    assert pool.failures["QS"] == Counter({"model_error": 1})
    assert len(rows(cache)) == 4
    text = render_assessments([out[0], Assessment("QS", error=out[1].error, candidate=2)], 2)
    assert "Image 2: missing (the specialist failed on this image: model error)" in text
    assert f"Image 1: {out[0].value:.3f}" in text

    # an unreadable file is an input error for that input only
    items.append(SpecialistInput("x", str(tmp_path / "gone.png")))
    healed = pool_for(cache)
    stats = healed.fill("QS", items, progress=False)
    assert (stats.cached, stats.assessed, stats.unreadable) == (4, 1, 1)
    assert stats.failed == Counter({"input_error": 1})
    assert len(rows(cache)) == 5


# ---- served specialists, fixed answer rule -----------------------------------------------------------

LEVELS = {"Excellent": math.log(0.5), "Good": math.log(0.25), "Fair": math.log(0.125)}
#: the weighted softmax over the three listed levels (Poor and Bad missing), computed by hand
RULE_SCORE = (0.5 * 1.0 + 0.25 * 0.75 + 0.125 * 0.5) / (0.5 + 0.25 + 0.125)


def rule(request_json: dict):
    """QS requests (one token with top_logprobs) get fixed level log-probabilities and two distractors; AE
    requests an aesthetic text naming the image's digest, with spaces to trim; the judge a valid verdict."""
    if request_json.get("top_logprobs"):
        tops = [{"token": t, "logprob": lp, "bytes": None} for t, lp in LEVELS.items()]
        tops += [
            {"token": "The", "logprob": -0.2, "bytes": None},
            {"token": " ", "logprob": -3.0, "bytes": None},
        ]
        first = tops[0]
        return {
            "content": "Excellent",
            "logprobs": {"content": [{**first, "top_logprobs": tops}], "refusal": None},
        }
    if "add_special_tokens" in request_json:
        return f"  soft light, image {image_digests(request_json)[0][:8]}.  "
    return default_responder(request_json)  # the judge's verdict prompts


def served_args(url: str, **extra) -> dict:
    return {"qs_base_url": url, "qs_model": "qsit-7b", "ae_base_url": url, "ae_model": "aesexpert", **extra}


def test_served_specialists_fixed_rule(tmp_path):
    """QS reads its score from the level words' log-probabilities, AE trims its text; the requests carry the
    in-process prompts; the cache key adds the server identity; a request that fails for good fails its
    input only (api_error, counted) and the pass goes on."""
    from lmms_eval_autorater.judges.factory import build_pool, specialist_config
    from lmms_eval_autorater.specialists import ae, qs

    images = make_images(tmp_path / "img", 4)
    items = [SpecialistInput("a cat", p) for p in images]
    with OpenAIServer(rule) as server:
        cfg = specialist_config({**served_args(server.url), "cache_dir": str(tmp_path / "cache")})
        pool = build_pool(cfg)
        got = pool.assess("QS", items)
        assert [a.value for a in got] == pytest.approx([RULE_SCORE] * 4, abs=1e-12)
        sp = pool.specialist("QS")
        assert sp.levels_missing == 8  # Poor and Bad, for each of the 4 images
        assert sp.version == f"QS:QSiT:v1:qsit-7b:served:qsit-7b@{server.url}"
        body = server.requests[0].json
        assert body["model"] == "qsit-7b" and body["max_tokens"] == 1 and body["temperature"] == 0
        assert body["logprobs"] is True and body["top_logprobs"] == 20
        assert body["add_generation_prompt"] is False and body["continue_final_message"] is True
        assert body["messages"][0]["content"][0] == {"type": "text", "text": qs.QSIT_PROMPT}
        assert body["messages"][1] == {"role": "assistant", "content": "The quality of this image is "}

        server.requests.clear()
        server.inject(Fault.http(400, "image too large"), times=1)
        texts = pool.assess("AE", items)
        failed = [a for a in texts if a.failed]
        assert len(failed) == 1 and failed[0].error.startswith("api_error: ")
        assert pool.failures["AE"] == Counter({"api_error": 1})
        ok = [(it, a) for it, a in zip(items, texts) if not a.failed]
        for it, a in ok:
            digest = __import__("hashlib").sha256(Path(it.image).read_bytes()).hexdigest()[:8]
            assert a.text == f"soft light, image {digest}."
        body = server.requests[-1].json
        assert body["messages"][0] == {"role": "system", "content": [{"type": "text", "text": ae.AE_SYSTEM}]}
        assert body["messages"][1]["content"][1] == {"type": "text", "text": ae.AE_QUESTION}
        assert body["max_tokens"] == ae.AE_MAX_NEW_TOKENS and body["add_special_tokens"] is True

        # a rerun asks the server only for the failed image
        n = len(server.requests)
        again = build_pool(cfg).assess("AE", items)
        assert not any(a.failed for a in again) and len(server.requests) == n + 1


def test_served_qs_answer_without_levels_is_a_parse_failure(tmp_path):
    from lmms_eval_autorater.judges.factory import build_pool, specialist_config

    def no_levels(request_json):
        tops = [{"token": "The", "logprob": -0.1, "bytes": None}]
        return {"content": "The", "logprobs": {"content": [{**tops[0], "top_logprobs": tops}]}}

    images = make_images(tmp_path / "img", 2)
    with OpenAIServer(no_levels) as server:
        pool = build_pool(specialist_config({**served_args(server.url), "cache_dir": str(tmp_path)}))
        out = pool.assess("QS", [SpecialistInput("x", p) for p in images])
    assert all(a.error.startswith("parse_failure: ParseError: none of the level words") for a in out)
    assert pool.failures["QS"] == Counter({"parse_failure": 2})


def test_specialist_args_are_checked():
    from lmms_eval_autorater.judges.args import ModelArgError
    from lmms_eval_autorater.judges.factory import judge_config, specialist_config

    with pytest.raises(ModelArgError, match="gd_base_url"):
        specialist_config({"gd_base_url": "http://x/v1"})
    with pytest.raises(ModelArgError, match="carries credentials"):
        specialist_config({"qs_base_url": "http://user:pw@host/v1"})
    with pytest.raises(ModelArgError, match="expected an http"):
        specialist_config({"ae_base_url": "localhost:8000"})
    cfg = judge_config(
        "autorater_openai", {"model": "m", "base_url": "http://h/v1", "qs_base_url": "http://s/v1"}
    )
    assert cfg.specialist_servers == {"QS": "http://s/v1"}


# ---- the command -------------------------------------------------------------------------------------


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lmms_eval_autorater.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def test_assess_command_served_then_judge_asks_no_specialist(tmp_path, data):
    """``assess`` fills the cache (served QS and AE over imagereward_point); a rerun assesses nothing; the
    judge that follows sends no specialist request and finds every assessment in the cache."""
    from lmms_eval_autorater.judges.factory import build_judge
    from lmms_eval_autorater.tasks.common import doc_to_request

    root, docs = data
    env = {"AUTORATER_DATA_DIR": str(root), "AUTORATER_CACHE_DIR": str(tmp_path / "cache")}
    n_images = len({d["image_1"] for d in docs["imagereward_point"]})
    with OpenAIServer(rule) as server:
        margs = ",".join(f"{k}={v}" for k, v in served_args(server.url).items())
        argv = ("assess", "--tasks", "imagereward_point", "--tools", "AE+QS", "--model_args", margs, "--json")
        first = cli(*argv, env=env)
        assert first.returncode == 0, first.stderr
        result = json.loads(first.stdout)
        assert result["docs"] == len(docs["imagereward_point"]) and result["input_errors"] == 0
        for code in ("AE", "QS"):
            s = result["specialists"][code]
            assert (s["unique_inputs"], s["cached_before"], s["assessed"], s["failed"]) == (
                n_images,
                0,
                n_images,
                {},
            )
        assert len(server.requests) == 2 * n_images

        second = json.loads(cli(*argv, env=env).stdout)
        assert second["totals"]["assessed"] == 0 and second["totals"]["cached_before"] == 2 * n_images
        assert len(server.requests) == 2 * n_images

        text = cli(*argv[:-1], env=env)
        want = f"QS: {n_images} distinct inputs: {n_images} already cached, 0 assessed, failed: none"
        assert want in text.stdout

        judge_args = {
            "model": "judge-1",
            "base_url": server.url,
            "tools": "AE+QS",
            "cache_dir": str(tmp_path / "cache"),
            **served_args(server.url),
        }
        judge = build_judge("autorater_openai", judge_args, progress=False)
        reqs = [doc_to_request(d, "imagereward_point", i) for i, d in enumerate(docs["imagereward_point"])]
        before = len(server.requests)
        verdicts = judge.judge_all(reqs)
        assert all(v.status == "ok" for v in verdicts)
        sent = server.requests[before:]
        assert not any("top_logprobs" in r.json or "add_special_tokens" in r.json for r in sent)
        assert len(sent) == len(reqs)  # verdict prompts only
        assert dict(judge.pool.invocations) == {} and judge.pool.hits == Counter(
            {"AE": n_images, "QS": n_images}
        )
        assert all(
            f"{RULE_SCORE:.3f}" in prompt_text(r.json) and "Q-SiT (QS)" in prompt_text(r.json) for r in sent
        )


def test_assess_command_errors(tmp_path, data):
    root, _ = data
    env = {"AUTORATER_DATA_DIR": str(root), "AUTORATER_CACHE_DIR": str(tmp_path)}
    bad = cli("assess", "--tasks", "imagereward_point", "--tools", "DF", env=env)
    assert bad.returncode == 1 and "DF" in bad.stderr and "do not apply to generation" in bad.stderr
    bad = cli("assess", "--tasks", "imagereward_point", "--model_args", "model=x", env=env)
    assert bad.returncode == 1 and "unknown model argument(s) model" in bad.stderr
    bad = cli("assess", "--tasks", "imagereward_point", "--tools", "auto", env=env)
    assert bad.returncode == 1 and "choose the specialists" in bad.stderr


# ---- tiny checkpoints (slow) -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_processes_fill_the_cache_one_process_fills(tmp_path, data, qsit_folder):
    """``torchrun --nproc_per_node 2``: the two ranks assess disjoint shards (each input once, counted) and
    leave the same cache rows as one process."""
    pytest.importorskip("torch")
    root, docs = data
    tasks = "imagereward_point,aigiqa"
    margs = f"qs_model={qsit_folder},specialist_device=cpu,specialist_batch_size=2"
    base = {"AUTORATER_DATA_DIR": str(root), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    argv = ["assess", "--tasks", tasks, "--tools", "QS", "--model_args", margs, "--json", "--no_progress"]

    one = cli(*argv, env={**base, "AUTORATER_CACHE_DIR": str(tmp_path / "one")})
    assert one.returncode == 0, one.stderr
    r1 = json.loads(one.stdout)["specialists"]["QS"]
    n = len({d["image_1"] for t in tasks.split(",") for d in docs[t]})
    assert r1["assessed"] == r1["unique_inputs"] == n

    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
         str(free_port()), "-m", "lmms_eval_autorater.cli", *argv],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, **base, "AUTORATER_CACHE_DIR": str(tmp_path / "two")},
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    out = json.loads(two.stdout[two.stdout.index("{") :])
    r2 = out["specialists"]["QS"]
    assert out["world_size"] == 2
    assert r2["assigned_per_rank"] == [(n + 1) // 2, n // 2]
    assert r2["assessed_per_rank"] == r2["assigned_per_rank"] and r2["assessed"] == n
    a, b = rows(tmp_path / "one" / "assessments.sqlite"), rows(tmp_path / "two" / "assessments.sqlite")
    assert set(a) == set(b) and len(a) == n
    for k in a:
        assert b[k]["value"] == pytest.approx(a[k]["value"], abs=1e-5) and b[k]["version"] == a[k]["version"]


@pytest.mark.slow
def test_served_equals_in_process_on_the_same_checkpoint(tmp_path, qsit_folder, llava):
    """A stand-in server that runs the tiny Q-SiT and AesExpert checkpoints on the image it receives answers
    as vLLM would (the level words' log-probabilities; the greedy text); the served assessments equal the
    in-process ones."""
    pytest.importorskip("torch")
    import base64
    import io

    from lmms_eval_autorater.judges.factory import build_pool, specialist_config
    from lmms_eval_autorater.specialists.ae import AesExpert
    from lmms_eval_autorater.specialists.qs import QSIT_LEVELS, QSiTScorer

    scorer = QSiTScorer(qsit_folder, device="cpu", dtype="float32", batch_size=1)
    describer = AesExpert(model=str(llava["converted"]), device="cpu", dtype="float32", batch_size=1)

    scorer.load()
    describer.load()
    lock = threading.Lock()  # the server answers in threads; one model call at a time

    def stand_in(request_json):
        with lock:
            return answer(request_json)

    def answer(request_json):
        url = next(p["image_url"]["url"] for m in request_json["messages"] if isinstance(m["content"], list)
                   for p in m["content"] if p["type"] == "image_url")  # fmt: skip
        image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        if request_json.get("top_logprobs"):
            logits = scorer.level_logits([image])[0]
            norm = (
                max(logits) + math.log(sum(math.exp(x - max(logits)) for x in logits)) + 0.7
            )  # rest of vocab
            tops = [{"token": w, "logprob": x - norm, "bytes": None} for w, x in zip(QSIT_LEVELS, logits)]
            return {"content": "Good", "logprobs": {"content": [{**tops[0], "top_logprobs": tops}]}}
        return describer.describe([image])[0] + " "

    images = make_images(tmp_path / "img", 3)
    items = [SpecialistInput("x", p) for p in images]
    local = SpecialistPool(
        {"QS": {"model": qsit_folder, "dtype": "float32", "batch_size": 1},
         "AE": {"model": str(llava["converted"]), "dtype": "float32", "batch_size": 1}},
        device="cpu", cache=AssessmentCache(tmp_path / "local.sqlite"),
    )  # fmt: skip
    with OpenAIServer(stand_in) as server:
        # vLLM started on a folder serves it under that name: the same checkpoint, the same name
        names = {"qs_model": qsit_folder, "ae_model": str(llava["converted"])}
        served = build_pool(
            specialist_config({**served_args(server.url), **names, "cache_dir": str(tmp_path / "s")})
        )
        for code in ("QS", "AE"):
            want, got = local.assess(code, items), served.assess(code, items)
            assert not any(a.failed for a in got)
            if code == "QS":
                assert [a.value for a in got] == pytest.approx([a.value for a in want], abs=1e-9)
            else:
                assert [a.text for a in got] == [a.text for a in want]
            assert all(
                g.version == f"{w.version}:served:{served.specialist(code).server}" for g, w in zip(got, want)
            )


def test_estimate_prepass_wall_time_from_measured_cost(tmp_path, data):
    """``estimate --gpus N``: the pre-pass left (inputs not cached) times the per-input seconds measured in
    the cache rows of the same specialist version, over N; unknown for a specialist never measured."""
    from lmms_eval_autorater.experiments.estimate import estimate_run, table

    root, docs = data
    env = {"AUTORATER_DATA_DIR": str(root), "AUTORATER_CACHE_DIR": str(tmp_path / "cache")}
    n = len({d["image_1"] for d in docs["imagereward_point"]})
    with OpenAIServer(rule) as server:
        margs = ",".join(f"{k}={v}" for k, v in served_args(server.url).items())
        done = cli(
            "assess",
            "--tasks",
            "imagereward_point",
            "--tools",
            "QS",
            "--limit",
            "3",
            "--model_args",
            margs,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        measured = [v["seconds"] for v in rows(tmp_path / "cache" / "assessments.sqlite").values()]
        assert len(measured) == 3 and all(s > 0 for s in measured)
        args = {"model": "judge-1", "base_url": server.url, "tools": "AE+QS", "cache_dir": str(tmp_path / "cache"),
                **served_args(server.url)}  # fmt: skip
        out = estimate_run("autorater_openai", args, ["imagereward_point"], docs=docs, gpus=2)
    pre = out["prepass"]
    qs = pre["specialists"]["QS"]
    assert (qs["unique_inputs"], qs["cached"], qs["left"], qs["measured_inputs"]) == (n, 3, n - 3, 3)
    mean = sum(measured) / 3
    assert qs["seconds_per_input"] == pytest.approx(mean, rel=1e-4)
    assert qs["wall_seconds"] == pytest.approx((n - 3) * mean / 2, rel=1e-4)
    ae = pre["specialists"]["AE"]
    assert (ae["left"], ae["seconds_per_input"], ae["wall_seconds"]) == (n, None, None)
    assert pre["wall_seconds"] is None
    assert "specialist pre-pass on 2 GPU(s): unknown: AE 7 left (unknown); QS 4 left" in table(out)
