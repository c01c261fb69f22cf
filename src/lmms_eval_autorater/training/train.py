"""The ``train`` command (M-step): supervised fine-tuning of an InternVL judge on synthesized rationales.

Built on TRL's ``SFTTrainer``/``SFTConfig`` (peft ``LoraConfig`` for ``--lora``), no loop of our own. Each
training row becomes a prompt/completion pair: the prompt is ``rows.training_prompt`` (the judge's own
verdict prompt, with the row's specialist section or none) turned into chat messages by the same
``chat_messages`` the InternVL backend uses at inference, so the model is trained on exactly what it is
shown when judging; the completion is the contract's JSON (``rows.completion_text``), and the loss is on
the completion only (TRL's default for prompt/completion rows). Images are tiled as the backend tiles them
(``max_patches`` set on the processor). The output folder loads with
``--model autorater_internvl --model_args pretrained=CKPT`` (LoRA is merged on save).

Many GPUs: ``accelerate launch --config_file <fsdp.yaml|zero3.yaml> -m lmms_eval_autorater.training.train ...``
(configs in ``training/accelerate/``; ``config_path(name)`` gives their path).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmms_eval_autorater.runtime import resolve_dtype

HELP = "fine-tune an InternVL judge on synthesized rationales (TRL SFTTrainer)"

#: LoRA only on the language model's projections (a bare name list would also hit the vision tower)
LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"
#: written into the checkpoint: how it was trained (``ablation`` reads ``tools`` from it)
TRAINING_INFO = "autorater_training.json"
LOSS_PLOT = "loss.png"
ACCELERATE_CONFIGS = ("fsdp", "zero3")
DEFAULT_LR = {"full": 2e-5, "lora": 2e-4}


def config_path(name: str) -> Path:
    """The shipped accelerate config ``fsdp`` or ``zero3`` (8 GPUs, bf16)."""
    if name not in ACCELERATE_CONFIGS:
        raise ValueError(f"unknown accelerate config {name!r}; shipped: {', '.join(ACCELERATE_CONFIGS)}")
    return Path(__file__).with_name("accelerate") / f"{name}.yaml"


# ---------------------------------------------------------------------------------------------
# data


@dataclass
class TrainingData:
    """The rows of every ``--data`` folder (image bytes kept), their manifests and per-folder counts."""

    dirs: list[Path]
    manifests: list[dict]
    rows: Any  # datasets.Dataset, concatenated
    counts: dict[str, int] = field(default_factory=dict)


def read_manifest(folder: Path) -> dict:
    """``manifest.json`` of a ``synthesize`` output; a folder without one is refused, named."""
    from lmms_eval_autorater.errors import UsageError

    path = folder / "manifest.json"
    if not folder.is_dir():
        raise UsageError(f"--data {folder}: no such folder")
    if not path.is_file():
        raise UsageError(
            f"--data {folder}: no manifest.json (not the output of `lmms-eval-autorater synthesize`)"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UsageError(f"--data {folder}: manifest.json is not valid JSON ({exc})") from exc


def _tools_in_view(manifest: dict, rows: Any) -> tuple[list[str], int]:
    """The specialists a folder's rationales were written with (the rows' codes in registry order, else the
    manifest's ``tools`` when it names any) and how many rows carry them."""
    from lmms_eval_autorater.judges.args import SPECIALIST_CODES

    row_codes = {c for t in rows["tools"] for c in (t or [])}
    codes = [c for c in SPECIALIST_CODES if c in row_codes] + sorted(row_codes - set(SPECIALIST_CODES))
    if not codes:
        tools = manifest.get("tools") or []
        tools = [tools] if isinstance(tools, str) else [str(t) for t in tools]
        codes = [t for t in tools if t.lower() not in ("", "none")]
    return codes, sum(1 for t in rows["tools"] if t)


def load_training_data(dirs: list[str | Path], tools: str) -> TrainingData:
    """Read and check every folder before any model is loaded: the manifest, the columns, each completion
    (it must parse back to its verdict with the judge's parser) and, for ``tools="without"``, that no
    rationale was written with specialists in view."""
    import datasets

    from lmms_eval_autorater.errors import UsageError
    from lmms_eval_autorater.training import rows as rowfmt

    folders = [Path(d).expanduser() for d in dirs]
    manifests, parts, counts = [], [], {}
    for folder in folders:
        manifest = read_manifest(folder)
        try:
            ds = rowfmt.load_rows(folder)
        except Exception as exc:  # datasets raises FileNotFoundError/ValueError for a bad folder
            raise UsageError(f"--data {folder}: not a dataset saved by synthesize ({exc})") from exc
        missing = [c for c in rowfmt.FEATURES if c not in ds.column_names]
        if missing:
            raise UsageError(f"--data {folder}: missing column(s) {', '.join(missing)}")
        if len(ds) == 0:
            raise UsageError(f"--data {folder}: no rows (manifest: kept={manifest.get('kept')})")
        codes, n_tool_rows = _tools_in_view(manifest, ds)
        if tools == "without" and codes:
            raise UsageError(
                f"--tools without: {folder} was synthesized with specialists in view (tools "
                f"{'+'.join(codes)}; {n_tool_rows} of {len(ds)} rows): its rationales cite specialist outputs "
                "that a model trained without them would learn to invent. Synthesize the no-tools data with "
                "--model_args tools=none and train on that"
            )
        if tools == "with" and not codes:
            from loguru import logger

            logger.warning(
                f"train --tools with: {folder} was synthesized without specialists (tools=none): its prompts "
                "carry no specialist section"
            )
        text = ds.select_columns(["id", "paradigm", "completion", "verdict"])
        for row in text:
            try:
                rowfmt.check_row(row)
            except ValueError as exc:
                raise UsageError(f"--data {folder}: {exc}") from exc
        manifests.append(manifest)
        parts.append(ds)
        counts[str(folder)] = len(ds)
    rows = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    return TrainingData(folders, manifests, rows, counts)


def sft_example(row: dict, with_tools: bool, image_dir: str | Path | None = None) -> dict:
    """One training row as TRL prompt/completion data: InternVL chat messages (``{"type": "image"}`` parts in
    order), the completion as an assistant turn, and the decoded images filling the placeholders in order."""
    from lmms_eval_autorater.judges.backends.internvl import chat_messages
    from lmms_eval_autorater.training import rows as rowfmt

    messages, images = chat_messages(rowfmt.training_prompt(row, with_tools, image_dir))
    completion = [{"role": "assistant", "content": [{"type": "text", "text": rowfmt.completion_text(row)}]}]
    return {"prompt": messages, "completion": completion, "images": images}


def sft_dataset(rows: Any, with_tools: bool, image_dir: str | Path | None = None) -> Any:
    """The rows as a lazily converted ``datasets.Dataset`` (images decode when a batch is drawn)."""

    def transform(batch: dict) -> dict:
        n = len(batch["id"])
        examples = [sft_example({k: v[i] for k, v in batch.items()}, with_tools, image_dir) for i in range(n)]
        return {k: [e[k] for e in examples] for k in ("prompt", "completion", "images")}

    return rows.with_transform(transform)


# ---------------------------------------------------------------------------------------------
# model and trainer


def on_gpu() -> bool:
    """Whether training runs on CUDA (bf16 and activation checkpointing are used there only)."""
    import torch

    return torch.cuda.is_available()


def load_model(
    base: str, *, max_patches: int | None, train_vision: bool = False, revision: str | None = None
) -> tuple[Any, Any]:
    """The base InternVL (``-hf``) and its processor, tiled as the judge backend tiles at inference; the
    vision tower frozen unless ``train_vision``."""
    from transformers import AutoProcessor, InternVLForConditionalGeneration

    from lmms_eval_autorater.judges.backends.internvl import tiling_kwargs

    local = Path(base).is_dir()
    common = {"revision": revision, "local_files_only": local or None}
    common = {k: v for k, v in common.items() if v is not None}
    processor = AutoProcessor.from_pretrained(base, **common)
    for key, value in tiling_kwargs(max_patches=max_patches).items():
        setattr(processor.image_processor, key, value)
    dtype = resolve_dtype(None, "cuda" if on_gpu() else "cpu", training=True)
    model = InternVLForConditionalGeneration.from_pretrained(base, dtype=dtype, **common)
    if not train_vision:
        model.model.vision_tower.requires_grad_(False)
    return model, processor


def lora_config(r: int = 16, alpha: int = 32, dropout: float = 0.05) -> Any:
    """peft LoRA on the language model's attention and MLP projections only."""
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=LORA_TARGETS, bias="none")


def sft_config(args: argparse.Namespace, output_dir: str | Path) -> Any:
    """The ``SFTConfig`` of a run: prompt/completion rows, completion-only loss, no truncation by default."""
    from trl import SFTConfig

    gpu = on_gpu()
    lr = args.lr if args.lr is not None else DEFAULT_LR["lora" if args.lora else "full"]
    return SFTConfig(
        output_dir=str(output_dir),
        max_length=args.max_length,  # None: three tiled images overflow TRL's default 1024 (trl#4289)
        completion_only_loss=True,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        num_train_epochs=args.epochs,
        max_steps=args.max_steps if args.max_steps is not None else -1,
        learning_rate=lr,
        lr_scheduler_type=args.scheduler,
        warmup_steps=args.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        weight_decay=args.weight_decay,
        seed=args.seed,
        bf16=gpu,
        activation_checkpointing=gpu,
        use_cpu=not gpu,
        logging_steps=args.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=args.save_steps,
        save_total_limit=args.save_total_limit,
        remove_unused_columns=False,  # the rows are converted lazily; TRL must not drop their columns
        dataloader_num_workers=args.workers,
        report_to=[],
        disable_tqdm=False,
    )


def hyperparameters(args: argparse.Namespace, config: Any) -> dict:
    """What the model card and ``autorater_training.json`` record of a run's settings."""
    world = max(1, int(os.environ.get("WORLD_SIZE", "1")))
    return {
        "tools": args.tools,
        "lora": bool(args.lora),
        **(
            {"lora_r": args.lora_r, "lora_alpha": args.lora_alpha, "lora_dropout": args.lora_dropout}
            if args.lora
            else {}
        ),
        "lora_targets": LORA_TARGETS if args.lora else None,
        "vision_tower": "trained" if args.train_vision else "frozen",
        "learning_rate": config.learning_rate,
        "lr_scheduler": args.scheduler,
        "warmup_ratio": args.warmup_ratio,
        "weight_decay": args.weight_decay,
        "epochs": args.epochs,
        "max_steps": args.max_steps,
        "per_device_batch_size": args.batch_size,
        "grad_accum": args.grad_accum,
        "processes": world,
        "global_batch_size": args.batch_size * args.grad_accum * world,
        "max_length": args.max_length,
        "max_patches": args.max_patches,
        "bf16": bool(config.bf16),
        "activation_checkpointing": bool(config.activation_checkpointing),
        "seed": args.seed,
    }


# ---------------------------------------------------------------------------------------------
# outputs


def losses(log_history: list[dict]) -> list[tuple[int, float]]:
    """(step, training loss) of every logged step."""
    return [(int(h["step"]), float(h["loss"])) for h in log_history if "loss" in h and "step" in h]


def plot_loss(log_history: list[dict], path: Path) -> None:
    """The training loss against the step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = losses(log_history)
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    if points:
        ax.plot([s for s, _ in points], [v for _, v in points], marker="o" if len(points) < 40 else None)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (completion tokens)")
    ax.set_title("SFT loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _licenses(manifests: list[dict]) -> list[str]:
    out = []
    for m in manifests:
        lic = m.get("license") or (m.get("source_info") or {}).get("license")
        if lic:
            out.append(f"{m.get('source', '?')}: {lic}")
    return sorted(set(out))


def model_card(base: str, data: TrainingData, hparams: dict, log_history: list[dict]) -> str:
    """README.md of the checkpoint: base model, data manifests, hyperparameters, tools, licenses."""
    from lmms_eval_autorater.judges.prompts import TEMPLATE_VERSION

    licenses = _licenses(data.manifests)
    pts = losses(log_history)
    lines = [
        "---",
        f"base_model: {base}",
        "library_name: transformers",
        "pipeline_tag: image-text-to-text",
        "tags: [lmms-eval-autorater, internvl, judge, sft, trl]",
        *([f"license_notes: {json.dumps(licenses)}"] if licenses else []),
        "---",
        "",
        f"# AutoRater judge fine-tuned from {base}",
        "",
        "Fine-tuned with `lmms-eval-autorater train` (TRL `SFTTrainer`) on specialist-guided rationales written "
        "by a teacher for the known human labels (`lmms-eval-autorater synthesize`). Load it as a judge with",
        "",
        "```bash",
        f"lmms-eval --model autorater_internvl --model_args pretrained=<this folder>,max_patches="
        f"{hparams['max_patches']},tools={'all' if hparams['tools'] == 'with' else 'none'} --tasks aigiqa",
        "```",
        "",
        f"- trained **{hparams['tools']} tools**: prompts "
        + (
            "carry the specialist section the rows were synthesized with"
            if hparams["tools"] == "with"
            else "carry no specialist section (rows synthesized with tools=none)"
        ),
        f"- prompt template `{TEMPLATE_VERSION}`; images tiled with max_patches={hparams['max_patches']} "
        "(pass the same `max_patches=` at inference)",
        f"- {'LoRA (merged into the weights on save)' if hparams['lora'] else 'full fine-tuning'}; vision tower "
        f"{hparams['vision_tower']}",
    ]
    if pts:
        lines.append(
            f"- training loss {pts[0][1]:.4f} (step {pts[0][0]}) -> {pts[-1][1]:.4f} (step {pts[-1][0]}); "
            f"curve in `{LOSS_PLOT}`, full log in `trainer_state.json`"
        )
    if licenses:
        lines += [
            "",
            "## Licenses",
            "",
            "The weights are derived from data under these terms (respect them when using the model):",
            "",
        ]
        lines += [f"- {x}" for x in licenses]
    lines += [
        "",
        "## Data",
        "",
        "| folder | rows | source | seen | kept | rejected | teacher | tools | seed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for folder, m in zip(data.dirs, data.manifests):
        rej = m.get("rejected")
        rej_text = ", ".join(f"{k} {v}" for k, v in rej.items()) if isinstance(rej, dict) else str(rej)
        tools = m.get("tools")
        tools_text = "+".join(tools) if isinstance(tools, list) and tools else (tools or "none")
        teacher = m.get("teacher")
        teacher_text = teacher.get("model", teacher) if isinstance(teacher, dict) else teacher
        lines.append(
            f"| {folder.name} | {data.counts[str(folder)]} | {m.get('source', '')} | {m.get('seen', '')} | "
            f"{m.get('kept', '')} | {rej_text} | {teacher_text} | {tools_text} | {m.get('seed', '')} |"
        )
    lines += [
        "",
        "## Hyperparameters",
        "",
        "```json",
        json.dumps(hparams, indent=2),
        "```",
        "",
        "## Manifests",
        "",
    ]
    for folder, m in zip(data.dirs, data.manifests):
        lines += [f"### {folder}", "", "```json", json.dumps(m, indent=2, default=str), "```", ""]
    return "\n".join(lines) + "\n"


def merge_lora(
    base: str, adapter_dir: Path, output: Path, processor: Any, revision: str | None = None
) -> None:
    """Reload the base, apply the saved adapter, merge it (``merge_and_unload``) and save a plain checkpoint."""
    from peft import PeftModel
    from transformers import InternVLForConditionalGeneration

    kw = {"revision": revision} if revision else {}
    dtype = resolve_dtype(None, "cuda" if on_gpu() else "cpu", training=True)
    base_model = InternVLForConditionalGeneration.from_pretrained(base, dtype=dtype, **kw)
    merged = PeftModel.from_pretrained(base_model, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(output)
    processor.save_pretrained(output)


# ---------------------------------------------------------------------------------------------
# the run


@dataclass
class TrainResult:
    """What a finished run left: the checkpoint folder, the logged history and the trainer's metrics."""

    output: Path
    log_history: list[dict]
    metrics: dict
    rows: int
    #: the ``SFTTrainer`` that ran (its collator and dataset show exactly what was trained on)
    trainer: Any = None


def train(args: argparse.Namespace) -> TrainResult:
    """Check the data, fine-tune with ``SFTTrainer`` and write the checkpoint folder (see the module doc)."""
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTTrainer

    from lmms_eval_autorater.errors import UsageError

    output = Path(args.output).expanduser()
    data = load_training_data(args.data, args.tools)  # before any model is loaded
    last = get_last_checkpoint(str(output)) if output.is_dir() else None
    if args.resume and last is None:
        raise UsageError(f"--resume: no checkpoint-* folder in {output} to resume from")
    if not args.resume and last is not None:
        raise UsageError(
            f"--output {output} holds checkpoints of an earlier run ({Path(last).name}): pass --resume to "
            "continue it, or choose another --output"
        )
    config = sft_config(args, output)  # before the model: lets DeepSpeed ZeRO-3 partition it while loading
    model, processor = load_model(
        args.base, max_patches=args.max_patches, train_vision=args.train_vision, revision=args.revision
    )
    with_tools = args.tools == "with"
    with tempfile.TemporaryDirectory(prefix="autorater-train-images-") as image_dir:
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=sft_dataset(data.rows, with_tools, image_dir),
            processing_class=processor,
            peft_config=lora_config(args.lora_r, args.lora_alpha, args.lora_dropout) if args.lora else None,
        )
        out = trainer.train(resume_from_checkpoint=last if args.resume else None)
    hparams = hyperparameters(args, config)
    if args.lora:
        adapter = output / "adapter"
        trainer.save_model(str(adapter))
    else:
        trainer.save_model(str(output))  # gathers FSDP / ZeRO-3 shards; saves the processor too
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        if args.lora:
            merge_lora(args.base, output / "adapter", output, processor, args.revision)
        trainer.state.save_to_json(str(output / "trainer_state.json"))
        plot_loss(trainer.state.log_history, output / LOSS_PLOT)
        (output / "README.md").write_text(model_card(args.base, data, hparams, trainer.state.log_history))
        info = {"base": args.base, "data": [str(d) for d in data.dirs], "rows": len(data.rows), **hparams}
        (output / TRAINING_INFO).write_text(json.dumps(info, indent=2))
        if not args.keep_checkpoints:  # resumable state (optimizer included) is not needed once finished
            import shutil

            for folder in [*output.glob("checkpoint-*"), output / "adapter"]:
                if folder.is_dir():
                    shutil.rmtree(folder)
    return TrainResult(output, list(trainer.state.log_history), dict(out.metrics), len(data.rows), trainer)


# ---------------------------------------------------------------------------------------------
# the command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``train`` command's arguments."""
    from lmms_eval_autorater.judges.backends.internvl import DEFAULT_MAX_PATCHES
    from lmms_eval_autorater.judges.factory import PRESETS

    parser.add_argument("--data", nargs="+", required=True, metavar="DIR", help="synthesize output folder(s)")
    parser.add_argument(
        "--base",
        default=PRESETS["autorater_internvl"].model,
        help="InternVL -hf checkpoint (hub id or folder)",
    )
    parser.add_argument("--revision", default=None, help="hub revision of --base")
    parser.add_argument("--output", required=True, metavar="CKPT", help="checkpoint folder to write")
    parser.add_argument(
        "--tools",
        choices=("with", "without"),
        default="with",
        help="train with the rows' specialist section in the prompt, or without (needs data synthesized "
        "with tools=none)",
    )
    parser.add_argument("--lora", action="store_true", help="LoRA on the language model, merged on save")
    parser.add_argument("--lora_r", type=int, default=16)
    parser.add_argument("--lora_alpha", type=int, default=32)
    parser.add_argument("--lora_dropout", type=float, default=0.05)
    parser.add_argument(
        "--train_vision", action="store_true", help="also train the vision tower (frozen by default)"
    )
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max_steps", type=int, default=None, help="stop after N optimizer steps")
    parser.add_argument(
        "--lr",
        type=float,
        default=None,
        help=f"default {DEFAULT_LR['full']} (full), {DEFAULT_LR['lora']} (LoRA)",
    )
    parser.add_argument("--scheduler", default="cosine", help="transformers lr_scheduler_type")
    parser.add_argument("--warmup_ratio", type=float, default=0.03)
    parser.add_argument("--weight_decay", type=float, default=0.05)
    parser.add_argument("--batch_size", type=int, default=4, help="per device")
    parser.add_argument("--grad_accum", type=int, default=4)
    parser.add_argument(
        "--max_patches",
        type=int,
        default=DEFAULT_MAX_PATCHES,
        help="448px tiles per image, as the judge's max_patches= at inference",
    )
    parser.add_argument("--max_length", type=int, default=None, help="truncate sequences (default: never)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--logging_steps", type=int, default=10)
    parser.add_argument("--save_steps", type=int, default=500, help="write checkpoint-N every N steps")
    parser.add_argument("--save_total_limit", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="dataloader workers (decode images)")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the last checkpoint-N in --output"
    )
    parser.add_argument(
        "--keep_checkpoints",
        action="store_true",
        help="keep checkpoint-N (and the LoRA adapter) after a finished run (default: removed)",
    )


def _check_args(args: argparse.Namespace) -> None:
    from lmms_eval_autorater.errors import UsageError

    for name in ("batch_size", "grad_accum", "logging_steps", "save_steps", "max_patches", "lora_r"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UsageError(f"--{name} must be >= 1")
    if args.max_steps is not None and args.max_steps < 1:
        raise UsageError("--max_steps must be >= 1")
    if not (args.epochs > 0 and math.isfinite(args.epochs)):
        raise UsageError("--epochs must be > 0")
    if args.workers < 0:
        raise UsageError("--workers must be >= 0")


def run(args: argparse.Namespace) -> int:
    """Run the ``train`` command; returns the exit code."""
    _check_args(args)
    result = train(args)
    pts = losses(result.log_history)
    first, last = (pts[0][1], pts[-1][1]) if pts else (math.nan, math.nan)
    if int(os.environ.get("RANK", "0")) == 0:
        print(
            f"train: {result.rows} rows, {result.metrics.get('train_samples_per_second', math.nan):.3g} samples/s; "
            f"loss {first:.4f} -> {last:.4f}; checkpoint: {result.output} "
            f"(load with --model autorater_internvl --model_args pretrained={result.output})"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m lmms_eval_autorater.training.train`` / ``accelerate launch -m ...``: the ``train`` command."""
    from lmms_eval_autorater.cli import main as cli_main

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
