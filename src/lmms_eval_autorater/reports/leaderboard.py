"""The ``leaderboard`` command: rank validated submissions with CIs and tie groups (not built yet)."""

from __future__ import annotations

import argparse

HELP = "rank validated submissions with CIs and tie groups"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``leaderboard`` command's arguments."""


def run(args: argparse.Namespace) -> int:
    """Run the ``leaderboard`` command; returns the exit code."""
    from lmms_eval_autorater.cli import CommandError

    raise CommandError("leaderboard is not built yet")
