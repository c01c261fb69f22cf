"""``lmms-eval-autorater table``: Table 2 from runs of the real lmms-eval CLI against the local server.

Two rows (GPT-4o and GPT-4o + Auto: ``autorater_gpt4o`` pointed at the local server with ``base_url=``)
on two tasks (imagereward_pair: pairs clustered by prompt; aigiqa: pointwise), made once per module.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.clitools import LMMS_EVAL, TruthResponder, sha_of_ref, sha_of_url
from tests.openai_server import OpenAIServer, image_urls

TASKS = ("imagereward_pair", "aigiqa")
REPO_SRC = Path(__file__).resolve().parents[1] / "src" / "lmms_eval_autorater"


class AutoResponder:
    """The Auto run's judge: picks no specialist in the selection pass, then answers every pair right and
    moves the scores, so that its paired difference from the base is not zero."""

    def __init__(self, truth: TruthResponder, docs: dict[str, list[dict]]):
        self.truth = truth
        self.labels = {
            (sha_of_ref(d["image_1"]), sha_of_ref(d["image_2"])): d["label"] for d in docs["imagereward_pair"]
        }
        self.labels.update({(b, a): 3 - lab for (a, b), lab in list(self.labels.items())})

    def __call__(self, request_json: dict) -> str:
        if "consult specialist models" in json.dumps(request_json):
            return json.dumps({"analysis": "no specialist needed", "tools": []})
        answer = json.loads(self.truth(request_json))
        shas = [sha_of_url(u) for u in image_urls(request_json)]
        if "preferred" in answer:
            answer["preferred"] = self.labels[(shas[-2], shas[-1])]
        else:
            answer["score"] = min(10, max(1, answer["score"] + (3 if shas[-1][0] < "8" else -1)))
        return json.dumps(answer)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data):
    """Both runs, made by one ``lmms-eval --config`` process (one start-up for two runs, each with its own
    server, cache and output folder); the folder holding them."""
    root, docs = data
    tmp = tmp_path_factory.mktemp("table_runs")
    truth = TruthResponder({t: docs[t] for t in TASKS})
    with OpenAIServer(truth) as base_server, OpenAIServer(AutoResponder(truth, docs)) as auto_server:
        configs = [
            {
                "model": "autorater_gpt4o",
                "model_args": f"base_url={url},tools={tools},concurrency=4,cache_dir={tmp / name / 'cache'}",
                "tasks": ",".join(TASKS),
                "output_path": str(tmp / name),
                "log_samples": True,
            }
            for name, url, tools in (("base", base_server.url, "none"), ("auto", auto_server.url, "auto"))
        ]
        (tmp / "runs.yaml").write_text(yaml.safe_dump(configs))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "GEMINI"))}
        env.update(AUTORATER_DATA_DIR=str(root), OPENAI_API_KEY="sk-test")
        proc = subprocess.run(
            [LMMS_EVAL, "--config", str(tmp / "runs.yaml")],
            cwd=tmp, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    for name in ("base", "auto"):
        assert list((tmp / name).rglob("*_results.json")), (proc.stdout + proc.stderr)[-3000:]
    return tmp, docs


def _results(folder: Path) -> dict:
    return json.loads(next(folder.rglob("*_results.json")).read_text())


def _records(folder: Path, task: str) -> list[dict]:
    lines = next(folder.rglob(f"*_samples_{task}.jsonl")).read_text().splitlines()
    key = "accuracy" if task != "aigiqa" else "pearson"
    return [json.loads(line)[key] for line in lines]


@pytest.mark.slow
def test_table_numbers_equal_results_in_every_format(runs, tmp_path):
    from lmms_eval_autorater.cli import main
    from lmms_eval_autorater.metrics.paired import paired_records
    from lmms_eval_autorater.reports import paper

    folder, _ = runs
    out = tmp_path / "t"
    assert main(["table", "--results", str(folder / "base"), str(folder / "auto"), "--output", str(out)]) == 0
    for name in ("table2.md", "table2.tex", "table2.csv", "table2.json", *(f"table2_{t}.png" for t in TASKS)):
        assert (out / name).stat().st_size > 0, name
    data = json.loads((out / "table2.json").read_text())
    rows = {r["row"]: r for r in data["rows"]}
    assert set(rows) == {"GPT-4o", "GPT-4o + Auto"}
    csv_rows = {(r["row"], r["task"]): r for r in csv.DictReader((out / "table2.csv").open())}
    md = (out / "table2.md").read_text()
    tex = (out / "table2.tex").read_text()
    for row, sub in (("GPT-4o", "base"), ("GPT-4o + Auto", "auto")):
        res = _results(folder / sub)["results"]
        for task in TASKS:
            m = "accuracy" if task == "imagereward_pair" else "pearson"
            scale, digits = (100.0, 2) if task == "imagereward_pair" else (1.0, 4)
            cell = rows[row]["cells"][task]
            for key, name in (("value", m), ("ci_low", f"{m}_ci_low"), ("ci_high", f"{m}_ci_high")):
                assert cell[key] == res[task][f"{name},none"]  # exactly the results file's number
                assert float(csv_rows[(row, task)][key]) == res[task][f"{name},none"] * scale
            for count in ("n_scored", "parse_failures", "api_failures", "input_errors"):
                assert cell["counts"][count] == res[task][f"{count},none"]
            shown = f"{res[task][f'{m},none'] * scale:.{digits}f}"
            assert shown in md and shown in tex
            published = paper.table2_row(row)[task]
            assert cell["paper"] == published
            assert cell["diff_from_paper"] == pytest.approx(res[task][f"{m},none"] * scale - published)
            assert f"paper {published:.{digits}f}" in md
            # these are small runs: each cell is marked with its doc count of the benchmark's full size
            n, full = (
                _results(folder / sub)["n-samples"][task]["effective"],
                {"imagereward_pair": 6399, "aigiqa": 4000}[task],
            )
            assert (cell["n_docs"], cell["full_docs"], cell["partial"]) == (n, full, True)
            assert f"PARTIAL {n}/{full} docs" in md and f"PARTIAL {n}/{full} docs" in tex
    # the paired difference of + Auto from its base is metrics.paired on the same docs' records
    for task in TASKS:
        paradigm = "pairwise" if task == "imagereward_pair" else "pointwise"
        expected = paired_records(_records(folder / "auto", task), _records(folder / "base", task), paradigm)
        got = rows["GPT-4o + Auto"]["cells"][task]["vs_base"]
        assert (got["diff"], got["ci_low"], got["ci_high"]) == (
            expected.diff,
            expected.ci_low,
            expected.ci_high,
        )
        assert got["diff"] != 0
        assert float(csv_rows[("GPT-4o + Auto", task)]["vs_base"]) == pytest.approx(
            expected.diff * (100 if paradigm == "pairwise" else 1)
        )
        assert rows["GPT-4o"]["cells"][task]["vs_base"] is None  # a base row has no base
    # best per column is bold in md and tex
    for task in TASKS:
        marks = {r: rows[r]["cells"][task]["mark"] for r in rows}
        assert sorted(marks.values()) == ["best", "second"] or list(marks.values()).count("best") == 2
    assert "**" in md and "\\textbf{" in tex


@pytest.mark.slow
def test_mixed_conventions_refused(runs, tmp_path):
    from lmms_eval_autorater.reports.table import TableError, build_from_folders

    folder, _ = runs
    doctored = tmp_path / "auto"
    shutil.copytree(folder / "auto", doctored, ignore=shutil.ignore_patterns("cache"))
    res_file = next(doctored.rglob("*_results.json"))
    res = json.loads(res_file.read_text())
    res["configs"]["aigiqa"]["metadata"]["conventions"] += " Ties broken at random."
    res_file.write_text(json.dumps(res))
    with pytest.raises(TableError, match=r"aigiqa: runs disagree on conventions .*base.*auto"):
        build_from_folders([str(folder / "base"), str(doctored)], str(tmp_path / "t"))
    # a different doc set (another data hash) is refused too, naming the field
    res = json.loads(res_file.read_text())
    res["configs"]["aigiqa"]["metadata"]["conventions"] = _results(folder / "base")["configs"]["aigiqa"][
        "metadata"
    ]["conventions"]
    res["task_hashes"]["imagereward_pair"] = "0" * 64
    res_file.write_text(json.dumps(res))
    with pytest.raises(TableError, match="imagereward_pair: runs disagree on task_hash"):
        build_from_folders([str(folder / "base"), str(doctored)], str(tmp_path / "t"))


@pytest.mark.slow
def test_scoring_modes_and_sample_counts_never_share_a_column(runs, tmp_path):
    """A run of expected scores (or of N-sample means) beside one of integer verdicts: refused, naming both."""
    from lmms_eval_autorater.reports.table import TableError, build_from_folders

    folder, _ = runs
    for extra, field in ((",scoring=expected", "scoring"), (",samples=3,temperature=0.7", "samples")):
        doctored = tmp_path / f"expected_{field}"
        shutil.copytree(folder / "auto", doctored, ignore=shutil.ignore_patterns("cache"))
        res_file = next(doctored.rglob("*_results.json"))
        res = json.loads(res_file.read_text())
        res["config"]["model_args"] += extra
        res_file.write_text(json.dumps(res))
        with pytest.raises(
            TableError, match=rf"runs disagree on {field} .*refusing to mix them in one column"
        ):
            build_from_folders(
                [str(folder / "base"), str(doctored)], str(tmp_path / "t"), rows=[f"GPT-4o + Auto={doctored}"]
            )


@pytest.mark.slow
def test_two_runs_of_one_cell_refused_and_row_override(runs, tmp_path):
    from lmms_eval_autorater.reports.table import TableError, build_from_folders

    folder, _ = runs
    again = tmp_path / "again"
    shutil.copytree(folder / "base", again, ignore=shutil.ignore_patterns("cache"))
    with pytest.raises(TableError, match="two runs of row 'GPT-4o' on"):
        build_from_folders([str(folder / "base"), str(again)], str(tmp_path / "t"))
    # --row puts the copy in another row (here + All): its paired difference from GPT-4o is exactly 0
    data = build_from_folders(
        [str(folder / "base"), str(again)], str(tmp_path / "t"), rows=[f"GPT-4o + All={again}"]
    )
    cell = next(r for r in data["rows"] if r["row"] == "GPT-4o + All")["cells"]["imagereward_pair"]
    assert cell["vs_base"]["diff"] == 0.0 and cell["vs_base"]["within_noise"]
    with pytest.raises(TableError, match="no Table 2 row named 'GPT-5'"):
        build_from_folders([str(folder / "base")], str(tmp_path / "t"), rows=[f"GPT-5={again}"])


def _run(lmms_model: str, **args: str):
    from lmms_eval_autorater.reports.runs import Run

    return Run(path=Path("/x_results.json"), model=lmms_model, model_args=args, date="d", versions={})


def test_recognise_rows_from_model_and_args(tmp_path):
    from lmms_eval_autorater.reports.table import recognise, row_spec

    assert recognise(_run("autorater_gpt4o")).row == "GPT-4o"
    assert recognise(_run("autorater_gpt4o", tools="none")).row == "GPT-4o"
    assert recognise(_run("autorater_gpt4o", tools="auto")).row == "GPT-4o + Auto"
    assert recognise(_run("autorater_gpt4o", tools="all")).row == "GPT-4o + All"
    grid = recognise(_run("autorater_gpt4o", tools="gd+qs+df"))
    assert (grid.row, grid.subset) == ("GPT-4o + Grid", "GD+QS+DF")
    assert recognise(_run("autorater_gemini", tools="all")).row == "Gemini-2.5-Pro + All"
    assert recognise(_run("hpsv3")).row == "HPSv3" and recognise(_run("qsit")).row == "Q-SiT"
    assert recognise(_run("imagereward")).row == "ImageReward"
    assert recognise(_run("autorater_internvl")).row == "InternVL3-8B"
    assert "gpt-4o-mini" in recognise(_run("autorater_gpt4o", model="gpt-4o-mini")).reason
    assert "swap" in recognise(_run("autorater_gpt4o", swap="true")).reason
    assert "scoring=expected" in recognise(_run("autorater_gpt4o", scoring="expected")).reason
    assert "samples=3" in recognise(_run("autorater_gpt4o", samples="3", temperature="0.7")).reason
    assert recognise(_run("autorater_openai", model="x")).row is None
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    assert "autorater_training.json" in recognise(_run("autorater_internvl", pretrained=str(ckpt))).reason
    (ckpt / "autorater_training.json").write_text(json.dumps({"tools": "with"}))
    assert recognise(_run("autorater_internvl", pretrained=str(ckpt), tools="all")).row == (
        "InternVL3-8B + CoT finetuning w/ all tools"
    )
    assert "Table 3" in recognise(_run("autorater_internvl", pretrained=str(ckpt))).reason
    (ckpt / "autorater_training.json").write_text(json.dumps({"tools": "without"}))
    assert recognise(_run("autorater_internvl", pretrained=str(ckpt))).row == (
        "InternVL3-8B + CoT finetuning w/o tools"
    )
    # row_spec inverts recognise on every paper row
    from lmms_eval_autorater.reports import paper

    for prow in paper.table2():
        model, kind = row_spec(prow["row"])
        if kind in (None, "none", "auto", "all"):
            args = {} if kind in (None, "none") else {"tools": kind}
            assert recognise(_run(model, **args)).row == prow["row"]


def test_recognise_the_papers_variants(tmp_path):
    """The registered variants name their row; a ``_grid`` run's subset is per task (without samples: the
    paper's bracketed subset, or the grid file's)."""
    import yaml

    from lmms_eval_autorater.reports.table import recognise

    assert recognise(_run("autorater_gpt4o_all")).row == "GPT-4o + All"
    assert recognise(_run("autorater_gpt4o_auto")).row == "GPT-4o + Auto"
    assert recognise(_run("autorater_gemini_all")).row == "Gemini-2.5-Pro + All"
    assert recognise(_run("autorater_gemini_auto")).row == "Gemini-2.5-Pro + Auto"
    assert "gpt-4o-mini" in recognise(_run("autorater_gpt4o_all", model="gpt-4o-mini")).reason
    assert "Table 3" in recognise(_run("autorater_internvl_all")).reason  # not fine-tuned, with tools
    rows = yaml.safe_load((REPO_SRC / "catalog" / "paper.yaml").read_text())["table2"]
    for model, row in (
        ("autorater_gpt4o_grid", "GPT-4o + Grid"),
        ("autorater_gemini_grid", "Gemini-2.5-Pro + Grid"),
    ):
        run = _run(model)
        rec = recognise(run)
        assert rec.row == row
        grid = next(r["grid"] for r in rows if r["row"] == row)
        for task, codes in grid.items():  # the same set of codes, in the registry's order
            assert sorted(rec.subset_of(run, task).split("+")) == sorted(codes)
    grid_file = tmp_path / "psr.json"
    grid_file.write_text(json.dumps({"task": "psr", "best": "DF+DS", "rows": []}))
    run = _run("autorater_gpt4o_grid", grid_result=str(grid_file))
    assert recognise(run).subset_of(run, "psr") == "DF+DS"
    assert recognise(run).subset_of(run, "aigiqa") is None  # the file names no subset for it
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    # no training file: the fine-tuned variant's name says how it was trained
    assert (
        recognise(_run("autorater_internvl_ft", pretrained=str(ckpt))).row
        == "InternVL3-8B + CoT finetuning w/o tools"
    )
    assert recognise(_run("autorater_internvl_ft_all", pretrained=str(ckpt))).row == (
        "InternVL3-8B + CoT finetuning w/ all tools"
    )
    (ckpt / "autorater_training.json").write_text(json.dumps({"tools": "without"}))  # the file wins
    assert "Table 3" in recognise(_run("autorater_internvl_ft_all", pretrained=str(ckpt))).reason


@pytest.mark.slow
def test_runs_reader_recovers_docs_and_verdicts(runs, tmp_path, capsys):
    from lmms_eval_autorater.cli import main
    from lmms_eval_autorater.reports.runs import load_runs

    folder, docs = runs
    [run] = load_runs([folder / "auto"])
    assert run.model == "autorater_gpt4o" and run.model_args["tools"] == "auto"
    assert run.versions["lmms_eval_autorater"] and run.versions["parser"]
    assert set(run.tasks) == set(TASKS)
    for task in TASKS:
        tr = run.tasks[task]
        assert tr.n_docs == len(docs[task]) and "95% CI" in tr.conventions
        records = {r["doc_id"]: r for r in tr.records()}
        assert len(records) == len(docs[task])
        for d in docs[task]:
            r = records[d["doc_id"]]
            assert (r["request"], r["image_1"], r["image_2"], r["group"]) == (
                d["request"], d["image_1"], d["image_2"], d["group"]
            )  # fmt: skip
            assert r["status"] == "ok" and r["analysis"] and r["raw"]
            assert r["label"] == d["label"] if task == "imagereward_pair" else r["target"] == d["target"]
    # a folder without results is an error naming it
    assert main(["table", "--results", str(tmp_path), "--output", str(tmp_path / "t")]) == 1
    assert f"{tmp_path}: no lmms-eval results file" in capsys.readouterr().err


def test_partial_run_is_marked_and_not_set_against_the_paper(tmp_path, data):
    """A 6-doc imagereward_pair run of the GPT-4o row: every format shows ``6/6399`` and none sets its value
    against the paper's 57.66 as a like-for-like difference; the same file claiming the full size is not
    marked and shows the difference."""
    from lmms_eval_autorater.judges.types import Verdict
    from lmms_eval_autorater.reports.table import build_from_folders
    from tests.runfiles import write_run

    _, docs = data
    six = docs["imagereward_pair"][:6]
    assert len(six) == 6

    def verdict(task, i, doc):  # right on docs 0, 2, 4; wrong on 1, 3, 5: accuracy 50%
        pref = doc["label"] if i % 2 == 0 else 3 - doc["label"]
        return Verdict("ok", preferred=pref, raw="{}", meta={"model": "gpt-4o-2024-08-06"})

    res_file = write_run(
        tmp_path / "run", {"imagereward_pair": six}, verdict, model="autorater_gpt4o", model_args="tools=none"
    )
    out = tmp_path / "t"
    data_json = build_from_folders([str(tmp_path / "run")], str(out))
    cell = data_json["rows"][0]["cells"]["imagereward_pair"]
    assert data_json["rows"][0]["row"] == "GPT-4o"
    assert (cell["n_docs"], cell["full_docs"], cell["partial"]) == (6, 6399, True)
    assert cell["value"] == 0.5 and cell["paper"] == 57.66
    md = (out / "table2.md").read_text()
    assert "**PARTIAL 6/6399 docs**" in md
    assert "paper 57.66 (not comparable: 6/6399 docs)" in md
    assert "(-7.66)" not in md and "-7.66" not in md  # 50.00 - 57.66 is not shown as a difference
    tex = (out / "table2.tex").read_text()
    assert "\\textbf{PARTIAL 6/6399 docs}" in tex and "-7.66" not in tex
    [row] = list(csv.DictReader((out / "table2.csv").open()))
    assert (row["n_docs"], row["full_docs"], row["partial"]) == ("6", "6399", "True")
    assert (out / "table2_imagereward_pair.png").stat().st_size > 0

    # the same run claiming the benchmark's full size: no mark, the difference is shown
    res = json.loads(res_file.read_text())
    res["n-samples"]["imagereward_pair"]["effective"] = 6399
    res_file.write_text(json.dumps(res))
    full = build_from_folders([str(tmp_path / "run")], str(tmp_path / "t2"))["rows"][0]["cells"]
    assert full["imagereward_pair"]["partial"] is False
    md = (tmp_path / "t2" / "table2.md").read_text()
    assert "PARTIAL" not in md.split("| row |", 1)[1] and "paper 57.66 (-7.66)" in md
