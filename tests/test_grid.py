"""Grid search over specialist subsets: subset counts, ranked table, one specialist run per input, free rerun."""

from __future__ import annotations

import json

import pytest

from lmms_eval_autorater.grid import run_grid, subsets
from lmms_eval_autorater.judges.factory import build_judge
from lmms_eval_autorater.specialists.cache import AssessmentCache, SpecialistPool
from lmms_eval_autorater.specialists.registry import applicable
from tests import fakes
from tests.datafactory import standard_data
from tests.openai_server import OpenAIServer, prompt_text


def test_subset_counts_match_the_paper():
    assert len(subsets(applicable("editing"))) == 41
    assert len(subsets(applicable("generation"))) == 14
    assert subsets(["A", "B"], 2) == [("A",), ("B",), ("A", "B")]
    with pytest.raises(ValueError, match="unknown task 'mmmu'"):
        run_grid(None, "mmmu")


def make_model(server, tmp_path):
    pool = SpecialistPool(
        cache=AssessmentCache(tmp_path / "cache" / "assessments.sqlite"), factory=fakes.fake_factory
    )
    return build_judge(
        "autorater_openai",
        {"base_url": server.url, "model": "judge", "cache_dir": str(tmp_path / "cache"), "concurrency": 4},
        pool=pool,
        progress=False,
    )


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
            "lmms_eval_autorater.judges.factory.build_pool",
            lambda cfg: SpecialistPool(
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
    rc = cli.main(
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
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err == [
        "lmms-eval-autorater grid: error: --model_args must not set tools: the grid chooses the subsets"
    ]


def test_grid_cli_failures_are_one_line(tmp_path, monkeypatch, capsys):
    """A missing key, a bad argument or missing data: exit 1 and one line naming the cause (traceback with --debug)."""
    from lmms_eval_autorater import cli

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("AUTORATER_DATA_DIR", str(tmp_path / "nothing"))
    rc = cli.main(["grid", "--model", "autorater_gpt4o", "--task", "psr"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "$OPENAI_API_KEY is not set" in err[0], err
    rc = cli.main(
        [
            "grid",
            "--model",
            "autorater_openai",
            "--model_args",
            "base_url=x,model=y,concurency=3",
            "--task",
            "psr",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "unknown model argument(s) concurency" in err[0], err
    args = [
        "grid",
        "--model",
        "autorater_openai",
        "--model_args",
        f"base_url=x,model=y,cache_dir={tmp_path}",
        "--task",
        "psr",
    ]
    rc = cli.main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "DataError" in err[0] and "psr" in err[0], err
    rc = cli.main(["--debug", *args])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback (most recent call last)" in err
