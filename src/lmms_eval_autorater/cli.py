"""``lmms-eval-autorater``: commands beside the lmms-eval CLI (the grid search over specialist subsets)."""

from __future__ import annotations

import argparse
import sys

from lmms_eval_autorater.registry import MODELS

JUDGES = sorted(m for m in MODELS if m.startswith("autorater_"))


def make_model(name: str, model_args: str):
    """Instantiate a judge model exactly as lmms-eval would from ``--model``/``--model_args``."""
    if name not in JUDGES:
        raise SystemExit(f"--model must be one of {', '.join(JUDGES)}; got {name!r}")
    from lmms_eval.utils import simple_parse_args_string

    from lmms_eval_autorater.specialists.base import load_class

    args = simple_parse_args_string(model_args or "")
    if "tools" in args:
        raise SystemExit("--model_args must not set tools: the grid chooses the subsets")
    return load_class(MODELS[name])(**args)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lmms-eval-autorater`` console script."""
    parser = argparse.ArgumentParser(prog="lmms-eval-autorater", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    grid = sub.add_parser("grid", help="evaluate every subset of 1..3 specialists for a judge on a task")
    grid.add_argument("--model", required=True, help=f"one of {', '.join(JUDGES)}")
    grid.add_argument("--model_args", default="", help="as for lmms-eval, without tools=")
    grid.add_argument("--task", required=True, help="psr, imagereward_pair, imagereward_point or aigiqa")
    grid.add_argument("--max_size", type=int, default=3)
    grid.add_argument(
        "--limit", type=int, default=None, help="first N docs only (for trials, not for results)"
    )
    grid.add_argument("--n_resamples", type=int, default=1000, help="bootstrap resamples for the 95%% CI")
    grid.add_argument("--output", default=None, help="write the ranked grid as JSON here")
    args = parser.parse_args(argv)

    from lmms_eval_autorater.grid import run_grid, write

    model = make_model(args.model, args.model_args)
    result = run_grid(
        model, args.task, max_size=args.max_size, limit=args.limit, n_resamples=args.n_resamples
    )
    print(result.table())
    if args.output:
        write(result, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
