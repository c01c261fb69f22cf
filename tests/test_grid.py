"""Grid search over specialist subsets: subset counts, ranked table, one specialist run per input, free rerun."""

from __future__ import annotations

import json

import pytest

from lmms_eval_autorater.grid import run_grid, subsets, task_builder
from lmms_eval_autorater.models.judge_models import AutoraterOpenAICompatible
from lmms_eval_autorater.specialists.cache import AssessmentCache, SpecialistPool
from lmms_eval_autorater.specialists.registry import applicable
from tests import fakes
from tests.datafactory import standard_data
from tests.openai_server import OpenAIServer, prompt_text


def test_subset_counts_match_the_paper():
    assert len(subsets(applicable("editing"))) == 41
    assert len(subsets(applicable("generation"))) == 14
    assert subsets(["A", "B"], 2) == [("A",), ("B",), ("A", "B")]
    assert task_builder("psr") == ("lmms_eval_autorater.tasks.psr.utils:build_docs", "pairwise")
    with pytest.raises(ValueError, match="unknown task"):
        task_builder("mmmu")


def make_model(server, tmp_path):
    model = AutoraterOpenAICompatible(
        base_url=server.url, model="judge", cache_dir=str(tmp_path / "cache"), concurrency=4
    )
    model.pool = SpecialistPool(
        cache=AssessmentCache(tmp_path / "cache" / "assessments.sqlite"), factory=fakes.fake_factory
    )
    return model


def psr_docs(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTORATER_DATA_DIR", str(standard_data(tmp_path / "data")))
    from lmms_eval_autorater.tasks.psr.utils import build_docs

    return build_docs()


def test_grid_ranks_subsets_and_reruns_for_free(tmp_path, monkeypatch):
    docs = psr_docs(tmp_path, monkeypatch)
    labels = {d["request"]: d["label"] for d in docs}

    def responder(req):  # right whenever Q-SiT evidence is in the prompt, wrong otherwise
        text = prompt_text(req)
        label = next(lab for r, lab in labels.items() if f"Edit request: {r}" in text)
        return json.dumps({"analysis": "x", "preferred": label if "Q-SiT" in text else 3 - label})

    fakes.CALLS.clear()
    with OpenAIServer(responder) as server:
        result = run_grid(make_model(server, tmp_path), "psr", docs=docs, n_resamples=200)
        cold_requests = server.request_count
        again = run_grid(make_model(server, tmp_path), "psr", docs=docs, n_resamples=200)
        assert server.request_count == cold_requests  # the rerun makes no judge call
    assert len(result.rows) == 41 and cold_requests == 41 * len(docs)
    # every specialist ran exactly once per unique input, never once per subset
    assert (
        result.specialist_invocations
        == result.unique_inputs
        == {c: 2 * len(docs) for c in applicable("editing")}
    )
    assert dict(fakes.CALLS) == result.specialist_invocations
    assert (
        again.specialist_invocations == {}
        and again.judge_calls == 0
        and again.judge_cache_hits == 41 * len(docs)
    )
    with_qs = [r for r in result.rows if "QS" in r.subset]
    assert all(r.metric == 1.0 for r in with_qs) and result.rows[: len(with_qs)] == with_qs
    assert all(r.metric == 0.0 for r in result.rows[len(with_qs) :])
    table = result.table()
    assert table.splitlines()[2].startswith("*   1  QS")
    assert [r.subset for r in again.rows] == [r.subset for r in result.rows]


def test_grid_cli_on_generation_task(tmp_path, monkeypatch, capsys):
    from lmms_eval_autorater import cli

    monkeypatch.setenv("AUTORATER_DATA_DIR", str(standard_data(tmp_path / "data")))
    with OpenAIServer() as server:
        monkeypatch.setattr(
            AutoraterOpenAICompatible,
            "build_pool",
            lambda self: SpecialistPool(
                cache=AssessmentCache(tmp_path / "a.sqlite"), factory=fakes.fake_factory
            ),
        )
        out = tmp_path / "grid.json"
        rc = cli.main(
            [
                "grid",
                "--model",
                "autorater_openai",
                "--model_args",
                f"base_url={server.url},model=judge,cache_dir={tmp_path / 'c'}",
                "--task",
                "imagereward_pair",
                "--n_resamples",
                "100",
                "--output",
                str(out),
            ]
        )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "grid search on imagereward_pair: 14 subsets" in printed
    saved = json.loads(out.read_text())
    assert len(saved["rows"]) == 14 and saved["best"] == saved["rows"][0]["subset"]
    with pytest.raises(SystemExit, match="must not set tools"):
        cli.main(
            [
                "grid",
                "--model",
                "autorater_openai",
                "--model_args",
                "base_url=x,model=y,tools=all",
                "--task",
                "psr",
            ]
        )
