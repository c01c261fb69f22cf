"""Grid search cost: cold and warm runs, and successive halving against the exhaustive grid.

Local data (PSR sets, ImageReward prompts with one pair each), cheap image-reading specialists
standing in for the six models, and the local OpenAI-compatible judge server with ``--latency`` per
answer. Two measurements, each in one run:

* cold/warm: specialist invocations against unique inputs, judge calls, wall time (the cache);
* halving vs exhaustive: judge requests counted at the server for ``grid --strategy halving`` and for
  the exhaustive grid, each on a cold cache, with a judge whose correctness depends on which
  specialists it is shown (``tests.fakes.subset_rule_responder``: a known unique best subset), over
  several seeds; the ratio of calls and whether halving found the exhaustive winner.

``measure_halving_vs_exhaustive()`` returns the second as a dict (``benchmarks/cost.py`` imports it:
``sys.path.insert(0, "benchmarks"); from grid_search import measure_halving_vs_exhaustive``).
Run from the repository root: ``.venv/bin/python benchmarks/grid_search.py --sets 20 --latency 0.02``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lmms_eval_autorater.experiments.grid import DEFAULT_ETA, DEFAULT_MIN_GROUPS, run_grid, subsets  # noqa: E402
from lmms_eval_autorater.judges.factory import build_judge  # noqa: E402
from lmms_eval_autorater.specialists.cache import AssessmentCache, SpecialistPool  # noqa: E402
from lmms_eval_autorater.specialists.registry import applicable  # noqa: E402
from tests import fakes  # noqa: E402
from tests.datafactory import make_imagereward, make_psr  # noqa: E402
from tests.openai_server import OpenAIServer  # noqa: E402

#: the subset the rule judge is right with on every doc, per task kind (the paper's GPT-4o PSR winner
#: and a generation pair); a strict superset of it is right on 90% of docs, the rest on a third or less
RULE_BEST = {"editing": frozenset({"DF", "QS"}), "generation": frozenset({"AE", "QS"})}


def rule_quality(best: frozenset[str]):
    """``quality(shown codes)`` for ``fakes.subset_rule_responder``: 1 for ``best``, 0.9 for a strict
    superset of it, else 0.1 + 0.1 per code of ``best`` shown (+0.05 with GD)."""

    def quality(shown: frozenset[str]) -> float:
        if shown == best:
            return 1.0
        return 0.9 if shown > best else 0.1 + 0.1 * len(shown & best) + 0.05 * ("GD" in shown)

    return quality


def _docs(task: str, root: Path, n: int) -> list[dict]:
    """``n`` local docs of ``task`` (psr: one pair per set; imagereward_pair: one pair per prompt)."""
    os.environ["AUTORATER_DATA_DIR"] = str(root)
    if task == "psr":
        make_psr(root, [{"id": f"s{i}", "votes": ["1"] * 3 if i % 2 else ["2"] * 3} for i in range(n)])
        from lmms_eval_autorater.tasks.psr.utils import build_docs
    elif task == "imagereward_pair":
        make_imagereward(
            root,
            [
                {"id": f"p{k}", "prompt": f"prompt number {k}", "ranks": [1, 2] if k % 2 else [2, 1]}
                | {"ratings": [5, 3]}
                for k in range(n)
            ],
        )
        from lmms_eval_autorater.tasks.imagereward_pair.utils import build_docs
    else:
        raise ValueError(f"the halving benchmark runs psr or imagereward_pair, not {task!r}")
    return build_docs()


def _label_of(docs: list[dict]):
    labels = {d["request"]: d["label"] for d in docs}
    line = re.compile(r"^(?:Edit request|Request): (.*)$", re.M)

    def label_of(text: str) -> tuple[str, int]:
        key = line.search(text).group(1)
        return key, labels[key]

    return label_of


def _judge(server: OpenAIServer, cache: Path, concurrency: int):
    pool = SpecialistPool(cache=AssessmentCache(cache / "assessments.sqlite"), factory=fakes.fake_factory)
    return build_judge(
        "autorater_openai",
        {"base_url": server.url, "model": "judge", "cache_dir": str(cache), "concurrency": concurrency},
        pool=pool,
        progress=False,
    )


def measure_halving_vs_exhaustive(
    tasks: tuple[str, ...] = ("psr", "imagereward_pair"),
    n_groups: int = 81,
    seeds: tuple[int, ...] = (0, 1, 2),
    latency: float = 0.0,
    concurrency: int = 16,
    min_groups: int = DEFAULT_MIN_GROUPS,
) -> dict:
    """Judge requests at the local server: the exhaustive grid once and halving once per seed, each on a
    cold cache, per task; with the ratio (halving / exhaustive, mean and max over seeds) and whether
    every seed found the exhaustive winner. One pair per group, so ``n_groups`` docs per task."""
    out: dict = {
        "what": "judge requests counted at the local server, cold caches",
        "n_groups": n_groups,
        "seeds": list(seeds),
        "eta": DEFAULT_ETA,
        "min_groups": min_groups,
        "latency_s": latency,
        "tasks": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for task in tasks:
            root = Path(tmp) / task
            docs = _docs(task, root / "data", n_groups)
            kind = docs[0]["task_kind"]
            responder = fakes.subset_rule_responder(_label_of(docs), rule_quality(RULE_BEST[kind]))
            with OpenAIServer(responder, latency=latency) as server:
                start = time.perf_counter()
                ex = run_grid(
                    _judge(server, root / "exhaustive", concurrency), task, docs=docs, n_resamples=200
                )
                ex_wall, ex_calls = time.perf_counter() - start, server.request_count
                runs = []
                for seed in seeds:
                    before, start = server.request_count, time.perf_counter()
                    h = run_grid(
                        _judge(server, root / f"halving{seed}", concurrency),
                        task,
                        docs=docs,
                        strategy="halving",
                        seed=seed,
                        min_groups=min_groups,
                        n_resamples=200,
                    )
                    runs.append(
                        {
                            "seed": seed,
                            "calls": server.request_count - before,
                            "wall_s": round(time.perf_counter() - start, 3),
                            "winner": "+".join(h.best.subset),
                            "rounds": [st.__dict__ for st in h.rounds],
                        }
                    )
            ratios = [r["calls"] / ex_calls for r in runs]
            out["tasks"][task] = {
                "subsets": len(subsets(applicable(kind))),
                "docs": len(docs),
                "exhaustive_calls": ex_calls,
                "exhaustive_wall_s": round(ex_wall, 3),
                "exhaustive_winner": "+".join(ex.best.subset),
                "exhaustive_tied_with_best": ["+".join(s) for s in ex.tied_with_best],
                "halving": runs,
                "ratio_mean": sum(ratios) / len(ratios),
                "ratio_max": max(ratios),
                "same_winner": all(r["winner"] == "+".join(ex.best.subset) for r in runs),
            }
    return out


def cold_warm(sets: int, latency: float, concurrency: int) -> None:
    """The exhaustive grid twice on one cache: the second run makes no call and runs no specialist."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        docs = _docs("psr", root, sets)
        with OpenAIServer(latency=latency) as server:
            for label in ("cold", "warm"):
                before = server.request_count
                start = time.perf_counter()
                result = run_grid(
                    _judge(server, root / "cache", concurrency), "psr", docs=docs, n_resamples=200
                )
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
            print("\n".join(result.table().splitlines()[1:3]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", type=int, default=20, help="PSR sets of the cold/warm run")
    ap.add_argument("--latency", type=float, default=0.02)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--groups", type=int, default=81, help="docs (one per prompt/set) of the halving run")
    ap.add_argument("--seeds", type=int, default=3, help="halving seeds 0..N-1")
    ap.add_argument("--json", default=None, help="write the halving measurement here")
    args = ap.parse_args()
    cold_warm(args.sets, args.latency, args.concurrency)
    m = measure_halving_vs_exhaustive(
        n_groups=args.groups,
        seeds=tuple(range(args.seeds)),
        latency=args.latency,
        concurrency=args.concurrency,
    )
    for task, t in m["tasks"].items():
        calls = ", ".join(str(r["calls"]) for r in t["halving"])
        print(
            f"{task}: {t['subsets']} subsets x {t['docs']} docs; exhaustive {t['exhaustive_calls']} calls "
            f"({t['exhaustive_wall_s']:.1f} s), halving {calls} calls (seeds {m['seeds']}): ratio "
            f"{t['ratio_mean']:.3f} mean, {t['ratio_max']:.3f} max; same winner as exhaustive "
            f"({t['exhaustive_winner']}) in every seed: {t['same_winner']}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(m, indent=2))


if __name__ == "__main__":
    main()
