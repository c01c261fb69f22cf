"""The field's published numbers on its benchmarks (MMRB2, GenAI-Bench, EditReward-Bench), read from
``field.yaml`` beside this module: a ground-floor fact that ``table --columns field`` prints beside our runs."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

FIELD_FILE = Path(__file__).with_name("field.yaml")


@lru_cache(maxsize=1)
def field_data() -> dict[str, Any]:
    """The whole data file: columns (task -> metric, full doc count, title), sources and published rows."""
    return yaml.safe_load(FIELD_FILE.read_text(encoding="utf-8"))


def columns() -> dict[str, dict[str, Any]]:
    """task -> {metric, n_docs, title[, also]} in the table's order."""
    return {k: dict(v) for k, v in field_data()["columns"].items()}


def published() -> list[dict[str, Any]]:
    """The published rows (values in %), each with the source of each of its numbers."""
    return [dict(r) for r in field_data()["published"]]


def source(key: str) -> str:
    """The citation of a source key (``mmrb2``, ``genaibench``, ``editreward``)."""
    return str(field_data()["sources"][key])


def metric_label(metric: str) -> str:
    """How a cell names ``metric`` when it is not its column's (``group accuracy``, ``tie-calibrated``)."""
    return str(field_data().get("metric_labels", {}).get(metric, metric.replace("_", " ")))


#: the row groups of the field table, in order: the judges, then the scalar scorers (a score per image)
GROUPS = ("judges", "reward models")


def published_cell(row: dict[str, Any], task: str) -> tuple[float, str | None] | None:
    """(value in %, metric or None for the column's own) of a published row's cell; None when it has none."""
    if task not in row:
        return None
    value = row[task]
    if isinstance(value, dict):
        return float(value["value"]), str(value["metric"])
    return float(value), None
