"""HPSv3 (Ma et al., 2025) re-implemented on transformers' Qwen2-VL classes.

The official ``HPSv3.safetensors`` (hub ``catalog.models.HPSV3_CHECKPOINT``) is a flat state dict of upstream's
``Qwen2VLRewardModelBT`` (a ``Qwen2VLForConditionalGeneration`` plus an ``rm_head`` MLP) in the
transformers 4.45 key layout. Here it is loaded into transformers' ``Qwen2VLModel`` (the backbone
of ``Qwen2VLForConditionalGeneration``; the LM head is not needed for a reward) plus the head.

Key map (upstream, transformers 4.45 layout -> transformers 5.x ``Qwen2VLForConditionalGeneration``
layout, which this module shares: ``model`` is a ``Qwen2VLModel``):

=========================  ===============================  ======================================
``visual.*``               ``model.visual.*``               the vision tower and its merger
``model.*``                ``model.language_model.*``       embed_tokens, layers, norm
``lm_head.weight``         dropped                          unused by the reward
``rm_head.{0,3,5}.*``      ``rm_head.{0,3,5}.*``            Linear-ReLU-Dropout-Linear-ReLU-Linear
=========================  ===============================  ======================================

Upstream behaviour kept on purpose:

- the prompt is upstream's instruction plus ``<|Reward|>``, a special token HPSv3 adds to the base
  tokenizer (so the checkpoint's embeddings have one row more than the base tokenizer); the score is
  the head's first output (mu) at that token, the second being its sigma;
- images are resized to 256 * 28 * 28 pixels (bicubic, multiples of 28) before the processor;
- NO position ids are passed upstream, so every token gets plain 1-D positions ``0..L-1`` (Qwen2-VL's
  own 3-D M-RoPE positions move scores by up to 0.2); they are passed explicitly here;
- the head runs in float32. Upstream wraps it in a CUDA-only bf16 autocast that fails on CPU; here the
  backbone runs in float32 on CPU (bf16/fp16 on CUDA) and its hidden state is cast to float32 for the head.
"""

from __future__ import annotations

import math
from typing import Any

from lmms_eval_autorater.baselines import (
    CheckpointError,
    empty_cuda_cache,
    load_into_meta_model,
    load_state_dict,
    open_image,
    pick_device,
    pick_dtype,
    resolve_dir,
    resolve_file,
)
from lmms_eval_autorater.catalog.models import HPSV3_BASE_MODEL, HPSV3_CHECKPOINT

REWARD_TOKEN = "<|Reward|>"
#: upstream pins min_pixels == max_pixels == 256 * 28 * 28 for every image
IMAGE_PIXELS = 256 * 28 * 28
IMAGE_FACTOR = 28
MAX_ASPECT_RATIO = 200

# upstream's prompt (hpsv3/dataset/data_collator_qwen.py: INSTRUCTION + prompt_with_special_token), verbatim
INSTRUCTION = """
You are tasked with evaluating a generated image based on Visual Quality and Text Alignment and give a overall score to estimate the human preference. Please provide a rating from 0 to 10, with 0 being the worst and 10 being the best. 

**Visual Quality:**  
Evaluate the overall visual quality of the image. The following sub-dimensions should be considered:
- **Reasonableness:** The image should not contain any significant biological or logical errors, such as abnormal body structures or nonsensical environmental setups.
- **Clarity:** Evaluate the sharpness and visibility of the image. The image should be clear and easy to interpret, with no blurring or indistinct areas.
- **Detail Richness:** Consider the level of detail in textures, materials, lighting, and other visual elements (e.g., hair, clothing, shadows).
- **Aesthetic and Creativity:** Assess the artistic aspects of the image, including the color scheme, composition, atmosphere, depth of field, and the overall creative appeal. The scene should convey a sense of harmony and balance.
- **Safety:** The image should not contain harmful or inappropriate content, such as political, violent, or adult material. If such content is present, the image quality and satisfaction score should be the lowest possible. 

**Text Alignment:**  
Assess how well the image matches the textual prompt across the following sub-dimensions:
- **Subject Relevance** Evaluate how accurately the subject(s) in the image (e.g., person, animal, object) align with the textual description. The subject should match the description in terms of number, appearance, and behavior.
- **Style Relevance:** If the prompt specifies a particular artistic or stylistic style, evaluate how well the image adheres to this style.
- **Contextual Consistency**: Assess whether the background, setting, and surrounding elements in the image logically fit the scenario described in the prompt. The environment should support and enhance the subject without contradictions.
- **Attribute Fidelity**: Check if specific attributes mentioned in the prompt (e.g., colors, clothing, accessories, expressions, actions) are faithfully represented in the image. Minor deviations may be acceptable, but critical attributes should be preserved.
- **Semantic Coherence**: Evaluate whether the overall meaning and intent of the prompt are captured in the image. The generated content should not introduce elements that conflict with or distort the original description.
Textual prompt - {text_prompt}


"""  # noqa: W291 (upstream's trailing spaces are part of the prompt)
REWARD_SUFFIX = """
Please provide the overall ratings of this image: <|Reward|>

END
"""

#: files of the base model the scorer needs (never its weights)
BASE_MODEL_FILES = ["*.json", "*.txt", "*.jinja", "tokenizer*"]
_HEAD_KEYS = {f"rm_head.{i}.{p}" for i in (0, 3, 5) for p in ("weight", "bias")}


def build_prompt_text(prompt: str) -> str:
    """The user text upstream sends with each image: instruction, prompt, and the ``<|Reward|>`` line."""
    return INSTRUCTION.format(text_prompt=prompt) + REWARD_SUFFIX


def smart_resize(
    height: int,
    width: int,
    factor: int = IMAGE_FACTOR,
    min_pixels: int = IMAGE_PIXELS,
    max_pixels: int = IMAGE_PIXELS,
) -> tuple[int, int]:
    """Target (height, width): multiples of ``factor``, pixel count within bounds, aspect ratio kept (qwen-vl-utils)."""
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(
            f"aspect ratio {max(height, width) / min(height, width):.1f} exceeds {MAX_ASPECT_RATIO}"
        )
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def resize_image(image: Any):
    """RGB image resized as upstream's ``fetch_image`` with min = max = 256*28*28 pixels (PIL bicubic)."""
    from PIL import Image

    image = image.convert("RGB")
    h, w = smart_resize(image.height, image.width)
    return image.resize((w, h), Image.BICUBIC)


def map_hpsv3_keys(sd: dict[str, Any]) -> dict[str, Any]:
    """Rename an upstream (transformers 4.45) HPSv3 state dict to the 5.x layout (see the module docstring)."""
    out: dict[str, Any] = {}
    for key, value in sd.items():
        if key.startswith("visual."):
            out["model." + key] = value
        elif key.startswith("rm_head."):
            out[key] = value
        elif key.startswith("model."):
            out["model.language_model." + key[len("model.") :]] = value
        elif key == "lm_head.weight":
            continue
        else:
            raise CheckpointError(
                f"HPSv3 checkpoint: unexpected key {key} (expected the transformers 4.45 layout)"
            )
    return out


def _build_module(config, head_dims: list[tuple[int, int]]):
    import torch
    from transformers import Qwen2VLModel

    class _HPSv3Module(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = Qwen2VLModel(config)
            (i0, o0), (i1, o1), (i2, o2) = head_dims
            self.rm_head = torch.nn.Sequential(
                torch.nn.Linear(i0, o0),
                torch.nn.ReLU(),
                torch.nn.Dropout(0.05),
                torch.nn.Linear(i1, o1),
                torch.nn.ReLU(),
                torch.nn.Linear(i2, o2),
            )

    with torch.device("meta"):
        return _HPSv3Module()


class HPSv3Scorer:
    """HPSv3 scores for (prompt, image) pairs: the reward head's mu, higher is better."""

    def __init__(
        self,
        checkpoint: str = HPSV3_CHECKPOINT,
        base_model: str = HPSV3_BASE_MODEL,
        device: str | None = None,
        batch_size: int = 4,
        local_files_only: bool | None = None,
        dtype: str | None = None,
        attn_implementation: str = "sdpa",
    ) -> None:
        self.checkpoint = checkpoint
        self.base_model = base_model
        self.device_arg = device
        self.batch_size = max(1, int(batch_size))
        self.local_files_only = local_files_only
        self.dtype_arg = dtype
        self.attn_implementation = attn_implementation
        self.model = None
        self.processor = None

    def load(self) -> HPSv3Scorer:
        """Resolve files and load the model now (otherwise done on first ``score``)."""
        if self.model is not None:
            return self
        from transformers import AutoProcessor, Qwen2VLConfig

        ckpt = resolve_file(
            self.checkpoint,
            "HPSv3.safetensors",
            local_files_only=self.local_files_only,
            what="HPSv3 checkpoint",
        )
        base = resolve_dir(
            self.base_model,
            local_files_only=self.local_files_only,
            what="HPSv3 base model",
            allow_patterns=BASE_MODEL_FILES,
            arg="base_model",
        )
        sd = map_hpsv3_keys(load_state_dict(ckpt, what="HPSv3 checkpoint"))
        head_keys = {k for k in sd if k.startswith("rm_head.")}
        if head_keys != _HEAD_KEYS:
            raise CheckpointError(
                f"HPSv3 checkpoint: rm_head keys {sorted(head_keys)} are not the ranknet head "
                f"{sorted(_HEAD_KEYS)}"
            )
        head_dims = [tuple(reversed(sd[f"rm_head.{i}.weight"].shape)) for i in (0, 3, 5)]
        embed = sd.get("model.language_model.embed_tokens.weight")
        if embed is None:
            raise CheckpointError("HPSv3 checkpoint: no model.embed_tokens.weight")

        try:
            config = Qwen2VLConfig.from_pretrained(base)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"HPSv3 base model: cannot read the config in {base}: {exc}") from exc
        text_cfg = getattr(config, "text_config", config)
        # HPSv3 resized the embeddings to the tokenizer + <|Reward|>; the checkpoint's rows are the truth
        text_cfg.vocab_size = embed.shape[0]
        config._attn_implementation = self.attn_implementation
        text_cfg._attn_implementation = self.attn_implementation
        config.vision_config._attn_implementation = self.attn_implementation

        processor = AutoProcessor.from_pretrained(base, local_files_only=True)
        tok = processor.tokenizer
        tok.padding_side = "right"
        if REWARD_TOKEN not in tok.get_vocab():
            from tokenizers import AddedToken

            tok.add_tokens([AddedToken(REWARD_TOKEN, special=True, normalized=False)], special_tokens=True)
        self.reward_token_id = tok.convert_tokens_to_ids(REWARD_TOKEN)
        if self.reward_token_id != embed.shape[0] - 1:
            raise CheckpointError(
                f"HPSv3: {REWARD_TOKEN} gets id {self.reward_token_id} from the tokenizer of {self.base_model}, "
                f"but the checkpoint has {embed.shape[0]} embedding rows (expected id {embed.shape[0] - 1}): "
                "wrong base model?"
            )
        self.image_token_id = config.image_token_id

        self.device = pick_device(self.device_arg)
        self.dtype = pick_dtype(self.device, self.dtype_arg)
        module = _build_module(config, head_dims)
        load_into_meta_model(
            module, sd, self.device, self.dtype, keep_float32=("rm_head.",), what=f"HPSv3 checkpoint {ckpt}"
        )
        self.model = module.eval()
        self.processor = processor
        return self

    def release(self) -> None:
        """Free the model and its device memory."""
        self.model = None
        self.processor = None
        empty_cuda_cache()

    def score(self, prompts: list[str], images: list[Any]) -> list[float]:
        """One reward (mu) per (prompt, image) pair; images are ``PIL.Image`` objects or reference strings."""
        return [mu for mu, _sigma in self.score_with_sigma(prompts, images)]

    def score_with_sigma(self, prompts: list[str], images: list[Any]) -> list[tuple[float, float]]:
        """(mu, sigma) per pair: the head's two outputs (HPSv3 models each reward as a Gaussian)."""
        if len(prompts) != len(images):
            raise ValueError(f"{len(prompts)} prompts for {len(images)} images: give one prompt per image")
        self.load()
        out: list[tuple[float, float]] = []
        for start in range(0, len(images), self.batch_size):
            out.extend(
                self._score_batch(
                    prompts[start : start + self.batch_size], images[start : start + self.batch_size]
                )
            )
        return out

    def prepare(self, prompts: list[str], images: list[Any]) -> dict:
        """Processor inputs for a batch, as upstream's ``prepare_batch`` builds them (right padding)."""
        pil = [resize_image(open_image(im)) for im in images]
        conversations = [
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": build_prompt_text(p)}]}]
            for p in prompts
        ]
        texts = [
            self.processor.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
            for c in conversations
        ]
        return self.processor(text=texts, images=pil, padding=True, return_tensors="pt")

    def _score_batch(self, prompts: list[str], images: list[Any]) -> list[tuple[float, float]]:
        import torch

        batch = self.prepare(prompts, images)
        input_ids = batch["input_ids"].to(self.device)
        is_reward = input_ids == self.reward_token_id
        counts = is_reward.sum(-1)
        if (counts == 0).any():
            raise ValueError(f"{REWARD_TOKEN} missing from a tokenised prompt (truncated?)")
        # the template's own token is the last one (a prompt could contain the text "<|Reward|>" too)
        pos = input_ids.shape[1] - 1 - is_reward.flip(-1).int().argmax(-1)
        bsz, seq = input_ids.shape
        # upstream behaviour: plain 1-D positions for every token (no M-RoPE), same on all three rope axes
        position_ids = torch.arange(seq, device=self.device).view(1, 1, -1).expand(3, bsz, -1)
        with torch.inference_mode():
            hidden = self.model.model(
                input_ids=input_ids,
                attention_mask=batch["attention_mask"].to(self.device),
                pixel_values=batch["pixel_values"].to(self.device, self.dtype),
                image_grid_thw=batch["image_grid_thw"].to(self.device),
                position_ids=position_ids,
                use_cache=False,
            ).last_hidden_state
            picked = hidden[torch.arange(bsz, device=self.device), pos].float()
            logits = self.model.rm_head(picked)
        rows = logits.cpu().tolist()
        return [(float(r[0]), float(r[1]) if len(r) > 1 else float("nan")) for r in rows]
