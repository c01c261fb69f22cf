"""``ablation`` (Table 3): six setups on the same task docs with a tiny InternVL, the paper's numbers beside ours."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("torch")

from tests import trainfixtures as tf  # noqa: E402


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """base, and two copies standing for the checkpoints trained with and without tools."""
    base = tf.tiny_internvl(tmp_path_factory)
    root = tmp_path_factory.mktemp("ablation-ckpts")
    out = {"base": str(base)}
    for role, tools in (("ft_tools", "with"), ("ft_notools", "without")):
        folder = root / role
        shutil.copytree(base, folder)
        (folder / "autorater_training.json").write_text(json.dumps({"tools": tools}))
        out[role] = str(folder)
    return out


def test_six_setups_with_the_papers_numbers(tmp_path, data, checkpoints):
    from lmms_eval_autorater.experiments.ablation import run_ablation, write
    from lmms_eval_autorater.reports.paper import table3
    from lmms_eval_autorater.specialists.cache import AssessmentCache, SpecialistPool
    from lmms_eval_autorater.specialists.registry import applicable
    from tests import fakes

    _, docs = data
    docs = docs["aigiqa"]
    pool = SpecialistPool(cache=AssessmentCache(tmp_path / "a.sqlite"), factory=fakes.fake_factory)
    fakes.CALLS.clear()
    args = {"max_new_tokens": 4, "max_patches": 1, "cache_dir": str(tmp_path / "cache")}
    with tf.one_thread():
        result = run_ablation(
            "aigiqa", checkpoints, model_args=args, docs=docs, pool=pool, n_resamples=50, progress=False
        )
    paper = table3()
    assert [r.setup for r in result.rows] == [str(s["setup"]) for s in paper]
    assert [r.paper for r in result.rows] == [s["pearson"] for s in paper]
    codes = applicable("generation")
    for r, s in zip(result.rows, paper):
        assert (r.finetuned, r.trained_with_tools, r.inference_with_tools) == (
            s["finetuned"],
            s["trained_with_tools"],
            s["inference_with_tools"],
        )
        role = "base" if not s["finetuned"] else "ft_tools" if s["trained_with_tools"] else "ft_notools"
        assert r.model == checkpoints[role]
        assert r.tools == (codes if s["inference_with_tools"] else [])
        # every doc accounted for: a random model mostly fails to parse, which is counted, never guessed
        assert r.n_scored + r.parse_failures + r.input_errors + r.api_failures == len(docs)
        assert r.api_failures == 0 and r.input_errors == 0
        assert (r.vs_base is None) == (r.setup == "5")
    # three setups use the specialists; each ran once per image, before any judge
    assert dict(fakes.CALLS) == {c: len(docs) for c in codes} == result.specialist_invocations
    md, js = write(result, tmp_path / "out")
    text = md.read_text()
    assert text.count("\n| ") == 7 and "| full | yes | yes | yes |" in text and "0.8533" in text
    saved = json.loads(js.read_text())
    assert saved["task"] == "aigiqa" and len(saved["rows"]) == 6 and saved["n_docs"] == len(docs)
    assert "bootstrap" in saved["conventions"]["ci"] and saved["conventions"]["inference_tools"] == "all"


def test_cli_refuses_swapped_checkpoints_and_tools_in_model_args(tmp_path, checkpoints, capsys):
    from lmms_eval_autorater.cli import main

    base = ["ablation", "--base", checkpoints["base"], "--output", str(tmp_path / "o")]
    swapped = ["--ft_tools", checkpoints["ft_notools"], "--ft_notools", checkpoints["ft_tools"]]
    assert main([*base, *swapped]) == 1
    err = capsys.readouterr().err
    assert f"--ft_tools {checkpoints['ft_notools']}: trained --tools without" in err
    right = ["--ft_tools", checkpoints["ft_tools"], "--ft_notools", checkpoints["ft_notools"]]
    assert main([*base, *right, "--model_args", "tools=all"]) == 1
    assert "must not set tools=" in capsys.readouterr().err
    assert main([*base, *right, "--tools", "none"]) == 1
    assert "needs specialists" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
