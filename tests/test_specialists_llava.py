"""Q-SiT (LLaVA-OneVision) and AesExpert (LLaVA-1.5) specialists on tiny random models.

The models are built by ``tests/tinymodels.py`` (the fixtures ``qsit_tokenizer``, ``qsit_folder`` and
``llava`` in ``tests/conftest.py``). Every model is saved to a folder and loaded back through the code a
user runs; nothing is downloaded.
"""

from __future__ import annotations

import json
import math

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from lmms_eval_autorater.specialists import ae, qs  # noqa: E402
from lmms_eval_autorater.specialists.base import SpecialistInput, load_class  # noqa: E402
from tests.tinymodels import to_original, write_images  # noqa: E402

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
def image_paths(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("images"), [(40, 40), (30, 70), (64, 20)])


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


def _converted_to_original(key: str) -> str:
    return to_original(key.replace("model.vision_tower.vision_model.", "model.vision_tower.", 1))


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
    paths = write_images(llava["root"], [(28, 50)])
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
