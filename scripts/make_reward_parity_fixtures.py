"""Build the parity fixtures of the reward models (PickScore, CLIPScore, HPSv2.1) by running the AUTHORS' code.

Writes, under ``tests/fixtures/parity/``:

- ``clip/``: a tiny random-weight transformers ``CLIPModel`` (saved by transformers 4.46, the authors'
  era) with a tiny CLIP BPE tokenizer and a CLIP image processor (32 px): the checkpoint format of
  ``yuvalkirstain/PickScore_v1`` and ``openai/clip-vit-large-patch14``;
- ``pickscore.json``: the scores of PickScore's model-card code (``calc_probs`` without the softmax) on it;
- ``clipscore.json``: the scores of torchmetrics 1.9's ``clip_score`` on it, one sample at a time;
- ``hpsv2/HPS_v2.1_compressed.pt`` + ``hpsv2/open_clip_config.json``: a tiny open_clip CLIP in the ``hpsv2``
  package's checkpoint format (``{"state_dict": ...}``; fp16 tensors to keep the 49408-row token table
  small), and ``hpsv2.json``: the scores of ``hpsv2.img_score.score`` (hpsv2 1.2.0, its vendored open_clip).

Images and prompts are those of ``scripts/make_parity_fixtures.py`` (``tests/fixtures/parity/images``).
The authors' code runs in its own virtual environment, /tmp/parity-venvs/rw, with transformers 4.46.3,
tokenizers 0.20.3, huggingface_hub 0.26.5, hpsv2 1.2.0 (+ clint, args), torchmetrics 1.9.0 and
lightning-utilities installed with ``--no-deps``; torch, torchvision, ftfy, regex, PIL and numpy come from
the project venv through a ``.pth`` file placed after the venv's own site-packages (so the venv's
transformers wins); the hpsv2 wheel lacks its tokenizer's BPE file, copied from open_clip (the same CLIP
vocabulary). ``--create-venv`` builds it. Run from the repo root with the project venv:

    .venv/bin/python scripts/make_reward_parity_fixtures.py --create-venv

``tests/test_reward_parity.py`` loads the same files through the project's scorers and compares.
"""

from __future__ import annotations

import argparse
import json
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_parity_fixtures import (  # noqa: E402
    FIXTURES,
    IMAGES,
    PROMPTS,
    SEED,
    _draw,
    project_venv,
    run_upstream_json,
    write_images,
)

VENV = Path("/tmp/parity-venvs/rw")
VENV_REQS = [
    "transformers==4.46.3",
    "tokenizers==0.20.3",
    "huggingface_hub==0.26.5",
    "hpsv2==1.2.0",
    "clint",
    "args",
    "torchmetrics==1.9.0",
    "lightning-utilities",
]
#: absolute tolerance of each fixture: 1e-5 of the cosine for HPSv2; 1e-6 of the cosine for PickScore and
#: CLIPScore, whose scores are 100 * cosine (float32 models differ by ~1e-7 of the cosine between batchings)
TOLERANCE = {"pickscore": 1e-4, "clipscore": 1e-4, "hpsv2": 1e-5}
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
#: (prompt index, image index) pairs scored one by one, beyond the diagonal: every prompt with every image
PAIRS = [(p, i) for p in range(len(PROMPTS)) for i in range(len(IMAGES))]
TINY_CLIP = {
    "text_config": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 77,
        "eos_token_id": 2,  # the released CLIP configs' legacy value: pool at the highest id (<|endoftext|>)
        "bos_token_id": 0,
        "pad_token_id": 1,
    },
    "vision_config": {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
    },
    "projection_dim": 16,
}
TINY_OPEN_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 8, "heads": 2, "layers": 2},
}
MERGES = [("t", "h"), ("th", "e</w>"), ("o", "n</w>"), ("i", "n"), ("a", "n"), ("r", "e"), ("o", "g</w>")]


def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_clip_tokenizer_sources(folder: Path) -> None:
    """vocab.json + merges.txt of a tiny CLIP BPE (bytes, bytes + ``</w>``, a few merges, the two specials)."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in MERGES]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}, ensure_ascii=False))
    merges = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in MERGES)
    (folder / "merges.txt").write_text(merges, encoding="utf-8")
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "crop_size": {"height": 32, "width": 32},
                "do_center_crop": True,
                "do_convert_rgb": True,
                "do_normalize": True,
                "do_rescale": True,
                "do_resize": True,
                "image_mean": CLIP_MEAN,
                "image_std": CLIP_STD,
                "image_processor_type": "CLIPImageProcessor",
                "processor_class": "CLIPProcessor",
                "resample": 3,
                "rescale_factor": 1 / 255,
                "size": {"shortest_edge": 32},
            },
            indent=1,
        )
    )


# -- upstream side (runs in the venv) ----------------------------------------------------------------


def _clip_draw(sd: dict, seed: int) -> dict:
    import math

    import torch

    out = _draw({k: v for k, v in sd.items() if v.dim() > 0}, seed)
    for k, v in sd.items():
        if v.dim() == 0:  # logit_scale: the released PickScore's ln(100)
            out[k] = torch.tensor(math.log(100.0), dtype=v.dtype)
    return out


def run_upstream_clip(folder: Path, images: Path) -> dict:
    """Tiny CLIPModel saved by transformers 4.46; PickScore's model-card code and torchmetrics' clip_score on it."""
    import numpy as np
    import torch
    from PIL import Image
    from transformers import AutoModel, AutoProcessor, CLIPConfig, CLIPModel, CLIPTokenizer

    # the tokenizer: slow from vocab/merges, saved with its fast twin (tokenizer.json) as the hub repos have it
    slow = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token="<|endoftext|>")
    from transformers import CLIPTokenizerFast

    fast = CLIPTokenizerFast.from_pretrained(str(folder), pad_token="<|endoftext|>", from_slow=True)
    assert slow("a fox on the log")["input_ids"] == fast("a fox on the log")["input_ids"]
    fast.model_max_length = 77
    fast.save_pretrained(str(folder))
    cfg = TINY_CLIP
    config = CLIPConfig(
        text_config={**cfg["text_config"], "vocab_size": len(fast)},
        vision_config=cfg["vision_config"],
        projection_dim=cfg["projection_dim"],
    )
    torch.manual_seed(0)
    model = CLIPModel(config).eval()
    pil = [Image.open(images / name) for name, *_ in IMAGES]
    # random weights give cosines of one sign; the first seed whose cosines straddle zero is kept, so that
    # CLIPScore's clipping at 0 is exercised on both sides
    proc0 = AutoProcessor.from_pretrained(str(folder))
    for k in range(100):
        model.load_state_dict(_clip_draw(model.state_dict(), SEED + 7 + k))
        with torch.no_grad():
            img = model.get_image_features(**proc0(images=pil, return_tensors="pt"))
            txt = model.get_text_features(
                **proc0(text=PROMPTS, padding=True, truncation=True, max_length=77, return_tensors="pt")
            )
        cos = torch.nn.functional.normalize(txt, dim=-1) @ torch.nn.functional.normalize(img, dim=-1).T
        if 0.3 < (cos > 0).float().mean() < 0.7:
            break
    model.save_pretrained(str(folder), safe_serialization=True)

    # PickScore: the model card's code, verbatim but for the softmax (the score is what comes before it)
    device = "cpu"
    processor = AutoProcessor.from_pretrained(str(folder))
    model = AutoModel.from_pretrained(str(folder)).eval().to(device)

    def calc_scores(prompt, images):
        image_inputs = processor(
            images=images, padding=True, truncation=True, max_length=77, return_tensors="pt"
        ).to(device)
        text_inputs = processor(
            text=prompt, padding=True, truncation=True, max_length=77, return_tensors="pt"
        ).to(device)
        with torch.no_grad():
            image_embs = model.get_image_features(**image_inputs)
            image_embs = image_embs / torch.norm(image_embs, dim=-1, keepdim=True)
            text_embs = model.get_text_features(**text_inputs)
            text_embs = text_embs / torch.norm(text_embs, dim=-1, keepdim=True)
            scores = model.logit_scale.exp() * (text_embs @ image_embs.T)[0]
        return scores.cpu().tolist()

    pick = []
    for p, prompt in enumerate(PROMPTS):
        row = calc_scores(prompt, pil)  # one prompt against all images, as the model card does
        for i, s in enumerate(row):
            pick.append({"prompt": p, "image": i, "score": float(s)})
    text_ids = [processor(text=p, truncation=True, max_length=77)["input_ids"] for p in PROMPTS]

    # CLIPScore: torchmetrics' own function, one (image, prompt) at a time (per-sample, clipped at 0)
    from torchmetrics.functional.multimodal import clip_score

    clip = []
    for p, i in PAIRS:
        arr = torch.from_numpy(np.array(pil[i].convert("RGB"))).permute(2, 0, 1)
        s = clip_score(arr, PROMPTS[p], model_name_or_path=lambda: (model, processor))
        clip.append({"prompt": p, "image": i, "score": float(s)})
    return {"pickscore": pick, "clipscore": clip, "text_ids": text_ids}


def run_upstream_hpsv2(folder: Path, images: Path) -> dict:
    """Tiny open_clip CLIP in hpsv2's checkpoint format; ``hpsv2.img_score.score`` on it."""
    import hpsv2.img_score as img_score
    import torch
    from hpsv2.src.open_clip import create_model_and_transforms, factory
    from PIL import Image

    factory._MODEL_CONFIGS["tiny-hps"] = TINY_OPEN_CLIP
    # the package's own call (img_score.initialize_model) with the tiny config and no download
    model, _train, preprocess_val = create_model_and_transforms(
        "tiny-hps",
        None,
        precision="amp",
        device="cpu",
        jit=False,
        force_quick_gelu=False,
        force_custom_text=False,
        force_patch_dropout=False,
        force_image_size=None,
        pretrained_image=False,
        image_mean=None,
        image_std=None,
        light_augmentation=True,
        aug_cfg={},
        output_dict=True,
        with_score_predictor=False,
        with_region_predictor=False,
    )
    sd = {
        k: v.half() if v.is_floating_point() else v
        for k, v in _clip_draw(model.state_dict(), SEED + 11).items()
    }
    ckpt = folder / "HPS_v2.1_compressed.pt"
    torch.save({"state_dict": sd}, str(ckpt))
    (folder / "open_clip_config.json").write_text(json.dumps(TINY_OPEN_CLIP, indent=1) + "\n")
    img_score.model_dict.update({"model": model, "preprocess_val": preprocess_val})
    cases = []
    for p, i in PAIRS:
        name, mode, *_ = IMAGES[i]
        # the package keeps RGBA as 4 channels, which its patch embedding rejects: it is given the RGB image
        im = Image.open(images / name)
        arg = im.convert("RGB") if mode == "RGBA" else str(images / name)
        s = img_score.score([arg], PROMPTS[p], cp=str(ckpt), hps_version="v2.1")[0]
        cases.append({"prompt": p, "image": i, "score": float(s)})
    return {"hpsv2": cases}


def upstream_main(out: Path) -> None:
    import importlib.metadata as md

    images = FIXTURES / "images"
    result = run_upstream_clip(FIXTURES / "clip", images)
    (FIXTURES / "hpsv2").mkdir(parents=True, exist_ok=True)
    result.update(run_upstream_hpsv2(FIXTURES / "hpsv2", images))
    result["upstream"] = {
        p: md.version(p)
        for p in ("torch", "torchvision", "transformers", "tokenizers", "hpsv2", "torchmetrics")
    }
    out.write_text(json.dumps(result))


# -- driver (project venv) ---------------------------------------------------------------------------


def ensure_venv(create: bool) -> Path:
    py = project_venv(VENV, VENV_REQS, create, no_deps=True, option="--create-venv")
    # the hpsv2 1.2.0 wheel lacks its vendored tokenizer's BPE file: it is open_clip's (the CLIP vocabulary)
    bpe = Path(sysconfig.get_paths()["purelib"]) / "open_clip" / "bpe_simple_vocab_16e6.txt.gz"
    site = VENV / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    target = site / "hpsv2" / "src" / "open_clip" / bpe.name
    if not target.exists():
        target.write_bytes(bpe.read_bytes())
    return py


def build(create: bool) -> None:
    write_images(FIXTURES / "images")
    write_clip_tokenizer_sources(FIXTURES / "clip")
    result = run_upstream_json(ensure_venv(create), __file__, [])
    common = {
        "prompts": PROMPTS,
        "images": [f"images/{name}" for name, *_ in IMAGES],
        "upstream": result["upstream"],
        "regenerate": "python scripts/make_reward_parity_fixtures.py --create-venv",
    }
    for name, ckpt in (
        ("pickscore", "clip"),
        ("clipscore", "clip"),
        ("hpsv2", "hpsv2/HPS_v2.1_compressed.pt"),
    ):
        data = {**common, "tolerance_abs": TOLERANCE[name], "checkpoint": ckpt, "cases": result[name]}
        if name == "pickscore":
            data["text_ids"] = result["text_ids"]
        (FIXTURES / f"{name}.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        print(f"{name}: {[round(c['score'], 5) for c in result[name][:6]]} ...")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--create-venv", action="store_true", help=f"create {VENV} when missing")
    ap.add_argument("--upstream", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.upstream:
        upstream_main(args.out)
    else:
        build(args.create_venv)


if __name__ == "__main__":
    main()
