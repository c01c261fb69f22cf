"""PSR (PhotoShopRequest test set): image editing, pairwise, with the paper's mode-vote filter.

Each annotated set has a request, a source image, two edits and several human votes
('1', '2' or 'tie'). A set is kept iff its mode vote holds at least 50% of all its votes
AND at least 2 more votes than the second most frequent label; the mode is the label;
sets whose label is 'tie' are then dropped (paper: 452 sets, 8 ties dropped, 444 kept).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lmms_eval_autorater.tasks.common import (
    DataError,
    data_dir,
    log_construction,
    make_doc,
    require,
    task_readme,
)

VOTE_LABELS = ("1", "2", "tie")

LAYOUT = """$AUTORATER_DATA_DIR/psr/
  annotations.jsonl   one JSON object per line (one annotated set):
                      {"id": str, "request": str, "source": path, "edits": [path, path],
                       "votes": ["1" | "2" | "tie", ...]}
  <image files>       the paths in annotations.jsonl, relative to this folder"""

NOT_PUBLIC = (
    "The PSR (PhotoShopRequest) human votes are not public, so the 'psr' task needs a local copy: "
    f"set AUTORATER_DATA_DIR to a folder holding psr/ laid out as in {task_readme('psr')}\n"
    "Expected layout:\n" + LAYOUT
)


@dataclass
class PSRStats:
    """What the construction kept and dropped, and why."""

    sets: int = 0
    no_clear_mode: int = 0
    tie_label: int = 0
    kept: int = 0
    dropped_ids: dict[str, list[str]] = field(default_factory=lambda: {"no_clear_mode": [], "tie_label": []})

    def summary(self) -> str:
        return (
            f"{self.sets} annotated sets; {self.no_clear_mode} dropped (mode < 50% of votes or < 2 votes ahead "
            f"of the second label); {self.tie_label} dropped (mode is 'tie'); {self.kept} kept"
        )


def mode_vote(votes: list[str]) -> str | None:
    """The mode label if it has >= 50% of the votes and >= 2 more than the runner-up, else None."""
    if not votes:
        return None
    ranked = Counter(votes).most_common()
    top_label, top = ranked[0]
    second = ranked[1][1] if len(ranked) > 1 else 0
    if 2 * top >= len(votes) and top - second >= 2:
        return top_label
    return None


def _normalise_vote(vote, where: str) -> str:
    text = str(vote).strip().lower() if isinstance(vote, (str, int)) and not isinstance(vote, bool) else None
    if text not in VOTE_LABELS:
        raise DataError(f"{where}: field 'votes' has unknown label {vote!r} (expected '1', '2' or 'tie')")
    return text


def build_docs_from_records(
    records: list[dict], root: Path, source_name: str = "annotations.jsonl", check_files: bool = True
) -> tuple[list[dict], PSRStats]:
    """Apply the PSR rule to parsed annotation records; returns docs and the drop statistics."""
    stats = PSRStats()
    docs: list[dict] = []
    seen: set[str] = set()
    for lineno, rec in enumerate(records, start=1):
        where = f"{source_name} line {lineno}"
        if not isinstance(rec, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
        set_id = str(require(rec, "id", where=where))
        where = f"{where} (id {set_id!r})"
        if set_id in seen:
            raise DataError(f"{where}: field 'id' is not unique")
        seen.add(set_id)
        request = str(require(rec, "request", where=where))
        source = require(rec, "source", where=where)
        edits = require(rec, "edits", where=where)
        if not isinstance(edits, list) or len(edits) != 2:
            raise DataError(f"{where}: field 'edits' must be a list of two image paths, got {edits!r}")
        votes_raw = require(rec, "votes", where=where)
        if not isinstance(votes_raw, list) or not votes_raw:
            raise DataError(f"{where}: field 'votes' must be a non-empty list")
        votes = [_normalise_vote(v, where) for v in votes_raw]
        paths = {
            "source": root / str(source),
            "edits[0]": root / str(edits[0]),
            "edits[1]": root / str(edits[1]),
        }
        if check_files:
            for name, path in paths.items():
                if not path.exists():  # a directory or other non-image is that doc's input error, when read
                    raise DataError(f"{where}: field {name!r}: image file not found: {path}")
        stats.sets += 1
        label = mode_vote(votes)
        if label is None:
            stats.no_clear_mode += 1
            stats.dropped_ids["no_clear_mode"].append(set_id)
            continue
        if label == "tie":
            stats.tie_label += 1
            stats.dropped_ids["tie_label"].append(set_id)
            continue
        stats.kept += 1
        docs.append(
            make_doc(
                doc_id=set_id,
                task_kind="editing",
                paradigm="pairwise",
                request=request,
                source_image=str(paths["source"]),
                image_1=str(paths["edits[0]"]),
                image_2=str(paths["edits[1]"]),
                group=set_id,
                label=int(label),
            )
        )
    return docs, stats


def read_annotations(path: Path) -> list[dict]:
    """Read annotations.jsonl; a malformed line is an error naming the file and line."""
    records = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path} line {lineno}: not valid JSON: {exc}") from exc
    return records


LAST_STATS: PSRStats | None = None


def build_docs() -> list[dict]:
    """The psr docs from ``$AUTORATER_DATA_DIR/psr`` (there is no public copy of the votes)."""
    global LAST_STATS
    base = data_dir()
    if base is None or not (base / "psr" / "annotations.jsonl").is_file():
        where = (
            "AUTORATER_DATA_DIR is not set"
            if base is None
            else f"{base / 'psr' / 'annotations.jsonl'} not found"
        )
        raise DataError(f"{where}. {NOT_PUBLIC}")
    root = base / "psr"
    path = root / "annotations.jsonl"
    docs, stats = build_docs_from_records(read_annotations(path), root, source_name=str(path))
    LAST_STATS = stats
    log_construction("psr", stats.summary())
    return docs
