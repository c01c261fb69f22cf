"""GenAI-Bench as docs: one per item, labels 1..4 (see ``tasks.field_common``)."""

from __future__ import annotations

from lmms_eval_autorater.tasks.field_common import build_genaibench


def build_docs() -> list[dict]:
    """The genaibench_edit docs from ``$AUTORATER_DATA_DIR/genaibench/`` or the hub dataset TIGER-Lab/GenAI-Bench."""
    return build_genaibench("genaibench_edit")
