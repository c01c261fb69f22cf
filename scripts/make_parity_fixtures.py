"""Build the parity fixtures of the Table 2 baselines (ImageReward, HPSv3) by running the UPSTREAM packages.

For each baseline this writes, under ``tests/fixtures/parity/``: a tiny random-weight checkpoint in the
upstream package's own format (built from the upstream module's own state dict, values drawn with a fixed
seed), the config/tokenizer files it needs, a few small deterministic images, and a JSON file with the
scores the upstream package gives. ``tests/test_baselines_parity.py`` loads the same files through the
project's scorers and compares, without needing the upstream packages.

The upstream packages run in their own virtual environments (their pins clash with the project's):

    /tmp/parity-venvs/ir   image-reward==1.5, transformers==4.55.4, openai-clip, setuptools<81
    /tmp/parity-venvs/hps  hpsv3==1.0.0, transformers==4.45.2, matplotlib, tensorboard

both with torch==2.14.1. ``--create-venvs`` builds them with pip. Run from the repo root with the project venv:

    .venv/bin/python scripts/make_parity_fixtures.py --create-venvs

The same file is also the upstream-side runner (``--upstream imagereward|hpsv3``), executed by the venvs'
own interpreters; that part imports only the upstream package, torch, PIL and numpy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "parity"
VENVS = Path("/tmp/parity-venvs")
SEED = 20240611
TOLERANCE = 1e-4

VENV_SPECS = {
    "imagereward": (
        "ir",
        ["torch==2.14.1", "transformers==4.55.4", "image-reward==1.5", "openai-clip", "setuptools<81"],
    ),
    "hpsv3": ("hps", ["torch==2.14.1", "transformers==4.45.2", "hpsv3==1.0.0", "matplotlib", "tensorboard"]),
}

# -- shared inputs -----------------------------------------------------------------------------------

PROMPTS = [
    "a red fox sitting in the snow",
    "A Café in PARIS at night; neon signs & rain!",
    "a very long prompt about a small house " * 6,
    "一只猫 on a sofa, photo",
    "photo of 3 dogs playing with a ball",
]
#: (file name, PIL mode, width, height): shapes and modes chosen to exercise resizing and mode handling
IMAGES = [
    ("rgb_wide.png", "RGB", 96, 64),
    ("rgb_tall.png", "RGB", 48, 100),
    ("gray.png", "L", 80, 80),
    ("rgba.png", "RGBA", 72, 60),
    ("rgb_big.png", "RGB", 260, 200),
]

# ImageReward tiny sizes (upstream hard-codes ViT-L/16 and MLP(768): the runner rebinds both)
IR_VIT = {"width": 64, "depth": 2, "patch": 14, "mlp_ratio": 3.0, "image_size": 224}
IR_TEXT = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 40,
}

# HPSv3 tiny Qwen2-VL
HPS_BPE_VOCAB = 512
QWEN_SPECIAL = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
QWEN2VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in "
    "messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful "
    "assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] "
    "== 'image' or 'image' in content or 'image_url' in content %}{% set image_count.value = image_count.value "
    "+ 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|>"
    "<|vision_end|>{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = "
    "video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|>"
    "<|video_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}"
    "<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def write_images(folder: Path) -> None:
    """Small deterministic images: smooth gradients plus seeded noise, in several modes and shapes."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    for name, mode, w, h in IMAGES:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        base = np.stack([xx / w, yy / h, (xx + yy) / (w + h)], -1) * 200
        # coarse noise (4x4 blocks) keeps the PNGs small while still varying every patch
        noise = np.kron(rng.normal(0, 30, (-(-h // 4), -(-w // 4), 3)), np.ones((4, 4, 1)))[:h, :w]
        arr = np.clip(base + noise, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, "RGB")
        if mode == "RGBA":
            alpha = np.clip(xx / w * 255 + rng.normal(0, 10, (h, w)), 0, 255).astype(np.uint8)
            img = Image.fromarray(np.dstack([arr, alpha]), "RGBA")
        elif mode != "RGB":
            img = img.convert(mode)
        img.save(folder / name, optimize=True)


def write_bert_tokenizer(folder: Path) -> None:
    """A tiny uncased WordPiece vocabulary, as a ``bert-base-uncased`` folder (upstream loads it by that name)."""
    folder.mkdir(parents=True, exist_ok=True)
    words = sorted(
        {
            w
            for p in PROMPTS
            for w in p.lower().replace(";", " ").replace(",", " ").replace("!", " ").replace("&", " ").split()
            if w.isascii() and w.isalpha()
        }
    )
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789")
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *".,;:!?&'-",
        *chars,
        *[f"##{c}" for c in chars],
        "猫",
        *words,
    ]
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {"do_lower_case": True, "model_max_length": 512, "tokenizer_class": "BertTokenizer"}, indent=1
        )
    )


def write_med_config(path: Path, vocab_size: int) -> None:
    """BLIP's ``med_config.json`` layout with tiny sizes."""
    cfg = {
        "architectures": ["BertModel"],
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "model_type": "bert",
        "pad_token_id": 0,
        "type_vocab_size": 2,
        "vocab_size": vocab_size,
        "encoder_width": 768,
        "add_cross_attention": True,
        **IR_TEXT,
    }
    path.write_text(json.dumps(cfg, indent=1))


def write_qwen2vl_base(folder: Path, corpus: list[str]) -> dict:
    """Config, processor and tokenizer files of a tiny Qwen2-VL base model, in the hub's (4.45) layout."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    folder.mkdir(parents=True, exist_ok=True)
    regex = (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
        r"|\s*[\r\n]+|\s+(?!\S)|\s+"
    )
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=HPS_BPE_VOCAB,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        min_frequency=1,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.model.save(str(folder))  # vocab.json + merges.txt
    vocab = json.loads((folder / "vocab.json").read_text())
    n = len(vocab)
    ids = {t: n + i for i, t in enumerate(QWEN_SPECIAL)}
    added = {
        str(i): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for t, i in ids.items()
    }
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "add_prefix_space": False,
                "added_tokens_decoder": added,
                "additional_special_tokens": QWEN_SPECIAL[1:],
                "bos_token": None,
                "chat_template": QWEN2VL_CHAT_TEMPLATE,
                "clean_up_tokenization_spaces": False,
                "eos_token": "<|im_end|>",
                "errors": "replace",
                "model_max_length": 32768,
                "pad_token": "<|endoftext|>",
                "padding_side": "left",
                "split_special_tokens": False,
                "tokenizer_class": "Qwen2Tokenizer",
                "unk_token": None,
            },
            indent=1,
        )
    )
    (folder / "chat_template.json").write_text(json.dumps({"chat_template": QWEN2VL_CHAT_TEMPLATE}, indent=1))
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "min_pixels": 3136,
                "max_pixels": 12845056,
                "patch_size": 14,
                "temporal_patch_size": 2,
                "merge_size": 2,
                "image_mean": [0.48145466, 0.4578275, 0.40821073],
                "image_std": [0.26862954, 0.26130258, 0.27577711],
                "image_processor_type": "Qwen2VLImageProcessor",
                "processor_class": "Qwen2VLProcessor",
            },
            indent=1,
        )
    )
    config = {
        "architectures": ["Qwen2VLForConditionalGeneration"],
        "attention_dropout": 0.0,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "vision_token_id": ids["<|vision_pad|>"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "hidden_act": "silu",
        "hidden_size": 64,
        "initializer_range": 0.02,
        "intermediate_size": 128,
        "max_position_embeddings": 32768,
        "max_window_layers": 2,
        "model_type": "qwen2_vl",
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "sliding_window": 32768,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.41.2",
        "use_cache": True,
        "use_sliding_window": False,
        "vision_config": {
            "depth": 2,
            "embed_dim": 32,
            "mlp_ratio": 4,
            "num_heads": 4,
            "in_chans": 3,
            "hidden_size": 64,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
        # larger than the tokenizer, like the real model (HPSv3 shrinks the embeddings to the tokenizer + 1)
        "vocab_size": n + len(QWEN_SPECIAL) + 60,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    return config


# -- upstream side (runs in the upstream venvs) ------------------------------------------------------


def _draw(state_dict: dict, seed: int) -> dict:
    """Seeded values for every tensor of an upstream state dict (sorted keys), scaled to keep activations O(1)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key in sorted(state_dict):
        t = state_dict[key]
        if not t.is_floating_point():
            out[key] = t.clone()
            continue
        z = torch.randn(t.shape, generator=gen, dtype=torch.float32)
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "bias":
            v = 0.02 * z
        elif t.dim() == 1:  # norm weights
            v = 1.0 + 0.1 * z
        elif any(s in key for s in ("embed", "cls_token", "pos_embed", "class_embedding")):
            v = 0.5 * z
        else:
            v = z / math.sqrt(max(1, t[0].numel()))
        out[key] = v.to(t.dtype).contiguous()
    return out


def run_upstream_imagereward(folder: Path, images: Path) -> dict:
    """Build and save a tiny ``ImageReward.pt`` with the package's own modules, then score with ``RM.load``."""
    import importlib

    import ImageReward as RM
    import torch

    # the package re-exports its class under the module's name: fetch the modules themselves
    ir_mod = importlib.import_module("ImageReward.ImageReward")
    bp = importlib.import_module("ImageReward.models.BLIP.blip_pretrain")
    from ImageReward.models.BLIP.vit import VisionTransformer

    def tiny_create_vit(vit, image_size, use_grad_checkpointing=False, ckpt_layer=0, drop_path_rate=0):
        v = IR_VIT
        enc = VisionTransformer(
            img_size=v["image_size"],
            patch_size=v["patch"],
            embed_dim=v["width"],
            depth=v["depth"],
            num_heads=v["width"] // 64,
            mlp_ratio=v["mlp_ratio"],
        )
        return enc, v["width"]

    class TinyMLP(ir_mod.MLP):
        def __init__(self, input_size):
            super().__init__(IR_TEXT["hidden_size"])

    bp.create_vit = tiny_create_vit  # BLIP_Pretrain(vit='large') builds this instead
    ir_mod.MLP = TinyMLP  # ImageReward builds MLP(768)
    os.chdir(folder)  # upstream loads 'bert-base-uncased' by name: the local folder is found first
    med = str(folder / "med_config.json")
    skeleton = ir_mod.ImageReward(med_config=med, device="cpu")
    sd = _draw(skeleton.state_dict(), SEED)
    for key in sd:
        if key.endswith("position_ids"):
            sd[key] = skeleton.state_dict()[key].clone()
    ckpt = folder / "ImageReward.pt"
    torch.save(sd, ckpt)

    model = RM.load(str(ckpt), device="cpu", med_config=med)
    missing = set(model.state_dict()) - set(sd)
    if missing:
        raise SystemExit(f"upstream model has keys the checkpoint lacks: {sorted(missing)[:5]}")
    cases = []
    with torch.no_grad():
        for i, (name, *_rest) in enumerate(IMAGES):
            prompt = PROMPTS[i]
            ids = model.blip.tokenizer(prompt, padding="max_length", truncation=True, max_length=35).input_ids
            score = model.score(prompt, str(images / name))
            cases.append({"prompt": prompt, "image": f"images/{name}", "score": score, "input_ids": ids})
        _, ranked = model.inference_rank(PROMPTS[0], [str(images / n) for n, *_ in IMAGES])
    return {"cases": cases, "rank_prompt": PROMPTS[0], "rank_scores": ranked}


def run_upstream_hpsv3(folder: Path, images: Path) -> dict:
    """Build and save a tiny ``HPSv3.safetensors`` with the package's own model, then score with the inferencer."""
    import safetensors.torch
    import torch
    import yaml
    from hpsv3.inference import _MODEL_CONFIG_PATH, HPSv3RewardInferencer
    from hpsv3.train import create_model_and_processor
    from hpsv3.utils.parser import (
        DataConfig,
        ModelConfig,
        PEFTLoraConfig,
        TrainingConfig,
        parse_args_with_yaml,
    )
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    work = Path(tempfile.mkdtemp(prefix="hps-parity-"))
    base = work / "base"
    shutil.copytree(folder / "base", base)
    # from_pretrained needs base weights; their values do not matter (the checkpoint replaces all of them)
    torch.manual_seed(0)
    Qwen2VLForConditionalGeneration(Qwen2VLConfig.from_pretrained(base)).save_pretrained(work / "w")
    shutil.copy(work / "w" / "model.safetensors", base / "model.safetensors")
    cfg = yaml.safe_load((Path(_MODEL_CONFIG_PATH) / "HPSv3_7B.yaml").read_text())
    # CPU fixture: float32 everywhere (the shipped bf16 autocast on the head is CUDA-only)
    cfg.update(
        {
            "model_name_or_path": str(base),
            "bf16": False,
            "torch_dtype": "float32",
            "disable_flash_attn2": True,
            "output_dir": str(work / "out"),
        }
    )
    yaml_path = work / "HPSv3_cpu.yaml"
    yaml_path.write_text(yaml.safe_dump(cfg))

    (_d, training_args, model_config, lora_config), _ = parse_args_with_yaml(
        (DataConfig, TrainingConfig, ModelConfig, PEFTLoraConfig), str(yaml_path), is_train=False
    )
    skeleton, _processor, _ = create_model_and_processor(model_config, lora_config, training_args)
    sd = _draw(skeleton.state_dict(), SEED + 1)
    ckpt = folder / "HPSv3.safetensors"
    safetensors.torch.save_file(sd, str(ckpt))

    inf = HPSv3RewardInferencer(config_path=str(yaml_path), checkpoint_path=str(ckpt), device="cpu")
    paths = [str(images / name) for name, *_ in IMAGES]
    cases = []
    with torch.no_grad():
        for i, path in enumerate(paths):
            batch = inf.prepare_batch([path], [PROMPTS[i]])
            out = inf.reward([path], [PROMPTS[i]])
            cases.append(
                {
                    "prompt": PROMPTS[i],
                    "image": f"images/{IMAGES[i][0]}",
                    "score": float(out[0][0]),
                    "sigma": float(out[0][1]),
                    "input_ids": batch["input_ids"][0].tolist(),
                    "image_grid_thw": batch["image_grid_thw"][0].tolist(),
                }
            )
        batched = inf.reward(paths, PROMPTS)
    shutil.rmtree(work, ignore_errors=True)
    return {
        "cases": cases,
        "batched_scores": [float(r[0]) for r in batched],
        "reward_token_id": int(inf.processor.tokenizer.convert_tokens_to_ids("<|Reward|>")),
    }


def upstream_main(which: str, out: Path) -> None:
    import importlib.metadata as md

    folder = FIXTURES / which
    images = FIXTURES / "images"
    result = (
        run_upstream_imagereward(folder, images)
        if which == "imagereward"
        else run_upstream_hpsv3(folder, images)
    )
    pkgs = ["torch", "transformers", "image-reward" if which == "imagereward" else "hpsv3"]
    result["upstream"] = {p: md.version(p) for p in pkgs}
    out.write_text(json.dumps(result))


# -- driver (project venv) ---------------------------------------------------------------------------


def project_venv(venv: Path, reqs: list[str], create: bool, *, no_deps: bool, option: str) -> Path:
    """The python of ``venv`` holding the upstream pins ``reqs``, with torch & co. seen from the project venv
    (a ``.pth`` after the venv's own packages, so its pins win); created only when ``create`` (``option``)."""
    py = venv / "bin" / "python"
    if not py.exists():
        if not create:
            raise SystemExit(f"{py} missing: run with {option}")
        venv.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        site = subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        (Path(site) / "zz_project.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", *(["--no-deps"] if no_deps else []), *reqs], check=True
        )
    return py


def upstream_env() -> dict[str, str]:
    """The upstream side's environment: offline, CPU only, two threads, no user site."""
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "2",
        "PYTHONNOUSERSITE": "1",
    }


def run_upstream_json(py: Path, script: str, args: list[str], cwd: Path | None = None) -> dict:
    """Run ``script --upstream *args --out TMP`` with ``py`` in ``upstream_env`` and return the JSON it wrote."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        tmp = Path(fh.name)
    try:
        subprocess.run(
            [str(py), str(Path(script).resolve()), "--upstream", *args, "--out", str(tmp)],
            check=True,
            env=upstream_env(),
            cwd=None if cwd is None else str(cwd),
        )
        return json.loads(tmp.read_text())
    finally:
        tmp.unlink(missing_ok=True)


def ensure_venv(which: str, create: bool) -> Path:
    name, reqs = VENV_SPECS[which]
    py = VENVS / name / "bin" / "python"
    if not py.exists():
        if not create:
            raise SystemExit(f"{py} missing: run with --create-venvs (pip installs {' '.join(reqs)})")
        VENVS.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENVS / name)], check=True)  # Python 3.11 here
        subprocess.run([str(py), "-m", "pip", "install", "-q", *reqs], check=True)
    return py


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def build(which: list[str], create: bool) -> None:
    write_images(FIXTURES / "images")
    if "imagereward" in which:
        folder = FIXTURES / "imagereward"
        write_bert_tokenizer(folder / "bert-base-uncased")
        n_vocab = len((folder / "bert-base-uncased" / "vocab.txt").read_text().split("\n")) - 1
        write_med_config(folder / "med_config.json", n_vocab + 2)  # + [DEC], [ENC]
    if "hpsv3" in which:
        sys.path.insert(0, str(REPO))
        from lmms_eval_autorater.baselines.hpsv3 import build_prompt_text

        corpus = [build_prompt_text(p) for p in PROMPTS] + [QWEN2VL_CHAT_TEMPLATE]
        write_qwen2vl_base(FIXTURES / "hpsv3" / "base", corpus)
    for name in which:
        result = run_upstream_json(ensure_venv(name, create), __file__, [name], cwd=FIXTURES)
        ckpt = FIXTURES / name / ("ImageReward.pt" if name == "imagereward" else "HPSv3.safetensors")
        result.update(
            {
                "tolerance_abs": TOLERANCE,
                "checkpoint": ckpt.relative_to(FIXTURES).as_posix(),
                "checkpoint_sha256_16": _sha(ckpt),
                "regenerate": "python scripts/make_parity_fixtures.py --create-venvs",
            }
        )
        (FIXTURES / f"{name}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
        print(f"{name}: {[round(c['score'], 6) for c in result['cases']]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=sorted(VENV_SPECS), action="append", help="build one baseline only")
    ap.add_argument("--create-venvs", action="store_true", help=f"create missing venvs under {VENVS}")
    ap.add_argument("--upstream", choices=sorted(VENV_SPECS), help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.upstream:
        upstream_main(args.upstream, args.out)
    else:
        build(args.only or sorted(VENV_SPECS), args.create_venvs)


if __name__ == "__main__":
    main()
