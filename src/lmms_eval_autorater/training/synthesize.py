"""The ``synthesize`` command: write teacher rationales for the human labels of a training source (not built yet)."""

from __future__ import annotations

import argparse

HELP = "write teacher rationales for the human labels of a training source"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``synthesize`` command's arguments."""


def run(args: argparse.Namespace) -> int:
    """Run the ``synthesize`` command; returns the exit code."""
    from lmms_eval_autorater.cli import CommandError

    raise CommandError("synthesize is not built yet")
