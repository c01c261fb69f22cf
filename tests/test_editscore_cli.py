"""``editscore`` through the real lmms-eval CLI: served (the recording server answering fixed texts) and in process
(the tiny parity checkpoint) on ``psr``, and refused on a generation task with one line.

Served, every SC answer and every PQ answer is fixed per edited image, so each candidate's overall score is
recomputed here by hand: sqrt(min(SC) / 2.5 * min(PQ) / 2.5). In process, the tiny random model answers noise:
every doc is a counted parse failure, none a guessed score.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest

from tests.clitools import metric, run_cli
from tests.openai_server import OpenAIServer, image_digests

pytestmark = pytest.mark.slow
ES = Path(__file__).parent / "fixtures" / "parity" / "editscore"


def _digest(path: str) -> str:
    from lmms_eval_autorater.images import read_image_bytes

    return hashlib.sha256(read_image_bytes(path)).hexdigest()


def _sc_pq(digest: str) -> tuple[list[int], list[int]]:
    """Fixed scores (0..25) per edited image, from its digest."""
    h = int(digest[:8], 16)
    return [5 + h % 19, 3 + (h >> 5) % 21], [4 + (h >> 10) % 20, 6 + (h >> 15) % 18]


def test_editscore_served_scores_psr_as_recomputed(tmp_path, data):
    root, docs = data
    psr = docs["psr"]

    def responder(body):
        digests = image_digests(body)
        sc, pq = _sc_pq(digests[-1])  # the edited image is the last one in both questions
        scores = sc if "Editing instruction:" in json.dumps(body["messages"]) else pq
        return json.dumps({"reasoning": "fixed", "score": scores})

    with OpenAIServer(responder) as server:
        env = {"HF_HUB_OFFLINE": "1", "AUTORATER_DATA_DIR": str(root)}
        args = ("--model", "editscore", "--model_args", f"base_url={server.url},model=editscore-7b-merged")
        results, log = run_cli(tmp_path, env, *args, "--tasks", "psr")
        assert results is not None, log[-3000:]
        sent = [q.json for q in server.requests]
    assert metric(results, "psr", "n_scored") == len(psr)
    assert metric(results, "psr", "parse_failures") == 0 and metric(results, "psr", "api_failures") == 0

    def overall(ref: str) -> float:
        sc, pq = _sc_pq(_digest(ref))
        return math.sqrt(min(sc) / 2.5 * min(pq) / 2.5)

    preds = []
    for d in psr:
        a, b = overall(d["image_1"]), overall(d["image_2"])
        preds.append(1 if a > b else 2 if b > a else 0)
    expected = sum(p == d["label"] for p, d in zip(preds, psr)) / len(psr)
    assert metric(results, "psr", "accuracy") == pytest.approx(expected)
    assert all(q["temperature"] == 0.7 and q["seed"] == 42 and q["top_k"] == 20 for q in sent)
    sc_requests = [q for q in sent if "Editing instruction:" in json.dumps(q["messages"])]
    assert sc_requests and all(len(image_digests(q)) == 2 for q in sc_requests)  # the source goes with SC


def test_editscore_in_process_counts_noise_as_parse_failures(tmp_path, data):
    pytest.importorskip("peft")
    root, docs = data
    env = {"HF_HUB_OFFLINE": "1", "AUTORATER_DATA_DIR": str(root)}
    model_args = f"pretrained={ES / 'base'},lora={ES / 'lora'},device=cpu,max_new_tokens=24"
    results, log = run_cli(
        tmp_path, env, "--model", "editscore", "--model_args", model_args, "--tasks", "psr"
    )
    assert results is not None, log[-3000:]
    assert metric(results, "psr", "parse_failures") == len(docs["psr"])
    assert metric(results, "psr", "n_scored") == 0


def test_editscore_refuses_a_generation_task(tmp_path, data):
    root, _docs = data
    env = {"HF_HUB_OFFLINE": "1", "AUTORATER_DATA_DIR": str(root)}
    args = ("--model", "editscore", "--model_args", f"pretrained={ES / 'base'},lora={ES / 'lora'},device=cpu")
    results, log = run_cli(tmp_path, env, *args, "--tasks", "imagereward_pair")
    assert results is None
    lines = [ln for ln in log.splitlines() if "refused" in ln]
    assert len(lines) == 1 and "editscore" in lines[0] and "imagereward_pair" in lines[0], log[-3000:]
    assert "Traceback" not in log
