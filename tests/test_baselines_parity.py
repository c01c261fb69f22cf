"""Parity of the re-implemented baselines (ImageReward, HPSv3) with their upstream packages.

``tests/fixtures/parity/`` holds tiny random-weight checkpoints in the upstream formats and the scores
the upstream packages (image-reward 1.5, hpsv3 1.0.0, each in its own venv) gave on them; regenerate
with ``python scripts/make_parity_fixtures.py --create-venvs``. Here only the project's scorers run.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from lmms_eval_autorater.baselines import CheckpointError, resolve_file  # noqa: E402
from lmms_eval_autorater.baselines.hpsv3 import HPSv3Scorer, smart_resize  # noqa: E402
from lmms_eval_autorater.baselines.imagereward import (  # noqa: E402
    ImageRewardScorer,
    vision_config_from_state_dict,
)

FIX = Path(__file__).parent / "fixtures" / "parity"
IR_DIR = FIX / "imagereward"
HPS_DIR = FIX / "hpsv3"
#: both re-implementations agree with upstream to about 3e-7 on these fixtures (float32, CPU)
TOL = 1e-4


def _load(name: str) -> dict:
    return json.loads((FIX / f"{name}.json").read_text())


@pytest.fixture(autouse=True)
def _two_threads():
    old = torch.get_num_threads()
    torch.set_num_threads(min(old, 2))
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def ir_scorer() -> ImageRewardScorer:
    return ImageRewardScorer(
        IR_DIR / "ImageReward.pt", tokenizer=str(IR_DIR / "bert-base-uncased"), device="cpu", batch_size=2
    ).load()


@pytest.fixture(scope="module")
def hps_scorer() -> HPSv3Scorer:
    return HPSv3Scorer(
        HPS_DIR / "HPSv3.safetensors", base_model=str(HPS_DIR / "base"), device="cpu", batch_size=3
    ).load()


# -- ImageReward ------------------------------------------------------------------------------------


def test_imagereward_tokens_match_upstream(ir_scorer):
    for case in _load("imagereward")["cases"]:
        ids = ir_scorer.tokenizer(
            case["prompt"], padding="max_length", truncation=True, max_length=35
        ).input_ids
        assert ids == case["input_ids"], case["prompt"]


def test_imagereward_scores_match_upstream(ir_scorer):
    ref = _load("imagereward")
    cases = ref["cases"]
    got = ir_scorer.score([c["prompt"] for c in cases], [str(FIX / c["image"]) for c in cases])
    want = [c["score"] for c in cases]
    assert max(abs(a - b) for a, b in zip(got, want, strict=True)) < TOL, (got, want)
    assert len({round(s, 4) for s in want}) == len(want)  # the fixture discriminates between images
    # upstream's inference_rank: one prompt, all images (PIL inputs this time)
    from PIL import Image

    imgs = [Image.open(FIX / c["image"]) for c in cases]
    got = ir_scorer.score([ref["rank_prompt"]] * len(imgs), imgs)
    assert max(abs(a - b) for a, b in zip(got, ref["rank_scores"], strict=True)) < TOL


def test_imagereward_vit_size_read_from_tensors(ir_scorer, tmp_path):
    """A checkpoint whose ViT differs from the fixture's (and from ViT-L) in width, depth, patch, MLP and input size."""
    sd = torch.load(IR_DIR / "ImageReward.pt", map_location="cpu", weights_only=True)
    cfg = vision_config_from_state_dict(sd)  # the parity fixture itself: width 64, depth 2, patch 14, MLP x3
    assert (
        cfg["hidden_size"],
        cfg["num_hidden_layers"],
        cfg["patch_size"],
        cfg["num_attention_heads"],
        cfg["intermediate_size"],
        cfg["image_size"],
    ) == (64, 2, 14, 1, 192, 224)
    g = torch.Generator().manual_seed(0)
    width, depth, patch, mlp, side = 128, 3, 8, 160, 6
    sd = {k: v for k, v in sd.items() if not k.startswith("blip.visual_encoder.")}
    vit = {
        "cls_token": (1, 1, width),
        "pos_embed": (1, side * side + 1, width),
        "patch_embed.proj.weight": (width, 3, patch, patch),
        "patch_embed.proj.bias": (width,),
        "norm.weight": (width,),
        "norm.bias": (width,),
    }
    for i in range(depth):
        for n, shape in {
            "norm1": (width,),
            "norm2": (width,),
            "attn.qkv": (3 * width, width),
            "attn.proj": (width, width),
            "mlp.fc1": (mlp, width),
            "mlp.fc2": (width, mlp),
        }.items():
            if n.startswith("norm"):
                vit[f"blocks.{i}.{n}.weight"], vit[f"blocks.{i}.{n}.bias"] = shape, shape
            else:
                vit[f"blocks.{i}.{n}.weight"], vit[f"blocks.{i}.{n}.bias"] = shape, shape[:1]
    for k, shape in vit.items():
        sd["blip.visual_encoder." + k] = 0.1 * torch.randn(shape, generator=g)
    for i in range(2):  # the text encoder's cross-attention reads the new width
        for n in ("key", "value"):
            w = sd[f"blip.text_encoder.encoder.layer.{i}.crossattention.self.{n}.weight"]
            sd[f"blip.text_encoder.encoder.layer.{i}.crossattention.self.{n}.weight"] = 0.1 * torch.randn(
                w.shape[0], width, generator=g
            )
    path = tmp_path / "ImageReward.pt"
    torch.save(sd, path)
    shutil.copy(IR_DIR / "med_config.json", tmp_path / "med_config.json")
    s = ImageRewardScorer(str(path), tokenizer=str(IR_DIR / "bert-base-uncased"), device="cpu").load()
    v = s.model.vision.config
    assert (
        v.hidden_size,
        v.num_hidden_layers,
        v.patch_size,
        v.intermediate_size,
        v.num_attention_heads,
        v.image_size,
    ) == (width, depth, patch, mlp, 2, side * patch)
    images = [str(FIX / "images" / "rgb_wide.png"), str(FIX / "images" / "gray.png")]
    scores = s.score(["a red fox", "a red fox"], images)
    assert all(math.isfinite(x) for x in scores) and scores[0] != scores[1]


def test_imagereward_missing_tensor_is_clear(tmp_path):
    sd = torch.load(IR_DIR / "ImageReward.pt", map_location="cpu", weights_only=True)
    del sd["blip.text_encoder.encoder.layer.1.output.dense.weight"]
    torch.save(sd, tmp_path / "ImageReward.pt")
    s = ImageRewardScorer(
        str(tmp_path / "ImageReward.pt"),
        med_config=str(IR_DIR / "med_config.json"),
        tokenizer=str(IR_DIR / "bert-base-uncased"),
        device="cpu",
    )
    with pytest.raises(CheckpointError, match=r"missing 1 keys.*output\.dense\.weight"):
        s.load()


# -- HPSv3 ------------------------------------------------------------------------------------------


def test_hpsv3_inputs_match_upstream(hps_scorer):
    ref = _load("hpsv3")
    assert hps_scorer.reward_token_id == ref["reward_token_id"]
    for case in ref["cases"]:
        batch = hps_scorer.prepare([case["prompt"]], [str(FIX / case["image"])])
        assert batch["input_ids"][0].tolist() == case["input_ids"], case["prompt"]
        assert batch["image_grid_thw"][0].tolist() == case["image_grid_thw"]


def test_hpsv3_scores_match_upstream(hps_scorer):
    ref = _load("hpsv3")
    cases = ref["cases"]
    # batch_size 3 over 5 images of different shapes: padded batches and a ragged last one
    got = hps_scorer.score_with_sigma([c["prompt"] for c in cases], [str(FIX / c["image"]) for c in cases])
    assert max(abs(mu - c["score"]) for (mu, _), c in zip(got, cases, strict=True)) < TOL, (got, cases)
    assert max(abs(sd - c["sigma"]) for (_, sd), c in zip(got, cases, strict=True)) < TOL
    assert max(abs(mu - b) for (mu, _), b in zip(got, ref["batched_scores"], strict=True)) < TOL
    assert len({round(c["score"], 4) for c in cases}) == len(cases)


def test_smart_resize_pins_pixel_count():
    assert smart_resize(448, 448) == (448, 448)
    h, w = smart_resize(64, 96)
    assert h % 28 == 0 and w % 28 == 0 and h * w >= 256 * 28 * 28 and (h, w) == (392, 560)
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(1, 500)


# -- resolution and errors --------------------------------------------------------------------------


def test_folder_and_sibling_med_config_resolve(ir_scorer):
    s = ImageRewardScorer(str(IR_DIR), tokenizer=str(IR_DIR / "bert-base-uncased"), device="cpu")
    c = _load("imagereward")["cases"][0]
    assert abs(s.score([c["prompt"]], [str(FIX / c["image"])])[0] - c["score"]) < TOL


def _fake_hub_cache(root: Path, repo: str, files: dict[str, Path]) -> None:
    commit = "0" * 40
    base = root / f"models--{repo.replace('/', '--')}"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(commit)
    snap = base / "snapshots" / commit
    snap.mkdir(parents=True)
    for name, src in files.items():
        shutil.copy(src, snap / name)


def test_hub_id_resolution_local_only(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(
        CheckpointError, match=r"not in the local Hugging Face cache and local_files_only=True"
    ):
        resolve_file("THUDM/ImageReward", "ImageReward.pt", local_files_only=True)
    with pytest.raises(CheckpointError, match="not in the local Hugging Face cache"):
        HPSv3Scorer("MizzenAI/HPSv3", base_model=str(HPS_DIR / "base"), local_files_only=True).load()
    with pytest.raises(
        CheckpointError, match="HPSv3 base model: hub repo 'Qwen/Qwen2-VL-7B-Instruct' is not"
    ):
        HPSv3Scorer(str(HPS_DIR), base_model="Qwen/Qwen2-VL-7B-Instruct", local_files_only=True).load()
    _fake_hub_cache(
        tmp_path,
        "THUDM/ImageReward",
        {"ImageReward.pt": IR_DIR / "ImageReward.pt", "med_config.json": IR_DIR / "med_config.json"},
    )
    path = resolve_file("THUDM/ImageReward", "ImageReward.pt", local_files_only=True)
    assert path.read_bytes() == (IR_DIR / "ImageReward.pt").read_bytes()
    s = ImageRewardScorer(
        "THUDM/ImageReward", tokenizer=str(IR_DIR / "bert-base-uncased"), device="cpu", local_files_only=True
    )
    c = _load("imagereward")["cases"][1]
    assert abs(s.score([c["prompt"]], [str(FIX / c["image"])])[0] - c["score"]) < TOL


def test_missing_local_path_is_not_sent_to_the_hub(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        resolve_file(str(tmp_path / "nope" / "ImageReward.pt"), "ImageReward.pt")
    with pytest.raises(CheckpointError, match="no such file"):
        resolve_file("./ImageReward.pt", "ImageReward.pt")
    with pytest.raises(CheckpointError, match="has no ImageReward.pt"):
        resolve_file(str(tmp_path), "ImageReward.pt")


@pytest.mark.parametrize("name", ["ImageReward.pt", "HPSv3.safetensors"])
def test_corrupt_checkpoint_is_clear(tmp_path, name):
    bad = tmp_path / name
    bad.write_bytes(b"this is not a checkpoint" * 10)
    if name == "ImageReward.pt":
        s = ImageRewardScorer(
            str(bad),
            med_config=str(IR_DIR / "med_config.json"),
            tokenizer=str(IR_DIR / "bert-base-uncased"),
            device="cpu",
        )
    else:
        s = HPSv3Scorer(str(bad), base_model=str(HPS_DIR / "base"), device="cpu")
    with pytest.raises(CheckpointError, match=rf"cannot read {bad}"):
        s.load()


def test_prompt_image_count_mismatch(ir_scorer):
    with pytest.raises(ValueError, match="one prompt per image"):
        ir_scorer.score(["a", "b"], [str(FIX / "images" / "gray.png")])
