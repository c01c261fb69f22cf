"""Transient and persistent faults through the real ``lmms-eval`` CLI, aimed at named docs.

Weather (seeded 500s and 429s with Retry-After) must leave the metrics exactly as without
faults; a persistent outage, a non-retryable 400 and an empty answer must end in exactly the
docs they hit being reported (API failure, API failure, parse failure), and nothing else.
"""

from __future__ import annotations

import json

import pytest

from tests.clitools import TruthResponder, metric, run_cli, same_metrics, sha_of_ref
from tests.openai_server import Fault, OpenAIServer, image_digests

pytestmark = pytest.mark.slow
TASKS = ("psr", "imagereward_pair")


def judge_args(server: OpenAIServer, extra: str = "") -> tuple[str, ...]:
    return (
        "--model",
        "autorater_openai",
        "--model_args",
        f"base_url={server.url},model=judge-1,concurrency=4{extra}",
        "--tasks",
        ",".join(TASKS),
    )


def expected_accuracy(docs: list[dict], excluded: set[int] = frozenset()) -> float:
    """TruthResponder answers every third doc wrong: the accuracy over the docs not excluded."""
    kept = [i for i in range(len(docs)) if i not in excluded]
    return sum(1 for i in kept if i % 3) / len(kept)


def the_doc(doc: dict):
    """A ``match`` predicate selecting the requests of exactly this pairwise doc (both images, either order)."""
    want = {sha_of_ref(doc["image_1"]), sha_of_ref(doc["image_2"])}
    return lambda request_json: set(image_digests(request_json)[-2:]) == want


def failed_docs(tmp_path, out: str, task: str) -> dict[int, str]:
    """doc index -> status of every logged sample whose verdict is not ok."""
    sample_file = next((tmp_path / out).rglob(f"*_samples_{task}.jsonl"))
    out_map = {}
    for line in sample_file.read_text().splitlines():
        row = json.loads(line)
        resp = row["filtered_resps"]
        env = json.loads(resp[0] if isinstance(resp, list) else resp)
        if env["status"] != "ok":
            out_map[int(row["doc_id"])] = env["status"]
    return out_map


def test_weather_with_default_retries_changes_nothing(tmp_path, data):
    """Seeded 30% HTTP 500 + 10% HTTP 429 (Retry-After 1 s), default policy: 0 failures, same metrics."""
    root, docs = data
    truth = TruthResponder({t: docs[t] for t in TASKS})
    with OpenAIServer(truth) as server:
        clean, log = run_cli(
            tmp_path,
            {"AUTORATER_DATA_DIR": str(root), "AUTORATER_CACHE_DIR": str(tmp_path / "c0")},
            *judge_args(server),
        )
        assert clean is not None, log[-3000:]
    with OpenAIServer(truth, fault_rates={500: 0.3, 429: 0.1}, fault_seed=0, retry_after="1") as server:
        stormy, log = run_cli(
            tmp_path,
            {"AUTORATER_DATA_DIR": str(root), "AUTORATER_CACHE_DIR": str(tmp_path / "c1")},
            *judge_args(server),
        )
        assert stormy is not None, log[-3000:]
        faulted = sum(1 for r in server.requests if r.fault)
        n_docs = sum(len(docs[t]) for t in TASKS)
        assert faulted > 0 and server.request_count == n_docs + faulted  # every fault was retried, once each
    for task in TASKS:
        assert metric(stormy, task, "api_failures") == 0
        assert metric(stormy, task, "n_scored") == len(docs[task])
        assert metric(stormy, task, "accuracy") == pytest.approx(expected_accuracy(docs[task]))
        assert same_metrics(stormy["results"][task], clean["results"][task])


def test_faults_aimed_at_named_docs_fail_exactly_those_docs(tmp_path, data):
    root, docs = data
    pairs = docs["imagereward_pair"]
    assert len(pairs) == 8
    truth = TruthResponder({t: docs[t] for t in TASKS})
    env = {"AUTORATER_DATA_DIR": str(root), "AUTORATER_CACHE_DIR": str(tmp_path / "cache")}
    outage, bad_request, empty = {1, 5}, 2, 6
    with OpenAIServer(truth) as server:
        for (
            i
        ) in outage:  # a persistent outage of two named docs: the retry budget runs out, then the final round
            server.outage(the_doc(pairs[i]))
        server.inject(Fault.http(400), times=1, match=the_doc(pairs[bad_request]))  # not retried
        server.inject(
            Fault.empty(), times=2, match=the_doc(pairs[empty])
        )  # re-asked once, then a parse failure
        # weather on the other docs: each recovers
        server.inject(Fault.rate_limit("0.2"), times=1, match=the_doc(pairs[0]))
        server.inject(Fault.http(500), times=2, match=the_doc(pairs[3]))
        server.inject(Fault.malformed(), times=1, match=the_doc(pairs[4]))
        server.inject(Fault.timeout(3.0), times=1, match=the_doc(pairs[7]))
        results, log = run_cli(
            tmp_path, env, *judge_args(server, ",timeout=1,retry_budget=2,backoff_base=0.05")
        )
        assert results is not None, log[-3000:]
        by_doc = {}
        for r in server.requests:
            for i, d in enumerate(pairs):
                if the_doc(d)(r.json):
                    by_doc.setdefault(i, []).append(r.fault)
    task = "imagereward_pair"
    assert failed_docs(tmp_path, "out0", task) == {
        1: "api_error",
        5: "api_error",
        bad_request: "api_error",
        empty: "parse_failure",
    }
    assert metric(results, task, "api_failures") == 3
    assert metric(results, task, "parse_failures") == 1
    assert metric(results, task, "input_errors") == 0
    assert metric(results, task, "n_scored") == 4
    assert metric(results, task, "accuracy") == pytest.approx(
        expected_accuracy(pairs, {1, 5, bad_request, empty})
    )
    assert len(by_doc[bad_request]) == 1  # a 400 is asked once
    assert all(len(by_doc[i]) > 2 for i in outage)  # retried within the budget and again in the final round
    assert "final round" in log
    # PSR, judged in the same run, was untouched by the faults aimed at the pairs
    assert metric(results, "psr", "n_scored") == len(docs["psr"])
    assert metric(results, "psr", "accuracy") == pytest.approx(expected_accuracy(docs["psr"]))


def test_a_persistent_outage_of_some_docs_ends_in_bounded_time_with_default_settings(tmp_path, data):
    """Issue 16: with the default retry policy (retry_budget=600, final round on), docs whose every attempt
    fails while the rest of the run is answered are given up after 5 attempts each (counted from the
    server's log), reported as API failures, and the run ends within 150 s of the fault-free run."""
    import time

    root, docs = data
    pairs = docs["imagereward_pair"]
    truth = TruthResponder({t: docs[t] for t in TASKS})
    walls = []
    for name, outage in (("clean", set()), ("outage", {1})):  # 1 of 8 pairs, ~10% of the run's bodies
        with OpenAIServer(truth) as server:
            for i in outage:
                server.outage(the_doc(pairs[i]))
            start = time.monotonic()
            env = {"AUTORATER_DATA_DIR": str(root), "AUTORATER_CACHE_DIR": str(tmp_path / f"c-{name}")}
            results, log = run_cli(tmp_path, env, *judge_args(server))
            walls.append(time.monotonic() - start)
            assert results is not None, log[-3000:]
            attempts = [r for r in server.requests for i in outage if the_doc(pairs[i])(r.json)]
    assert len(attempts) == 5  # given up after 5 attempts: not a 600 s budget and a final round
    assert failed_docs(tmp_path, "out1", "imagereward_pair") == {1: "api_error"}
    assert metric(results, "imagereward_pair", "api_failures") == 1
    assert metric(results, "imagereward_pair", "n_scored") == len(pairs) - 1
    assert metric(results, "psr", "api_failures") == 0 and metric(results, "psr", "n_scored") == len(
        docs["psr"]
    )
    assert walls[1] - walls[0] < 150, walls
