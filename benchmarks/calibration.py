"""argmax against expected scores, on the local OpenAI-compatible server with a known probability rule.

Each doc has a hidden quality q (uniform in [1, 10]); the human target is q plus noise. The judge's answer
distribution over scores 1..10 is a discretised normal around q (sd ``--judge_sd``), so its integer verdict
(the argmax) rounds q away while its expected score keeps it. The judge runs through the real ``Judge`` and
``openai`` client twice (``scoring=argmax``, then ``scoring=expected``) and once with ``samples=N`` at
temperature 0.7 (the server samples from the same distribution), and prints the Pearson of each against the
targets, the tokens each mode cost, and the expected_fallbacks (0: every answer had usable probabilities).

    .venv/bin/python benchmarks/calibration.py                      # 300 docs
    .venv/bin/python benchmarks/calibration.py --n 1000 --split_digits   # a Llama/Qwen-like tokenizer
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--judge_sd", type=float, default=1.0)
    parser.add_argument("--human_sd", type=float, default=0.7)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--split_digits", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import numpy as np

    from lmms_eval_autorater.judges.factory import build_judge
    from lmms_eval_autorater.judges.types import JudgeRequest
    from lmms_eval_autorater.metrics import pearson
    from tests.datafactory import image_bytes
    from tests.openai_server import OpenAIServer, ProbabilityRule, prompt_text

    rng = np.random.default_rng(args.seed)
    quality = rng.uniform(1, 10, args.n)
    targets = quality + rng.normal(0, args.human_sd, args.n)

    def dist(request_json: dict) -> dict[int, float]:
        i = int(re.search(r"item number (\d+)", prompt_text(request_json)).group(1))
        w = {k: math.exp(-((k - quality[i]) ** 2) / (2 * args.judge_sd**2)) for k in range(1, 11)}
        total = sum(w.values())
        return {k: v / total for k, v in w.items() if v / total > 1e-4}

    rule = ProbabilityRule(dist, split_digits=args.split_digits)
    draws = random.Random(args.seed)

    def responder(request_json: dict) -> str:
        if (request_json.get("temperature") or 0) <= 0:
            return rule.responder(request_json)
        d = dist(request_json)  # temperature > 0: a draw from the distribution
        value = draws.choices(list(d), weights=list(d.values()))[0]
        return json.dumps({"analysis": "sampled", "score": value})

    os.environ.setdefault("OPENAI_API_KEY", "sk-local")
    with tempfile.TemporaryDirectory() as tmp:
        images = []
        for k in range(8):
            path = Path(tmp) / f"i{k}.png"
            path.write_bytes(image_bytes(k))
            images.append(str(path))
        reqs = [
            JudgeRequest(f"bench/{i}", "generation", "pointwise", f"item number {i}", (images[i % 8],))
            for i in range(args.n)
        ]
        rows = []
        with OpenAIServer(responder, logprobs=rule.logprobs) as server:
            modes = [
                ("argmax", {"scoring": "argmax"}),
                ("expected", {"scoring": "expected"}),
                (f"samples={args.samples}", {"samples": str(args.samples), "temperature": "0.7"}),
            ]
            for label, extra in modes:
                before = server.request_count
                judge = build_judge(
                    "autorater_gpt4o",
                    {"base_url": server.url, "cache_dir": f"{tmp}/{label}", "concurrency": "16", **extra},
                    progress=False,
                )
                verdicts = judge.judge_all(reqs)
                preds = [float(v.meta.get("score_used", v.score)) for v in verdicts]
                usage = judge.completer.stats()
                rows.append(
                    {
                        "mode": label,
                        "pearson": pearson(targets, preds),
                        "requests": server.request_count - before,
                        "prompt_tokens": usage.get("prompt_tokens"),
                        "completion_tokens": usage.get("completion_tokens"),
                        "expected_fallbacks": judge.stats.expected_fallbacks,
                        "distinct_scores": len(set(preds)),
                    }
                )
    print(f"n={args.n} judge_sd={args.judge_sd} human_sd={args.human_sd} split_digits={args.split_digits}")
    print(f"oracle Pearson (hidden quality vs target): {pearson(targets, quality):.4f}")
    head = ("mode", "pearson", "requests", "prompt_tokens", "completion_tokens", "expected_fallbacks")
    print(" | ".join(head) + " | distinct_scores")
    for r in rows:
        print(
            " | ".join(f"{r[k]:.4f}" if k == "pearson" else str(r[k]) for k in head)
            + f" | {r['distinct_scores']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
