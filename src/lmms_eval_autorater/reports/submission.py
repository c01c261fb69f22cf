"""The ``submission`` command: pack a run's results and per-doc predictions as a leaderboard submission (not built yet)."""

from __future__ import annotations

import argparse

HELP = "pack a run's results and per-doc predictions as a leaderboard submission"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``submission`` command's arguments."""


def run(args: argparse.Namespace) -> int:
    """Run the ``submission`` command; returns the exit code."""
    from lmms_eval_autorater.cli import CommandError

    raise CommandError("submission is not built yet")
