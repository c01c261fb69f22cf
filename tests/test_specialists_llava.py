"""Q-SiT (LLaVA-OneVision) and AesExpert (LLaVA-1.5) specialists on tiny random models built here.

Every model is saved to a folder and loaded back through the code a user runs; nothing is downloaded.
"""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from lmms_eval_autorater.specialists import ae, qs  # noqa: E402
from lmms_eval_autorater.specialists.base import SpecialistInput, load_class  # noqa: E402

CORPUS = [
    qs.QSIT_PROMPT,
    "The quality of this image is Excellent Good Fair Poor Bad excellent good fair poor bad",
    "Excellent\nGood\nFair\nPoor\nBad",
    ae.AE_SYSTEM + " USER: ASSISTANT: " + ae.AE_QUESTION,
    "The image has soft warm lighting, a balanced composition, vivid color and high fidelity.",
]


def _bpe(specials: list[str], byte_level: bool):
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


def _images(folder, sizes):
    import numpy as np
    from PIL import Image

    paths = []
    for i, (h, w) in enumerate(sizes):
        p = folder / f"img{i}.png"
        Image.fromarray(np.random.RandomState(i).randint(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


# --- Q-SiT ----------------------------------------------------------------------------------------


def test_quality_from_logits_by_hand():
    # logits [2, 1, 0, -1, -2]: softmax weights e^2, e, 1, e^-1, e^-2 over their sum
    e = math.e
    probs = [x / (e**2 + e + 1 + 1 / e + 1 / e**2) for x in (e**2, e, 1, 1 / e, 1 / e**2)]
    hand = probs[0] * 1 + probs[1] * 0.75 + probs[2] * 0.5 + probs[3] * 0.25 + probs[4] * 0
    assert qs.quality_from_logits([2, 1, 0, -1, -2]) == pytest.approx(hand, abs=1e-12)
    assert hand == pytest.approx(0.862985, abs=1e-6)
    assert qs.quality_from_logits([0, 0, 0, 0, 0]) == pytest.approx(0.5)
    assert qs.quality_from_logits([-2, -1, 0, 1, 2]) == pytest.approx(1 - hand)
    assert qs.quality_from_logits([1000, 0, 0, 0, 0]) == pytest.approx(1.0)  # no overflow
    assert qs.quality_from_logits([0, 0, 0, 0, 1000]) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        qs.quality_from_logits([1, 2, 3])
    with pytest.raises(ValueError):
        qs.quality_from_logits([float("nan"), 0, 0, 0, 0])


@pytest.fixture(scope="module")
def qsit_tokenizer():
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
    return PreTrainedTokenizerFast(
        tokenizer_object=_bpe(specials, byte_level=True), eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )


def test_level_token_ids(qsit_tokenizer):
    tok = qsit_tokenizer
    ids = qs.level_token_ids(tok)
    # the authors' lookup: each word alone, no leading space, first token id
    assert ids == [tok(w, add_special_tokens=False)["input_ids"][0] for w in qs.QSIT_LEVELS]
    assert ids == tok.convert_tokens_to_ids(list(qs.QSIT_LEVELS))  # whole words here
    spaced = [tok(" " + w, add_special_tokens=False)["input_ids"][0] for w in qs.QSIT_LEVELS]
    assert set(ids).isdisjoint(spaced)  # " Excellent" is another token: the prefix already ends in a space
    assert (
        tok.convert_ids_to_tokens(tok(qs.QSIT_ASSISTANT_PREFIX, add_special_tokens=False)["input_ids"])[-1]
        == "Ġ"
    )
    # a word split into pieces: its first piece
    assert qs.level_token_ids(tok, ["Excellentqz", "Good", "Fair", "Poor", "Bad"])[0] == ids[0]
    with pytest.raises(ValueError):
        qs.level_token_ids(tok, ["Good", "Good", "Fair", "Poor", "Bad"])


@pytest.fixture(scope="module")
def qsit_folder(tmp_path_factory, qsit_tokenizer):
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
        Qwen2Config,
        SiglipVisionConfig,
    )

    tok = qsit_tokenizer
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
    folder = tmp_path_factory.mktemp("qsit")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def image_paths(tmp_path_factory):
    return _images(tmp_path_factory.mktemp("images"), [(40, 40), (30, 70), (64, 20)])


def _authors_recipe(folder, path):
    """Q-SiT README scoring code, one image, no padding, ``generate`` with one new token."""
    from PIL import Image
    from transformers import AutoProcessor, AutoTokenizer, LlavaOnevisionForConditionalGeneration

    model = LlavaOnevisionForConditionalGeneration.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = [i[0] for i in tokenizer(list(qs.QSIT_LEVELS))["input_ids"]]
    conversation = [
        {"role": "user", "content": [{"type": "text", "text": qs.QSIT_PROMPT}, {"type": "image"}]}
    ]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
    inputs = processor(images=Image.open(path), text=prompt, return_tensors="pt")
    prefix = tokenizer("The quality of this image is ", return_tensors="pt")["input_ids"]
    inputs["input_ids"] = torch.cat([inputs["input_ids"], prefix], dim=-1)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=1, output_logits=True, return_dict_in_generate=True)
    last = out.logits[-1][0]
    return [last[i].item() for i in ids]


def test_qsit_scorer(qsit_folder, image_paths):
    from PIL import Image

    batched = qs.QSiTScorer(pretrained=qsit_folder, device="cpu", batch_size=3)
    single = qs.QSiTScorer(pretrained=qsit_folder, device="cpu", dtype="float32", batch_size=1)
    assert batched.local_files_only  # a folder never goes to the hub
    scores = batched.score(image_paths)
    assert len(scores) == 3 and all(0.0 <= s <= 1.0 for s in scores)
    assert batched.score(image_paths) == scores  # deterministic
    assert single.score(image_paths) == pytest.approx(scores, abs=1e-5)  # batch (left padding) == single
    pil = [Image.open(p) for p in image_paths]
    assert batched.score(pil) == pytest.approx(scores, abs=1e-6)
    # same level logits as the authors' own code path
    for path, row in zip(image_paths, single.level_logits(image_paths), strict=True):
        assert row == pytest.approx(_authors_recipe(qsit_folder, path), abs=1e-4)
        assert qs.quality_from_logits(row) == pytest.approx(scores[image_paths.index(path)], abs=1e-5)
    batched.release()
    assert not batched.loaded


def test_qsit_specialist(qsit_folder, image_paths):
    cls = load_class(qs.SPEC.class_path)
    assert cls is qs.QSiT and cls.spec.code == "QS" and cls.spec.model_arg == "qs_model"
    spec = cls(model=qsit_folder, device="cpu", batch_size=2)
    items = [SpecialistInput(request="a cat", image=p) for p in image_paths]
    got = spec.assess_many(items)
    expected = qs.QSiTScorer(pretrained=qsit_folder, device="cpu").score(image_paths)
    assert [a.code for a in got] == ["QS"] * 3
    assert all(a.text is None and a.version == spec.version for a in got)
    assert [a.value for a in got] == pytest.approx(expected, abs=1e-5)
    assert spec.assess(request="a cat", image=image_paths[0]).value == pytest.approx(got[0].value, abs=1e-6)
    spec.release()
    assert spec._model_scorer is None


# --- AesExpert --------------------------------------------------------------------------------------

# transformers runtime name -> original LLaVA name, written out independently of ae.KEY_MAP
_TO_ORIGINAL = (
    ("model.language_model.", "model."),
    ("model.vision_tower.", "model.vision_tower.vision_tower.vision_model."),
    ("model.multi_modal_projector.linear_1.", "model.mm_projector.0."),
    ("model.multi_modal_projector.linear_2.", "model.mm_projector.2."),
    ("lm_head.", "lm_head."),
)


def _to_original(key: str) -> str:
    for new, old in _TO_ORIGINAL:
        if key.startswith(new):
            return old + key[len(new) :]
    raise KeyError(key)


def _converted_to_original(key: str) -> str:
    return _to_original(key.replace("model.vision_tower.vision_model.", "model.vision_tower.", 1))


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
    """A tiny HF LLaVA model and its original-format checkpoint (with and without vision weights)."""
    from safetensors.torch import save_file
    from transformers import (
        CLIPVisionConfig,
        CLIPVisionModel,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        PreTrainedTokenizerFast,
    )

    root = tmp_path_factory.mktemp("llava")
    tok = PreTrainedTokenizerFast(
        tokenizer_object=_bpe(["<unk>", "<s>", "</s>"], byte_level=False),
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
        original[_to_original(key)] = tensor.clone().contiguous()
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
    assert (
        ae.main(
            ["convert", "--checkpoint", str(full), "--out", str(out), "--vision-tower", str(clip_config_only)]
        )
        == 0
    )
    return {
        "hf": hf, "original": original, "full": full, "no_vision": no_vision, "clip_full": clip_full,
        "converted": out, "n": n, "root": root,
    }  # fmt: skip


def _read_converted(folder):
    from safetensors.torch import load_file

    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def test_ae_conversion_maps_every_tensor(llava):
    converted = _read_converted(llava["converted"])
    assert not any(k.startswith("model.vision_tower.") and ".vision_model." not in k for k in converted)
    back = {_converted_to_original(k): v for k, v in converted.items()}
    assert set(back) == set(llava["original"])
    n = llava["n"]
    for key, tensor in llava["original"].items():
        got = back[key]
        if key.endswith(("embed_tokens.weight", "lm_head.weight")):
            assert got.shape == (n + 1, tensor.shape[1])  # one new row for <image>
            got = got[:n]
        assert torch.equal(got, tensor), key
    config = json.loads((llava["converted"] / "config.json").read_text())
    assert config["model_type"] == "llava" and config["image_token_index"] == n
    assert config["vision_feature_layer"] == -2 and config["vision_feature_select_strategy"] == "default"
    assert config["text_config"]["vocab_size"] == n + 1


def test_ae_converted_folder_loads_like_the_original_model(llava):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    folder = llava["converted"]
    model, info = LlavaForConditionalGeneration.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    processor = AutoProcessor.from_pretrained(folder)
    assert processor.image_processor.do_pad and processor.image_processor.crop_size["height"] == 28
    assert processor.tokenizer.convert_tokens_to_ids("<image>") == llava["n"]
    paths = _images(llava["root"], [(28, 50)])
    from PIL import Image

    inputs = processor(
        images=[Image.open(paths[0])], text=[ae.llava_v1_prompt("Describe.")], return_tensors="pt"
    )
    assert (inputs["input_ids"] == llava["n"]).sum() == 4  # (28 / 14) ** 2 patches, CLS dropped
    with torch.inference_mode():
        a = model.eval()(**inputs).logits[..., : llava["n"]]
        b = llava["hf"](**inputs).logits[..., : llava["n"]]
    torch.testing.assert_close(a, b)


def test_ae_conversion_fills_in_vision_tower(llava, tmp_path):
    # the tokenizer from elsewhere, here one that already has <image>: same result
    out = ae.convert_llava_checkpoint(
        llava["no_vision"], tmp_path / "conv", vision_tower=llava["clip_full"], tokenizer=llava["converted"]
    )
    a, b = _read_converted(out), _read_converted(llava["converted"])
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="vision"):
        ae.convert_llava_checkpoint(llava["no_vision"], tmp_path / "conv2")


def test_aesexpert_describes(llava, image_paths):
    cls = load_class(ae.SPEC.class_path)
    assert cls is ae.AesExpert and cls.spec.code == "AE" and cls.spec.score_range is None
    spec = cls(model=str(llava["converted"]), device="cpu", max_new_tokens=12, batch_size=2)
    items = [SpecialistInput(request="a cat", image=p) for p in image_paths]
    got = spec.assess_many(items)
    assert [a.code for a in got] == ["AE"] * 3
    assert all(
        a.value is None and isinstance(a.text, str) and a.text and a.text == a.text.strip() for a in got
    )
    assert [a.text for a in spec.assess_many(items)] == [a.text for a in got]  # deterministic (greedy)
    assert spec.version != cls(model=str(llava["converted"])).version  # prompt settings are in the version
    spec.release()
    with pytest.raises(ValueError, match="convert"):
        cls(model=str(llava["full"]), device="cpu").load()  # the original format is refused with the fix
