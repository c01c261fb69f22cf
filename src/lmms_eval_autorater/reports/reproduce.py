"""The ``reproduce`` command: plan and run every row of Table 2, then build the table (not built yet)."""

from __future__ import annotations

import argparse

HELP = "plan and run every row of Table 2, then build the table"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``reproduce`` command's arguments."""


def run(args: argparse.Namespace) -> int:
    """Run the ``reproduce`` command; returns the exit code."""
    from lmms_eval_autorater.cli import CommandError

    raise CommandError("reproduce is not built yet")
