"""The ``estimate`` command: the calls, tokens and USD of a run before anything is sent (not built yet)."""

from __future__ import annotations

import argparse

HELP = "the calls, tokens and USD of a run before anything is sent"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``estimate`` command's arguments."""


def run(args: argparse.Namespace) -> int:
    """Run the ``estimate`` command; returns the exit code."""
    from lmms_eval_autorater.cli import CommandError

    raise CommandError("estimate is not built yet")
