"""The paper's published numbers (Tables 2 and 3), read from ``paper.yaml`` beside this module."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

PAPER_FILE = Path(__file__).with_name("paper.yaml")


@lru_cache(maxsize=1)
def paper() -> dict[str, Any]:
    """The whole data file: citation, columns, units, table2 and table3."""
    return yaml.safe_load(PAPER_FILE.read_text(encoding="utf-8"))


def citation() -> str:
    """The paper the numbers come from."""
    return str(paper()["citation"])


def table2() -> list[dict[str, Any]]:
    """Table 2's rows in the paper's order; pairwise columns in %, pointwise columns as Pearson r."""
    return [dict(r) for r in paper()["table2"]]


def table2_row(name: str) -> dict[str, Any]:
    """One row of Table 2 by its name as printed in the paper (e.g. ``"GPT-4o + All"``)."""
    for row in paper()["table2"]:
        if row["row"] == name:
            return dict(row)
    known = ", ".join(r["row"] for r in paper()["table2"])
    raise KeyError(f"no Table 2 row named {name!r}; known: {known}")


def table3() -> list[dict[str, Any]]:
    """Table 3's six setups (AIGIQA Pearson of InternVL3-8B) in the paper's order."""
    return [dict(r) for r in paper()["table3"]]
