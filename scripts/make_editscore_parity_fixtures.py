"""Build the EditScore parity fixtures by running the AUTHORS' code (the ``editscore`` 0.2 package from PyPI).

Writes, under ``tests/fixtures/parity/editscore/``:

- ``base/``: a tiny random ``Qwen2_5_VLForConditionalGeneration`` (saved by transformers 4.57.1, the package's era)
  with the tiny Qwen2 tokenizer and image processor of ``tests/fixtures/parity/hpsv3/base`` and a generation
  config like Qwen2.5-VL-7B-Instruct's (``repetition_penalty`` 1.05, which their ``generate`` keeps);
- ``lora/``: a tiny random LoRA on its language model (peft 0.17.1, ``init_lora_weights=False``), merged by their
  ``Qwen25VL`` (``PeftModel.from_pretrained(...).merge_and_unload()``);
- ``inputs.npz`` + ``editscore.json``:
  (a) the model inputs their ``prepare_input`` builds (token ids, attention mask, pixel values, image grid) for the SC
  and PQ questions of three edits; (b) the answers their ``inference`` samples on the tiny model (seeds 42, 43);
  (c) their parse + score rule (``EditScore.evaluate`` with a stand-in model that answers fixed texts, and
  ``batch_evaluate`` the same way) on a corpus of answers; (d) their ``openai`` backbone against the recording
  server of ``tests/openai_server.py`` answering fixed texts: the messages it sent and the scores it gave.

The shim (the only change to their code's behaviour): their ``prepare_input`` ends with ``inputs.to("cuda")``;
``BatchFeature.to`` is wrapped so that ``"cuda"`` means ``"cpu"`` (this machine has no GPU). Their model loads in
bfloat16 with ``device_map="auto"`` (CPU here), as their code says.

The authors' code runs in its own virtual environment, /tmp/parity-venvs/es: ``editscore==0.2``,
``transformers==4.57.1``, ``tokenizers==0.22.1``, ``huggingface_hub==0.36.0``, ``peft==0.17.1``,
``json-repair==0.52.3``, ``qwen-vl-utils==0.0.14`` installed with ``--no-deps``; torch, PIL, numpy, regex, requests
and accelerate come from the project venv through a ``.pth`` file placed after the venv's own site-packages.
``--create-venv`` builds it. Run from the repo root with the project venv:

    .venv/bin/python scripts/make_editscore_parity_fixtures.py --create-venv

``tests/test_editscore_parity.py`` runs the project's ``editscore`` on the same files and compares.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIX = REPO / "tests" / "fixtures" / "parity"
OUT = FIX / "editscore"
IMAGES = FIX / "images"
VENV = Path("/tmp/parity-venvs/es")
VENV_REQS = [
    "editscore==0.2",
    "transformers==4.57.1",
    "tokenizers==0.22.1",
    "huggingface_hub==0.36.0",
    "peft==0.17.1",
    "json-repair==0.52.3",
    "qwen-vl-utils==0.0.14",
]
#: (instruction, source image, edited image) of the model-input and generation checks
EDITS = [
    ("make the sky red", "rgb_wide.png", "rgb_tall.png"),
    ("add a dog on the left", "rgba.png", "gray.png"),
    ("turn it into a watercolor painting", "rgb_big.png", "rgb_wide.png"),
]
SEEDS = [42, 43]
GOOD_SC = '{\n"reasoning" : "The sky is red now.",\n"score" : [20, 15]\n}'
GOOD_PQ = '{"reasoning": "natural", "score": [18, 22]}'
#: answers whose parse their rule and ours must agree on (or where theirs guesses, ours must fail)
CORPUS = [
    GOOD_SC,
    GOOD_PQ,
    '```json\n{\n  "reasoning": "Edited well.",\n  "score": [25, 0]\n}\n```',
    'Sure! {"reasoning": "ok", "score": [12.5, 7]} hope this helps',
    "{'reasoning': 'single quotes', 'score': [9, 11]}",
    '{"reasoning": "unescaped "quotes" inside", "score": [14, 16]}',
    '{reasoning: "bare keys", score: [3, 4]}',
    '{"reasoning": "trailing comma", "score": [21, 19],}',
    '{"reasoning": "smart “quotes”", "score": [10, 10]}',
    '{"reasoning": "one score", "score": 17}',
    '{"reasoning": "string scores", "score": ["7", "8"]}',
    "[6, 20]",
    "7",
    '||V^=^V||{"reasoning": "delimited", "score": [5, 6]}||V^=^V||',
    '{"reasoning": "out of range", "score": [30, 12]}',
    '{"reasoning": "negative", "score": [-1, 12]}',
    '{"reasoning": "no score here"}',
    '{"reasoning": "empty list", "score": []}',
    "I cannot rate these images.",
    "",
    "I'm sorry, but I can't assist with that request.",
    '{"reasoning": "truncated answer", "score": [22,',
    '{"reasoning": "three scores", "score": [20, 18, 2]}',
]


# -- upstream side (runs in the venv) ----------------------------------------------------------------


def _shim_cuda() -> None:
    """Their ``prepare_input`` moves inputs to "cuda"; on this CPU machine "cuda" means "cpu"."""
    from transformers.feature_extraction_utils import BatchFeature

    original = BatchFeature.to

    def to(self, *args, **kwargs):
        args = tuple("cpu" if a == "cuda" else a for a in args)
        if kwargs.get("device") == "cuda":
            kwargs["device"] = "cpu"
        return original(self, *args, **kwargs)

    BatchFeature.to = to


def build_tiny(out: Path) -> tuple[Path, Path]:
    """Tiny Qwen2.5-VL base folder and a tiny LoRA on it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from tests.qwen25vl import write_qwen25vl_base  # REPO is on sys.path (``upstream``)

    base = out / "base"
    if base.exists():
        shutil.rmtree(base)
    cfg = write_qwen25vl_base(base)
    config = Qwen2_5_VLConfig.from_pretrained(base)
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    with torch.no_grad():  # larger weights than the init's, so the answers vary from token to token
        for name, p in model.named_parameters():
            if p.dim() >= 2 and "embed" not in name:
                p.normal_(0, 0.2)
    model.generation_config = GenerationConfig(
        bos_token_id=cfg["bos_token_id"],
        eos_token_id=[cfg["eos_token_id"]],
        pad_token_id=cfg["eos_token_id"],
        do_sample=True,
        repetition_penalty=1.05,
        temperature=0.1,
        top_p=0.001,
        top_k=1,
    )
    model.save_pretrained(base, safe_serialization=True)
    lora = out / "lora"
    if lora.exists():
        shutil.rmtree(lora)
    torch.manual_seed(1)
    peft_model = get_peft_model(
        model,
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False),
    )
    peft_model.save_pretrained(lora)
    return base, lora


def _fake_scorer(answers: dict[str, str]):
    """Their ``EditScore`` with a stand-in model answering ``answers["SC"]`` / ``answers["PQ"]``."""
    from editscore import EditScore

    class Model:
        def prepare_input(self, images, prompt):
            return "SC" if "Editing instruction:" in prompt else "PQ"

        def inference(self, kind, seed=None):
            return answers[kind]

        def batch_inference(self, kinds, seed=None):
            return [answers[k] for k in kinds]

    scorer = EditScore.__new__(EditScore)
    scorer.backbone, scorer.score_range, scorer.reduction, scorer.seed, scorer.num_pass = (
        "x",
        25,
        "average_last",
        42,
        1,
    )
    EditScore.__init__.__globals__  # noqa: B018 (their prompts are module state of editscore/__init__)
    from editscore import vie_prompts

    ctx = vie_prompts._context_no_delimit_reasoning_first
    scorer.SC_prompt = "\n".join(
        [
            ctx,
            vie_prompts._prompts_0shot_two_image_edit_rule,
            vie_prompts._prompts_0shot_tie_rule_SC.replace("10", "25"),
        ]
    )
    scorer.PQ_prompt = "\n".join([ctx, vie_prompts._prompts_0shot_rule_PQ.replace("10", "25")])
    scorer.model = Model()
    return scorer


def their_rule(sc: str, pq: str) -> dict:
    """What their ``evaluate`` and ``batch_evaluate`` give for one (SC answer, PQ answer) pass."""
    import io
    from contextlib import redirect_stdout

    out: dict = {}
    with redirect_stdout(io.StringIO()):
        try:
            r = _fake_scorer({"SC": sc, "PQ": pq}).evaluate(["a", "b"], "instr")
            guessed = "guess_if_cannot_parse" in str(r["SC_reasoning"]) + str(r["PQ_reasoning"])
            out["evaluate"] = {"overall": float(r["overall"]), "guessed": guessed}
        except Exception as exc:  # their code raises on some answers
            out["evaluate"] = {"error": f"{type(exc).__name__}: {exc}"}
        try:
            r = _fake_scorer({"SC": sc, "PQ": pq}).batch_evaluate([["a", "b"]], ["instr"])[0]
            out["batch_evaluate"] = {"overall": float(r["O_score"])}
        except Exception as exc:
            out["batch_evaluate"] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def upstream(out: Path) -> None:
    import numpy as np
    import torch
    from PIL import Image

    sys.path.insert(0, str(REPO))
    _shim_cuda()
    from editscore import EditScore

    base, lora = build_tiny(out)
    scorer = EditScore(
        backbone="qwen25vl", model_name_or_path=str(base), lora_path=str(lora), score_range=25, seed=42
    )
    arrays: dict[str, np.ndarray] = {}
    cases = []
    for n, (instr, src, edit) in enumerate(EDITS):
        images = [Image.open(IMAGES / src), Image.open(IMAGES / edit)]
        sc_text = scorer.SC_prompt.replace("<instruction>", instr)
        case = {"instruction": instr, "source": src, "edited": edit, "answers": {}}
        for kind, inputs in (
            ("SC", scorer.model.prepare_input(images, sc_text)),
            ("PQ", scorer.model.prepare_input(images[-1], scorer.PQ_prompt)),
        ):
            for key in ("input_ids", "attention_mask", "image_grid_thw"):
                arrays[f"{n}_{kind}_{key}"] = inputs[key].cpu().numpy()
            arrays[f"{n}_{kind}_pixel_values"] = inputs["pixel_values"].float().cpu().numpy()
            case["answers"][kind] = {str(s): scorer.model.inference(inputs, seed=s) for s in SEEDS}
        cases.append(case)
    np.savez_compressed(out / "inputs.npz", **arrays)

    corpus = []
    for text in CORPUS:
        corpus.append({"text": text, "as_SC": their_rule(text, GOOD_PQ), "as_PQ": their_rule(GOOD_SC, text)})

    # (d) their openai backbone against the recording server answering fixed texts
    from tests.openai_server import OpenAIServer

    def responder(body):
        text = json.dumps(body["messages"])
        return GOOD_SC if "Editing instruction:" in text else GOOD_PQ

    served = []
    with OpenAIServer(responder) as server:
        es = EditScore(backbone="openai", key="sk-test", model_name_or_path="editscore-served",
                       openai_url=server.url + "/chat/completions", score_range=25)  # fmt: skip
        for instr, src, edit in EDITS:
            before = len(server.requests)
            r = es.evaluate([Image.open(IMAGES / src), Image.open(IMAGES / edit)], instr)
            served.append(
                {
                    "instruction": instr,
                    "source": src,
                    "edited": edit,
                    "overall": float(r["overall"]),
                    "messages": [q.json["messages"] for q in server.requests[before:]],
                }
            )
    import editscore
    import json_repair
    import peft
    import transformers

    meta = {
        "built_by": "python scripts/make_editscore_parity_fixtures.py --create-venv",
        "versions": {
            "editscore": "0.2",
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "json_repair": getattr(json_repair, "__version__", "0.52.3"),
            "torch": torch.__version__,
        },
        "editscore_file": editscore.__file__,
        "shim": "BatchFeature.to('cuda') -> 'cpu' (their prepare_input); nothing else changed",
        "their_dtype": "bfloat16",
        "seeds": SEEDS,
        "good_sc": GOOD_SC,
        "good_pq": GOOD_PQ,
        "cases": cases,
        "corpus": corpus,
        "served": served,
    }
    (out / "editscore.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False), encoding="utf-8")


# -- driver (project venv) ---------------------------------------------------------------------------


def ensure_venv(create: bool) -> Path:
    from make_parity_fixtures import project_venv

    return project_venv(VENV, VENV_REQS, create, no_deps=True, option="--create-venv")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--create-venv", action="store_true", help=f"create {VENV} when missing")
    ap.add_argument("--upstream", action="store_true", help="(internal) the part that runs in the venv")
    args = ap.parse_args()
    if args.upstream:
        upstream(OUT)
        return
    py = ensure_venv(args.create_venv)
    OUT.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(py), str(Path(__file__).resolve()), "--upstream"], check=True, cwd=REPO)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
