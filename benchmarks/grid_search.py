"""Grid search cost, cold and warm: specialist invocations against unique inputs, judge calls, wall time.

A small local PSR task (``--sets`` annotated sets), cheap image-reading specialists standing in for the
six models, and the local OpenAI-compatible judge server with ``--latency`` per answer. Run from the
repository root: ``.venv/bin/python benchmarks/grid_search.py --sets 20 --latency 0.02``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmms_eval_autorater.grid import run_grid  # noqa: E402
from lmms_eval_autorater.judges.factory import build_judge  # noqa: E402
from lmms_eval_autorater.specialists.cache import AssessmentCache, SpecialistPool  # noqa: E402
from tests import fakes  # noqa: E402
from tests.datafactory import make_psr  # noqa: E402
from tests.openai_server import OpenAIServer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", type=int, default=20)
    ap.add_argument("--latency", type=float, default=0.02)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_psr(
            root,
            [
                {"id": f"s{i}", "votes": ["1", "1", "1"] if i % 2 else ["2", "2", "2"]}
                for i in range(args.sets)
            ],
        )
        os.environ["AUTORATER_DATA_DIR"] = str(root)
        from lmms_eval_autorater.tasks.psr.utils import build_docs

        docs = build_docs()
        with OpenAIServer(latency=args.latency) as server:
            for label in ("cold", "warm"):
                pool = SpecialistPool(
                    cache=AssessmentCache(root / "cache" / "assessments.sqlite"), factory=fakes.fake_factory
                )
                model = build_judge(
                    "autorater_openai",
                    {
                        "base_url": server.url,
                        "model": "judge",
                        "cache_dir": str(root / "cache"),
                        "concurrency": args.concurrency,
                    },
                    pool=pool,
                    progress=False,
                )
                before = server.request_count
                start = time.perf_counter()
                result = run_grid(model, "psr", docs=docs, n_resamples=200)
                wall = time.perf_counter() - start
                print(
                    f"{label}: {len(result.rows)} subsets x {len(docs)} docs in {wall:.2f} s; "
                    f"judge requests {server.request_count - before} (cache hits {result.judge_cache_hits}); "
                    f"specialist invocations {sum(result.specialist_invocations.values())} "
                    f"(unique inputs {sum(result.unique_inputs.values())}; per code {result.specialist_invocations})"
                )
                if label == "cold":
                    assert result.specialist_invocations == result.unique_inputs
                else:
                    assert server.request_count == before and not result.specialist_invocations
            print(result.table().splitlines()[1])
            print(result.table().splitlines()[2])


if __name__ == "__main__":
    main()
