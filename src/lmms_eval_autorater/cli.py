"""``lmms-eval-autorater``: commands beside the lmms-eval CLI (grid search, training, tables, reports, costs, your own images).

Every command exits 0 on success and non-zero on failure with one line naming the cause on stderr
(``--debug`` prints the traceback as well): 1 for a failed run, 2 for a wrong command line.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from lmms_eval_autorater.errors import UsageError, first_line

PROG = "lmms-eval-autorater"
#: every command: its name and the module that provides ``HELP``, ``add_arguments(parser)`` and
#: ``run(args) -> exit code``; modules are imported only when the parser is built
COMMANDS = {
    "grid": "lmms_eval_autorater.experiments.grid",
    "estimate": "lmms_eval_autorater.experiments.estimate",
    "assess": "lmms_eval_autorater.experiments.assess",
    "synthesize": "lmms_eval_autorater.training.synthesize",
    "train": "lmms_eval_autorater.training.train",
    "ablation": "lmms_eval_autorater.experiments.ablation",
    "table": "lmms_eval_autorater.reports.table",
    "reproduce": "lmms_eval_autorater.reports.reproduce",
    "submission": "lmms_eval_autorater.reports.submission",
    "validate": "lmms_eval_autorater.reports.validate",
    "leaderboard": "lmms_eval_autorater.reports.leaderboard",
    "report": "lmms_eval_autorater.reports.run_page",
    "score": "lmms_eval_autorater.generations.score",
    "arena": "lmms_eval_autorater.generations.arena",
    "export": "lmms_eval_autorater.reports.field_export",
    "import": "lmms_eval_autorater.reports.field_import",
}


#: the old name of ``errors.UsageError`` (library code raises the typed errors of ``errors.py``)
CommandError = UsageError


def one_line(exc: BaseException) -> str:
    """The cause of ``exc`` on one line: its first message line, after its type unless it is the user's
    call (a ``UsageError``: wrong options, nothing to do); the other typed errors keep their name
    (``DataError: ...``, ``ConfigError``) as it says where to look."""
    text = first_line(exc)
    if isinstance(exc, UsageError):
        return text
    return f"{type(exc).__name__}: {text}"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    # --debug before or after the command; SUPPRESS keeps a subcommand from resetting the global value
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="print the full traceback on failure"
    )
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__, parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)
    import importlib

    for name, module_path in COMMANDS.items():
        module = importlib.import_module(module_path)
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
