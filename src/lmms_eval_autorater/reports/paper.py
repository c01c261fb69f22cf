"""The paper's published numbers: a re-export of ``catalog.paper`` (the data now lives at the ground floor)."""

from lmms_eval_autorater.catalog.paper import (
    PAPER_FILE,
    citation,
    full_docs,
    grid_row,
    grid_subsets,
    paper,
    table2,
    table2_row,
    table3,
)

__all__ = [
    "PAPER_FILE",
    "citation",
    "full_docs",
    "grid_row",
    "grid_subsets",
    "paper",
    "table2",
    "table2_row",
    "table3",
]
