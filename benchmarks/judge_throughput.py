"""Judge-call throughput: the call runner at concurrency 1 and 16 against a local OpenAI-compatible
server with an injected latency, then a fully cached rerun (which must make zero requests).

    .venv/bin/python benchmarks/judge_throughput.py --n 64 --latency 0.2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # ahead of site-packages: latex2sympy2 ships a top-level ``tests`` too

from lmms_eval_autorater.judges.backends.openai_api import OpenAIChatBackend  # noqa: E402
from lmms_eval_autorater.judges.cache import ResponseCache  # noqa: E402
from lmms_eval_autorater.judges.runner import CallRunner  # noqa: E402
from lmms_eval_autorater.judges.types import ChatImage, ChatPrompt, Completion  # noqa: E402
from tests.openai_server import OpenAIServer  # noqa: E402

SCHEMA = {
    "type": "object",
    "properties": {"analysis": {"type": "string"}, "score": {"type": "integer", "minimum": 1, "maximum": 10}},
    "required": ["analysis", "score"],
    "additionalProperties": False,
}


def make_prompts(n: int, image_bytes: int) -> list[ChatPrompt]:
    """``n`` distinct two-image prompts (random-looking bytes of the given size, deterministic)."""
    prompts = []
    for i in range(n):
        img1 = (f"doc{i}-a".encode() * image_bytes)[:image_bytes]
        img2 = (f"doc{i}-b".encode() * image_bytes)[:image_bytes]
        parts = (
            f"Request {i}: rate the edit.",
            "Source:",
            ChatImage(img1),
            "Edited:",
            ChatImage(img2),
            "JSON.",
        )
        prompts.append(ChatPrompt("You are a strict judge.", parts, SCHEMA))
    return prompts


def timed_run(backend: OpenAIChatBackend, cache: ResponseCache, prompts: list[ChatPrompt], conc: int):
    """Run all prompts through a fresh runner; return (wall seconds, runner)."""
    gp = backend.gen_params()
    items = [(ResponseCache.key(backend.name, backend.model, "bench", p, gp), p) for p in prompts]
    runner = CallRunner(backend.call, cache=cache, concurrency=conc, progress_desc=f"conc={conc}")
    t0 = time.perf_counter()
    out = runner.run(items)
    wall = time.perf_counter() - t0
    bad = [o for o in out if not (isinstance(o, Completion) and o.text)]
    assert not bad, f"{len(bad)} calls failed: {bad[:3]}"
    return wall, runner


def main(argv: list[str] | None = None) -> int:
    """Print wall, ideal (n * latency / concurrency) and wall/ideal per concurrency, then the cached rerun."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="number of docs (distinct prompts)")
    ap.add_argument("--latency", type=float, default=0.2, help="server latency per request, seconds")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--image-bytes", type=int, default=64 * 1024, help="bytes per image (2 images a prompt)")
    args = ap.parse_args(argv)

    prompts = make_prompts(args.n, args.image_bytes)
    print(f"n={args.n} latency={args.latency}s images=2x{args.image_bytes}B python={sys.version.split()[0]}")
    print(
        f"{'concurrency':>11} {'wall_s':>8} {'ideal_s':>8} {'wall/ideal':>10} {'overhead_ms/call':>16} "
        f"{'requests':>8} {'max_in_flight':>13}"
    )
    with tempfile.TemporaryDirectory() as tmp, OpenAIServer(latency=args.latency) as srv:
        backend = OpenAIChatBackend("gpt-4o", base_url=srv.url, api_key_env=None, timeout=30.0)
        last_cache = None
        for conc in args.concurrency:
            srv.reset()
            cache = ResponseCache(os.path.join(tmp, f"c{conc}.sqlite"))  # empty cache per setting
            wall, runner = timed_run(backend, cache, prompts, conc)
            ideal = args.n * args.latency / conc
            assert srv.request_count == args.n and runner.calls_made == args.n
            ratio = f"{wall / ideal:.2f}" if ideal > 0 else "n/a"
            overhead_ms = 1000 * (wall - ideal) * conc / args.n  # extra time each call costs a worker
            print(
                f"{conc:>11} {wall:>8.2f} {ideal:>8.2f} {ratio:>10} {overhead_ms:>16.1f} "
                f"{srv.request_count:>8} {srv.max_in_flight:>13}"
            )
            last_cache = cache
        srv.reset()
        wall, runner = timed_run(backend, last_cache, prompts, max(args.concurrency))
        assert srv.request_count == 0, f"cached rerun made {srv.request_count} requests"
        assert runner.cache_hits == args.n
        print(
            f"cached rerun: wall {1000 * wall:.1f} ms, requests {srv.request_count}, cache hits {runner.cache_hits}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
