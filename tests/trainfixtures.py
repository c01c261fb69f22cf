"""Training data and a trained tiny checkpoint shared by the training tests (plain functions, built once per
session: the results are memoised by the session's base temp folder, so every module reuses them).

Rows are written in ``training/rows.py``'s format with ``synthesize``'s own writer (``write_output``), from
small images made here; a row "with tools" carries a real specialist section rendered by the judge's renderer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

from tests.datafactory import image_bytes

_MEMO: dict[tuple[str, str], object] = {}
#: optimizer steps of the shared training run (6 rows, 3 a step: each row seen STEPS / 2 times)
STEPS = 12

#: (source, paradigm, task kind, request, number of images, label, label scale)
SAMPLES = (
    ("aigiqa", "pointwise", "generation", "a red fox in the snow", 1, 4.0, "mos_0_5"),
    ("aigiqa", "pointwise", "generation", "a lighthouse at dusk", 1, 1.0, "mos_0_5"),
    ("imagereward_pair", "pairwise", "generation", "a bowl of ramen", 2, 1.0, "rank"),
    ("imagereward_pair", "pairwise", "generation", "two cats on a sofa", 2, 2.0, "rank"),
    ("editreward", "pairwise", "editing", "make the sky purple", 3, 2.0, "vote"),
    ("editreward", "pairwise", "editing", "remove the car", 3, 1.0, "vote"),
)
RATIONALES = (
    "The fox is sharp and the snow is clean.",
    "The tower is warped and the sky is noisy.",
    "Image 1 shows the noodles clearly.",
    "Image 2 has both cats with correct paws.",
    "Edit 2 turns the sky purple and keeps the rest.",
    "Edit 1 removes the car without traces.",
)


def rows_for(with_tools: bool) -> list[dict]:
    """The training rows of ``SAMPLES`` (with a rendered QS section when ``with_tools``)."""
    from lmms_eval_autorater.judges.contract import PARSER_VERSION
    from lmms_eval_autorater.judges.prompts import TEMPLATE_VERSION
    from lmms_eval_autorater.specialists.render import render_assessments
    from lmms_eval_autorater.specialists.types import Assessment
    from lmms_eval_autorater.training.rows import contract_answer, target_verdict

    rows = []
    for k, (source, paradigm, kind, request, n_images, label, scale) in enumerate(SAMPLES):
        fields = (["source_image"] if kind == "editing" else []) + [
            f"image_{i}" for i in range(1, n_images + 1 - (kind == "editing"))
        ]
        n_cand = len(fields) - (kind == "editing")
        assessments = (
            [
                Assessment(
                    "QS",
                    value=0.2 + 0.1 * k + 0.05 * c,
                    version="qs-test",
                    candidate=c if n_cand > 1 else None,
                )
                for c in range(1, n_cand + 1)
            ]
            if with_tools
            else []
        )
        verdict = target_verdict(paradigm, label, scale)
        rows.append(
            {
                "id": f"{source}-{k}",
                "source": source,
                "group": f"g{k}",
                "paradigm": paradigm,
                "task_kind": kind,
                "request": request,
                "images": [
                    {"bytes": image_bytes(10 * k + j, size=40 + 8 * j), "path": None} for j in range(n_images)
                ],
                "image_fields": fields,
                "specialists": json.dumps([a.__dict__ for a in assessments], sort_keys=True),
                "evidence": render_assessments(assessments, n_cand) if assessments else "",
                "tools": ["QS"] if with_tools else [],
                "label": label,
                "label_scale": scale,
                "verdict": verdict,
                "rationale": RATIONALES[k],
                "completion": contract_answer(paradigm, RATIONALES[k], verdict),
                "teacher": "autorater_openai:teacher-test",
                "teacher_snapshot": "teacher-test",
                "prompt_version": TEMPLATE_VERSION,
                "parser_version": PARSER_VERSION,
                "specialist_versions": json.dumps({"QS": "qs-test"} if with_tools else {}),
            }
        )
    return rows


def write_rows_dir(folder: Path, with_tools: bool, *, license: str | None = None) -> Path:
    """A ``synthesize``-style output folder (dataset + manifest.json) of ``rows_for(with_tools)``."""
    from lmms_eval_autorater.training.synthesize import SynthesisResult, write_output

    rows = rows_for(with_tools)
    manifest = {
        "source": "mixed-test",
        "seen": len(rows) + 1,
        "kept": len(rows),
        "rejected": {
            "verdict_mismatch": 1,
            "leak": 0,
            "parse_failure": 0,
            "api_failure": 0,
            "input_error": 0,
        },
        "teacher": {"judge": "autorater_openai", "model": "teacher-test"},
        "tools": ["QS"] if with_tools else [],
        "tools_shown": ["QS"] if with_tools else [],
        "seed": 0,
        **({"license": license} if license else {}),
    }
    write_output(Path(folder), SynthesisResult(rows=rows), manifest)
    return Path(folder)


def prompt_corpus() -> list[str]:
    """Every text the judge's prompts and the rows' completions are made of (BPE merges for a short context)."""
    from lmms_eval_autorater.judges import contract, prompts

    texts = [prompts.SYSTEM, prompts._EVIDENCE_NOTE, *prompts._TASK_TEXT.values()]
    texts += list(contract.FORMAT_INSTRUCTIONS.values())
    for with_tools in (True, False):
        for row in rows_for(with_tools):
            texts += [row["request"], row["evidence"], row["completion"]]
    return texts * 3


def tiny_internvl(tmp_path_factory) -> Path:
    """The tiny random InternVL of ``tests/test_internvl_backend.py`` with BPE merges learned from the judge's
    prompts (about 5x shorter sequences than bytes), saved once per session."""
    key = (str(tmp_path_factory.getbasetemp()), "tiny_internvl")
    if key not in _MEMO:
        from tests.test_internvl_backend import _build_tiny_internvl

        folder = tmp_path_factory.mktemp("tiny-internvl-base")
        _build_tiny_internvl(folder, corpus=prompt_corpus())
        _MEMO[key] = folder
    return _MEMO[key]  # type: ignore[return-value]


def rows_dir(tmp_path_factory, with_tools: bool) -> Path:
    """The rows folder (with or without tools), written once per session."""
    key = (str(tmp_path_factory.getbasetemp()), f"rows-{with_tools}")
    if key not in _MEMO:
        folder = tmp_path_factory.mktemp("rows-tools" if with_tools else "rows-notools") / "data"
        _MEMO[key] = write_rows_dir(folder, with_tools, license="CC-BY-NC-4.0 (EditReward-Data)")
    return _MEMO[key]  # type: ignore[return-value]


def train_args(data: list[Path], base: Path, output: Path, **overrides) -> argparse.Namespace:
    """The parsed ``train`` command line for a short CPU run (the real parser, so defaults are the user's)."""
    from lmms_eval_autorater.cli import build_parser

    argv = ["train", "--data", *map(str, data), "--base", str(base), "--output", str(output)]
    settings = {"max_steps": STEPS, "lr": 3e-3, "batch_size": 3, "grad_accum": 1, "logging_steps": 1,
                "warmup_ratio": 0.0, "workers": 0, "max_patches": 1, "save_steps": 20, **overrides}  # fmt: skip
    for key, value in settings.items():
        if value is True:
            argv.append(f"--{key}")
        elif value is not False and value is not None:
            argv += [f"--{key}", str(value)]
    return build_parser().parse_args(argv)


def trained(tmp_path_factory, with_tools: bool = True):
    """A tiny checkpoint trained on ``rows_dir(with_tools)`` (a ``TrainResult``), once per session."""
    key = (str(tmp_path_factory.getbasetemp()), f"trained-{with_tools}")
    if key not in _MEMO:
        from lmms_eval_autorater.training.train import train

        out = tmp_path_factory.mktemp("ckpt") / ("ft-tools" if with_tools else "ft-notools")
        args = train_args(
            [rows_dir(tmp_path_factory, with_tools)],
            tiny_internvl(tmp_path_factory),
            out,
            tools="with" if with_tools else "without",
        )
        with one_thread():
            _MEMO[key] = train(args)
    return _MEMO[key]


@contextlib.contextmanager
def one_thread():
    """torch on one thread meanwhile: a tiny model gains nothing from more, and on a shared 2-core machine
    two spinning threads per process made each step about 5x slower (measured here)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
