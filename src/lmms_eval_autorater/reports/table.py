"""The ``table`` command: build Table 2 from lmms-eval results, with the paper's numbers and paired differences (not built yet)."""

from __future__ import annotations

import argparse

HELP = "build Table 2 from lmms-eval results, with the paper's numbers and paired differences"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``table`` command's arguments."""


def run(args: argparse.Namespace) -> int:
    """Run the ``table`` command; returns the exit code."""
    from lmms_eval_autorater.cli import CommandError

    raise CommandError("table is not built yet")
