"""The reward models (PickScore, CLIPScore, HPSv2.1) equal their authors' code on tiny random checkpoints.

The fixtures (``tests/fixtures/parity/{clip,hpsv2}``, ``{pickscore,clipscore,hpsv2}.json``) were built by
``scripts/make_reward_parity_fixtures.py``, which ran PickScore's model-card code and torchmetrics 1.9's
``clip_score`` on transformers 4.46, and ``hpsv2.img_score.score`` (hpsv2 1.2.0), each in its own venv. Here
the same checkpoints go through the project's scorers (transformers 5, open_clip 3) and must give the same
scores, one by one and in mixed batches.
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
