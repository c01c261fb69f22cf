"""ImageReward (Xu et al., 2023) re-implemented on transformers' BLIP classes.

The official ``ImageReward.pt`` (hub ``catalog.models.IMAGEREWARD_CHECKPOINT``) is a plain state dict of the
upstream ``image-reward`` package: a BLIP ViT, a BLIP BERT with cross-attention and an MLP
head. It is loaded into ``BlipVisionModel`` + ``BlipTextModel`` with the key map below; the
score is the upstream z-normalised reward ``(mlp(text_cls) - MEAN) / STD``.

Key map (upstream -> here):

====================================================  ==============================================
``blip.visual_encoder.cls_token``                     ``vision.embeddings.class_embedding``
``blip.visual_encoder.pos_embed``                     ``vision.embeddings.position_embedding``
``blip.visual_encoder.patch_embed.proj.*``            ``vision.embeddings.patch_embedding.*``
``blip.visual_encoder.blocks.{i}.norm1.*``            ``vision.encoder.layers.{i}.layer_norm1.*``
``blip.visual_encoder.blocks.{i}.attn.qkv.*``         ``vision.encoder.layers.{i}.self_attn.qkv.*``
``blip.visual_encoder.blocks.{i}.attn.proj.*``        ``vision.encoder.layers.{i}.self_attn.projection.*``
``blip.visual_encoder.blocks.{i}.norm2.*``            ``vision.encoder.layers.{i}.layer_norm2.*``
``blip.visual_encoder.blocks.{i}.mlp.fc{1,2}.*``      ``vision.encoder.layers.{i}.mlp.fc{1,2}.*``
``blip.visual_encoder.norm.*``                        ``vision.post_layernorm.*``
``blip.text_encoder.*``                               ``text.*`` (same BERT names)
``mlp.layers.{0,2,4,6,7}.*``                          ``head.{0,1,2,3,4}.*`` (linear layers, no activations)
``blip.vision_proj.*``, ``blip.text_proj.*``          dropped (unused by the score), as are
``blip.text_encoder.embeddings.position_ids`` and ``blip.text_encoder.pooler.*``
====================================================  ==============================================

The ViT's width, depth, patch size, MLP width and input size are read from the tensors (heads
of size 64, as in BLIP's ViT-B/L); the text encoder's sizes likewise, with its head count,
activation and epsilon from ``med_config``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from lmms_eval_autorater import runtime
from lmms_eval_autorater.baselines import (
    CheckpointError,
    empty_cuda_cache,
    load_into_meta_model,
    load_state_dict,
    open_image,
    pick_device,
    pick_dtype,
    resolve_file,
)
from lmms_eval_autorater.catalog.models import IMAGEREWARD_CHECKPOINT, IMAGEREWARD_TOKENIZER

#: upstream ``ImageReward.mean`` / ``.std``: the reward is z-normalised with these
REWARD_MEAN = 0.16717362830052426
REWARD_STD = 1.0333394966054072
#: upstream tokenises with ``padding="max_length", truncation=True, max_length=35``
MAX_TEXT_LENGTH = 35
#: CLIP/BLIP normalisation, as upstream's ``_transform``
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)
VIT_HEAD_DIM = 64
#: BLIP's ``med_config.json`` (what the ImageReward hub checkpoint ships), for what tensors cannot tell
DEFAULT_MED_CONFIG = {
    "num_attention_heads": 12,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
}

_VIT = "blip.visual_encoder."
_TEXT = "blip.text_encoder."
_HEAD_LAYERS = (0, 2, 4, 6, 7)
_VIT_RENAMES = (
    (r"^cls_token$", "embeddings.class_embedding"),
    (r"^pos_embed$", "embeddings.position_embedding"),
    (r"^patch_embed\.proj\.", "embeddings.patch_embedding."),
    (r"^blocks\.(\d+)\.norm1\.", r"encoder.layers.\1.layer_norm1."),
    (r"^blocks\.(\d+)\.norm2\.", r"encoder.layers.\1.layer_norm2."),
    (r"^blocks\.(\d+)\.attn\.qkv\.", r"encoder.layers.\1.self_attn.qkv."),
    (r"^blocks\.(\d+)\.attn\.proj\.", r"encoder.layers.\1.self_attn.projection."),
    (r"^blocks\.(\d+)\.mlp\.", r"encoder.layers.\1.mlp."),
    (r"^norm\.", "post_layernorm."),
)


def map_imagereward_keys(sd: dict[str, Any]) -> dict[str, Any]:
    """Rename an upstream ``ImageReward.pt`` state dict to this module's layout (see the module docstring)."""
    out: dict[str, Any] = {}
    for key, value in sd.items():
        if key.startswith(_VIT):
            rest = key[len(_VIT) :]
            for pattern, repl in _VIT_RENAMES:
                new, n = re.subn(pattern, repl, rest)
                if n:
                    out["vision." + new] = value
                    break
            else:
                raise CheckpointError(f"ImageReward checkpoint: unknown vision key {key}")
        elif key.startswith(_TEXT):
            rest = key[len(_TEXT) :]
            if rest == "embeddings.position_ids" or rest.startswith("pooler."):
                continue
            out["text." + rest] = value
        elif key.startswith("mlp.layers."):
            idx = int(key.split(".")[2])
            if idx not in _HEAD_LAYERS:
                raise CheckpointError(f"ImageReward checkpoint: unexpected head key {key}")
            out[f"head.{_HEAD_LAYERS.index(idx)}." + key.split(".", 3)[3]] = value
        # blip.vision_proj / blip.text_proj and anything else: unused by the score
    return out


def _count(sd: dict[str, Any], pattern: str) -> int:
    ids = {int(m.group(1)) for k in sd if (m := re.match(pattern, k))}
    if ids != set(range(len(ids))):
        raise CheckpointError(
            f"ImageReward checkpoint: non-contiguous layer indices for {pattern}: {sorted(ids)}"
        )
    return len(ids)


def _need(sd: dict[str, Any], key: str):
    if key not in sd:
        raise CheckpointError(f"ImageReward checkpoint: missing tensor {key}")
    return sd[key]


def vision_config_from_state_dict(sd: dict[str, Any]) -> dict[str, Any]:
    """BLIP ViT hyper-parameters read from upstream tensors: width, depth, patch and input size, MLP width."""
    width = _need(sd, _VIT + "cls_token").shape[-1]
    patch = _need(sd, _VIT + "patch_embed.proj.weight").shape[-1]
    n_pos = _need(sd, _VIT + "pos_embed").shape[1]
    side = math.isqrt(n_pos - 1)
    if side * side != n_pos - 1:
        raise CheckpointError(
            f"ImageReward checkpoint: {n_pos - 1} patch positions do not form a square grid"
        )
    if width % VIT_HEAD_DIM:
        raise CheckpointError(
            f"ImageReward checkpoint: ViT width {width} is not a multiple of {VIT_HEAD_DIM}"
        )
    return {
        "hidden_size": width,
        "intermediate_size": _need(sd, _VIT + "blocks.0.mlp.fc1.weight").shape[0],
        "num_hidden_layers": _count(sd, re.escape(_VIT) + r"blocks\.(\d+)\."),
        "num_attention_heads": width // VIT_HEAD_DIM,
        "patch_size": patch,
        "image_size": side * patch,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-6,
        "attention_dropout": 0.0,
    }


def text_config_from_state_dict(
    sd: dict[str, Any], med: dict[str, Any], encoder_width: int
) -> dict[str, Any]:
    """BLIP BERT hyper-parameters: sizes from the tensors, head count/activation/epsilon from ``med_config``."""
    words = _need(sd, _TEXT + "embeddings.word_embeddings.weight")
    n_layers = _count(sd, re.escape(_TEXT) + r"encoder\.layer\.(\d+)\.")
    if _TEXT + "encoder.layer.0.crossattention.self.key.weight" not in sd:
        raise CheckpointError("ImageReward checkpoint: the text encoder has no cross-attention layers")
    med = {**DEFAULT_MED_CONFIG, **med}
    return {
        "vocab_size": words.shape[0],
        "hidden_size": words.shape[1],
        "encoder_hidden_size": encoder_width,
        "intermediate_size": _need(sd, _TEXT + "encoder.layer.0.intermediate.dense.weight").shape[0],
        "num_hidden_layers": n_layers,
        "num_attention_heads": med["num_attention_heads"],
        "max_position_embeddings": _need(sd, _TEXT + "embeddings.position_embeddings.weight").shape[0],
        "hidden_act": med["hidden_act"],
        "layer_norm_eps": med["layer_norm_eps"],
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "pad_token_id": med["pad_token_id"],
        "bos_token_id": None,  # generation-only ids; BLIP's defaults fall outside a small vocabulary
        "eos_token_id": None,
        "sep_token_id": None,
        # BlipTextLayer builds its cross-attention only for decoders; forward() runs it bidirectionally
        "is_decoder": True,
    }


def preprocess_image(image: Any, size: int):
    """Upstream ``_transform(size)``: bicubic resize of the short side, centre crop, RGB, CLIP normalisation.

    Same operations in the same order as torchvision's ``Resize``/``CenterCrop``/``ToTensor``/``Normalize``
    on a PIL image (the mode is converted after resizing, as upstream), without needing torchvision.
    """
    import numpy as np
    import torch
    from PIL import Image

    w, h = image.size
    short, long = (w, h) if w <= h else (h, w)
    if short != size:
        new_short, new_long = size, int(size * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
        image = image.resize((new_w, new_h), Image.BICUBIC)
    w, h = image.size
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    image = image.crop((left, top, left + size, top + size)).convert("RGB")
    x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).float().div(255)
    mean = torch.tensor(IMAGE_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(3, 1, 1)
    return (x - mean) / std


def _build_module(vision_cfg: dict[str, Any], text_cfg: dict[str, Any], head_dims: list[tuple[int, int]]):
    import torch
    from transformers import BlipTextConfig, BlipVisionConfig
    from transformers.models.blip.modeling_blip import BlipVisionModel
    from transformers.models.blip.modeling_blip_text import BlipTextModel

    class _ImageRewardModule(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vision = BlipVisionModel(BlipVisionConfig(**vision_cfg))
            self.text = BlipTextModel(BlipTextConfig(**text_cfg), add_pooling_layer=False)
            self.head = torch.nn.Sequential(*[torch.nn.Linear(i, o) for i, o in head_dims])

    with torch.device("meta"):
        return _ImageRewardModule()


class ImageRewardScorer:
    """ImageReward scores for (prompt, image) pairs: the upstream z-normalised reward, higher is better."""

    def __init__(
        self,
        checkpoint: str = IMAGEREWARD_CHECKPOINT,
        med_config: str | None = None,
        tokenizer: str = IMAGEREWARD_TOKENIZER,
        device: str | None = None,
        batch_size: int = 8,
        local_files_only: bool | None = None,
        dtype: str | None = None,
    ) -> None:
        self.checkpoint = checkpoint
        self.med_config = med_config
        self.tokenizer_name = tokenizer
        self.device_arg = device
        self.batch_size = max(1, int(batch_size))
        self.local_files_only = local_files_only
        self.dtype_arg = dtype
        self.model = None
        self.tokenizer = None

    # -- loading ---------------------------------------------------------------------------------

    def _read_med_config(self, ckpt_path: Path) -> dict[str, Any]:
        ref = self.med_config
        if ref is None:
            sibling = ckpt_path.with_name("med_config.json")
            if sibling.is_file():
                ref = str(sibling)
            elif not Path(self.checkpoint).expanduser().exists():
                ref = self.checkpoint  # a hub id: its med_config.json
            else:
                return {}  # a bare local file: BLIP's defaults (DEFAULT_MED_CONFIG)
        path = resolve_file(
            ref, "med_config.json", local_files_only=self.local_files_only, what="ImageReward med_config"
        )
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"ImageReward med_config: cannot read {path}: {exc}") from exc

    def load(self) -> ImageRewardScorer:
        """Resolve files and load the model now (otherwise done on first ``score``)."""
        if self.model is not None:
            return self
        from tokenizers import AddedToken
        from transformers import BertTokenizer

        ckpt = resolve_file(
            self.checkpoint,
            "ImageReward.pt",
            local_files_only=self.local_files_only,
            what="ImageReward checkpoint",
        )
        raw = load_state_dict(ckpt, what="ImageReward checkpoint")
        med = self._read_med_config(ckpt)
        vision_cfg = vision_config_from_state_dict(raw)
        text_cfg = text_config_from_state_dict(raw, med, vision_cfg["hidden_size"])
        head_dims = []
        for i in _HEAD_LAYERS:
            out_dim, in_dim = _need(raw, f"mlp.layers.{i}.weight").shape
            head_dims.append((in_dim, out_dim))
        if head_dims[0][0] != text_cfg["hidden_size"] or head_dims[-1][1] != 1:
            raise CheckpointError(
                f"ImageReward checkpoint: head shapes {head_dims} do not fit the text encoder"
            )

        self.device = pick_device(self.device_arg)
        self.dtype = pick_dtype(self.device, self.dtype_arg)
        module = _build_module(vision_cfg, text_cfg, head_dims)
        load_into_meta_model(
            module,
            map_imagereward_keys(raw),
            self.device,
            self.dtype,
            keep_float32=("head.",),
            what=f"ImageReward checkpoint {ckpt}",
        )
        del raw
        self.model = module.eval()
        self.image_size = vision_cfg["image_size"]

        lfo = runtime.local_files_only(self.tokenizer_name, self.local_files_only)
        try:
            tok = BertTokenizer.from_pretrained(self.tokenizer_name, local_files_only=lfo)
        except OSError as exc:
            if lfo and not Path(self.tokenizer_name).expanduser().exists():
                raise runtime.checkpoint_unavailable(
                    self.tokenizer_name, "tokenizer", "ImageReward tokenizer"
                ) from exc
            raise
        # upstream's init_tokenizer(): [DEC] as bos, [ENC] as an extra special token (in that order)
        tok.add_tokens(
            [
                AddedToken("[DEC]", special=True, normalized=False),
                AddedToken("[ENC]", special=True, normalized=False),
            ],
            special_tokens=True,
        )
        if len(tok) > text_cfg["vocab_size"]:
            raise CheckpointError(
                f"ImageReward: tokenizer {self.tokenizer_name} has {len(tok)} tokens but the checkpoint's "
                f"text embeddings only {text_cfg['vocab_size']} rows"
            )
        self.tokenizer = tok
        return self

    def release(self) -> None:
        """Free the model and its device memory."""
        self.model = None
        self.tokenizer = None
        empty_cuda_cache()

    # -- scoring ---------------------------------------------------------------------------------

    def score(self, prompts: list[str], images: list[Any]) -> list[float]:
        """One reward per (prompt, image) pair; images are ``PIL.Image`` objects or reference strings."""
        if len(prompts) != len(images):
            raise ValueError(f"{len(prompts)} prompts for {len(images)} images: give one prompt per image")
        self.load()
        out: list[float] = []
        for start in range(0, len(images), self.batch_size):
            out.extend(
                self._score_batch(
                    prompts[start : start + self.batch_size], images[start : start + self.batch_size]
                )
            )
        return out

    def _score_batch(self, prompts: list[str], images: list[Any]) -> list[float]:
        import torch

        pixels = torch.stack([preprocess_image(open_image(im), self.image_size) for im in images])
        text = self.tokenizer(
            list(prompts),
            padding="max_length",
            truncation=True,
            max_length=MAX_TEXT_LENGTH,
            return_tensors="pt",
        )
        m = self.model
        with torch.inference_mode():
            image_embeds = m.vision(pixel_values=pixels.to(self.device, self.dtype)).last_hidden_state
            hidden = m.text(
                input_ids=text["input_ids"].to(self.device),
                attention_mask=text["attention_mask"].to(self.device),
                encoder_hidden_states=image_embeds,
                is_decoder=False,
            ).last_hidden_state
            rewards = m.head(hidden[:, 0, :].float()).squeeze(-1)
            rewards = (rewards - REWARD_MEAN) / REWARD_STD
        return [float(r) for r in rewards.cpu()]
