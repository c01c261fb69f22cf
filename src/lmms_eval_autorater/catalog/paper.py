"""The paper's published numbers (Tables 2 and 3), read from ``paper.yaml`` beside this module.

A ground-floor fact: the reports print them, and the ``autorater_*_grid`` models read the paper's
bracketed Grid subsets from them.
"""

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


def full_docs(task: str) -> int | None:
    """The benchmark's full size (docs the paper's numbers are computed on); None for a task not in the paper."""
    n = paper().get("docs", {}).get(task)
    return None if n is None else int(n)


def reward_rows() -> list[dict[str, Any]]:
    """The rows of the reward models users compare against (the model catalog's ``reward_models``), shown
    beside the paper's: no published number, ``model`` naming their lmms-eval model."""
    from lmms_eval_autorater.catalog.models import REWARD_GROUP, reward_models

    return [{"row": e.row, "group": REWARD_GROUP, "model": e.id} for e in reward_models()]


def table2() -> list[dict[str, Any]]:
    """Table 2's rows in the paper's order (pairwise columns in %, pointwise columns as Pearson r), then
    the reward models' rows (``reward_rows``, no paper numbers)."""
    return [dict(r) for r in paper()["table2"]] + reward_rows()


def table2_row(name: str) -> dict[str, Any]:
    """One row of Table 2 by its name as printed in the paper (e.g. ``"GPT-4o + All"``) or a reward model's row."""
    rows = table2()
    for row in rows:
        if row["row"] == name:
            return row
    known = ", ".join(r["row"] for r in rows)
    raise KeyError(f"no Table 2 row named {name!r}; known: {known}")


def table3() -> list[dict[str, Any]]:
    """Table 3's six setups (AIGIQA Pearson of InternVL3-8B) in the paper's order."""
    return [dict(r) for r in paper()["table3"]]


def grid_row(group: str) -> dict[str, Any] | None:
    """The ``+ Grid`` row of a group of Table 2 (``gpt-4o``, ``gemini``), or None when the group has none."""
    return next((dict(r) for r in paper()["table2"] if r["group"] == group and r.get("grid")), None)


def grid_subsets(group: str) -> dict[str, list[str]]:
    """task -> the paper's bracketed specialist subset of the group's ``+ Grid`` row ({} when it has none)."""
    row = grid_row(group)
    return {task: list(codes) for task, codes in (row or {}).get("grid", {}).items()}
