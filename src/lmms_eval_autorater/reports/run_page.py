"""The ``report`` command: one self-contained HTML page of a run: summary and a browser of every doc (not built yet)."""

from __future__ import annotations

import argparse

HELP = "one self-contained HTML page of a run: summary and a browser of every doc"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``report`` command's arguments."""


def run(args: argparse.Namespace) -> int:
    """Run the ``report`` command; returns the exit code."""
    from lmms_eval_autorater.cli import CommandError

    raise CommandError("report is not built yet")
