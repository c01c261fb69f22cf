"""The reward models (PickScore, CLIPScore, HPSv2.1, EditReward) equal their authors' code on tiny random checkpoints.

The fixtures (``tests/fixtures/parity/{clip,hpsv2}``, ``{pickscore,clipscore,hpsv2}.json``) were built by
``scripts/make_reward_parity_fixtures.py``, which ran PickScore's model-card code and torchmetrics 1.9's
``clip_score`` on transformers 4.46, and ``hpsv2.img_score.score`` (hpsv2 1.2.0), each in its own venv. Here
the same checkpoints go through the project's scorers (transformers 5, open_clip 3) and must give the same
scores, one by one and in mixed batches. EditReward's fixture (``editreward/``, ``editreward.json``) comes from
``scripts/make_editreward_parity_fixtures.py``, which ran the authors' ``EditRewardInferencer`` (TIGER-AI-Lab/EditReward
at edb027e) on transformers 4.57.0.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

FIX = Path(__file__).parent / "fixtures" / "parity"


def _fixture(name: str) -> dict:
    return json.loads((FIX / f"{name}.json").read_text(encoding="utf-8"))


def _cases(data: dict) -> tuple[list[str], list[str], list[float]]:
    prompts = [data["prompts"][c["prompt"]] for c in data["cases"]]
    images = [str(FIX / data["images"][c["image"]]) for c in data["cases"]]
    return prompts, images, [c["score"] for c in data["cases"]]


def _scorer(name: str, batch_size: int):
    if name == "pickscore":
        from lmms_eval_autorater.baselines.pickscore import PickScoreScorer

        return PickScoreScorer(
            str(FIX / "clip"), processor=str(FIX / "clip"), device="cpu", batch_size=batch_size
        )
    if name == "clipscore":
        from lmms_eval_autorater.baselines.clipscore import CLIPScoreScorer

        return CLIPScoreScorer(str(FIX / "clip"), device="cpu", batch_size=batch_size)
    pytest.importorskip("open_clip")
    from lmms_eval_autorater.baselines.hpsv2 import HPSv2Scorer

    return HPSv2Scorer(
        str(FIX / "hpsv2" / "HPS_v2.1_compressed.pt"),
        arch=str(FIX / "hpsv2" / "open_clip_config.json"),
        device="cpu",
        batch_size=batch_size,
    )


@pytest.mark.parametrize("name", ["pickscore", "clipscore", "hpsv2"])
@pytest.mark.parametrize("batch_size", [1, 7])
def test_scores_equal_the_authors_code(name, batch_size):
    data = _fixture(name)
    prompts, images, expected = _cases(data)
    got = _scorer(name, batch_size).score(prompts, images)
    assert len(got) == len(expected) == 25
    for p, i, g, e in zip(prompts, images, got, expected):
        assert g == pytest.approx(e, abs=data["tolerance_abs"]), (name, p[:30], Path(i).name)


def test_fixtures_exercise_what_they_check():
    """Scores that could not tell a wrong formula apart would make the parity test hollow."""
    pick = [c["score"] for c in _fixture("pickscore")["cases"]]
    clip = [c["score"] for c in _fixture("clipscore")["cases"]]
    hps = [c["score"] for c in _fixture("hpsv2")["cases"]]
    assert min(pick) < 0 < max(pick)  # CLIPScore's clipping at 0 is exercised on both sides
    assert sum(c == 0.0 for c in clip) >= 3 and sum(c > 0 for c in clip) >= 3
    assert len({round(s, 6) for s in hps}) == len(hps)  # every (prompt, image) pair scores differently
    # PickScore (logit scale 100 in the fixture) is 100 * cos; CLIPScore is max(100 * cos, 0) where the prompt
    # fits in 77 tokens (prompt 2 does not: torchmetrics cuts its end token, PickScore's tokenizer keeps it)
    for c, p, s in zip(_fixture("clipscore")["cases"], pick, clip):
        if c["prompt"] != 2:
            assert s == pytest.approx(max(p, 0.0), abs=1e-4)


def test_pickscore_tokenizes_as_the_authors_processor():
    from transformers import AutoTokenizer

    data = _fixture("pickscore")
    tok = AutoTokenizer.from_pretrained(str(FIX / "clip"))
    for prompt, ids in zip(data["prompts"], data["text_ids"]):
        assert tok(prompt, truncation=True, max_length=77)["input_ids"] == ids


def test_hpsv2_refuses_a_checkpoint_of_another_architecture(tmp_path):
    pytest.importorskip("open_clip")
    from lmms_eval_autorater.baselines.hpsv2 import HPSv2Scorer
    from lmms_eval_autorater.errors import CheckpointError

    cfg = json.loads((FIX / "hpsv2" / "open_clip_config.json").read_text())
    cfg["vision_cfg"]["width"] = 64
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    scorer = HPSv2Scorer(str(FIX / "hpsv2"), arch=str(tmp_path / "cfg.json"), device="cpu")
    with pytest.raises(CheckpointError, match=r"tensor visual\..* has shape .*wrong arch"):
        scorer.load()


# -- EditReward: the authors' EditRewardInferencer (TIGER-AI-Lab/EditReward at edb027e, transformers 4.57) --------


def _editreward_cases(data: dict) -> tuple[list[str], list[str], list[str]]:
    instr = [data["instructions"][c["instruction"]] for c in data["cases"]]
    src = [str(FIX / data["images"][c["source"]]) for c in data["cases"]]
    edited = [str(FIX / data["images"][c["edited"]]) for c in data["cases"]]
    return instr, src, edited


def _editreward_scorer(data: dict, batch_size: int):
    from lmms_eval_autorater.baselines.editreward import EditRewardScorer

    return EditRewardScorer(
        str(FIX / data["checkpoint"]),
        base_model=str(FIX / data["base_model"]),
        device="cpu",
        batch_size=batch_size,
        local_files_only=True,
    )


@pytest.mark.parametrize("batch_size", [1, 4])
def test_editreward_scores_and_heads_equal_the_authors_code(batch_size):
    """Final score, its log sigma and each head's (mu, log sigma), one by one and in mixed batches (padding)."""
    data = _fixture("editreward")
    instr, src, edited = _editreward_cases(data)
    got = _editreward_scorer(data, batch_size).score_details(instr, src, edited)
    assert len(got) == len(data["cases"]) == 6
    tol = data["tolerance_abs"]
    for g, c in zip(got, data["cases"]):
        where = (c["instruction"], c["source"], c["edited"])
        assert g["score"] == pytest.approx(c["score"], abs=tol), where
        assert g["log_sigma"] == pytest.approx(c["log_sigma"], abs=tol), where
        for gh, ch in zip(g["heads"], c["heads"], strict=True):
            assert gh == pytest.approx(ch, abs=tol), where
    # the authors' batched call (all cases at once, right-padded) gives the same numbers as one by one
    assert [g["score"] for g in got] == pytest.approx(data["batched_scores"], abs=tol)


def test_editreward_tokenizes_as_the_authors_processor():
    """Prompt text, chat template, <|Reward|> id and the resized image grids equal the authors' inputs (head 0)."""
    from lmms_eval_autorater.baselines import open_image
    from lmms_eval_autorater.baselines.editreward import build_prompt_texts
    from lmms_eval_autorater.baselines.hpsv3 import resize_image

    data = _fixture("editreward")
    scorer = _editreward_scorer(data, 1).load()
    assert scorer.reward_token_id == data["reward_token_id"]
    for c, i, s, e in zip(data["cases"], *_editreward_cases(data)):
        conv = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}]}]
        conv[0]["content"].append({"type": "text", "text": build_prompt_texts(i)[0]})
        chat = scorer.processor.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        pil = [resize_image(open_image(s)), resize_image(open_image(e))]
        batch = scorer.processor(text=[chat], images=pil, return_tensors="pt")
        assert batch["input_ids"][0].tolist() == c["input_ids_head0"]
        assert batch["image_grid_thw"].tolist() == c["image_grid_thw"]


def test_editreward_fixture_exercises_what_it_checks():
    """Cases whose scores could not tell a wrong head, pooling or image order apart would make the test hollow."""
    data = _fixture("editreward")
    cases = data["cases"]
    assert len({round(c["score"], 4) for c in cases}) == len(cases)  # every case scores differently
    for c in cases:  # the final score is the mean of the two heads' mu, as the authors' "mean" pooling says
        assert c["score"] == pytest.approx((c["heads"][0][0] + c["heads"][1][0]) / 2, abs=1e-6)
        assert abs(c["heads"][0][0] - c["heads"][1][0]) > 0.1  # the heads differ: a swap would show
    grids = {tuple(map(tuple, c["image_grid_thw"])) for c in cases}
    assert any(g[0][1] != g[0][2] for g in grids)  # non-square images after the resize
    assert data["padding_side"] == "right" and data["upstream"]["transformers"] == "4.57.0"
    # swapped source and edited image (cases 2 and 3 use the same two images and differ)
    assert (cases[2]["source"], cases[2]["edited"]) == (cases[3]["edited"], cases[3]["source"])


def test_editreward_reads_the_authors_checkpoint_layouts(tmp_path):
    """A folder's ``model.pth`` (``{"model": state_dict}`` too) loads as upstream loads it, and wins over its
    ``model.safetensors`` as in upstream's ``EditRewardInferencer``: a +1 on head 0's last bias moves the score by
    exactly +0.5 (the two heads' mean)."""
    import safetensors.torch
    import torch

    data = _fixture("editreward")
    sd = safetensors.torch.load_file(str(FIX / data["checkpoint"] / "model.safetensors"))
    instr, src, edited = _editreward_cases(data)
    instr, src, edited = instr[:2], src[:2], edited[:2]
    expected = [c["score"] for c in data["cases"][:2]]

    pth_only = tmp_path / "pth"
    pth_only.mkdir()
    torch.save({"model": sd}, pth_only / "model.pth")
    both = tmp_path / "both"
    both.mkdir()
    shifted = dict(sd)
    shifted["rm_heads.head_0.5.bias"] = sd["rm_heads.head_0.5.bias"] + torch.tensor([1.0, 0.0])
    torch.save(shifted, both / "model.pth")
    safetensors.torch.save_file(sd, str(both / "model.safetensors"))
    from lmms_eval_autorater.baselines.editreward import EditRewardScorer

    for folder, offset in ((pth_only, 0.0), (both, 0.5)):
        scorer = EditRewardScorer(str(folder), base_model=str(FIX / data["base_model"]), device="cpu")
        got = scorer.score(instr, src, edited)
        assert got == pytest.approx([e + offset for e in expected], abs=data["tolerance_abs"]), folder.name
