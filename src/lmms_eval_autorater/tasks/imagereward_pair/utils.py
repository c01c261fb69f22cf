"""ImageReward test split as docs: within-prompt pairs with different human rank, and single images.

Source: the Hugging Face dataset THUDM/ImageRewardDB (``metadata-test.parquet`` plus
``images/test/*.zip`` of .webp files), read directly because its loading script no longer
runs on current ``datasets``; or a local snapshot under ``$AUTORATER_DATA_DIR/ImageRewardDB``.
Rank 1 is best; equal ranks are ties and make no pair (831 such pairs in the test split).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path, PurePosixPath

from lmms_eval_autorater.tasks.common import (
    DataError,
    check_paths_exist,
    data_dir,
    hub_snapshot,
    make_doc,
    task_readme,
)

HUB_REPO = "THUDM/ImageRewardDB"
SPLIT = "test"
REQUIRED_COLUMNS = ("image_path", "prompt_id", "prompt", "rank", "overall_rating")

LAYOUT = """$AUTORATER_DATA_DIR/ImageRewardDB/     (a snapshot of the HF dataset repo THUDM/ImageRewardDB)
  metadata-test.parquet                 columns image_path, prompt_id, prompt, rank, overall_rating, ...
  images/test/*.zip                     the .webp images, zipped as on the hub, or already extracted"""


@dataclass(frozen=True)
class RankedImage:
    """One image of a prompt's ranked set."""

    name: str
    rank: int


@dataclass
class PairStats:
    prompts: int = 0
    images: int = 0
    pairs: int = 0
    same_rank_pairs: int = 0


def build_pairs(
    groups: Iterable[tuple[str, list[RankedImage]]],
) -> tuple[list[tuple[str, RankedImage, RankedImage, int]], PairStats]:
    """Every within-prompt pair (i < j in listing order) with different ranks; label = the lower rank's side."""
    stats = PairStats()
    pairs = []
    for prompt_id, images in groups:
        stats.prompts += 1
        stats.images += len(images)
        for a, b in combinations(images, 2):
            if a.rank == b.rank:
                stats.same_rank_pairs += 1
                continue
            pairs.append((prompt_id, a, b, 1 if a.rank < b.rank else 2))
            stats.pairs += 1
    return pairs, stats


def dataset_root(split: str = SPLIT, *, also: Sequence[str] = (), layout: str = LAYOUT) -> Path:
    """Local snapshot if ``$AUTORATER_DATA_DIR`` is set, else the hub (cached by huggingface_hub).

    ``split``: test (the task), or train / validation (training sources, selection); ``also``: further
    hub files to fetch (the training sources' test-doc guard reads ``metadata-test.parquet``);
    ``layout``: the layout named in errors."""
    base = data_dir()
    if base is not None:
        root = base / "ImageRewardDB"
        if split != SPLIT and not (root / f"metadata-{split}.parquet").exists():
            raise DataError(
                f"no {split} split: {root / f'metadata-{split}.parquet'} is missing\nExpected layout:\n{layout}"
            )
        check_paths_exist(
            {"metadata": root / f"metadata-{split}.parquet"}, layout, task_readme("imagereward_pair")
        )
        return root
    return hub_snapshot(
        HUB_REPO,
        allow_patterns=[f"metadata-{split}.parquet", f"images/{split}/*", *also],
        layout=layout,
        readme=task_readme("imagereward_pair"),
    )


def read_metadata(root: Path, split: str = SPLIT) -> list[dict]:
    """Rows of ``metadata-<split>.parquet`` in file order, checked for the needed columns."""
    import pandas as pd

    path = root / f"metadata-{split}.parquet"
    frame = pd.read_parquet(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; found {list(frame.columns)}")
    rows = frame[list(REQUIRED_COLUMNS)].to_dict("records")
    for i, row in enumerate(rows):
        for col in REQUIRED_COLUMNS:
            value = row[col]
            if value is None or (isinstance(value, float) and value != value):
                raise DataError(f"{path} row {i} (image {row.get('image_path')!r}): missing field {col!r}")
    return rows


def image_index(root: Path, split: str = SPLIT) -> dict[str, str]:
    """File name -> reference for the split's images (zips or extracted files)."""
    from lmms_eval_autorater.images import index_images

    folder = root / "images" / split
    if not folder.is_dir():
        folder = root / "images"
    if not folder.is_dir():
        raise DataError(f"no images folder under {root}.\nExpected layout:\n{LAYOUT}")
    return index_images(folder)


def grouped(rows: list[dict], source: str) -> list[tuple[str, str, list[RankedImage]]]:
    """Rows grouped by prompt_id, groups and images in file order."""
    groups: dict[str, tuple[str, list[RankedImage]]] = {}
    for i, row in enumerate(rows):
        name = PurePosixPath(str(row["image_path"]).replace("\\", "/")).name
        try:
            rank = int(row["rank"])
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"{source} row {i} (image {name!r}): field 'rank' is not an integer: {row['rank']!r}"
            ) from exc
        pid = str(row["prompt_id"])
        groups.setdefault(pid, (str(row["prompt"]), []))[1].append(RankedImage(name, rank))
    return [(pid, prompt, images) for pid, (prompt, images) in groups.items()]


def _ref(index: dict[str, str], name: str, where: str, field: str) -> str:
    if name not in index:
        raise DataError(f"{where}: field {field!r}: image {name!r} not found in the ImageRewardDB images")
    return index[name]


def pair_docs(
    rows: list[dict], index: dict[str, str], source: str = "metadata-test.parquet"
) -> tuple[list[dict], PairStats]:
    """The imagereward_pair docs from metadata rows and an image index."""
    groups = grouped(rows, source)
    prompts = {pid: prompt for pid, prompt, _ in groups}
    pairs, stats = build_pairs((pid, images) for pid, _, images in groups)
    docs = []
    for pid, a, b, label in pairs:
        where = f"{source} prompt_id {pid!r}"
        docs.append(
            make_doc(
                doc_id=f"{pid}:{a.name}|{b.name}",
                task_kind="generation",
                paradigm="pairwise",
                request=prompts[pid],
                image_1=_ref(index, a.name, where, "image_path"),
                image_2=_ref(index, b.name, where, "image_path"),
                group=pid,
                label=label,
            )
        )
    return docs, stats


def build_docs(split: str = SPLIT) -> list[dict]:
    """imagereward_pair: 6,399 different-rank pairs from 466 prompts of the test split (or ``split``'s)."""
    from lmms_eval_autorater.tasks.common import log_construction

    root = dataset_root(split)
    docs, stats = pair_docs(
        read_metadata(root, split), image_index(root, split), f"{root}/metadata-{split}.parquet"
    )
    log_construction(
        "imagereward_pair" if split == SPLIT else f"imagereward_pair ({split})",
        f"{stats.prompts} prompts, {stats.images} images -> {stats.pairs} pairs with different rank; "
        f"{stats.same_rank_pairs} same-rank pairs excluded",
    )
    return docs
