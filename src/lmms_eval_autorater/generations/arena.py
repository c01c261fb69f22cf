"""``lmms-eval-autorater arena``: placeholder (being written)."""

from __future__ import annotations

import argparse

HELP = "arena (not yet available)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options."""


def run(args: argparse.Namespace) -> int:
    """Run the command; raise on failure (the CLI prints one line)."""
    raise NotImplementedError("arena is not built yet")
