"""``train`` (M-step) on a tiny random InternVL: the loss falls on rows it can memorise, the model is trained on
exactly the judge's inference prompt, ``--tools without`` refuses tool-written rows, LoRA merges away, resume."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("trl")

from tests import trainfixtures as tf  # noqa: E402


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tf.tiny_internvl(tmp_path_factory)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return tf.trained(tmp_path_factory, with_tools=True)


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


def test_loss_falls_and_the_checkpoint_is_a_judge(result, base):
    from lmms_eval_autorater.training.train import TRAINING_INFO, losses

    pts = losses(result.log_history)
    assert len(pts) == tf.STEPS and pts[0][0] == 1
    first, last = pts[0][1], min(v for _, v in pts[-3:])
    assert last < 0.6 * first, pts  # 6 rows seen 6 times each: memorised, not noise
    ckpt = result.output
    for name in ("config.json", "model.safetensors", "processor_config.json", "tokenizer.json", "README.md"):
        assert (ckpt / name).is_file(), name
    assert (ckpt / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert (
        state["global_step"] == tf.STEPS
        and [h["loss"] for h in state["log_history"] if "loss" in h][0] == first
    )
    assert not list(ckpt.glob("checkpoint-*"))  # resumable state removed once finished
    info = json.loads((ckpt / TRAINING_INFO).read_text())
    assert info["tools"] == "with" and info["max_patches"] == 1 and info["rows"] == 6
    card = (ckpt / "README.md").read_text()
    assert f"base_model: {base}" in card and "CC-BY-NC-4.0" in card and "trained **with tools**" in card
    assert '"kept": 6' in card and "teacher-test" in card and '"learning_rate": 0.003' in card
    # the vision tower stayed frozen; the language model moved
    before, after = _weights(base), _weights(ckpt)
    vision = [k for k in before if "vision_tower." in k]
    assert vision and all((before[k] == after[k]).all() for k in vision)
    assert any((before[k] != after[k]).any() for k in before if "language_model." in k)
    # the processor tiles as the judge backend does at inference
    assert json.loads((ckpt / "processor_config.json").read_text())["image_processor"]["max_patches"] == 1


def test_trained_on_exactly_the_judges_inference_prompt(result, tmp_path_factory):
    """Per row (1, 2 and 3 images): the prompt tokens TRL's collator trains on are the tokens the backend sends
    at inference for the judge's own prompt (with the row's specialists), and the labels are the completion."""
    from lmms_eval_autorater.judges.backends.internvl import InternVLBackend
    from lmms_eval_autorater.judges.factory import build_judge
    from lmms_eval_autorater.judges.judge import to_verdict
    from lmms_eval_autorater.judges.types import Completion
    from lmms_eval_autorater.training import rows as R

    trainer = result.trainer
    rows = R.load_rows(tf.rows_dir(tmp_path_factory, True))
    backend = InternVLBackend(pretrained=str(result.output), max_patches=1)
    judge = build_judge(
        "autorater_internvl", {"pretrained": str(result.output), "cache": "false"}, progress=False
    )
    tok = trainer.processing_class.tokenizer
    for i, row in enumerate(rows):
        # the judge's prompt at inference, from the request plus the row's specialist outputs
        req = replace(R.row_request(row), assessments=tuple(R.assessments_of(row)))
        assert R.training_prompt(row, True) == judge._verdict_prompt(req)
        batch = trainer.data_collator([trainer.train_dataset[i]])
        labels, ids = batch["labels"][0], batch["input_ids"][0]
        real = batch["attention_mask"][0].bool()
        prompt_ids = ids[real & (labels == -100)].tolist()
        inference = backend.build_inputs([judge._verdict_prompt(req)])
        assert prompt_ids == inference["input_ids"][0][inference["attention_mask"][0].bool()].tolist()
        assert batch["pixel_values"].shape == inference["pixel_values"].shape
        assert (batch["pixel_values"] == inference["pixel_values"]).all()
        assert batch["pixel_values"].shape[0] == len(row["images"])
        text = tok.decode(labels[labels != -100].tolist())
        assert text.startswith(R.completion_text(row) + "<|im_end|>")  # the stop token is trained too
        verdict = to_verdict(Completion(text=R.completion_text(row)), row["paradigm"])
        value = verdict.preferred if row["paradigm"] == "pairwise" else verdict.score
        assert verdict.status == "ok" and value == row["verdict"]
    # without tools the evidence section is gone from the same row's prompt
    assert R.training_prompt(rows[0], False) != R.training_prompt(rows[0], True)
    assert rows[0]["evidence"] and all(
        rows[0]["evidence"] not in str(p) for p in R.training_prompt(rows[0], False).parts
    )


def test_checkpoint_answers_through_the_backend(result, tmp_path_factory):
    from lmms_eval_autorater.judges.backends.internvl import InternVLBackend
    from lmms_eval_autorater.training import rows as R

    rows = R.load_rows(tf.rows_dir(tmp_path_factory, True))
    b = InternVLBackend(pretrained=str(result.output), max_patches=1, max_new_tokens=48)
    out = b.generate([R.training_prompt(rows[0], True)])
    assert out[0].usage["completion_tokens"] >= 1 and out[0].model == result.output.name


def test_tools_without_refuses_tool_written_rows(tmp_path_factory, base, capsys):
    from lmms_eval_autorater.cli import main
    from lmms_eval_autorater.training.train import load_training_data

    with_dir = tf.rows_dir(tmp_path_factory, True)
    argv = ["train", "--data", str(with_dir), "--base", str(base), "--output", str(with_dir.parent / "x")]
    capsys.readouterr()  # building the rows may print the datasets progress bar
    assert main([*argv, "--tools", "without"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert (
        f"--tools without: {with_dir} was synthesized with specialists in view (tools QS; 6 of 6 rows)" in err
    )
    assert "tools=none" in err and not (with_dir.parent / "x").exists()
    assert load_training_data([tf.rows_dir(tmp_path_factory, False)], "without").counts  # no-tools rows pass
    # a folder that is not a synthesize output is named
    assert main(["train", "--data", str(base), "--base", str(base), "--output", str(base / "y")]) == 1
    assert f"--data {base}: no manifest.json" in capsys.readouterr().err


def test_lora_merges_into_a_plain_checkpoint_and_resumes(tmp_path, tmp_path_factory, base):
    from transformers import InternVLForConditionalGeneration

    from lmms_eval_autorater.cli import CommandError
    from lmms_eval_autorater.training.train import train

    data = [tf.rows_dir(tmp_path_factory, False)]
    out = tmp_path / "lora"
    args = tf.train_args(data, base, out, tools="without", lora=True, max_steps=2, save_steps=1, lr=1e-2)
    with tf.one_thread():
        first = train(replace_ns(args, keep_checkpoints=True))
    assert first.trainer.state.global_step == 2 and (out / "checkpoint-2").is_dir()
    with pytest.raises(CommandError, match="pass --resume"):
        train(args)
    with tf.one_thread():
        resumed = train(replace_ns(args, max_steps=3, resume=True))
    assert resumed.trainer.state.global_step == 3
    assert [h["step"] for h in resumed.log_history if "loss" in h][-1] == 3
    assert not list(out.glob("checkpoint-*")) and not (out / "adapter").exists()
    weights = _weights(out)
    assert not [k for k in weights if "lora" in k.lower()]
    before = _weights(base)
    assert set(weights) == set(before)
    changed = {k for k in before if (before[k] != weights[k]).any()}
    assert changed and all("language_model." in k and k.endswith("proj.weight") for k in changed)
    model = InternVLForConditionalGeneration.from_pretrained(out)  # no peft needed
    assert type(model).__name__ == "InternVLForConditionalGeneration"


def replace_ns(ns, **changes):
    """A copy of an ``argparse.Namespace`` with some values changed."""
    import argparse

    return argparse.Namespace(**{**vars(ns), **changes})
