"""Throughput of the specialist pre-pass on the tiny random-weight Q-SiT (``tests/tinymodels.py``), on CPU.

Three ratios, measured in one run (each on a fresh cache, so every input is assessed):

* one by one (``specialist_batch_size=1``) against batched (8), images per second through the pool;
* 1 process against 2: ``lmms-eval-autorater assess`` under ``torchrun --nproc_per_node 1`` and ``2`` over an
  AIGIQA-shaped test split of ``--n`` images; the pass time is the slowest rank's (process start, imports and
  model load are reported apart, as the wall time);
* in-process against served: the same checkpoint behind a stand-in OpenAI-compatible server that runs it
  (one model call at a time), through the served specialist (client, runner, log-probabilities).

The tiny model costs little per image, so fixed costs weigh more than on a 7B checkpoint on a GPU: read the
ratios as what the machinery adds or saves, not as the paper-scale speed-up.

    .venv/bin/python benchmarks/specialists_throughput.py --n 48
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # ahead of site-packages: latex2sympy2 ships a top-level ``tests`` too

from lmms_eval_autorater.specialists.base import SpecialistInput  # noqa: E402
from lmms_eval_autorater.specialists.cache import AssessmentCache, SpecialistPool  # noqa: E402
from tests.datafactory import make_aigiqa  # noqa: E402
from tests.openai_server import OpenAIServer  # noqa: E402
from tests.tinymodels import build_qsit_folder, build_qsit_tokenizer  # noqa: E402


def rate(pool: SpecialistPool, items: list[SpecialistInput]) -> float:
    """Images per second of one pass of QS over ``items`` (model loaded beforehand)."""
    pool.specialist("QS").load()
    t0 = time.perf_counter()
    out = pool.assess("QS", items)
    dt = time.perf_counter() - t0
    assert not any(a.failed for a in out), [a.error for a in out if a.failed][:3]
    return len(items) / dt


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(nproc: int, root: Path, cache: Path, folder: str) -> tuple[float, float]:
    """(wall seconds, slowest rank's pass seconds) of ``assess`` under ``torchrun --nproc_per_node nproc``."""
    argv = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
        str(free_port()), "-m", "lmms_eval_autorater.cli", "assess", "--tasks", "aigiqa", "--tools", "QS",
        "--model_args", f"qs_model={folder},specialist_device=cpu,specialist_batch_size=8", "--json",
        "--no_progress",
    ]  # fmt: skip
    env = {**os.environ, "AUTORATER_DATA_DIR": str(root), "AUTORATER_CACHE_DIR": str(cache),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src")}  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    result = json.loads(done.stdout[done.stdout.index("{") :])
    qs = result["specialists"]["QS"]
    assert qs["assessed"] == qs["unique_inputs"], qs
    return wall, qs["seconds_max_rank"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=48, help="images")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)  # one core per process: the two-process comparison is fair on 2 cores
    from lmms_eval_autorater.judges.factory import build_pool, specialist_config
    from lmms_eval_autorater.specialists.qs import QSIT_LEVELS, QSiTScorer

    report: dict = {"n_images": args.n, "model": "tiny random Q-SiT (LLaVA-OneVision), CPU, 1 thread/process"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = build_qsit_folder(tmp / "qsit", build_qsit_tokenizer())
        names = [f"img_{i:04d}.png" for i in range(args.n)]
        make_aigiqa(tmp / "data", [(n, f"prompt {i % 5}", 1.0 + i % 4) for i, n in enumerate(names)], names)
        images = [str(tmp / "data" / "aigiqa" / "images" / n) for n in names]
        items = [SpecialistInput("x", p) for p in images]

        # one by one against batched
        for bs in (1, 8):
            pool = SpecialistPool(
                {"QS": {"model": folder, "batch_size": bs, "dtype": "float32"}},
                device="cpu",
                cache=AssessmentCache(tmp / f"bs{bs}.sqlite"),
            )
            report[f"in_process_bs{bs}_img_per_s"] = round(rate(pool, items), 2)
        report["batched_over_one_by_one"] = round(
            report["in_process_bs8_img_per_s"] / report["in_process_bs1_img_per_s"], 2
        )

        # 1 process against 2
        for nproc in (1, 2):
            wall, pass_s = torchrun(nproc, tmp / "data", tmp / f"cache{nproc}", folder)
            report[f"torchrun_{nproc}_wall_s"] = round(wall, 2)
            report[f"torchrun_{nproc}_pass_s"] = round(pass_s, 3)
        report["two_over_one_process_pass"] = round(
            report["torchrun_1_pass_s"] / report["torchrun_2_pass_s"], 2
        )
        report["two_over_one_process_wall"] = round(
            report["torchrun_1_wall_s"] / report["torchrun_2_wall_s"], 2
        )

        # in-process against served (a stand-in server running the same checkpoint)
        scorer = QSiTScorer(folder, device="cpu", dtype="float32", batch_size=1)
        scorer.load()
        lock = threading.Lock()

        def stand_in(req: dict) -> dict:
            part = next(p for p in req["messages"][0]["content"] if p["type"] == "image_url")
            from PIL import Image

            image = Image.open(io.BytesIO(base64.b64decode(part["image_url"]["url"].split(",", 1)[1])))
            with lock:
                logits = scorer.level_logits([image])[0]
            top = max(logits)
            norm = top + math.log(sum(math.exp(x - top) for x in logits))
            tops = [{"token": w, "logprob": x - norm, "bytes": None} for w, x in zip(QSIT_LEVELS, logits)]
            return {"content": QSIT_LEVELS[0], "logprobs": {"content": [{**tops[0], "top_logprobs": tops}]}}

        with OpenAIServer(stand_in) as server:
            cfg = specialist_config(
                {"qs_base_url": server.url, "qs_model": folder, "cache_dir": str(tmp / "served")}
            )
            report["served_img_per_s"] = round(rate(build_pool(cfg), items), 2)
        report["served_over_in_process_bs1"] = round(
            report["served_img_per_s"] / report["in_process_bs1_img_per_s"], 2
        )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
