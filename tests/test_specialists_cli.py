"""The judge with real specialists through the real ``lmms-eval`` CLI, against the local OpenAI-compatible
server.

The specialists are the tiny random-weight GroundingDINO, PAL4VST (UperNet), Q-SiT (LLaVA-OneVision) and
AesExpert (LLaVA) that ``tests/tinymodels.py`` builds (fixtures in ``tests/conftest.py``), saved to folders
and passed as ``*_model=<folder>``: the path a user runs, end to end, with nothing downloaded.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from pathlib import Path

import pytest

from tests.clitools import USAGE, TruthResponder, metric, run_cli, sha_of_ref, sha_of_url
from tests.openai_server import OpenAIServer, image_urls, prompt_text

# the fixtures tiny_gd, tiny_pa, qsit_folder and llava come from tests/conftest.py (tests/tinymodels.py
# builds them); without torch or transformers the whole module is skipped
pytest.importorskip("torch")
pytest.importorskip("transformers")

pytestmark = pytest.mark.slow

GEN_TASKS = ("imagereward_pair", "imagereward_point")
#: a number as the renderer writes it for a numeric specialist (3 decimals)
NUM = r"-?\d+\.\d{3}"


@pytest.fixture
def models(tmp_path, tiny_gd, tiny_pa, qsit_folder, llava) -> dict[str, Path]:
    """Fresh copies of the tiny specialist folders (a test may delete them to prove nothing loads them)."""
    out = {}
    for code, src in (
        ("GD", tiny_gd),
        ("PA", tiny_pa[1] / "hf"),
        ("QS", qsit_folder),
        ("AE", llava["converted"]),
    ):
        out[code] = tmp_path / "models" / code.lower()
        shutil.copytree(src, out[code])
    return out


def model_args(server: OpenAIServer, tools: str, models: dict[str, Path], codes: tuple[str, ...]) -> str:
    folders = "".join(f"{c.lower()}_model={models[c]}," for c in codes)
    return f"base_url={server.url},model=judge-1,concurrency=4,tools={tools},{folders}specialist_device=cpu"


def env_for(tmp_path: Path, root: Path) -> dict[str, str]:
    return {
        "AUTORATER_DATA_DIR": str(root),
        "AUTORATER_CACHE_DIR": str(tmp_path / "cache"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


def assessment_rows(tmp_path: Path) -> int:
    with sqlite3.connect(tmp_path / "cache" / "assessments.sqlite") as con:
        return con.execute("SELECT COUNT(*) FROM assessments").fetchone()[0]


def verdict_prompts(server: OpenAIServer) -> list[dict]:
    return [
        r.json
        for r in server.requests
        if r.json["response_format"]["json_schema"]["name"] != "tool_selection"
    ]


def evidence_lines(text: str, name: str) -> str:
    """The lines of one specialist's block in the rendered evidence (its header line and its image lines)."""
    m = re.search(rf"^- {re.escape(name)} \(\w\w\), .*\n((?:  Image.*\n?)+)", text, re.M)
    assert m, f"no {name} block in prompt:\n{text}"
    return m.group(1)


def numbers(block: str, n_candidates: int) -> list[float]:
    if n_candidates == 1:
        m = re.fullmatch(rf"  Image: ({NUM})\n?", block)
        assert m, block
        return [float(m.group(1))]
    m = re.fullmatch(rf"  Image 1: ({NUM}); Image 2: ({NUM})\n?", block)
    assert m, block
    return [float(m.group(1)), float(m.group(2))]


def without_usage(results: dict, task: str) -> str:
    """A task's metrics without this run's token usage, as canonical JSON (so that NaN equals NaN)."""
    return json.dumps({k: v for k, v in results["results"][task].items() if k not in USAGE}, sort_keys=True)


def unique_images(docs: dict, tasks: tuple[str, ...]) -> set[str]:
    return {sha_of_ref(d[f]) for t in tasks for d in docs[t] for f in ("image_1", "image_2") if d.get(f)}


def test_fixed_subset_of_specialists_and_cached_rerun(tmp_path, data, models):
    """tools=GD+PA+QS on both generation tasks: every doc scored, labelled evidence with the right numbers
    for Image 1 and Image 2; a rerun with the model folders gone makes no judge request and loads no model."""
    from lmms_eval_autorater.specialists.base import SpecialistInput
    from lmms_eval_autorater.specialists.pa import PAL4VST
    from lmms_eval_autorater.specialists.qs import QSiT

    root, docs = data
    truth = TruthResponder(docs)
    env = env_for(tmp_path, root)
    with OpenAIServer(truth) as server:
        args = (
            "--model",
            "autorater_openai",
            "--model_args",
            model_args(server, "GD+PA+QS", models, ("GD", "PA", "QS")),
            "--tasks",
            ",".join(GEN_TASKS),
        )
        results, log = run_cli(tmp_path, env, *args)
        assert results is not None, log[-3000:]
        n_docs = sum(len(docs[t]) for t in GEN_TASKS)
        assert server.request_count == n_docs
        for task in GEN_TASKS:
            assert metric(results, task, "n_scored") == len(docs[task])
            assert metric(results, task, "parse_failures") == 0 and metric(results, task, "api_failures") == 0
        assert metric(results, "imagereward_pair", "accuracy") == pytest.approx(
            truth.expected_correct["imagereward_pair"] / len(docs["imagereward_pair"])
        )

        # what the judge read: GD, PA, QS (in that order), nothing else, numbers for each image
        by_image: dict[str, dict[str, float]] = {}
        for req in server.requests:
            text = prompt_text(req.json)
            shas = [sha_of_url(u) for u in image_urls(req.json)]
            assert "Specialist assessments" in text
            assert text.index("GroundingDINO (GD)") < text.index("PAL4VST (PA)") < text.index("Q-SiT (QS)")
            assert "AesExpert" not in text and "DeepFace" not in text and "DreamSim" not in text
            gd_lines = evidence_lines(text, "GroundingDINO").splitlines()
            assert [ln.split(":")[0] for ln in gd_lines] == (
                ["  Image"] if len(shas) == 1 else ["  Image 1", "  Image 2"]
            )
            for code, name in (("PA", "PAL4VST"), ("QS", "Q-SiT")):
                values = numbers(evidence_lines(text, name), len(shas))
                assert all(0.0 <= v <= 1.0 for v in values)
                for sha, v in zip(shas, values, strict=True):
                    assert by_image.setdefault(sha, {}).setdefault(code, v) == v  # same image, same number
        assert set(by_image) == unique_images(docs, GEN_TASKS)

        # the numbers are the specialists' own, each under its own image (not swapped, not another image's)
        refs = {
            sha_of_ref(d[f]): d[f]
            for t in GEN_TASKS
            for d in docs[t]
            for f in ("image_1", "image_2")
            if d.get(f)
        }
        shas = sorted(refs)
        items = [SpecialistInput("", refs[s]) for s in shas]
        qs_values = QSiT(model=str(models["QS"]), device="cpu").assess_many(items)
        pa_values = PAL4VST(model=str(models["PA"]), device="cpu").assess_many(items)
        for sha, q, p in zip(shas, qs_values, pa_values, strict=True):
            assert by_image[sha]["QS"] == pytest.approx(q.value, abs=1.5e-3)
            assert by_image[sha]["PA"] == pytest.approx(p.value, abs=1.5e-3)
        assert len(set(by_image[s]["QS"] for s in shas)) > 1  # distinct images give distinct scores here

        # one assessment per specialist per distinct image (GD also keys on the request: one per image here)
        rows = assessment_rows(tmp_path)
        assert rows == 3 * len(by_image)

        # rerun: the judge answers and the assessments come from the caches; a model load would fail
        for folder in models.values():
            shutil.rmtree(folder)
        before = server.request_count
        again, log = run_cli(tmp_path, env, *args)
        assert again is not None, log[-3000:]
        assert server.request_count == before
        assert assessment_rows(tmp_path) == rows
        for task in GEN_TASKS:  # the same numbers; this run's own token usage is zero (all from the cache)
            assert without_usage(again, task) == without_usage(results, task)
            assert metric(results, task, "prompt_tokens") > 0 and metric(again, task, "prompt_tokens") == 0


def test_auto_selection_two_passes(tmp_path, data, models):
    """tools=auto: the judge picks per doc (Q-SiT for 'a red cube', none for 'a blue ball'), then judges."""
    root, docs = data
    truth = TruthResponder(docs)
    pair_docs = docs["imagereward_pair"]

    menus: list[str] = []

    def responder(request_json: dict) -> str:
        if request_json["response_format"]["json_schema"]["name"] == "tool_selection":
            menu = prompt_text(request_json)
            menus.append(menu)
            chosen = ["QS"] if "Request: a red cube" in menu else []
            return json.dumps({"analysis": "quality matters here", "tools": chosen})
        return truth(request_json)

    with OpenAIServer(responder) as server:
        args = (
            "--model",
            "autorater_openai",
            "--model_args",
            model_args(server, "auto", models, ("QS",)),
            "--tasks",
            "imagereward_pair",
        )
        results, log = run_cli(tmp_path, env_for(tmp_path, root), *args)
        assert results is not None, log[-3000:]
    n = len(pair_docs)
    assert server.request_count == 2 * n and len(menus) == n
    for menu in menus:  # the menu offers what applies to generation, nothing else
        assert all(f"- {c} (" in menu for c in ("GD", "AE", "PA", "QS")) and "- DF (" not in menu
    assert metric(results, "imagereward_pair", "n_scored") == n
    assert metric(results, "imagereward_pair", "parse_failures") == 0
    assert metric(results, "imagereward_pair", "accuracy") == pytest.approx(
        truth.expected_correct["imagereward_pair"] / n
    )
    verdicts = verdict_prompts(server)
    assert len(verdicts) == n
    red = [prompt_text(r) for r in verdicts if "Request: a red cube" in prompt_text(r)]
    blue = [prompt_text(r) for r in verdicts if "Request: a blue ball" in prompt_text(r)]
    assert len(red) == sum(d["request"] == "a red cube" for d in pair_docs) > 0
    assert len(blue) == n - len(red) > 0
    for text in red:
        numbers(evidence_lines(text, "Q-SiT"), 2)
        assert "GroundingDINO" not in text and "PAL4VST" not in text and "AesExpert" not in text
    for text in blue:
        assert "Specialist assessments" not in text and "Q-SiT" not in text
    # only the chosen specialist ran, once per distinct image of the docs that chose it
    red_images = {
        sha_of_ref(d[f]) for d in pair_docs if d["request"] == "a red cube" for f in ("image_1", "image_2")
    }
    assert assessment_rows(tmp_path) == len(red_images)


def test_all_specialists_with_aesexpert(tmp_path, data, models):
    """tools=all on a generation task: GD, AE, PA, QS (the four that apply), AesExpert as text per image."""
    root, docs = data
    truth = TruthResponder(docs)
    with OpenAIServer(truth) as server:
        args = (
            "--model",
            "autorater_openai",
            "--model_args",
            model_args(server, "all", models, ("GD", "AE", "PA", "QS")),
            "--tasks",
            "imagereward_pair",
        )
        results, log = run_cli(tmp_path, env_for(tmp_path, root), *args)
        assert results is not None, log[-3000:]
    n = len(docs["imagereward_pair"])
    assert server.request_count == n and metric(results, "imagereward_pair", "n_scored") == n
    for req in server.requests:
        text = prompt_text(req.json)
        assert (
            text.index("GroundingDINO (GD)")
            < text.index("AesExpert (AE)")
            < text.index("PAL4VST (PA)")
            < text.index("Q-SiT (QS)")
        )
        assert "DeepFace" not in text and "DreamSim" not in text
        ae_lines = evidence_lines(text, "AesExpert").splitlines()
        assert [ln[:10] for ln in ae_lines] == ["  Image 1:", "  Image 2:"]
        assert all(ln[10:].strip() not in ("", "n/a") for ln in ae_lines)  # the critique text itself
        numbers(evidence_lines(text, "PAL4VST"), 2)
        numbers(evidence_lines(text, "Q-SiT"), 2)
    assert assessment_rows(tmp_path) == 4 * len(unique_images(docs, ("imagereward_pair",)))


def test_editing_only_specialist_on_generation_task_fails(tmp_path, data):
    """tools=DF on a generation task: an error naming DF and generation; no results, no judge request."""
    root, _ = data
    with OpenAIServer(TruthResponder({})) as server:
        args = (
            "--model",
            "autorater_openai",
            "--model_args",
            model_args(server, "DF", {}, ()),
            "--tasks",
            "imagereward_pair",
        )
        results, log = run_cli(tmp_path, env_for(tmp_path, root), *args)
    assert results is None
    assert re.search(r"\bDF do not apply to generation tasks; applicable: GD\+AE\+PA\+QS", log), log[-3000:]
    assert server.request_count == 0
