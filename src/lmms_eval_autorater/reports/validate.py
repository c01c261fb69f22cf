"""The ``validate`` command: check a submission's schema and recompute its metrics from its predictions (not built yet)."""

from __future__ import annotations

import argparse

HELP = "check a submission's schema and recompute its metrics from its predictions"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``validate`` command's arguments."""


def run(args: argparse.Namespace) -> int:
    """Run the ``validate`` command; returns the exit code."""
    from lmms_eval_autorater.cli import CommandError

    raise CommandError("validate is not built yet")
