"""EditReward's scorer on a tiny random checkpoint in the authors' layout (no upstream parity yet: see the module).

The checkpoint is a tiny ``Qwen2_5_VLForConditionalGeneration`` (the transformers 4.57 / 5 key layout the authors'
``model.safetensors`` has) with the embeddings resized to the tokenizer + ``<|Reward|>`` and two random reward
heads. The expected score is recomputed here through another path: the full generation model with hidden states
returned, the reward token found by its id, each head applied by hand, the two heads averaged.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from tests.qwen25vl import write_qwen25vl_base  # noqa: E402

FIX = Path(__file__).parent / "fixtures" / "parity"
IMAGES = FIX / "images"


@pytest.fixture(scope="module")
def tiny_editreward(tmp_path_factory):
    """(checkpoint folder, base folder, state dict) of a tiny EditReward in the authors' format."""
    import safetensors.torch
    from transformers import AutoTokenizer, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    root = tmp_path_factory.mktemp("editreward")
    base = root / "base"
    write_qwen25vl_base(base)  # a tiny Qwen2 tokenizer, chat template and image processor
    tok = AutoTokenizer.from_pretrained(base)
    n_rows = len(tok) + 1  # the authors resize the embeddings to the tokenizer with <|Reward|> added
    config = Qwen2_5_VLConfig.from_pretrained(base)
    config.text_config.vocab_size = n_rows
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(7)
    hidden = config.text_config.hidden_size
    for h in (0, 1):
        for i, (din, dout) in zip((0, 3, 5), ((hidden, 1024), (1024, 16), (16, 2))):
            sd[f"rm_heads.head_{h}.{i}.weight"] = torch.randn(dout, din, generator=gen) / din**0.5
            sd[f"rm_heads.head_{h}.{i}.bias"] = 0.1 * torch.randn(dout, generator=gen)
    ckpt = root / "ckpt"
    ckpt.mkdir()
    safetensors.torch.save_file({k: v.contiguous() for k, v in sd.items()}, str(ckpt / "model.safetensors"))
    return ckpt, base, sd, model


def _expected(scorer, model, sd, instruction, source, edited) -> float:
    """The score recomputed with the full generation model (hidden states out) and the heads applied by hand."""
    from lmms_eval_autorater.baselines.editreward import build_prompt_texts
    from lmms_eval_autorater.baselines.hpsv3 import resize_image

    pil = [resize_image(scorer_open(source)), resize_image(scorer_open(edited))]
    mus = []
    for h, text in enumerate(build_prompt_texts(instruction)):
        conv = [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": text}],
            }
        ]
        chat = scorer.processor.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        batch = scorer.processor(text=[chat], images=pil, return_tensors="pt")
        ids = batch["input_ids"]
        n = ids.shape[1]
        with torch.no_grad():
            out = model(
                **batch,
                position_ids=torch.arange(n).view(1, 1, -1).expand(3, 1, n),
                output_hidden_states=True,
            )
        x = out.hidden_states[-1][0, (ids[0] == scorer.reward_token_id).nonzero()[-1, 0]]
        w = {i: (sd[f"rm_heads.head_{h}.{i}.weight"], sd[f"rm_heads.head_{h}.{i}.bias"]) for i in (0, 3, 5)}
        x = torch.relu(x @ w[0][0].T + w[0][1])
        x = torch.relu(x @ w[3][0].T + w[3][1])
        mus.append(float((x @ w[5][0].T + w[5][1])[0]))
    return sum(mus) / 2


def scorer_open(ref):
    from lmms_eval_autorater.baselines import open_image

    return open_image(ref)


def test_editreward_scores_as_recomputed_and_uses_the_source(tiny_editreward):
    from lmms_eval_autorater.baselines.editreward import EditRewardScorer

    ckpt, base, sd, model = tiny_editreward
    scorer = EditRewardScorer(str(ckpt), base_model=str(base), device="cpu", batch_size=2)
    src, a, b = str(IMAGES / "rgb_wide.png"), str(IMAGES / "rgb_tall.png"), str(IMAGES / "gray.png")
    got = scorer.score(["make the sky red", "add a dog"], [src, src], [a, b])
    assert scorer.reward_token_id == len(scorer.processor.tokenizer) - 1
    exp = [
        _expected(scorer, model, sd, "make the sky red", src, a),
        _expected(scorer, model, sd, "add a dog", src, b),
    ]
    assert got == pytest.approx(exp, abs=1e-4)
    assert got[0] != pytest.approx(got[1], abs=1e-6)
    # one by one equals batched; the source image matters (swapping source and edit changes the score)
    one = EditRewardScorer(str(ckpt), base_model=str(base), device="cpu", batch_size=1)
    assert one.score(["make the sky red"], [src], [a]) == pytest.approx(got[:1], abs=1e-4)
    assert one.score(["make the sky red"], [a], [src])[0] != pytest.approx(got[0], abs=1e-6)


def test_editreward_refuses_a_checkpoint_without_its_two_heads(tiny_editreward, tmp_path):
    import safetensors.torch

    from lmms_eval_autorater.baselines.editreward import EditRewardScorer
    from lmms_eval_autorater.errors import CheckpointError

    _ckpt, base, sd, _model = tiny_editreward
    one_head = {k: v.contiguous() for k, v in sd.items() if not k.startswith("rm_heads.head_1.")}
    safetensors.torch.save_file(one_head, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"rm_heads \['head_0'\] are not the two heads"):
        EditRewardScorer(str(tmp_path), base_model=str(base), device="cpu").load()


@pytest.mark.slow
def test_editreward_cli_scores_psr_and_refuses_a_generation_task(tiny_editreward, tmp_path, data):
    from lmms_eval_autorater.baselines.editreward import EditRewardScorer
    from tests.clitools import metric, run_cli

    ckpt, base, _sd, _model = tiny_editreward
    root, docs = data
    env = {"HF_HUB_OFFLINE": "1", "AUTORATER_DATA_DIR": str(root)}
    args = ("--model", "editreward", "--model_args", f"checkpoint={ckpt},base_model={base},device=cpu")
    results, log = run_cli(tmp_path, env, *args, "--tasks", "psr")
    assert results is not None, log[-3000:]
    psr = docs["psr"]
    assert metric(results, "psr", "n_scored") == len(psr)
    scorer = EditRewardScorer(str(ckpt), base_model=str(base), device="cpu")
    s1 = scorer.score(
        [d["request"] for d in psr], [d["source_image"] for d in psr], [d["image_1"] for d in psr]
    )
    s2 = scorer.score(
        [d["request"] for d in psr], [d["source_image"] for d in psr], [d["image_2"] for d in psr]
    )
    preds = [1 if x > y else 2 if y > x else 0 for x, y in zip(s1, s2)]
    expected = sum(p == d["label"] for p, d in zip(preds, psr)) / len(psr)
    assert metric(results, "psr", "accuracy") == pytest.approx(expected)

    results, log = run_cli(tmp_path, env, *args, "--tasks", "aigiqa")
    assert results is None
    lines = [ln for ln in log.splitlines() if "refused" in ln]
    assert len(lines) == 1 and "editreward" in lines[0] and "aigiqa" in lines[0], log[-3000:]
