"""The assessment a specialist returns; shared with the judge core, which only reads it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Assessment:
    """One specialist's output on one input: a number and/or a text, with the specialist's version."""

    code: str
    value: float | None = None
    text: str | None = None
    version: str = ""
    #: which candidate (1 or 2) it describes; None for one-candidate tasks
    candidate: int | None = None
