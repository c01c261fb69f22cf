"""``lmms-eval-autorater score``: placeholder (being written)."""

from __future__ import annotations

import argparse

HELP = "score (not yet available)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options."""


def run(args: argparse.Namespace) -> int:
    """Run the command; raise on failure (the CLI prints one line)."""
    raise NotImplementedError("score is not built yet")
