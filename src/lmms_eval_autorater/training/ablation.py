"""The ``ablation`` command: the paper's Table 3: fine-tuned or not x trained with tools or not x inference with tools or not (not built yet)."""

from __future__ import annotations

import argparse

HELP = "the paper's Table 3: fine-tuned or not x trained with tools or not x inference with tools or not"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``ablation`` command's arguments."""


def run(args: argparse.Namespace) -> int:
    """Run the ``ablation`` command; returns the exit code."""
    from lmms_eval_autorater.cli import CommandError

    raise CommandError("ablation is not built yet")
