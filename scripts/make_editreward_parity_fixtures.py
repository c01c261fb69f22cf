"""Build the EditReward parity fixture by running the AUTHORS' inference code (TIGER-AI-Lab/EditReward).

Writes, under ``tests/fixtures/parity/``:

- ``editreward/base/``: config, tokenizer, chat template and processor files of a tiny Qwen2.5-VL base model in the
  hub's layout (what the authors' yaml names as ``model_name_or_path``; no weights: the checkpoint replaces them);
- ``editreward/ckpt/model.safetensors``: a tiny random ``Qwen2_5_VLRewardModelBT_MultiHead`` state dict, built from
  the authors' own class (``create_model_and_processor`` of ``train_qwen2_5_edit.py``: ``<|Reward|>`` added, the
  embeddings resized, two ``ranknet_multi_head`` heads), values drawn with a fixed seed: the format of the released
  ``TIGER-Lab/EditReward-*`` checkpoints (a flat state dict at the repository root);
- ``editreward.json``: instructions, (source, edited) image pairs (the images of ``make_parity_fixtures.py``:
  wide, tall, gray, RGBA and large, so every pair has non-square sizes), and what the authors'
  ``EditRewardInferencer.reward`` gives: per case one by one, the final (mu, log sigma) (``pooling_strategy``
  "mean" of the shipped yaml) and each head's (mu, log sigma) (the same model with ``pooling_strategy=None``,
  their forward's per-head branch), plus the scores of all cases in one batch.

The authors' code is their repository at commit edb027e (``--editreward-src``: a checkout or an extracted tree of
it, e.g. ``git archive edb027e EditReward | tar -x -C DIR``; its ``EditReward/`` package is imported from there).
It runs in its own venv, /tmp/parity-venvs/er, with their pins ``transformers==4.57.0`` and ``trl==0.8.6`` plus
peft 0.17.1, accelerate 1.10.1, datasets 4.1.1, huggingface_hub < 1.0, tokenizers 0.22, omegaconf, fire,
tensorboard and megfile: the modules their inference path imports (``train_qwen2_5_edit`` imports trl, peft,
fire; ``qwen2_5_vl_trainer`` imports tensorboard, matplotlib, pandas, datasets); no import shim is used.
torch, torchvision, numpy, PIL, matplotlib and pandas come from the project venv through a ``.pth`` file placed
after the venv's own site-packages (so the venv's transformers wins): torch 2.14.1 on CPU instead of their
CUDA-only ``torch==2.5.1`` wheel. Their shipped yaml (``config/EditReward-Qwen2.5-7B-VL.yaml``) is used with four
keys changed for a CPU fixture: ``model_name_or_path`` (the tiny base), ``torch_dtype: float32``, ``bf16: false``,
``disable_flash_attn2: true`` (and ``output_dir``). Run from the repo root with the project venv:

    .venv/bin/python scripts/make_editreward_parity_fixtures.py --create-venv --editreward-src DIR

``tests/test_reward_parity.py`` loads the same files through the project's ``EditRewardScorer`` and compares.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_parity_fixtures import (  # noqa: E402
    FIXTURES,
    IMAGES,
    QWEN2VL_CHAT_TEMPLATE,
    SEED,
    _draw,
    project_venv,
    run_upstream_json,
    write_images,
    write_qwen2vl_base,
)

REPO = Path(__file__).resolve().parents[1]
FOLDER = FIXTURES / "editreward"
VENV = Path("/tmp/parity-venvs/er")
UPSTREAM_COMMIT = "edb027e"
VENV_REQS = [
    "transformers==4.57.0",
    "trl==0.8.6",
    "peft==0.17.1",
    "accelerate==1.10.1",
    "datasets==4.1.1",
    "huggingface_hub<1.0",
    "tokenizers>=0.22,<=0.23.0",
    "omegaconf",
    "fire",
    "tensorboard",
    "megfile",
]
TOLERANCE = 1e-5
INSTRUCTIONS = [
    "make the sky red",
    "Replace the CAFÉ sign with a neon one; keep the rain!",
    "add a small wooden house on the left " * 5,
    "把猫换成一只狗 on the sofa",
    "remove 3 of the dogs and the ball",
]
#: (instruction index, source image index, edited image index): every image as a source and as an edit,
#: one pair with the same image on both sides
CASES = [(0, 4, 0), (1, 0, 1), (2, 2, 3), (3, 3, 2), (4, 1, 4), (0, 0, 0)]
#: a tiny Qwen2.5-VL vision tower (the text side comes from write_qwen2vl_base: hidden 64, 2 layers)
VISION_CONFIG = {
    "depth": 2,
    "hidden_act": "silu",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_heads": 2,
    "in_chans": 3,
    "out_hidden_size": 64,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "spatial_patch_size": 14,
    "temporal_patch_size": 2,
    "tokens_per_second": 2,
    "window_size": 112,
    "fullatt_block_indexes": [1],
}


def write_base(folder: Path) -> dict:
    """The tiny base folder: the Qwen2 BPE of ``write_qwen2vl_base`` turned into a Qwen2.5-VL config/processor."""
    sys.path.insert(0, str(REPO / "src"))
    from lmms_eval_autorater.baselines.editreward import build_prompt_texts

    corpus = [t for i in INSTRUCTIONS for t in build_prompt_texts(i)] + [QWEN2VL_CHAT_TEMPLATE]
    cfg = write_qwen2vl_base(folder, corpus)
    cfg.update(
        {
            "architectures": ["Qwen2_5_VLForConditionalGeneration"],
            "model_type": "qwen2_5_vl",
            "transformers_version": "4.41.2",
            "vision_config": VISION_CONFIG,
        }
    )
    (folder / "config.json").write_text(json.dumps(cfg, indent=1))
    pre = json.loads((folder / "preprocessor_config.json").read_text())
    pre.update({"image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor"})
    (folder / "preprocessor_config.json").write_text(json.dumps(pre, indent=1))
    return cfg


# -- upstream side (runs in the venv, with the authors' tree on sys.path) ----------------------------


def run_upstream(src: Path, images: Path) -> dict:
    """Tiny checkpoint from the authors' class; their ``EditRewardInferencer`` scores the cases."""
    sys.path.insert(0, str(src))
    import safetensors.torch
    import torch
    import yaml
    from EditReward.inference_edit import EditRewardInferencer
    from EditReward.train_qwen2_5_edit import create_model_and_processor
    from EditReward.utils.parser import (
        DataConfig,
        ModelConfig,
        PEFTLoraConfig,
        TrainingConfig,
        parse_args_with_yaml,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    work = Path(tempfile.mkdtemp(prefix="editreward-parity-"))
    base = work / "base"
    shutil.copytree(FOLDER / "base", base)
    # from_pretrained needs base weights; their values do not matter (the checkpoint replaces all of them)
    torch.manual_seed(0)
    Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig.from_pretrained(base)).save_pretrained(work / "w")
    shutil.copy(work / "w" / "model.safetensors", base / "model.safetensors")
    cfg = yaml.safe_load((src / "EditReward" / "config" / "EditReward-Qwen2.5-7B-VL.yaml").read_text())
    cfg.update(
        {
            "model_name_or_path": str(base),
            "bf16": False,
            "torch_dtype": "float32",
            "disable_flash_attn2": True,
            "output_dir": str(work / "out"),
        }
    )
    yaml_path = work / "EditReward-cpu.yaml"
    yaml_path.write_text(yaml.safe_dump(cfg))

    (_d, training_args, model_config, lora_config), _ = parse_args_with_yaml(
        (DataConfig, TrainingConfig, ModelConfig, PEFTLoraConfig), str(yaml_path), is_train=False
    )
    skeleton, _processor, _ = create_model_and_processor(model_config, lora_config, training_args)
    sd = _draw(skeleton.state_dict(), SEED + 21)
    ckpt = FOLDER / "ckpt"
    ckpt.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(sd, str(ckpt / "model.safetensors"))

    inf = EditRewardInferencer(
        config_path=str(yaml_path),
        checkpoint_path=str(ckpt),
        device="cpu",
        reward_dim="overall_detail",
        rm_head_type="ranknet_multi_head",
    )
    paths = [str(images / name) for name, *_ in IMAGES]
    cases = []
    with torch.no_grad():
        for p, s, e in CASES:
            args = ([INSTRUCTIONS[p]], [paths[s]], [paths[e]])
            final = inf.reward(*args)[0]
            inf.model.pooling_strategy = None  # their forward then returns each head's pooled logits
            heads = inf.model(return_dict=True, **inf.prepare_batch(args[1], args[2], args[0]))
            inf.model.pooling_strategy = "mean"
            batch = inf.prepare_batch(args[1], args[2], args[0])["batch_dim1"]
            cases.append(
                {
                    "instruction": p,
                    "source": s,
                    "edited": e,
                    "score": float(final[0]),
                    "log_sigma": float(final[1]),
                    "heads": [[float(v) for v in h[0]] for h in heads],
                    "input_ids_head0": batch["input_ids"][0].tolist(),
                    "image_grid_thw": batch["image_grid_thw"].tolist(),
                }
            )
        batched = inf.reward(
            [INSTRUCTIONS[p] for p, _s, _e in CASES],
            [paths[s] for _p, s, _e in CASES],
            [paths[e] for _p, _s, e in CASES],
        )
    shutil.rmtree(work, ignore_errors=True)
    return {
        "cases": cases,
        "batched_scores": [float(r[0]) for r in batched],
        "reward_token_id": int(inf.processor.tokenizer.convert_tokens_to_ids("<|Reward|>")),
        "padding_side": inf.processor.tokenizer.padding_side,
    }


def upstream_main(src: Path, out: Path) -> None:
    import importlib.metadata as md

    result = run_upstream(src, FIXTURES / "images")
    result["upstream"] = {p: md.version(p) for p in ("torch", "transformers", "trl", "peft", "tokenizers")}
    out.write_text(json.dumps(result))


# -- driver (project venv) ---------------------------------------------------------------------------


def ensure_venv(create: bool) -> Path:
    # their pins with their dependencies; torch & co. from the project venv (its transformers 4.57 wins)
    return project_venv(VENV, VENV_REQS, create, no_deps=False, option="--create-venv")


def _upstream_commit(src: Path) -> str:
    """The commit of a git checkout (or ``UPSTREAM_COMMIT`` as stated, for an extracted tree)."""
    if not (src / ".git").exists():
        return UPSTREAM_COMMIT
    try:
        out = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "--short=7", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return UPSTREAM_COMMIT


def build(create: bool, src: Path) -> None:
    if not (src / "EditReward" / "inference_edit.py").exists():
        raise SystemExit(f"{src}: not a TIGER-AI-Lab/EditReward tree (no EditReward/inference_edit.py)")
    commit = _upstream_commit(src)
    if commit != UPSTREAM_COMMIT:
        raise SystemExit(f"{src} is at commit {commit}, the fixture pins {UPSTREAM_COMMIT}")
    if not (FIXTURES / "images" / IMAGES[0][0]).exists():
        write_images(FIXTURES / "images")
    write_base(FOLDER / "base")
    result = run_upstream_json(ensure_venv(create), __file__, ["--src", str(src)])
    data = {
        "instructions": INSTRUCTIONS,
        "images": [f"images/{name}" for name, *_ in IMAGES],
        "checkpoint": "editreward/ckpt",
        "base_model": "editreward/base",
        "tolerance_abs": TOLERANCE,
        "upstream_repo": "TIGER-AI-Lab/EditReward",
        "upstream_commit": UPSTREAM_COMMIT,
        "regenerate": "python scripts/make_editreward_parity_fixtures.py --create-venv --editreward-src DIR",
        **result,
    }
    (FIXTURES / "editreward.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    print(f"editreward: {[round(c['score'], 6) for c in result['cases']]}")
    print(f"batched:    {[round(s, 6) for s in result['batched_scores']]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--create-venv", action="store_true", help=f"create {VENV} when missing")
    ap.add_argument(
        "--editreward-src",
        type=Path,
        default=Path("/tmp/parity-venvs/EditReward"),
        help=f"a tree of TIGER-AI-Lab/EditReward at {UPSTREAM_COMMIT} (holding EditReward/)",
    )
    ap.add_argument("--upstream", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--src", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.upstream:
        upstream_main(args.src, args.out)
    else:
        build(args.create_venv, args.editreward_src.resolve())


if __name__ == "__main__":
    main()
