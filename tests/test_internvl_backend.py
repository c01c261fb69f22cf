"""InternVLBackend against a tiny random InternVL saved to disk and loaded exactly as a user would.

No downloads: the tokenizer is a byte-level BPE built with ``tokenizers`` carrying InternVL's special tokens.
"""

from __future__ import annotations

import gc
import io
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from lmms_eval_autorater.judges.backends.internvl import InternVLBackend  # noqa: E402
from lmms_eval_autorater.judges.types import ChatImage, ChatPrompt, Completion  # noqa: E402

IMAGE_SIZE = 56  # vision tile side; patch 14 -> 4x4 patches -> pixel shuffle 0.5 -> 4 tokens per tile
IMAGE_SEQ_LENGTH = 4
MAX_NEW_TOKENS = 6

# Qwen-style template as in the InternVL3 -hf checkpoints: an image entry becomes "<IMG_CONTEXT>\n"
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\\n' }}"
    "{% elif content['type'] == 'video' %}{{ '<video>\\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _build_tiny_internvl(folder: Path, corpus: list[str] | None = None) -> None:
    """Save a random-weight InternVL (tiny vision tower + tiny Qwen2) with a working processor to ``folder``.

    ``corpus``: texts to learn BPE merges from (shorter sequences for training tests); default: bytes only.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
        PreTrainedTokenizerFast,
    )

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    if corpus:
        from tokenizers import trainers

        tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=1500, initial_alphabet=alphabet))
    tok.add_special_tokens(
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        # the InternVL processor reads these named tokens (and their ids) off the tokenizer
        extra_special_tokens={
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        },
        chat_template=CHAT_TEMPLATE,
    )
    size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size=size, crop_to_patches=False, min_patches=1, max_patches=4),
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(size=size),
        image_seq_length=IMAGE_SEQ_LENGTH,
        chat_template=CHAT_TEMPLATE,
    )
    config = InternVLConfig(
        vision_config={
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "image_size": IMAGE_SIZE,
            "patch_size": 14,
        },
        text_config={
            "model_type": "qwen2",
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 1024,
            "initializer_range": 0.5,  # spread the logits so greedy picks are far from ties
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        image_token_id=tokenizer.context_image_token_id,
        image_seq_length=IMAGE_SEQ_LENGTH,
        downsample_ratio=0.5,
    )
    torch.manual_seed(0)
    model = InternVLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


def _png(width: int, height: int, seed: int) -> ChatImage:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return ChatImage(buf.getvalue())


def _prompts() -> list[ChatPrompt]:
    """Pairwise generation (2 images) and editing (source + 2 edits) turns, mixed in one batch."""
    pair = ChatPrompt(
        system="You are a judge.",
        parts=(
            "Request: a red cat.",
            "Image 1:",
            _png(60, 40, 1),
            "Image 2:",
            _png(48, 48, 2),
            "Which is better?",
        ),
    )
    edit = ChatPrompt(
        system="You judge image edits.",
        parts=(
            "Source:",
            _png(64, 64, 3),
            "Edit 1:",
            _png(70, 50, 4),
            "Edit 2:",
            _png(50, 70, 5),
            "Verdict?",
        ),
    )
    pair2 = ChatPrompt(
        system="", parts=(_png(30, 30, 6), _png(90, 45, 7), "Compare these two images, please.")
    )
    return [pair, edit, pair2]


N_IMAGES = [2, 3, 2]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-internvl")
    _build_tiny_internvl(folder)
    return folder


@pytest.fixture(scope="module")
def backend(model_dir: Path) -> Iterator[InternVLBackend]:
    b = InternVLBackend(
        pretrained=str(model_dir), max_new_tokens=MAX_NEW_TOKENS, batch_size=3, crop_to_patches=False
    )
    yield b
    b.release()


def test_lazy_construction_and_settings(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    b = InternVLBackend(pretrained=str(model_dir))
    assert not b.loaded and b._processor is None
    assert (b.rank, b.world_size) == (3, 4)
    assert b.local_files_only is True  # an existing folder
    assert b.model_name == model_dir.name
    import torch

    if not torch.cuda.is_available():
        assert b.device == "cpu" and b.dtype == torch.float32
    hub = InternVLBackend(pretrained="OpenGVLab/InternVL3-8B-hf")
    from lmms_eval_autorater import runtime

    monkeypatch.setattr(runtime, "_hub_probe", "")  # the hub answers (this machine has no network)
    assert hub.local_files_only is False
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.local_files_only is True
    assert not hub.loaded


def test_mixed_image_counts_in_one_batch(backend: InternVLBackend, model_dir: Path) -> None:
    out = backend.generate(_prompts())
    assert len(out) == 3 and all(isinstance(c, Completion) for c in out)
    for c in out:
        assert isinstance(c.text, str)
        assert c.model == model_dir.name
        assert c.fingerprint and c.fingerprint.startswith("sha256:")
        assert c.usage["prompt_tokens"] > 0
        assert 1 <= c.usage["completion_tokens"] <= MAX_NEW_TOKENS
        assert c.finish_reason in ("stop", "length")
    # prompt_tokens counts every unpadded input token, image placeholders included
    mask = backend.build_inputs(_prompts())["attention_mask"]
    assert [c.usage["prompt_tokens"] for c in out] == mask.sum(dim=1).tolist()


def test_placeholders_match_images_times_seq_length(backend: InternVLBackend) -> None:
    inputs = backend.build_inputs(_prompts())
    proc = backend._processor
    ids = inputs["input_ids"]
    assert proc.image_seq_length == IMAGE_SEQ_LENGTH
    assert (ids == proc.image_token_id).sum(dim=1).tolist() == [n * IMAGE_SEQ_LENGTH for n in N_IMAGES]
    assert (ids == proc.start_image_token_id).sum(dim=1).tolist() == N_IMAGES
    assert inputs["pixel_values"].shape == (sum(N_IMAGES), 3, IMAGE_SIZE, IMAGE_SIZE)
    # left padding: every row ends with real tokens (the generation prompt), shorter rows start padded
    mask = inputs["attention_mask"]
    lengths = mask.sum(dim=1)
    assert mask[:, -1].all()
    assert len(set(lengths.tolist())) > 1 and (mask[:, 0].bool() == (lengths == lengths.max())).all()


def test_tiling_expands_placeholders_per_tile(model_dir: Path) -> None:
    b = InternVLBackend(pretrained=str(model_dir), crop_to_patches=True, max_patches=4)
    wide = ChatPrompt(system="", parts=(_png(112, 56, 8), _png(56, 56, 9), "x"))
    inputs = b.build_inputs([wide])
    tiles = inputs["pixel_values"].shape[0]
    assert tiles == 3 + 1  # 2x1 grid + thumbnail for the wide image, a single tile for the square one
    assert int((inputs["input_ids"] == b._processor.image_token_id).sum()) == tiles * IMAGE_SEQ_LENGTH
    b.release()


def test_greedy_is_deterministic_and_batching_is_invariant(backend: InternVLBackend) -> None:
    # Token ids, not text, and no tolerance: left padding plus the attention mask must make each row's
    # greedy continuation identical to running that prompt alone. initializer_range=0.5 keeps the
    # random model's top-2 logits far apart, so float32 reduction-order noise cannot flip an argmax.
    prompts = _prompts()
    batched = backend._generate_token_ids(prompts)
    again = backend._generate_token_ids(prompts)
    assert batched == again
    alone = [backend._generate_token_ids([p])[0] for p in prompts]
    assert batched == alone
    assert all(len(ids) >= 1 for ids, _ in batched)
    # and the public path agrees with itself
    assert [c.text for c in backend.generate(prompts)] == [c.text for c in backend.generate(prompts)]


def test_release_frees_and_reloads_lazily(model_dir: Path) -> None:
    b = InternVLBackend(pretrained=str(model_dir), max_new_tokens=2, crop_to_patches=False)
    b.load()
    ref = weakref.ref(b._model)
    b.release()
    gc.collect()
    assert not b.loaded and b._processor is None
    assert ref() is None
    assert len(b.generate(_prompts()[:1])) == 1  # loads again on demand
    b.release()


def test_output_scores_give_the_probabilities_of_the_generation_it_makes(model_dir: Path) -> None:
    """scoring=expected on the local judge: the logits of the same greedy generation (no second pass), as
    OpenAI-shaped log-probabilities whose pieces spell the answer; the first step's alternatives equal a
    separate forward pass's log-softmax at the last prompt position (computed here independently)."""
    import math

    import torch

    plain = InternVLBackend(pretrained=str(model_dir), max_new_tokens=MAX_NEW_TOKENS, crop_to_patches=False)
    scored = InternVLBackend(
        pretrained=str(model_dir), max_new_tokens=MAX_NEW_TOKENS, crop_to_patches=False, output_scores=True
    )
    prompts = _prompts()[:1]
    want = plain.generate(prompts)[0]
    got = scored.generate(prompts)[0]
    assert got.text == want.text and plain.gen_params() != scored.gen_params()
    assert want.logprobs is None and got.logprobs
    assert "".join(e["token"] for e in got.logprobs) == got.text
    for e in got.logprobs:  # greedy: the chosen token is the most likely alternative
        assert e["logprob"] == pytest.approx(max(t["logprob"] for t in e["top_logprobs"]))
        assert len(e["top_logprobs"]) == 20
    inputs = scored.build_inputs(prompts).to(scored.device)
    inputs["pixel_values"] = inputs["pixel_values"].to(scored.dtype)
    with torch.inference_mode():
        logits = scored._model(**inputs).logits[0, -1].float()
    top = torch.log_softmax(logits, dim=-1).topk(20)
    assert [t["logprob"] for t in got.logprobs[0]["top_logprobs"]] == pytest.approx(
        top.values.tolist(), abs=1e-4
    )
    assert sum(math.exp(t["logprob"]) for t in got.logprobs[0]["top_logprobs"]) <= 1 + 1e-6
    plain.release()
    scored.release()
