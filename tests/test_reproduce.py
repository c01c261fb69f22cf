"""``lmms-eval-autorater reproduce``: the plan of Table 2, its checks, the cost gate and the resume state."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmms_eval_autorater.cli import main
from lmms_eval_autorater.reports import paper
from lmms_eval_autorater.reports.reproduce import Job, execute, load_state, plan_jobs


@pytest.fixture
def no_keys_offline(monkeypatch, tmp_path, data):
    """No API key, an empty offline Hugging Face cache, the small datasets."""
    import huggingface_hub.constants

    root, _ = data
    for key in ("OPENAI_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AUTORATER_DATA_DIR", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("AUTORATER_CACHE_DIR", str(tmp_path / "cache"))
    return root


def test_dry_run_without_keys_skips_every_api_row(no_keys_offline, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["reproduce", "--output", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    blocks = {}
    for line in text.splitlines():
        if line.startswith("["):
            current = line
            blocks[current] = []
        elif line.startswith("         "):
            blocks[current].append(line.strip())
    rows = {line.split("] ", 1)[1].split(" | ")[0] for line in blocks}
    assert rows == {r["row"] for r in paper.table2()}  # every row of the paper is planned
    for head, lines in blocks.items():
        if "autorater_gpt4o" in head or "autorater_gemini" in head:
            key = "OPENAI_API_KEY" if "gpt4o" in head else "GEMINI_API_KEY"
            assert head.startswith("[SKIP]") and f"skipped: needs ${key} (not set)" in lines, head
            # the cost is still estimated (nothing is cached in an empty cache)
            est = next(x for x in lines if x.startswith("judge calls / cost:"))
            assert "calls (0 cached), $" in est, est
        else:  # local weights are not in the (empty, offline) cache: skipped, naming the weights
            assert "judge calls / cost: local model: no API call, no API cost" in lines, head
            assert head.startswith("[SKIP]") and any("not in the Hugging Face cache" in x or "checkpoint" in x
                                                     for x in lines), head  # fmt: skip
    # 25 jobs: the paper's rows and the five reward models (editscore the fifth, issue 20)
    assert "reproduce: 0 of 25 jobs can run; 25 skipped" in text
    assert not (out / "runs").exists()  # a dry run starts nothing


def test_plan_follows_readme_and_grid_subsets():
    jobs = {(j.row, tuple(j.tasks)): j for j in plan_jobs()}
    grid = paper.table2_row("GPT-4o + Grid")["grid"]
    for task, subset in grid.items():
        assert jobs[("GPT-4o + Grid", (task,))].model_args == "tools=" + "+".join(subset)
    allt = tuple(paper.paper()["columns"])
    assert jobs[("GPT-4o + All", allt)].model_args == "tools=all"
    assert jobs[("GPT-4o", allt)].model_args == "" and jobs[("GPT-4o", allt)].model == "autorater_gpt4o"
    assert jobs[("HPSv3", allt)].command(Path("o"))[1:] == [
        "--model", "hpsv3", "--model_args", "checkpoint=MizzenAI/HPSv3,base_model=Qwen/Qwen2-VL-7B-Instruct",
        "--tasks", ",".join(allt), "--batch_size", "4", "--output_path", "o", "--log_samples",
    ]  # fmt: skip
    ft = plan_jobs(["InternVL3-8B + CoT finetuning w/ all tools"], checkpoints={"tools": "/ck"})[0]
    assert ft.model_args == "pretrained=/ck,tools=all" and not ft.blockers


def test_cost_above_threshold_needs_yes(no_keys_offline, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    out = tmp_path / "rep"
    argv = [
        "reproduce",
        "--output",
        str(out),
        "--rows",
        "GPT-4o",
        "--tasks",
        "imagereward_pair",
        "--max_usd",
        "0",
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "> --max_usd 0.00" in err and "rerun with --yes" in err
    assert not (out / "runs").exists()


def _fake_lmms_eval(calls: list, write: bool = True, metric: str = "accuracy"):
    """A stand-in for the lmms-eval subprocess that writes what lmms-eval writes (or nothing, as a failed
    run that still exits 0)."""

    def runner(cmd: list[str], log: Path) -> int:
        calls.append(cmd)
        out = Path(cmd[cmd.index("--output_path") + 1])
        tasks = cmd[cmd.index("--tasks") + 1].split(",")
        log.write_text("ok\n")
        if write:
            results = {"results": {t: {f"{metric},none": 0.5} for t in tasks}}
            (out / "judge").mkdir(parents=True, exist_ok=True)
            (out / "judge" / f"2026010{len(calls)}_000000_results.json").write_text(json.dumps(results))
        return 0

    return runner


def test_resume_skips_finished_jobs_and_failures_are_named(tmp_path):
    jobs = [
        Job(id="a", row="GPT-4o", model="autorater_gpt4o", model_args="", tasks=["imagereward_pair"]),
        Job(id="b", row="GPT-4o + All", model="autorater_gpt4o", model_args="tools=all", tasks=["psr"]),
        Job(id="c", row="GPT-4o + Auto", model="autorater_gpt4o", model_args="tools=auto", tasks=["psr"],
            blockers=["needs $OPENAI_API_KEY (not set)"]),
    ]  # fmt: skip
    calls: list = []
    state = execute(jobs, tmp_path, runner=_fake_lmms_eval(calls))
    assert [c[c.index("--output_path") + 1] for c in calls] == [str(tmp_path / "runs" / j) for j in "ab"]
    assert state["jobs"]["a"]["status"] == "done" and state["jobs"]["c"]["status"] == "skipped"
    # an interrupted or repeated reproduce: finished jobs with verified results are not rerun
    calls.clear()
    execute(jobs, tmp_path, runner=_fake_lmms_eval(calls))
    assert calls == []
    # a job whose results file is gone, or whose arguments changed, runs again
    Path(load_state(tmp_path)["jobs"]["a"]["results_file"]).unlink()
    jobs[1].limit = 5
    execute(jobs, tmp_path, runner=_fake_lmms_eval(calls))
    assert [c[c.index("--output_path") + 1] for c in calls] == [str(tmp_path / "runs" / j) for j in "ab"]
    # lmms-eval exits 0 when the evaluation failed: no results file, or one without the task's metric
    calls.clear()
    jobs[1].limit = 6
    state = execute(jobs, tmp_path, runner=_fake_lmms_eval(calls, write=False))
    assert state["jobs"]["b"]["status"] == "failed" and "no results file" in state["jobs"]["b"]["reason"]
    jobs[1].limit = 7
    state = execute(jobs, tmp_path, runner=_fake_lmms_eval(calls, metric="pearson"))
    assert "task psr has no accuracy" in state["jobs"]["b"]["reason"]
    assert state["jobs"]["a"]["status"] == "done"


def test_a_column_without_data_is_skipped_and_the_row_runs_on_the_rest(
    no_keys_offline, monkeypatch, tmp_path
):
    """No PSR copy: the GPT-4o row still runs on the three public benchmarks, PSR listed as skipped."""
    import shutil

    from lmms_eval_autorater.reports.reproduce import check_jobs

    root = tmp_path / "data"
    shutil.copytree(
        no_keys_offline, root, ignore=shutil.ignore_patterns("psr")
    )  # the shared copy stays whole
    monkeypatch.setenv("AUTORATER_DATA_DIR", str(root))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    [job] = check_jobs(plan_jobs(["GPT-4o"]), estimate=False)
    assert not job.blockers
    assert job.tasks == ["imagereward_pair", "imagereward_point", "aigiqa"]
    assert list(job.skipped_tasks) == ["psr"] and "not public" in job.skipped_tasks["psr"]
    assert (
        job.command(Path("o"))[job.command(Path("o")).index("--tasks") + 1]
        == "imagereward_pair,imagereward_point,aigiqa"
    )


def test_model_args_override_a_model_then_a_row(tmp_path, capsys):
    """``--model_args MODEL=...`` merges into every job of that model, ``ROW=...`` into one row's; a key of
    both takes the override's value; a key that is neither a row nor a planned model is refused."""
    from lmms_eval_autorater.reports.reproduce import parse_overrides

    over = parse_overrides(
        [
            "autorater_gpt4o=base_url=http://127.0.0.1:1/v1,concurrency=2",
            "GPT-4o + All=concurrency=8",
            "hpsv3=checkpoint=/ck/HPSv3.safetensors,device=cpu",
        ]
    )
    jobs = {j.row: j for j in plan_jobs(["GPT-4o", "GPT-4o + All", "HPSv3"], ["psr"], overrides=over)}
    assert jobs["GPT-4o"].model_args == "base_url=http://127.0.0.1:1/v1,concurrency=2"
    assert jobs["GPT-4o + All"].model_args == "tools=all,base_url=http://127.0.0.1:1/v1,concurrency=8"
    assert jobs["HPSv3"].model_args == (
        "checkpoint=/ck/HPSv3.safetensors,base_model=Qwen/Qwen2-VL-7B-Instruct,device=cpu"
    )
    assert main(["reproduce", "--output", str(tmp_path), "--model_args", "GPT-5=model=x", "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "'GPT-5' is neither a Table 2 row" in err and len(err.strip().splitlines()) == 1
    assert main(["reproduce", "--output", str(tmp_path), "--model_args", "hpsv3", "--dry-run"]) == 1
    assert "expected ROW=K=V,... or MODEL=K=V,..." in capsys.readouterr().err
