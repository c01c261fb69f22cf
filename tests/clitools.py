"""Helpers of the end-to-end tests: running the real lmms-eval CLI and reading what it wrote."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.openai_server import image_urls

LMMS_EVAL = str(Path(sys.executable).with_name("lmms-eval"))
TASKS = ("psr", "imagereward_pair", "imagereward_point", "aigiqa")


def sha_of_url(url: str) -> str:
    return hashlib.sha256(base64.b64decode(url.split(",", 1)[1])).hexdigest()


def sha_of_ref(ref: str) -> str:
    from lmms_eval_autorater.images import read_image_bytes

    return hashlib.sha256(read_image_bytes(ref)).hexdigest()


def run_cli(tmp: Path, env_extra: dict, *args: str) -> tuple[dict | None, str]:
    """Run lmms-eval; return (results json or None, combined output)."""
    out_dir = tmp / f"out{len(list(tmp.glob('out*')))}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "GEMINI"))}
    env.update(env_extra)
    proc = subprocess.run(
        [LMMS_EVAL, *args, "--output_path", str(out_dir), "--log_samples"],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    files = sorted(out_dir.rglob("*_results.json"))
    results = json.loads(files[-1].read_text()) if files else None
    return results, proc.stdout + proc.stderr


class TruthResponder:
    """Answers from a table keyed by the candidate images' hashes: the test knows every verdict."""

    def __init__(self, docs: dict[str, list[dict]]):
        self.pair: dict[tuple[str, str], int] = {}
        self.point: dict[str, int] = {}
        self.expected_correct = {}
        for task, task_docs in docs.items():
            correct = 0
            for i, d in enumerate(task_docs):
                if d["paradigm"] == "pairwise":
                    a, b = sha_of_ref(d["image_1"]), sha_of_ref(d["image_2"])
                    answer = d["label"] if i % 3 else 3 - d["label"]  # every third doc judged wrong
                    correct += answer == d["label"]
                    self.pair[(a, b)] = answer
                    self.pair[(b, a)] = 3 - answer
                else:
                    # a Likert score in 1..10 that orders the images exactly as the targets do
                    self.point[sha_of_ref(d["image_1"])] = int(
                        round(2 * d["target"] if task == "aigiqa" else d["target"])
                    )
            self.expected_correct[task] = correct

    def __call__(self, request_json: dict) -> str:
        shas = [sha_of_url(u) for u in image_urls(request_json)]
        if len(shas) >= 2 and (shas[-2], shas[-1]) in self.pair:
            return json.dumps({"analysis": "compared both", "preferred": self.pair[(shas[-2], shas[-1])]})
        return json.dumps({"analysis": "looked closely", "score": self.point[shas[-1]]})


def metric(results: dict, task: str, name: str) -> float:
    return results["results"][task][f"{name},none"]


USAGE = ("prompt_tokens,none", "completion_tokens,none", "cost_usd,none", "estimated_usd,none")


def same_metrics(a: dict, b: dict) -> bool:
    """Equal task results (NaN equals NaN), leaving out what a run spent."""
    import math

    def norm(d):
        return {
            k: ("nan" if isinstance(v, float) and math.isnan(v) else v)
            for k, v in d.items()
            if k not in USAGE
        }

    return norm(a) == norm(b)
