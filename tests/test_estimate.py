"""``estimate``: provider token rules, the plan's calls and cache hits, and the done-when of issue 11:
the estimate matches, within 3%, the prompt tokens a server counting like OpenAI reports for the same run."""

from __future__ import annotations

import json

import pytest

from lmms_eval_autorater.experiments.estimate import estimate_run
from lmms_eval_autorater.judges import tokens
from lmms_eval_autorater.judges.factory import build_judge
from lmms_eval_autorater.judges.types import ChatPrompt
from lmms_eval_autorater.specialists.cache import AssessmentCache, SpecialistPool
from lmms_eval_autorater.tasks.catalog import PAPER_TASKS as TASKS
from lmms_eval_autorater.tasks.common import doc_to_request
from tests import fakes
from tests.openai_server import OpenAIServer


def test_image_rules_match_the_providers_documented_examples():
    # OpenAI's examples: 1024x1024 high = 765, 2048x4096 high = 1105, low = 85 whatever the size
    assert tokens.openai_image_tokens(1024, 1024, "high") == 765
    assert tokens.openai_image_tokens(2048, 4096, "high") == 1105
    assert tokens.openai_image_tokens(2048, 4096, None) == 1105  # auto is billed as high
    assert tokens.openai_image_tokens(4096, 8192, "low") == 85
    assert tokens.openai_image_tokens(512, 512) == 255  # one tile, never scaled up
    assert tokens.openai_image_tokens(513, 512) == 425  # two tiles
    # Gemini: 258 when both sides <= 384, else 258 per 768x768 tile
    assert tokens.gemini_image_tokens(384, 384) == 258
    assert tokens.gemini_image_tokens(385, 100) == 258
    assert tokens.gemini_image_tokens(1024, 1024) == 4 * 258
    assert tokens.image_tokens(1024, 1024, "gemini") == 1032
    with pytest.raises(ValueError, match="no token-counting rule"):
        tokens.rule_for("anthropic")


def test_text_and_chat_overhead():
    enc = tokens.o200k()
    assert enc.name == "o200k_base" and tokens.text_tokens("hello world") == 2
    p = ChatPrompt(system="You judge.", parts=("Rate it.",))
    expected = (3 + 1 + len(enc.encode("You judge."))) + (3 + 1 + len(enc.encode("Rate it."))) + 3
    assert tokens.prompt_tokens(p) == expected
    assert tokens.prompt_tokens(p, "gemini") == 3 + 2  # ceil(10/4) + ceil(8/4)


def _pool(tmp_path):
    return SpecialistPool(
        cache=AssessmentCache(tmp_path / "cache" / "assessments.sqlite"), factory=fakes.fake_factory
    )


def _reqs(docs, task):
    return [doc_to_request(d, task, i) for i, d in enumerate(docs[task])]


def test_estimate_matches_openai_counted_server_and_cache(tmp_path, data):
    """Cold: estimate vs what the server counted (<= 3%); warm: every call cached, nothing to pay."""
    _, docs = data
    with OpenAIServer(count_tokens="openai") as server:
        args = {
            "base_url": server.url,
            "model": "gpt-4o",
            "cache_dir": str(tmp_path / "cache"),
            "concurrency": 4,
        }
        cold = estimate_run("autorater_openai", args, list(TASKS), docs=docs)
        assert cold["cached_calls"] == 0 and cold["calls"] == sum(len(v) for v in docs.values())
        judge = build_judge("autorater_openai", args, progress=False)
        for task in TASKS:
            server.reset()
            judge.judge_all(_reqs(docs, task))
            counted = sum(r["prompt_tokens"] for r in _server_usage(server))
            assert len(server.requests) == cold["tasks"][task]["calls"]
            assert cold["tasks"][task]["prompt_tokens"] == pytest.approx(counted, rel=0.03), task
        spent = judge.completer.stats()
        assert cold["prompt_tokens"] == pytest.approx(spent["prompt_tokens"], rel=0.03)
        assert cold["completion_tokens"] == 2048 * cold["calls"]  # no cached answer yet: max_tokens bound
        assert "upper bound" in cold["completion_tokens_source"]["verdict"]
        # priced as gpt-4o: batch is half the direct price
        assert cold["usd_direct"] > 0 and cold["usd_batch"] == pytest.approx(cold["usd_direct"] / 2)

        warm = estimate_run("autorater_openai", args, list(TASKS), docs=docs)
        assert warm["calls"] == 0 and warm["cached_calls"] == cold["calls"]
        assert warm["usd_direct"] == 0 and warm["prompt_tokens"] == 0
        # the next run's completion tokens come from the cached answers
        assert warm["completion_tokens_source"]["verdict"].startswith("mean of ")


def _server_usage(server):
    from tests.openai_server import openai_counted_prompt_tokens

    return [{"prompt_tokens": openai_counted_prompt_tokens(r.json)} for r in server.requests]


def test_specialists_auto_and_swap(tmp_path, data):
    """tools=all from the assessment cache matches the server; Auto counts two passes and swap two orders;
    a cached Auto selection makes the verdict pass exact."""
    _, docs = data
    pool = _pool(tmp_path)
    with OpenAIServer(count_tokens="openai") as server:
        base = {
            "base_url": server.url,
            "model": "gpt-4o",
            "cache_dir": str(tmp_path / "cache"),
            "concurrency": 4,
        }
        typical = estimate_run("autorater_openai", {**base, "tools": "all"}, ["psr"], docs=docs, pool=pool)
        n_cands = 2 * len(docs["psr"])
        assert typical["specialist_sections"] == {"from_cache": 0, "typical": 6 * n_cands}
        before = dict(pool.invocations)  # the estimate ran no specialist
        judge = build_judge("autorater_openai", {**base, "tools": "all"}, progress=False, pool=pool)
        reqs = _reqs(docs, "psr")
        for code in ("GD", "AE", "PA", "QS", "DF", "DS"):
            judge.assess(code, reqs)  # fill the assessment cache only
        assert before == {} and server.request_count == 0
        filled = estimate_run("autorater_openai", {**base, "tools": "all"}, ["psr"], docs=docs, pool=pool)
        assert filled["specialist_sections"] == {"from_cache": 6 * n_cands, "typical": 0}
        judge.judge_all(reqs)
        counted = sum(r["prompt_tokens"] for r in _server_usage(server))
        assert filled["prompt_tokens"] == pytest.approx(counted, rel=0.03)

        auto = {**base, "tools": "auto", "swap": "true"}
        plan = estimate_run("autorater_openai", auto, ["psr", "aigiqa"], docs=docs, pool=pool)
        n_psr, n_aigiqa = len(docs["psr"]), len(docs["aigiqa"])
        # selection + verdict in both orders; the verdict with every specialist is the tools=all run's
        # cached prompt, but the judge's subset is not known yet, so no hit is claimed for it
        assert plan["tasks"]["psr"]["calls"] == 3 * n_psr
        assert plan["tasks"]["aigiqa"]["calls"] == 2 * n_aigiqa  # pointwise: no swap
        assert any("upper bound" in n for n in plan["notes"])
        server.reset()
        build_judge("autorater_openai", auto, progress=False, pool=pool).judge_all(reqs)
        assert server.request_count == plan["tasks"]["psr"]["calls"]
        again = estimate_run("autorater_openai", auto, ["psr"], docs=docs, pool=pool)
        assert again["calls"] == 0 and again["cached_calls"] == server.request_count


def test_cli_json_table_prices_and_errors(tmp_path, data, monkeypatch, capsys):
    from lmms_eval_autorater.cli import main

    root, docs = data
    monkeypatch.setenv("AUTORATER_DATA_DIR", str(root))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # estimating needs no key: nothing is sent
    cache = f"cache_dir={tmp_path / 'c'}"
    assert (
        main(["estimate", "--model", "autorater_gpt4o", "--model_args", cache, "--tasks", "psr", "--json"])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    for key in ("calls", "cached_calls", "prompt_tokens", "completion_tokens", "usd_direct", "usd_batch"):
        assert key in out and key in out["tasks"]["psr"]
    assert out["judge_model"] == "gpt-4o-2024-08-06" and out["calls"] == len(docs["psr"])
    # explicit prices: $1 per Mtok in, $0 out
    args = f"{cache},price_in=1,price_out=0,max_tokens=100"
    assert (
        main(["estimate", "--model", "autorater_gpt4o", "--model_args", args, "--tasks", "psr", "--json"])
        == 0
    )
    priced = json.loads(capsys.readouterr().out)
    assert priced["usd_direct"] == pytest.approx(priced["prompt_tokens"] / 1e6)
    assert priced["completion_tokens"] == 100 * priced["calls"]
    # Gemini counts by its own rule; the plain output is a table
    assert (
        main(
            [
                "estimate",
                "--model",
                "autorater_gemini",
                "--model_args",
                cache,
                "--tasks",
                "aigiqa",
                "--limit",
                "2",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "aigiqa" in text and "total" in text and "characters/4" in text
    assert main(["estimate", "--model", "autorater_gpt4o", "--tasks", "mmmu"]) == 1
    assert "unknown task 'mmmu'" in capsys.readouterr().err
    assert (
        main(["estimate", "--model", "autorater_gpt4o", "--model_args", "tools=DF", "--tasks", "aigiqa"]) == 1
    )
    assert "do not apply to generation" in capsys.readouterr().err


@pytest.mark.slow  # imports lmms-eval (about 10 s on 2 busy cores)
def test_results_carry_the_estimate_beside_the_spend(tmp_path, data):
    """The lmms-eval judge model records a per-doc estimate; tasks report estimated_usd beside cost_usd."""
    from lmms_eval.api.instance import Instance

    from lmms_eval_autorater.models.judge_models import AutoraterOpenAICompatible
    from lmms_eval_autorater.tasks.common import (
        agg_pairwise_cost_usd,
        agg_pairwise_estimated_usd,
        process_pairwise,
    )

    _, docs = data
    task = "imagereward_pair"
    with OpenAIServer(count_tokens="openai") as server:
        model = AutoraterOpenAICompatible(
            base_url=server.url,
            model="gpt-4o",
            cache_dir=str(tmp_path / "cache"),
            concurrency=4,
            max_tokens=64,
        )
        model.task_dict = {task: {"test": docs[task]}}

        def run():
            insts = [
                Instance(
                    "generate_until",
                    ("", {}, None, i, task, "test"),
                    i,
                    {"task": task, "doc_id": i, "repeats": 1},
                )
                for i in range(len(docs[task]))
            ]
            outs = model.generate_until(insts)
            records = [process_pairwise(d, [o])["cost_usd"] for d, o in zip(docs[task], outs)]
            return agg_pairwise_estimated_usd(records), agg_pairwise_cost_usd(records)

        estimated, spent = run()
        assert estimated is not None and spent is not None and 0 < spent <= estimated
        assert run() == (0.0, 0.0)  # the rerun is answered from the cache: nothing estimated, nothing spent


def test_grid_plans_exhaustive_and_halving(tmp_path, data):
    from lmms_eval_autorater.experiments.estimate import halving_calls

    # PSR at full size: rounds of 41, 14, 5 and 2 subsets on 17, 50, 148 and 444 sets
    total, rounds = halving_calls(41, 444, 444)
    assert [r["subsets"] for r in rounds] == [41, 14, 5, 2] and total == 2241 < 41 * 444 / 3
    assert halving_calls(14, 6399, 466)[0] < 14 * 6399 / 3
    _, docs = data
    args = {"cache_dir": str(tmp_path / "c")}
    grid = estimate_run("autorater_gpt4o", args, ["psr", "aigiqa"], docs=docs, grid="exhaustive")
    assert grid["tasks"]["psr"]["calls"] == 41 * len(docs["psr"])
    assert grid["tasks"]["aigiqa"]["calls"] == 14 * len(docs["aigiqa"])
    # on a handful of docs halving samples every doc in its first round: no cheaper than exhaustive
    halving = estimate_run("autorater_gpt4o", args, ["psr"], docs=docs, grid="halving")
    assert halving["calls"] == grid["tasks"]["psr"]["calls"]
    with pytest.raises(ValueError, match="leave tools= out"):
        estimate_run("autorater_gpt4o", {**args, "tools": "all"}, ["psr"], docs=docs, grid="exhaustive")


def test_samples_multiply_the_calls_and_expected_scoring_adds_none(tmp_path, data):
    """samples=3: three verdict calls per doc (each cached under its own index); scoring=expected: as many
    calls and prompt tokens as argmax (log-probabilities come with the answer)."""
    _, docs = data
    with OpenAIServer(count_tokens="openai") as server:
        base = {"base_url": server.url, "model": "gpt-4o", "cache_dir": str(tmp_path / "c"), "concurrency": 4}
        one = estimate_run("autorater_openai", base, ["aigiqa"], docs=docs)
        three = estimate_run(
            "autorater_openai", {**base, "samples": 3, "temperature": 0.7}, ["aigiqa"], docs=docs
        )
        expected = estimate_run("autorater_openai", {**base, "scoring": "expected"}, ["aigiqa"], docs=docs)
        n = len(docs["aigiqa"])
        assert one["calls"] == n and three["calls"] == 3 * n and expected["calls"] == n
        assert three["prompt_tokens"] == pytest.approx(3 * one["prompt_tokens"])
        assert expected["prompt_tokens"] == one["prompt_tokens"]
        build_judge("autorater_openai", {**base, "samples": 3, "temperature": 0.7}, progress=False).judge_all(
            _reqs(docs, "aigiqa")
        )
        assert server.request_count == 3 * n
        again = estimate_run(
            "autorater_openai", {**base, "samples": 3, "temperature": 0.7}, ["aigiqa"], docs=docs
        )
        assert again["calls"] == 0 and again["cached_calls"] == 3 * n
