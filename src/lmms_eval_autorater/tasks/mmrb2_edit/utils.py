"""MMRB2 edit as docs: both orders of every pair (see ``tasks.field_common``)."""

from __future__ import annotations

from lmms_eval_autorater.tasks.field_common import build_mmrb2


def build_docs() -> list[dict]:
    """The mmrb2_edit docs from ``$AUTORATER_DATA_DIR/mmrb2/edit.json`` (build_from_hf.py's layout) or the hub."""
    return build_mmrb2("edit", "mmrb2_edit")
