"""AesExpert (Huang et al., 2024): an aesthetic critique from a LLaVA-1.5-7B tuned on AesMMIT.

The release (``catalog.models.AESEXPERT_CHECKPOINT``) is in the original LLaVA repo format
(``model_type: llava_llama``), which transformers cannot load. ``convert`` rewrites it as a
transformers ``LlavaForConditionalGeneration`` folder, once:

    python -m lmms_eval_autorater.specialists.ae convert --checkpoint <original folder or hub id> --out <folder>

and the ``AesExpert`` specialist (code "AE") then runs that folder (``ae_model=<folder>``).

Prompt: LLaVA-1.5's ``llava_v1`` conversation, which the authors' demo (``run_llava.eval_model``
with ``conv_mode=None``) picks for this model name: ``AE_SYSTEM + " USER: <image>\\n" + question
+ " ASSISTANT:"``. The question extends the authors' demo query ("Describe the aesthetic
experience of this image in detail.") with the four aspects the judge needs: ``AE_QUESTION``.
Greedy decoding; the text is the trimmed answer (``max_new_tokens`` 200 by default).

Image preprocessing: LLaVA-1.5 (``image_aspect_ratio: pad``) pads the image to a square with
the CLIP mean colour, then resizes to 336 and centre-crops; the converted folder stores a
``LlavaImageProcessor`` with ``do_pad=True`` (same padding colour), shortest edge 336 and a
336 crop. Importing this module does not import torch.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from lmms_eval_autorater import runtime
from lmms_eval_autorater.catalog.models import AESEXPERT_CHECKPOINT
from lmms_eval_autorater.runtime import default_device, resolve_dtype
from lmms_eval_autorater.specialists.base import (
    Specialist,
    SpecialistInput,
    SpecialistSpec,
    missing_dependency,
)
from lmms_eval_autorater.specialists.qs import to_pil
from lmms_eval_autorater.specialists.registry import SPECS
from lmms_eval_autorater.specialists.types import Assessment

DEFAULT_AE_MODEL = AESEXPERT_CHECKPOINT
AE_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
AE_QUESTION = (
    "Describe the aesthetic experience of this image in detail, covering its lighting, composition, "
    "color and fidelity."
)
AE_MAX_NEW_TOKENS = 200
IMAGE_TOKEN = "<image>"

#: the registry holds the one spec (what the judge reads and what keys the cache)
SPEC = SPECS["AE"]

#: A chat template for the converted processor (LLaVA-1.5 ``USER: <image>\n... ASSISTANT:``), for users'
#: convenience; ``AesExpert`` builds its prompt with ``llava_v1_prompt`` instead.
LLAVA_V1_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'][0]['text'] + ' ' }}"
    "{% else %}{{ message['role'].upper() + ': ' }}"
    "{% for c in message['content'] if c['type'] == 'image' %}{{ '<image>\n' }}{% endfor %}"
    "{% for c in message['content'] if c['type'] == 'text' %}{{ c['text'] }}{% endfor %}"
    "{{ '</s>' if message['role'] == 'assistant' else ' ' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def llava_v1_prompt(question: str, system: str = AE_SYSTEM) -> str:
    """One-image LLaVA-1.5 ``llava_v1`` prompt: system, ``USER: <image>\\n{question}``, ``ASSISTANT:``."""
    head = f"{system} " if system else ""
    return f"{head}USER: {IMAGE_TOKEN}\n{question} ASSISTANT:"


class AesExpert(Specialist):
    """AesExpert aesthetic critique (code "AE"): text = the description, value None."""

    spec: ClassVar[SpecialistSpec] = SPEC

    def __init__(
        self,
        model: str | None = None,
        device: str | None = None,
        local_files_only: bool | None = None,
        batch_size: int = 4,
        dtype: Any = None,
        max_new_tokens: int = AE_MAX_NEW_TOKENS,
        question: str = AE_QUESTION,
    ) -> None:
        super().__init__(model=model, device=device, local_files_only=local_files_only, batch_size=batch_size)
        self._dtype_arg = dtype
        self.max_new_tokens = int(max_new_tokens)
        self.question = question
        self._model_llava: Any = None
        self._processor: Any = None

    @property
    def version(self) -> str:
        """Base version, plus a hash of the prompt settings when they differ from the defaults."""
        base = super().version
        if self.question == AE_QUESTION and self.max_new_tokens == AE_MAX_NEW_TOKENS:
            return base
        h = hashlib.sha256(f"{self.question}\0{self.max_new_tokens}".encode()).hexdigest()[:8]
        return f"{base}:p{h}"

    def _load(self) -> None:
        try:
            import torch
            from transformers import AutoConfig, AutoProcessor, LlavaForConditionalGeneration
        except ImportError as exc:
            raise missing_dependency("transformers", "specialists") from exc

        name = self.model_name
        local_only = runtime.local_files_only(name, self.local_files_only)
        how = f"python -m lmms_eval_autorater.specialists.ae convert --checkpoint {name} --out <folder>"
        try:
            config = AutoConfig.from_pretrained(name, local_files_only=local_only)
        except (ValueError, KeyError) as exc:
            raise ValueError(
                f"AesExpert: {name} is not a transformers LLaVA checkpoint ({exc}); the release is in the "
                f"original LLaVA format: convert it once with `{how}` and pass ae_model=<folder>"
            ) from exc
        if config.model_type != "llava":
            raise ValueError(
                f"AesExpert: {name} has model_type {config.model_type!r}, expected 'llava'; convert the original "
                f"checkpoint with `{how}` and pass ae_model=<folder>"
            )
        self.device = default_device(self.device)
        dtype = resolve_dtype(self._dtype_arg, self.device)
        processor = AutoProcessor.from_pretrained(name, local_files_only=local_only)
        tokenizer = processor.tokenizer
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
        model = LlavaForConditionalGeneration.from_pretrained(name, dtype=dtype, local_files_only=local_only)
        model.to(self.device).eval()
        self._torch = torch
        self._dtype = dtype
        self._prompt = llava_v1_prompt(self.question)
        self._processor = processor
        self._model_llava = model

    def describe(self, images: Sequence[Any]) -> list[str]:
        """The aesthetic description of each image (reference string or PIL image), in order."""
        self.load()
        out: list[str] = []
        for i in range(0, len(images), self.batch_size):
            out.extend(self._describe_batch([to_pil(im) for im in images[i : i + self.batch_size]]))
        return out

    def _describe_batch(self, pil_images: list[Any]) -> list[str]:
        torch = self._torch
        processor, model = self._processor, self._model_llava
        tokenizer = processor.tokenizer
        inputs = processor(
            images=pil_images, text=[self._prompt] * len(pil_images), padding=True, return_tensors="pt"
        )
        inputs["pixel_values"] = inputs["pixel_values"].to(self._dtype)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        suppress = [t for t in (model.config.image_token_id,) if t is not None]
        with torch.inference_mode():
            generated = model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                num_beams=1,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=tokenizer.pad_token_id,
                suppress_tokens=suppress,
            )
        new_tokens = generated[:, inputs["input_ids"].shape[1] :]
        return [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]

    def _assess_batch(self, items: list[SpecialistInput]) -> list[Assessment]:
        texts = self.describe([item.image for item in items])
        return [Assessment(code=self.spec.code, value=None, text=t, version=self.version) for t in texts]


# --- conversion of the original LLaVA checkpoint -------------------------------------------------

#: Original LLaVA (haotian-liu/LLaVA, ``LlavaLlamaForCausalLM``) key prefix -> transformers LLaVA key prefix.
KEY_MAP: tuple[tuple[str, str], ...] = (
    ("model.vision_tower.vision_tower.vision_model.", "model.vision_tower.vision_model."),
    ("model.mm_projector.0.", "model.multi_modal_projector.linear_1."),
    ("model.mm_projector.2.", "model.multi_modal_projector.linear_2."),
    ("model.embed_tokens.", "model.language_model.embed_tokens."),
    ("model.layers.", "model.language_model.layers."),
    ("model.norm.", "model.language_model.norm."),
    ("lm_head.", "lm_head."),
)
#: Buffers that old checkpoints saved and transformers recomputes.
DROPPED_SUFFIXES = ("rotary_emb.inv_freq", "embeddings.position_ids")
#: Prefixes of a standalone CLIP (vision) checkpoint's vision weights; text-side weights are skipped.
_CLIP_VISION_PREFIXES = ("vision_model.", "embeddings.", "encoder.", "pre_layrnorm.", "post_layernorm.")

#: CLIP ViT-L/14-336 (openai/clip-vit-large-patch14-336), LLaVA-1.5's vision tower.
CLIP_L336_VISION_CONFIG: dict[str, Any] = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "projection_dim": 768,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "num_channels": 3,
    "image_size": 336,
    "patch_size": 14,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}
_VISION_FIELDS = (*CLIP_L336_VISION_CONFIG, "attention_dropout", "initializer_range", "initializer_factor")
_TEXT_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "hidden_act", "max_position_embeddings", "initializer_range",
    "rms_norm_eps", "rope_theta", "rope_scaling", "attention_bias", "attention_dropout", "mlp_bias",
    "pretraining_tp", "bos_token_id", "eos_token_id", "pad_token_id",
)  # fmt: skip


def original_to_hf_key(key: str) -> str | None:
    """The transformers LLaVA name of an original LLaVA weight; None for a dropped buffer."""
    if key.endswith(DROPPED_SUFFIXES):
        return None
    for old, new in KEY_MAP:
        if key.startswith(old):
            return new + key[len(old) :]
    raise KeyError(f"unknown weight in the original LLaVA checkpoint: {key}")


def _read_state_dict(folder: Path) -> dict[str, Any]:
    """All tensors of a checkpoint folder (safetensors shards, else ``pytorch_model*.bin``)."""
    files = sorted(folder.glob("*.safetensors"))
    out: dict[str, Any] = {}
    if files:
        from safetensors.torch import load_file

        for f in files:
            out.update(load_file(str(f)))
        return out
    files = sorted(folder.glob("pytorch_model*.bin"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors or pytorch_model*.bin weights in {folder}")
    import torch

    for f in files:
        out.update(torch.load(str(f), map_location="cpu", weights_only=True))
    return out


def _resolve_folder(path_or_id: str, local_files_only: bool) -> Path:
    p = Path(path_or_id)
    if p.is_dir():
        return p
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(path_or_id, local_files_only=local_files_only))


def _vision_config(vision_tower: Path | None) -> dict[str, Any]:
    if vision_tower is None or not (vision_tower / "config.json").is_file():
        return dict(CLIP_L336_VISION_CONFIG)
    raw = json.loads((vision_tower / "config.json").read_text())
    raw = raw.get("vision_config", raw)
    return {k: raw[k] for k in _VISION_FIELDS if k in raw}


def _vision_weights(vision_tower: Path) -> dict[str, Any]:
    out = {}
    for key, tensor in _read_state_dict(vision_tower).items():
        if key.endswith(DROPPED_SUFFIXES) or not key.startswith(_CLIP_VISION_PREFIXES):
            continue
        out["model.vision_tower.vision_model." + key.removeprefix("vision_model.")] = tensor
    return out


def _runtime_name(key: str) -> str:
    """The in-memory name transformers 5 gives a converted key (CLIPVisionModel drops ``vision_model.``)."""
    return key.replace("model.vision_tower.vision_model.", "model.vision_tower.", 1)


def convert_llava_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    vision_tower: str | Path | None = None,
    dtype: str | None = None,
    local_files_only: bool = False,
    max_shard_size: str = "5GB",
    tokenizer: str | Path | None = None,
) -> Path:
    """Rewrite an original-format LLaVA-1.5 checkpoint as a transformers LLaVA folder; returns ``out``.

    ``vision_tower``: a CLIP (vision) folder whose config is used, and whose weights fill in the
    vision tower when the checkpoint lacks them; default config: CLIP ViT-L/14-336. ``tokenizer``:
    where to load the (Llama) tokenizer from instead of the checkpoint.
    """
    import torch
    from huggingface_hub import save_torch_state_dict
    from transformers import (
        AutoTokenizer,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaImageProcessor,
        LlavaProcessor,
    )

    src = _resolve_folder(str(checkpoint), local_files_only)
    vt = _resolve_folder(str(vision_tower), local_files_only) if vision_tower else None
    out = Path(out)
    orig = json.loads((src / "config.json").read_text())
    projector = orig.get("mm_projector_type", "mlp2x_gelu")
    if projector != "mlp2x_gelu":
        raise ValueError(f"mm_projector_type {projector!r} is not supported (LLaVA-1.5 uses 'mlp2x_gelu')")

    # weights: rename, fill in the vision tower if absent
    state: dict[str, Any] = {}
    for key, tensor in _read_state_dict(src).items():
        new = original_to_hf_key(key)
        if new is not None:
            state[new] = tensor
    if not any(k.startswith("model.vision_tower.") for k in state):
        if vt is None:
            raise ValueError(
                f"{src} holds no vision tower weights; pass --vision-tower <CLIP ViT-L/14-336 folder or hub id>"
            )
        state.update(_vision_weights(vt))
    if dtype is not None:
        target = resolve_dtype(dtype, "cpu")
        state = {k: v.to(target) if v.is_floating_point() else v for k, v in state.items()}

    # tokenizer: add the image token; LLaVA-v1 pads with <unk>
    tok_src = str(tokenizer) if tokenizer else str(src)
    try:
        tok = AutoTokenizer.from_pretrained(tok_src, local_files_only=local_files_only)
    except Exception as exc:  # a sentencepiece-only tokenizer needs sentencepiece + a matching protobuf
        raise RuntimeError(
            f"cannot load the tokenizer from {tok_src} ({type(exc).__name__}: {exc}); pass --tokenizer with "
            "a folder or hub id holding the same Llama-2 tokenizer as tokenizer.json (e.g. lmsys/vicuna-7b-v1.5)"
        ) from exc
    if IMAGE_TOKEN not in tok.get_vocab():
        tok.add_tokens([IMAGE_TOKEN], special_tokens=True)
    if tok.pad_token is None:
        tok.pad_token = tok.unk_token or tok.eos_token
    image_token_id = tok.convert_tokens_to_ids(IMAGE_TOKEN)
    embed_key, head_key = "model.language_model.embed_tokens.weight", "lm_head.weight"
    rows = state[embed_key].shape[0]
    if len(tok) > rows:  # new rows: the mean embedding (their values never matter for <image>)
        extra = len(tok) - rows
        for key in (embed_key, head_key):
            w = state[key]
            state[key] = torch.cat(
                [w, w.float().mean(0, keepdim=True).to(w.dtype).expand(extra, -1)]
            ).contiguous()
    vocab_size = state[embed_key].shape[0]

    # config
    vision = CLIPVisionConfig(**_vision_config(vt))
    if orig.get("mm_hidden_size", vision.hidden_size) != vision.hidden_size:
        raise ValueError(
            f"mm_hidden_size {orig['mm_hidden_size']} != vision hidden_size {vision.hidden_size}"
        )
    text_kwargs = {k: orig[k] for k in _TEXT_FIELDS if k in orig}
    text_kwargs["vocab_size"] = vocab_size
    if tok.pad_token_id is not None:
        text_kwargs["pad_token_id"] = tok.pad_token_id
    text = LlamaConfig(**text_kwargs, tie_word_embeddings=False)
    strategy = "full" if orig.get("mm_vision_select_feature", "patch") == "cls_patch" else "default"
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=image_token_id,
        image_seq_length=(vision.image_size // vision.patch_size) ** 2,
        projector_hidden_act="gelu",
        vision_feature_layer=int(orig.get("mm_vision_select_layer", -2)),
        vision_feature_select_strategy=strategy,
        multimodal_projector_bias=True,
        tie_word_embeddings=False,
    )
    config.dtype = state[embed_key].dtype

    # check every name and shape against the model transformers builds from this config
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in LlavaForConditionalGeneration(config).state_dict().items()}
    got = {_runtime_name(k): tuple(v.shape) for k, v in state.items()}
    missing, unexpected = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    wrong = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
    if missing or unexpected or wrong:
        raise ValueError(
            f"conversion mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"wrong shape {[(k, got[k], expected[k]) for k in wrong[:5]]}"
        )

    out.mkdir(parents=True, exist_ok=True)
    save_torch_state_dict(state, str(out), max_shard_size=max_shard_size)
    config.save_pretrained(str(out))
    image_processor = LlavaImageProcessor(
        size={"shortest_edge": vision.image_size},
        crop_size={"height": vision.image_size, "width": vision.image_size},
        do_center_crop=True,
        do_pad=orig.get("image_aspect_ratio", "pad") == "pad",
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=vision.patch_size,
        vision_feature_select_strategy=strategy,
        num_additional_image_tokens=1,
        image_token=IMAGE_TOKEN,
        chat_template=LLAVA_V1_CHAT_TEMPLATE,
    )
    processor.save_pretrained(str(out))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``convert``: original LLaVA-format AesExpert checkpoint -> transformers LLaVA folder."""
    parser = argparse.ArgumentParser(
        prog="python -m lmms_eval_autorater.specialists.ae", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser(
        "convert", help="convert an original LLaVA-1.5 checkpoint to the transformers format"
    )
    conv.add_argument(
        "--checkpoint", required=True, help=f"original checkpoint folder or hub id ({DEFAULT_AE_MODEL})"
    )
    conv.add_argument("--out", required=True, help="output folder (transformers LLaVA format)")
    conv.add_argument(
        "--vision-tower", default=None, help="CLIP folder or hub id: config, and weights if absent"
    )
    conv.add_argument("--dtype", default=None, help="cast floating weights, e.g. float16 (default: keep)")
    conv.add_argument(
        "--tokenizer", default=None, help="load the tokenizer from here (default: the checkpoint)"
    )
    conv.add_argument("--local-files-only", action="store_true", help="never download")
    args = parser.parse_args(argv)
    out = convert_llava_checkpoint(
        args.checkpoint, args.out, vision_tower=args.vision_tower, dtype=args.dtype,
        local_files_only=args.local_files_only, tokenizer=args.tokenizer,
    )  # fmt: skip
    print(f"converted {args.checkpoint} -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
