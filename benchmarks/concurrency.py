"""Adaptive concurrency, side by side in ONE run through the real lmms-eval CLI: the stock lmms-eval
``openai`` model (its defaults: 32 threads; ``--force_simple``, as these tasks give doc_to_visual/text) against ``autorater_openai`` with default arguments
(``concurrency=auto``), on the same local aigiqa-layout data (distinct images, one doc each) and the
local server (``tests/openai_server.py``) at a fixed latency; then both against a server that answers
429 to any request beyond N in flight: the concurrency ``autorater_openai`` converged to, the most
requests in flight the server saw after warm-up, and the docs lost (must be 0).

    .venv/bin/python benchmarks/concurrency.py                   # 444 docs, 0.5 s, N = 16
    .venv/bin/python benchmarks/concurrency.py --n 64 --latency 1.0
    .venv/bin/python benchmarks/concurrency.py --sizes 64,256,1000  # latency-bound only, one row per size

Times: the process wall (lmms-eval start-up and task building included) and the judging span (the
server's first request to its last answer); the ratio is stock / ours (> 1: ours is faster).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # ahead of site-packages: latex2sympy2 ships a top-level ``tests`` too

from PIL import Image  # noqa: E402

from tests.datafactory import make_aigiqa  # noqa: E402
from tests.openai_server import OpenAIServer  # noqa: E402

LMMS_EVAL = str(Path(sys.executable).with_name("lmms-eval"))
TASK = "aigiqa"


def distinct_png(k: int) -> bytes:
    """A 32x32 PNG unique to ``k`` (its index spelled in the first pixels), so no two docs share a prompt."""
    img = Image.new("RGB", (32, 32), (k % 251, (k * 7) % 253, (k * 13) % 255))
    for bit in range(16):
        img.putpixel((bit, 0), (255, 255, 255) if (k >> bit) & 1 else (0, 0, 0))
    buf = BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def make_data(root: Path, n: int) -> Path:
    """``root/aigiqa`` with ``n`` test images, every one distinct."""
    names = [f"SDXL_{i:05d}.png" for i in range(n)]
    folder = make_aigiqa(
        root, [(name, f"prompt {i}", 1.0 + (i % 9) / 2) for i, name in enumerate(names)], names
    )
    for i, name in enumerate(names):
        (folder / "images" / name).write_bytes(distinct_png(i))
    return root


def run_cli(work: Path, data: Path, model: str, model_args: str) -> dict:
    """One lmms-eval run; its results, wall time and output."""
    out = work / f"out_{model}_{len(list(work.glob('out_*')))}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "GEMINI"))}
    env.update(AUTORATER_DATA_DIR=str(data), OPENAI_API_KEY="EMPTY", AUTORATER_CACHE_DIR=str(out / "cache"))
    start = time.monotonic()
    proc = subprocess.run(
        # the stock model's chat variant needs doc_to_messages tasks; its simple variant (--force_simple,
        # the same class and defaults: 32 threads) reads doc_to_visual/doc_to_text as these tasks provide
        [LMMS_EVAL, "--model", model, "--model_args", model_args, "--tasks", TASK, "--output_path", str(out)]
        + (["--force_simple"] if model == "openai" else []),
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    wall = time.monotonic() - start
    files = sorted(out.rglob("*_results.json"))
    if proc.returncode != 0 or not files:
        raise SystemExit(f"{model} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}")
    results = json.loads(files[-1].read_text())["results"][TASK]
    return {"wall": wall, "results": results, "log": proc.stdout + proc.stderr}


def span(server: OpenAIServer) -> float:
    """Seconds from the server's first request to its last answer (the judging phase)."""
    times = [r.time for r in server.requests]
    return max(times) - min(times) + server.latency if times else float("nan")


def gate_stats(log: str) -> dict:
    """The runner's gate statistics from the judge's summary log line (``backend {...}``)."""
    for line in reversed(log.splitlines()):
        m = re.search(r"backend (\{.*\})", line)
        if m and "concurrency_now" in m.group(1):
            return ast.literal_eval(m.group(1))
    return {}


def lost(results: dict, n: int) -> int:
    """Docs without a usable answer: n minus those scored."""
    return n - int(results["n_scored,none"])


def main(argv: list[str] | None = None) -> int:
    """Run the four CLI runs and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=444, help="docs")
    ap.add_argument("--latency", type=float, default=0.5, help="server latency per request, seconds")
    ap.add_argument(
        "--limit", type=int, default=16, help="N: the 429 server refuses requests beyond N in flight"
    )
    ap.add_argument(
        "--sizes",
        default=None,
        help="comma-separated doc counts (e.g. 64,256,1000): the latency-bound comparison only, at each size",
    )
    args = ap.parse_args(argv)
    if args.sizes:
        return sizes(args)

    stock_args = "model_version=judge-1,base_url={url}"
    ours_args = "base_url={url},model=judge-1"
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = make_data(work / "data", args.n)
        for label, limit in (("latency-bound", None), (f"429 above {args.limit}", args.limit)):
            for model, margs in (("openai", stock_args), ("autorater_openai", ours_args)):
                with OpenAIServer(latency=args.latency, max_concurrent=limit) as server:
                    run = run_cli(work, data, model, margs.format(url=server.url))
                    warm = sorted(r.time for r in server.requests)
                    after = warm[len(warm) // 4] if warm else None  # warm-up: the first quarter of requests
                    rows[(label, model)] = {
                        "wall": run["wall"],
                        "span": span(server),
                        "requests": server.request_count,
                        "refused": sum(r.fault == "concurrency:429" for r in server.requests),
                        "peak": server.admitted_in_flight(),
                        "peak_after_warmup": server.admitted_in_flight(after),
                        "lost": lost(run["results"], args.n),
                        "gate": gate_stats(run["log"]) if model == "autorater_openai" else {},
                    }
                print(f"done: {label} / {model}", file=sys.stderr, flush=True)

    print(f"{args.n} docs ({TASK}), server latency {args.latency:g} s, one run, {os.cpu_count()} CPUs")
    print(
        f"{'server':<16} {'model':<18} {'wall s':>7} {'span s':>7} {'reqs':>5} {'429s':>5} {'peak':>5} "
        f"{'peak>warm':>9} {'lost':>5}  concurrency"
    )
    for (label, model), r in rows.items():
        conc = ""
        if r["gate"]:
            conc = f"now {r['gate']['concurrency_now']}, peak {r['gate']['concurrency_peak']}"
        elif model == "openai":
            conc = "32 (stock default)"
        print(
            f"{label:<16} {model:<18} {r['wall']:7.2f} {r['span']:7.2f} {r['requests']:5d} {r['refused']:5d} "
            f"{r['peak']:5d} {r['peak_after_warmup']:9d} {r['lost']:5d}  {conc}"
        )
    stock, ours = rows[("latency-bound", "openai")], rows[("latency-bound", "autorater_openai")]
    print(
        f"latency-bound: stock / autorater_openai = {stock['wall'] / ours['wall']:.2f}x by wall, "
        f"{stock['span'] / ours['span']:.2f}x by judging span (> 1: the defaults are faster)"
    )
    limited = rows[(f"429 above {args.limit}", "autorater_openai")]
    print(
        f"429 above N={args.limit}: autorater_openai converged to {limited['gate'].get('concurrency_now')} "
        f"(server saw at most {limited['peak_after_warmup']} in flight after warm-up), docs lost {limited['lost']}"
    )
    return 0


def sizes(args: argparse.Namespace) -> int:
    """Stock ``openai`` vs ``autorater_openai`` at several sizes against a latency-only server: the slow
    start's cost is in the first rounds, so short runs show it (issue 16: within 1.1x of stock at 256)."""
    ns = [int(x) for x in str(args.sizes).split(",") if x.strip()]
    print(f"server latency {args.latency:g} s, latency-bound, one run per cell, {os.cpu_count()} CPUs")
    print(
        f"{'docs':>5} {'stock wall':>10} {'ours wall':>10} {'stock span':>10} {'ours span':>10} {'ours/stock':>10}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for n in ns:
            data = make_data(work / f"data{n}", n)
            cell = {}
            for model, margs in (
                ("openai", "model_version=judge-1,base_url={url}"),
                ("autorater_openai", "base_url={url},model=judge-1"),
            ):
                with OpenAIServer(latency=args.latency) as server:
                    run = run_cli(work, data, model, margs.format(url=server.url))
                    cell[model] = (run["wall"], span(server), lost(run["results"], n))
            (sw, ss, _), (ow, os_, olost) = cell["openai"], cell["autorater_openai"]
            print(
                f"{n:5d} {sw:10.2f} {ow:10.2f} {ss:10.2f} {os_:10.2f} {os_ / ss:10.2f}  lost {olost}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
