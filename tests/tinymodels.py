"""Tiny random-weight specialist models (GroundingDINO, UperNet, Q-SiT, LLaVA) built into folders for tests.

Plain functions, no fixtures: ``tests/conftest.py`` wraps them as module-scoped fixtures. torch,
transformers, tokenizers and safetensors are imported inside the functions, so importing this module
stays light.
"""

from __future__ import annotations

import json
from pathlib import Path

from lmms_eval_autorater.specialists import ae, qs

# ---------------------------------------------------------------- GD (tiny GroundingDINO)


def build_tiny_gd(folder: Path) -> str:
    """Save a tiny random GroundingDINO model and its processor (BERT vocab of 14 words) into ``folder``."""
    import torch
    from transformers import (
        BertConfig,
        BertTokenizerFast,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    d = Path(folder)
    words = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        ".",
        "a",
        "cat",
        "red",
        "hat",
        "dog",
        "on",
        "the",
        "with",
    ]
    (d / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(d / "vocab.txt"), do_lower_case=True)
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 96, "longest_edge": 128}),
        tokenizer=tokenizer,
    )
    torch.manual_seed(0)
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(
            embed_dim=8,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 2, 2],
            window_size=4,
            image_size=64,
            out_features=["stage2", "stage3", "stage4"],
        ),
        text_config=BertConfig(
            vocab_size=len(words),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=64,
        ),
        d_model=32,
        num_queries=10,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=32,
    )
    GroundingDinoForObjectDetection(config).eval().save_pretrained(d)
    processor.save_pretrained(d)
    return str(d)


# ---------------------------------------------------------------- PA (tiny UperNet + Swin)


def tiny_upernet():
    """A tiny random UperNet + Swin segmentation model (2 classes) with non-trivial norms and BN statistics."""
    import torch
    from transformers import SwinConfig, UperNetConfig, UperNetForSemanticSegmentation

    torch.manual_seed(0)
    backbone = SwinConfig(
        embed_dim=8,
        depths=[1, 2, 1, 1],
        num_heads=[1, 2, 2, 4],
        window_size=3,
        image_size=64,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = UperNetConfig(
        backbone_config=backbone, hidden_size=16, num_labels=2, auxiliary_in_channels=32, auxiliary_channels=8
    )
    model = UperNetForSemanticSegmentation(config).eval()
    with torch.no_grad():  # non-trivial norms and BN statistics so that every tensor is checked
        for p in model.parameters():
            p.normal_(0, 0.3)
        for name, buf in model.named_buffers():
            if name.endswith("running_var"):
                buf.uniform_(0.5, 1.5)
            elif name.endswith("running_mean"):
                buf.normal_()
    return model


def build_tiny_pa(folder: Path):
    """Build ``tiny_upernet()``, save it to ``folder / "hf"`` and return ``(model, folder)``."""
    model = tiny_upernet()
    d = Path(folder)
    model.save_pretrained(d / "hf")
    return model, d


# ---------------------------------------------------------------- tokenizers and images

CORPUS = [
    qs.QSIT_PROMPT,
    "The quality of this image is Excellent Good Fair Poor Bad excellent good fair poor bad",
    "Excellent\nGood\nFair\nPoor\nBad",
    ae.AE_SYSTEM + " USER: ASSISTANT: " + ae.AE_QUESTION,
    "The image has soft warm lighting, a balanced composition, vivid color and high fidelity.",
]


def bpe(specials: list[str], byte_level: bool):
    """A tiny BPE tokenizer trained on ``CORPUS``: byte-level (Qwen2-like) or metaspace (Llama-like)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=None if byte_level else "<unk>"))
    if byte_level:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
        alphabet = sorted(set("".join(CORPUS) + "\n▁"))
    trainer = trainers.BpeTrainer(
        vocab_size=700 if byte_level else 300, special_tokens=specials, initial_alphabet=alphabet
    )
    tok.train_from_iterator(CORPUS * 3, trainer)
    if not byte_level:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return tok


def write_images(folder: Path, sizes) -> list[str]:
    """Seeded random-noise PNGs ``img<i>.png`` of the given ``(height, width)`` sizes in ``folder``."""
    import numpy as np
    from PIL import Image

    paths = []
    for i, (h, w) in enumerate(sizes):
        p = folder / f"img{i}.png"
        Image.fromarray(np.random.RandomState(i).randint(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


# ---------------------------------------------------------------- QS (tiny Q-SiT, LLaVA-OneVision)


def build_qsit_tokenizer():
    """A Qwen2-like byte-level fast tokenizer with the LLaVA-OneVision special tokens."""
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe(specials, byte_level=True), eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )


def build_qsit_folder(folder: Path, tokenizer) -> str:
    """Save a tiny random LLaVA-OneVision (SigLIP + Qwen2) model and its processor into ``folder``."""
    import torch
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
        Qwen2Config,
        SiglipVisionConfig,
    )

    tok = tokenizer
    pins = [[32, 32], [32, 64], [64, 32], [64, 64]]
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(
            size={"height": 32, "width": 32}, image_grid_pinpoints=pins
        ),
        video_processor=LlavaOnevisionVideoProcessor(size={"height": 32, "width": 32}),
        tokenizer=tok,
        num_image_tokens=16,  # (32 / 8) ** 2
        vision_feature_select_strategy="full",
        chat_template=qs.LLAVA_OV_CHAT_TEMPLATE,
    )
    vision = SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32,
        patch_size=8, vision_use_head=False,
    )  # fmt: skip
    text = Qwen2Config(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=len(tok), max_position_embeddings=512, tie_word_embeddings=True,
    )  # fmt: skip
    config = LlavaOnevisionConfig(
        vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<image>"),
        video_token_index=tok.convert_tokens_to_ids("<video>"), image_grid_pinpoints=pins,
        vision_feature_select_strategy="full", vision_feature_layer=-1,
    )  # fmt: skip
    torch.manual_seed(0)
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return str(folder)


# ---------------------------------------------------------------- AE (tiny LLaVA-1.5, original and converted)

# transformers runtime name -> original LLaVA name, written out independently of ae.KEY_MAP
TO_ORIGINAL = (
    ("model.language_model.", "model."),
    ("model.vision_tower.", "model.vision_tower.vision_tower.vision_model."),
    ("model.multi_modal_projector.linear_1.", "model.mm_projector.0."),
    ("model.multi_modal_projector.linear_2.", "model.mm_projector.2."),
    ("lm_head.", "lm_head."),
)


def to_original(key: str) -> str:
    """The original LLaVA checkpoint name of a transformers ``LlavaForConditionalGeneration`` tensor name."""
    for new, old in TO_ORIGINAL:
        if key.startswith(new):
            return old + key[len(new) :]
    raise KeyError(key)


def build_llava(root: Path) -> dict:
    """A tiny HF LLaVA model and its original-format checkpoint (with and without vision weights)."""
    import torch
    from safetensors.torch import save_file
    from transformers import (
        CLIPVisionConfig,
        CLIPVisionModel,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        PreTrainedTokenizerFast,
    )

    root = Path(root)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe(["<unk>", "<s>", "</s>"], byte_level=False),
        bos_token="<s>", eos_token="</s>", unk_token="<unk>",
    )  # fmt: skip
    n = len(tok)  # <image> will be added by the conversion as id n
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=28,
        patch_size=14,
    )
    text = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
        vocab_size=n + 1, max_position_embeddings=512, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=n, image_seq_length=4)
    torch.manual_seed(0)
    hf = LlavaForConditionalGeneration(config).eval()
    original = {}
    for key, tensor in hf.state_dict().items():
        if key.endswith(("embed_tokens.weight", "lm_head.weight")):
            tensor = tensor[:n]  # the original vocabulary has no <image> row
        original[to_original(key)] = tensor.clone().contiguous()
    orig_config = {
        "architectures": ["LlavaLlamaForCausalLM"], "model_type": "llava_llama", "hidden_act": "silu",
        "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
        "num_key_value_heads": 4, "max_position_embeddings": 512, "rms_norm_eps": text.rms_norm_eps,
        "vocab_size": n, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "torch_dtype": "float32",
        "mm_hidden_size": 32, "mm_projector_type": "mlp2x_gelu", "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch", "mm_vision_tower": "openai/clip-vit-large-patch14-336",
        "image_aspect_ratio": "pad", "mm_use_im_start_end": False,
    }  # fmt: skip

    def write(folder, tensors):
        folder.mkdir()
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
        (folder / "config.json").write_text(json.dumps(orig_config))
        tok.save_pretrained(folder)
        return folder

    # an old buffer that the conversion drops
    full = write(
        root / "original", {**original, "model.layers.0.self_attn.rotary_emb.inv_freq": torch.ones(4)}
    )
    no_vision = write(
        root / "original_no_vision", {k: v for k, v in original.items() if ".vision_tower." not in k}
    )
    clip_config_only = root / "clip_config"
    vision.save_pretrained(clip_config_only)
    clip_full = root / "clip_full"
    clip = CLIPVisionModel(vision).eval()
    clip.load_state_dict(hf.model.vision_tower.state_dict())
    clip.save_pretrained(clip_full)

    out = root / "converted"
    rc = ae.main(
        ["convert", "--checkpoint", str(full), "--out", str(out), "--vision-tower", str(clip_config_only)]
    )
    if rc != 0:
        raise RuntimeError(f"ae convert of the tiny LLaVA checkpoint exited {rc}")
    return {
        "hf": hf, "original": original, "full": full, "no_vision": no_vision, "clip_full": clip_full,
        "converted": out, "n": n, "root": root,
    }  # fmt: skip
