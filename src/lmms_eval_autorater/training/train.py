"""The ``train`` command: fine-tune a judge on synthesized rationales (TRL SFTTrainer) (not built yet)."""

from __future__ import annotations

import argparse

HELP = "fine-tune a judge on synthesized rationales (TRL SFTTrainer)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``train`` command's arguments."""


def run(args: argparse.Namespace) -> int:
    """Run the ``train`` command; returns the exit code."""
    from lmms_eval_autorater.cli import CommandError

    raise CommandError("train is not built yet")
