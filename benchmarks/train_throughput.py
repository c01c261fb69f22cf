"""Training throughput of ``lmms-eval-autorater train`` against TRL's ``SFTTrainer`` used directly on the same
rows, in one run, as ratios: samples/s and tokens/s of the training loop (as the Trainer measures them), the
whole run's wall time (data checks, model load, training, save) and peak memory (CPU: the process's peak RSS;
CUDA: ``torch.cuda.max_memory_allocated``). Each variant runs in its own process, alternating, ``--repeats``
times; the medians are compared. On a tiny random InternVL (the tests' own, BPE on the judge's prompts) unless
``--base`` names a real checkpoint.

    .venv/bin/python benchmarks/train_throughput.py --steps 10 --repeats 2

"Direct" is what a TRL user would write for the same data: the same prompt/completion messages and images
(``train.sft_example``) materialised into an in-memory ``datasets.Dataset``, the same model, processor tiling
and hyperparameters, ``SFTTrainer(...).train()`` and ``save_model``. "ours" is the ``train`` command's
function (``train.train``): checks every row, converts lazily, writes the model card, loss plot and state.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # ahead of site-packages: latex2sympy2 ships a top-level ``tests`` too


def _peak_memory_mb() -> float:
    import resource

    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _tokens(log_history: list[dict]) -> float:
    seen = [h["num_tokens"] for h in log_history if "num_tokens" in h]
    return float(seen[-1]) if seen else float("nan")


def child(variant: str, data: Path, base: Path, out: Path, steps: int, batch: int) -> dict:
    """One training run of ``variant`` (``ours`` or ``direct``); its measurements."""
    import torch

    from tests.trainfixtures import train_args

    if not torch.cuda.is_available():
        torch.set_num_threads(1)
    args = train_args([data], base, out, tools="with", max_steps=steps, batch_size=batch, save_steps=10**6)
    t0 = time.perf_counter()
    if variant == "ours":
        from lmms_eval_autorater.training.train import train

        result = train(args)
        metrics, history = result.metrics, result.log_history
    else:
        import datasets
        from trl import SFTTrainer

        from lmms_eval_autorater.training import rows as R
        from lmms_eval_autorater.training.train import load_model, sft_config, sft_example

        with tempfile.TemporaryDirectory() as image_dir:
            examples = [sft_example(r, True, image_dir) for r in R.load_rows(data)]
        ds = datasets.Dataset.from_list(examples)
        model, processor = load_model(str(base), max_patches=args.max_patches)
        config = sft_config(args, out)
        config.remove_unused_columns = True  # TRL's default: the dataset holds only prompt/completion/images
        trainer = SFTTrainer(model=model, args=config, train_dataset=ds, processing_class=processor)
        metrics = trainer.train().metrics
        trainer.save_model(str(out))
        history = trainer.state.log_history
    wall = time.perf_counter() - t0
    return {
        "variant": variant,
        "wall_s": wall,
        "train_runtime_s": float(metrics["train_runtime"]),
        "samples_per_s": float(metrics["train_samples_per_second"]),
        "tokens_per_s": _tokens(history) / float(metrics["train_runtime"]),
        "peak_memory_mb": _peak_memory_mb(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch_size", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each variant, alternating")
    parser.add_argument("--base", default=None, help="an InternVL -hf folder (default: a tiny random one)")
    parser.add_argument("--child", choices=("ours", "direct"), help=argparse.SUPPRESS)
    parser.add_argument("--data", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        res = child(args.child, Path(args.data), Path(args.base), Path(args.out), args.steps, args.batch_size)
        print("RESULT " + json.dumps(res))
        return 0

    from tests.test_internvl_backend import _build_tiny_internvl
    from tests.trainfixtures import prompt_corpus, write_rows_dir

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["AUTORATER_CACHE_DIR"] = str(root / "cache")
        data = write_rows_dir(root / "rows", True)
        base = Path(args.base) if args.base else root / "tiny"
        if not args.base:
            _build_tiny_internvl(base, corpus=prompt_corpus())
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        runs: dict[str, list[dict]] = {"ours": [], "direct": []}
        for k in range(args.repeats):
            for variant in ("ours", "direct"):
                cmd = [sys.executable, __file__, "--child", variant, "--data", str(data), "--base", str(base),
                       "--out", str(root / f"{variant}{k}"), "--steps", str(args.steps),
                       "--batch_size", str(args.batch_size)]  # fmt: skip
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
                line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
                if proc.returncode != 0 or line is None:
                    print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
                    return 1
                runs[variant].append(json.loads(line[len("RESULT ") :]))
    keys = ("samples_per_s", "tokens_per_s", "train_runtime_s", "wall_s", "peak_memory_mb")
    med = {v: {k: statistics.median(r[k] for r in rs) for k in keys} for v, rs in runs.items()}
    print(
        f"train throughput: {args.steps} steps x batch {args.batch_size}, {args.repeats} alternating runs of "
        f"each variant (medians), device {runs['ours'][0]['device']}, base {args.base or 'tiny random InternVL'}"
    )
    print(f"{'measure':<18} {'ours (train)':>14} {'TRL direct':>14} {'ours / direct':>14}")
    for k in keys:
        a, b = med["ours"][k], med["direct"][k]
        print(f"{k:<18} {a:>14.3f} {b:>14.3f} {a / b if b else float('nan'):>14.3f}")
    print(json.dumps({"runs": runs, "median": med}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
