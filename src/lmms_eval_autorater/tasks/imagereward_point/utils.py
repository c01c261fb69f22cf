"""ImageReward test split, pointwise: every image with its human ``overall_rating`` (1-7)."""

from __future__ import annotations

from pathlib import PurePosixPath

from lmms_eval_autorater.tasks.common import DataError, log_construction, make_doc
from lmms_eval_autorater.tasks.imagereward_pair.utils import SPLIT, dataset_root, image_index, read_metadata


def point_docs(rows: list[dict], index: dict[str, str], source: str = "metadata-test.parquet") -> list[dict]:
    """One doc per metadata row, in file order; the target is ``overall_rating``."""
    docs = []
    for i, row in enumerate(rows):
        name = PurePosixPath(str(row["image_path"]).replace("\\", "/")).name
        where = f"{source} row {i} (image {name!r})"
        try:
            target = float(row["overall_rating"])
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"{where}: field 'overall_rating' is not a number: {row['overall_rating']!r}"
            ) from exc
        if name not in index:
            raise DataError(
                f"{where}: field 'image_path': image {name!r} not found in the ImageRewardDB images"
            )
        docs.append(
            make_doc(
                doc_id=name,
                task_kind="generation",
                paradigm="pointwise",
                request=str(row["prompt"]),
                image_1=index[name],
                group=str(row["prompt_id"]),
                target=target,
            )
        )
    return docs


def build_docs(split: str = SPLIT) -> list[dict]:
    """imagereward_point: the 2,720 test images with their overall rating (or ``split``'s images)."""
    root = dataset_root(split)
    docs = point_docs(
        read_metadata(root, split), image_index(root, split), f"{root}/metadata-{split}.parquet"
    )
    name = "imagereward_point" if split == SPLIT else f"imagereward_point ({split})"
    log_construction(name, f"{len(docs)} images with overall_rating")
    return docs
