"""Images per second of the released scorers on their tiny parity checkpoints: batched against one by one.

Each scorer loads its tiny checkpoint (``tests/fixtures/parity``), scores one warm-up batch, then scores
``--n`` distinct random images with their prompts at ``--batch`` images per forward pass and again at 1.
Reports images/s for both and their ratio, one run each (tiny models: the ratio measures the per-call
overhead that batching removes, not the speed of the real checkpoints).

    .venv/bin/python benchmarks/baselines_throughput.py --n 64 --batch 16
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIX = REPO / "tests" / "fixtures" / "parity"


def scorers(batch: int) -> dict:
    """model id -> a factory of its scorer on the tiny checkpoint, at ``batch`` images per pass."""
    from lmms_eval_autorater.baselines.clipscore import CLIPScoreScorer
    from lmms_eval_autorater.baselines.editreward import EditRewardScorer
    from lmms_eval_autorater.baselines.editscore import EditScoreScorer
    from lmms_eval_autorater.baselines.hpsv2 import HPSv2Scorer
    from lmms_eval_autorater.baselines.hpsv3 import HPSv3Scorer
    from lmms_eval_autorater.baselines.imagereward import ImageRewardScorer
    from lmms_eval_autorater.baselines.pickscore import PickScoreScorer

    clip, hps = str(FIX / "clip"), FIX / "hpsv2"
    return {
        "pickscore": lambda: PickScoreScorer(clip, processor=clip, device="cpu", batch_size=batch),
        "clipscore": lambda: CLIPScoreScorer(clip, device="cpu", batch_size=batch),
        "hpsv2": lambda: HPSv2Scorer(
            str(hps), arch=str(hps / "open_clip_config.json"), device="cpu", batch_size=batch
        ),
        "imagereward": lambda: ImageRewardScorer(
            FIX / "imagereward" / "ImageReward.pt",
            tokenizer=str(FIX / "imagereward" / "bert-base-uncased"),
            device="cpu",
            batch_size=batch,
        ),
        "hpsv3": lambda: HPSv3Scorer(
            str(FIX / "hpsv3" / "HPSv3.safetensors"),
            base_model=str(FIX / "hpsv3" / "base"),
            device="cpu",
            batch_size=batch,
        ),
        # editing scorers: (instruction, source, edited); EditScore generates its answers (16 new tokens here)
        "editreward": lambda: EditRewardScorer(
            str(FIX / "editreward" / "ckpt"),
            base_model=str(FIX / "editreward" / "base"),
            device="cpu",
            batch_size=batch,
        ),
        "editscore": lambda: EditScoreScorer(
            str(FIX / "editscore" / "base"),
            lora=str(FIX / "editscore" / "lora"),
            device="cpu",
            batch_size=batch,
            max_new_tokens=16,
        ),
    }


EDITING = ("editreward", "editscore")


def main() -> None:
    import numpy as np
    from PIL import Image

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=64, help="images scored per mode")
    ap.add_argument("--batch", type=int, default=16, help="images per forward pass in the batched mode")
    ap.add_argument("--size", type=int, default=128, help="image side in pixels")
    ap.add_argument("--models", default="pickscore,clipscore,hpsv2,imagereward,hpsv3,editreward,editscore")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 255, (args.size, args.size, 3), dtype=np.uint8))
        for _ in range(args.n)
    ]
    prompts = [f"a photo of object number {i % 7} on a table" for i in range(args.n)]
    print(f"{args.n} images of {args.size}px, batch {args.batch} vs 1, CPU, tiny checkpoints (one run):")
    for name in args.models.split(","):
        rates = {}
        for batch in (args.batch, 1):
            scorer = scorers(batch)[name]()
            # editing scorers get a source per edit (the next image): (instruction, source, edited)
            extra = (images[1:] + images[:1],) if name in EDITING else ()
            scorer.score(prompts[: args.batch], *(e[: args.batch] for e in extra), images[: args.batch])
            t0 = time.perf_counter()
            out = scorer.score(prompts, *extra, images)
            rates[batch] = args.n / (time.perf_counter() - t0)
            assert len(out) == args.n
        print(
            f"  {name:<12} batched {rates[args.batch]:8.1f} img/s   one by one {rates[1]:8.1f} img/s   "
            f"ratio {rates[args.batch] / rates[1]:5.2f}x"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
