"""``lmms-eval-autorater``: commands beside the lmms-eval CLI (grid search; scoring and ranking your own images).

Every command exits 0 on success and non-zero on failure with one line naming the cause on stderr
(``--debug`` prints the traceback as well): 1 for a failed run, 2 for a wrong command line.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from lmms_eval_autorater.judges.factory import judge_names

PROG = "lmms-eval-autorater"
#: commands on the user's own generations, one module each under ``lmms_eval_autorater.generations``
COMMANDS = ("score", "arena")


class CommandError(Exception):
    """A user-facing failure of a command (bad arguments found after parsing, nothing to do)."""


def one_line(exc: BaseException) -> str:
    """The cause of ``exc`` on one line: its type (unless a plain user error) and its first message line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, CommandError):
        return text
    return f"{type(exc).__name__}: {text}"


def _grid(args: argparse.Namespace) -> int:
    from lmms_eval_autorater.grid import GRID_TASKS, run_grid, write
    from lmms_eval_autorater.judges.args import parse_model_args
    from lmms_eval_autorater.judges.factory import build_judge

    if args.task not in GRID_TASKS:
        raise CommandError(f"--task must be one of {', '.join(GRID_TASKS)}; got {args.task!r}")
    model_args = parse_model_args(args.model_args)
    if "tools" in model_args:
        raise CommandError("--model_args must not set tools: the grid chooses the subsets")
    judge = build_judge(args.model, model_args)
    result = run_grid(
        judge, args.task, max_size=args.max_size, limit=args.limit, n_resamples=args.n_resamples
    )
    print(result.table())
    if args.output:
        write(result, args.output)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    # --debug before or after the command; SUPPRESS keeps a subcommand from resetting the global value
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="print the full traceback on failure"
    )
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)
    grid = sub.add_parser(
        "grid", parents=[common], help="evaluate every subset of 1..3 specialists for a judge on a task"
    )
    grid.add_argument("--model", required=True, choices=judge_names(), help="the judge")
    grid.add_argument("--model_args", default="", help="as for lmms-eval, without tools=")
    grid.add_argument("--task", required=True, help="psr, imagereward_pair, imagereward_point or aigiqa")
    grid.add_argument("--max_size", type=int, default=3)
    grid.add_argument(
        "--limit", type=int, default=None, help="first N docs only (for trials, not for results)"
    )
    grid.add_argument("--n_resamples", type=int, default=1000, help="bootstrap resamples for the 95%% CI")
    grid.add_argument("--output", default=None, help="write the ranked grid as JSON here")
    grid.set_defaults(func=_grid)
    import importlib

    for name in COMMANDS:  # each command module: HELP, add_arguments(parser), run(args) -> exit code
        module = importlib.import_module(f"lmms_eval_autorater.generations.{name}")
        cmd = sub.add_parser(name, parents=[common], help=module.HELP)
        module.add_arguments(cmd)
        cmd.set_defaults(func=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lmms-eval-autorater`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # every failure ends in one line; the traceback only on request
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"{PROG} {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
