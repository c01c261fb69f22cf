"""Throughput of ``AutoRater.reward`` (the training-loop helper) against a local OpenAI-compatible server
with an injected latency: a batch of distinct images at concurrency 1 and 16, then the same batch again
(all answers from the cache: zero requests). Reports rewards per second and the ratios measured in one run.

    .venv/bin/python benchmarks/reward_throughput.py --n 64 --latency 0.2
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # ahead of site-packages: latex2sympy2 ships a top-level ``tests`` too

from lmms_eval_autorater import AutoRater  # noqa: E402
from tests.datafactory import image_bytes  # noqa: E402
from tests.openai_server import OpenAIServer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=64, help="images per batch")
    ap.add_argument("--latency", type=float, default=0.2, help="server latency per request, seconds")
    ap.add_argument("--size", type=int, default=256, help="image side in pixels")
    args = ap.parse_args()
    images = [image_bytes(i, size=args.size) for i in range(args.n)]
    prompts = [f"prompt {i}" for i in range(args.n)]
    ideal_serial = args.n * args.latency
    rows = {}
    with OpenAIServer(latency=args.latency) as server, tempfile.TemporaryDirectory() as tmp:
        for conc in (1, 16):
            rater = AutoRater(
                "autorater_openai",
                base_url=server.url,
                model="judge",
                cache_dir=f"{tmp}/c{conc}",
                concurrency=conc,
                price_in=0,
                price_out=0,
                progress=False,
            )
            t0 = time.perf_counter()
            rewards = rater.reward(prompts, images)
            rows[conc] = time.perf_counter() - t0
            assert not any(math.isnan(r) for r in rewards) and all(0 <= r <= 1 for r in rewards)
        before = server.request_count
        t0 = time.perf_counter()
        again = rater.reward(prompts, images)
        cached = time.perf_counter() - t0
        assert server.request_count == before and again == rewards, "the cached batch must make no request"
    print(f"reward() on {args.n} images of {args.size}px, server latency {args.latency:g}s (one run):")
    for conc, wall in rows.items():
        ideal = ideal_serial / conc
        print(
            f"  concurrency {conc:>2}: {wall:6.2f} s, {args.n / wall:7.1f} rewards/s, wall/ideal {wall / ideal:.2f}"
        )
    print(f"  concurrency 16 vs 1: {rows[1] / rows[16]:.1f}x faster")
    print(f"  cached batch: {cached * 1000:.1f} ms, 0 requests, {rows[16] / cached:.0f}x faster than cold")


if __name__ == "__main__":
    main()
