"""EditReward-Bench 4pair as docs: one per comparison (see ``tasks.field_common``)."""

from __future__ import annotations

from lmms_eval_autorater.tasks.field_common import build_editreward


def build_docs() -> list[dict]:
    """The editreward_bench_4 docs from ``$AUTORATER_DATA_DIR/editreward_bench/4pair/`` or the hub dataset."""
    return build_editreward("editreward_bench_4")
