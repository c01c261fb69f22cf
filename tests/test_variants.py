"""The model catalog and the paper's judge variants as registered lmms-eval models.

``autorater_<judge>_all`` / ``_auto`` fix ``tools=``; ``_grid`` judges each task with its own subset (the
paper's bracketed one from paper.yaml, or a ``grid --output`` file's); the fine-tuned InternVL variants need
``pretrained=``. Expected values are read from the YAML and the grid files directly, not through the code.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lmms_eval_autorater.judges.args import ModelArgError
from lmms_eval_autorater.judges.factory import judge_config

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "src" / "lmms_eval_autorater"
PAPER_YAML = PKG / "catalog" / "paper.yaml"
GENERATION_CODES = ("GD", "AE", "PA", "QS")  # the registry order of the generation specialists


def _paper_grid(row: str) -> dict[str, list[str]]:
    rows = yaml.safe_load(PAPER_YAML.read_text())["table2"]
    return next(r["grid"] for r in rows if r["row"] == row)


def _grid_file(path: Path, task: str, best: str | None, held_out: str | None = None) -> Path:
    """A file in the format ``lmms-eval-autorater grid --output`` writes (the keys the variant reads)."""
    data = {"task": task, "metric": "accuracy", "best": best, "rows": [{"subset": best or "GD"}]}
    if held_out is not None:
        data["held_out"] = {
            "subset": held_out,
            "label": "selected on the selection part, reported on the rest",
        }
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    "name, expected",
    [
        ("autorater_gpt4o_all", "all"),
        ("autorater_gpt4o_auto", "auto"),
        ("autorater_gemini_all", "all"),
        ("autorater_gemini_auto", "auto"),
        ("autorater_internvl_all", "all"),
        ("autorater_internvl_auto", "auto"),
    ],
)
def test_variants_fix_their_tools_through_the_registry_and_factory(name, expected):
    from lmms_eval_autorater.registry import MODELS
    from lmms_eval_autorater.specialists.base import load_class

    cls = load_class(MODELS[name])
    assert cls.NAME == name
    cfg = judge_config(name)
    assert cfg.tools == expected and cfg.variant == expected
    base = judge_config(name.rsplit("_", 1)[0], {"tools": expected})
    assert cfg.backend == base.backend and cfg.kind == base.kind  # the same judge as the base with tools=
    with pytest.raises(
        ModelArgError, match=rf"{name}: model argument tools=GD\+QS conflicts with the variant"
    ):
        judge_config(name, {"tools": "GD+QS"})


def test_grid_variant_defaults_to_the_papers_subsets():
    for name, row in (
        ("autorater_gpt4o_grid", "GPT-4o + Grid"),
        ("autorater_gemini_grid", "Gemini-2.5-Pro + Grid"),
    ):
        cfg = judge_config(name)
        paper = _paper_grid(row)
        assert set(cfg.task_tools) == set(paper) == {"psr", "imagereward_pair", "imagereward_point", "aigiqa"}
        for task, codes in paper.items():
            assert sorted(cfg.task_tools[task]) == sorted(codes)
            assert "paper" in cfg.subset_source[task]
        assert cfg.tools == []  # no subset until a task is known
        with pytest.raises(ModelArgError, match="conflicts with the variant, which fixes each task's own"):
            judge_config(name, {"tools": "all"})
    assert judge_config("autorater_gpt4o_grid").task_tools["psr"] == ["GD", "QS", "DF"]  # registry order
    from lmms_eval_autorater.judges.factory import build_judge

    with pytest.raises(
        ModelArgError, match="only its lmms-eval model.*use autorater_gpt4o with tools=SUBSET"
    ):
        build_judge(
            "autorater_gpt4o_grid"
        )  # elsewhere (the Python API, commands) it would ignore the subsets


def test_grid_variant_reads_a_grid_result_file_or_folder(tmp_path):
    one = _grid_file(tmp_path / "psr.json", "psr", "GD+DS")
    cfg = judge_config("autorater_gpt4o_grid", {"grid_result": str(one)})
    assert cfg.task_tools == {"psr": ["GD", "DS"]} and cfg.subset_source == {"psr": str(one)}
    folder = tmp_path / "grids"
    folder.mkdir()
    _grid_file(folder / "a.json", "aigiqa", "AE+QS", held_out="QS")  # held out: the honest choice
    _grid_file(folder / "b.json", "imagereward_pair", "PA")
    cfg = judge_config("autorater_gemini_grid", {"grid_result": str(folder)})
    assert cfg.task_tools == {"aigiqa": ["QS"], "imagereward_pair": ["PA"]}
    _grid_file(folder / "c.json", "aigiqa", "GD")
    with pytest.raises(ModelArgError, match="two grid results for task aigiqa"):
        judge_config("autorater_gemini_grid", {"grid_result": str(folder)})
    with pytest.raises(ModelArgError, match="no best subset"):
        judge_config(
            "autorater_gpt4o_grid", {"grid_result": str(_grid_file(tmp_path / "x.json", "psr", None))}
        )
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ModelArgError, match="is not the output of lmms-eval-autorater grid"):
        judge_config("autorater_gpt4o_grid", {"grid_result": str(tmp_path / "bad.json")})
    with pytest.raises(ModelArgError, match="no such file"):
        judge_config("autorater_gpt4o_grid", {"grid_result": str(tmp_path / "missing.json")})
    with pytest.raises(ModelArgError, match="unknown model argument\\(s\\) grid_result"):
        judge_config("autorater_gpt4o", {"grid_result": str(one)})  # only the grid variants take it


def test_internvl_grid_and_finetuned_variants_say_what_they_need(tmp_path):
    with pytest.raises(ModelArgError, match="no \\+ Grid row for this judge.*grid_result=PATH"):
        judge_config("autorater_internvl_grid")
    cfg = judge_config(
        "autorater_internvl_grid", {"grid_result": str(_grid_file(tmp_path / "g.json", "psr", "DF"))}
    )
    assert cfg.task_tools == {"psr": ["DF"]} and cfg.kind == "local"
    with pytest.raises(
        ModelArgError, match="'pretrained' is required, e.g. pretrained=ckpt/internvl3-8b-ft-notools"
    ):
        judge_config("autorater_internvl_ft")
    ft = judge_config("autorater_internvl_ft", {"pretrained": str(tmp_path)})
    assert ft.tools == [] and ft.backend["pretrained"] == str(tmp_path)
    ft_all = judge_config("autorater_internvl_ft_all", {"pretrained": str(tmp_path)})
    assert ft_all.tools == "all"
    with pytest.raises(ModelArgError, match="conflicts with the variant, which fixes tools=none"):
        judge_config("autorater_internvl_ft", {"pretrained": str(tmp_path), "tools": "all"})


def test_each_checkpoint_id_is_written_in_the_catalog_only():
    from lmms_eval_autorater.catalog import models

    ids = [
        models.GPT4O_SNAPSHOT,
        models.INTERNVL_CHECKPOINT,
        models.HPSV3_CHECKPOINT,
        models.HPSV3_BASE_MODEL,
        models.IMAGEREWARD_CHECKPOINT,
        models.QSIT_CHECKPOINT,
        models.GROUNDING_DINO_CHECKPOINT,
        models.AESEXPERT_CHECKPOINT,
    ]
    for ident in ids:
        where = sorted(
            str(p.relative_to(PKG))
            for p in PKG.rglob("*.py")
            if re.search(re.escape(ident) + r"(?![\w-])", p.read_text())
        )
        assert where == ["catalog/models.py"], (ident, where)
    tool = Path("/work/shared/tools/layers.py")
    if tool.exists():  # the project's layering checker: no fact stated in more than one module
        out = subprocess.run([sys.executable, str(tool), str(PKG)], capture_output=True, text=True).stdout
        assert "stated in" not in out, out


def test_catalog_is_read_by_the_registry_the_reports_and_the_baselines():
    from lmms_eval_autorater import registry
    from lmms_eval_autorater.catalog import models
    from lmms_eval_autorater.reports import reproduce, submission, table
    from lmms_eval_autorater.tasks.catalog import FIELD_GROUP, FIELD_TASKS, GROUP, GROUPS, PAPER_TASKS, TASKS

    assert PAPER_TASKS == ("psr", "imagereward_pair", "imagereward_point", "aigiqa")
    assert registry.TASK_NAMES[:4] == PAPER_TASKS and registry.TASK_NAMES[-2:] == (GROUP, FIELD_GROUP)
    assert registry.TASK_NAMES == (*PAPER_TASKS, *FIELD_TASKS, GROUP, FIELD_GROUP)
    assert registry.TASK_NAMES == (*TASKS, *GROUPS)
    from lmms_eval_autorater.catalog.models import reward_models

    paper_baselines = ("hpsv3", "imagereward", "qsit")
    assert {k: reproduce.BASELINE_ARGS[k] for k in paper_baselines} == {
        "hpsv3": ("checkpoint=MizzenAI/HPSv3,base_model=Qwen/Qwen2-VL-7B-Instruct", 4),
        "imagereward": ("checkpoint=THUDM/ImageReward,tokenizer=bert-base-uncased", 8),
        "qsit": ("pretrained=zhangzicheng/q-sit", 8),
    }
    assert set(reproduce.BASELINE_ARGS) == {*paper_baselines, *(e.id for e in reward_models())}
    assert set(reproduce.JUDGE_MODELS) == {
        "autorater_gpt4o",
        "autorater_gemini",
        "autorater_internvl",
        "autorater_openai",
    }
    assert table.JUDGE_GROUPS == {
        "autorater_gpt4o": "gpt-4o",
        "autorater_gemini": "gemini",
        "autorater_internvl": "internvl",
    }
    assert submission.OPEN_BASELINES == {*paper_baselines, *(e.id for e in reward_models())}
    assert models.MODELS["autorater_gpt4o_grid"].paper_group == "gpt-4o"


@pytest.mark.slow
def test_grid_variant_judges_each_task_with_its_own_subset_through_lmms_eval(
    tmp_path, data, tiny_gd, tiny_pa
):
    """One ``lmms-eval --model autorater_gpt4o_grid`` call on two tasks, the subsets from a folder of grid
    results: the server sees GroundingDINO's evidence only on the pairs and PAL4VST's only on AIGIQA."""
    from lmms_eval_autorater.reports.runs import load_runs
    from lmms_eval_autorater.reports.table import build_table
    from tests.clitools import TruthResponder, run_cli
    from tests.openai_server import OpenAIServer, image_urls, prompt_text

    root, docs = data
    grids = tmp_path / "grids"
    grids.mkdir()
    _grid_file(grids / "pair.json", "imagereward_pair", "GD")
    _grid_file(grids / "aigiqa.json", "aigiqa", "PA")
    _, pa_folder = tiny_pa
    tasks = ("imagereward_pair", "aigiqa")
    with OpenAIServer(TruthResponder({t: docs[t] for t in tasks})) as server:
        args = (
            f"base_url={server.url},grid_result={grids},gd_model={tiny_gd},pa_model={pa_folder / 'hf'},"
            f"specialist_device=cpu,concurrency=2,cache_dir={tmp_path / 'cache'}"
        )
        env = {"OPENAI_API_KEY": "sk-test", "AUTORATER_DATA_DIR": str(root), "HF_HUB_OFFLINE": "1"}
        results, log = run_cli(
            tmp_path, env, "--model", "autorater_gpt4o_grid", "--model_args", args, "--tasks", ",".join(tasks)
        )
        recorded = [r.json for r in server.requests if r.json]
    assert results is not None, log[-3000:]
    assert results["config"]["model"] == "autorater_gpt4o_grid"
    pairs = [prompt_text(r) for r in recorded if len(image_urls(r)) == 2]
    points = [prompt_text(r) for r in recorded if len(image_urls(r)) == 1]
    assert len(pairs) == len(docs["imagereward_pair"]) and len(points) == len(docs["aigiqa"])
    assert all("GroundingDINO" in p and "PAL4VST" not in p for p in pairs)
    assert all("PAL4VST" in p and "GroundingDINO" not in p for p in points)
    [run] = load_runs([tmp_path])
    for task, subset in (("imagereward_pair", "GD"), ("aigiqa", "PA")):
        metas = [r["meta"] for r in run.tasks[task].records()]
        assert {m["variant"] for m in metas} == {"autorater_gpt4o_grid"}
        assert {m["subset"] for m in metas} == {subset}
        assert {m["subset_source"] for m in metas} == {
            str(grids / ("pair.json" if subset == "GD" else "aigiqa.json"))
        }
    table = build_table([run])
    assert {(c.row, c.task, c.subset) for c in table.cells.values()} == {
        ("GPT-4o + Grid", "imagereward_pair", "GD"),
        ("GPT-4o + Grid", "aigiqa", "PA"),
    }
