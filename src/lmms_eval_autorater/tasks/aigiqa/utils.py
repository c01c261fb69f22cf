"""AIGIQA-20K test split (the paper's "AIGIQA-30K"): 4,000 images with prompt and MOS.

Source: csv files of the Hugging Face mirror strawhat/aigciqa-20k (``data.csv`` with name,
prompt, mos for every image; ``info_test.csv`` naming the test images) and the images of the
ModelScope release lcysyzxdxc/AIGCQA-30K-Image; or a local copy under
``$AUTORATER_DATA_DIR/aigiqa``. Csv headers are detected, not assumed.
"""

from __future__ import annotations

import csv
from pathlib import Path

from lmms_eval_autorater.images import IMAGE_SUFFIXES
from lmms_eval_autorater.tasks.common import (
    DATA_ENV,
    DataError,
    check_paths_exist,
    data_dir,
    hub_snapshot,
    log_construction,
    make_doc,
    task_readme,
)

HUB_CSV_REPO = "strawhat/aigciqa-20k"
MODELSCOPE_IMAGES = "lcysyzxdxc/AIGCQA-30K-Image"

LAYOUT = """$AUTORATER_DATA_DIR/aigiqa/
  data.csv        name, prompt, mos for every image (a header row is optional)
  info_test.csv   the test split's image names in the first column (a header row is optional)
  images/         the image files, by name (subfolders and zips are searched too)"""


def looks_like_header(row: list[str]) -> bool:
    """A row is a header iff its first cell is not an image file name (every data row starts with one)."""
    return bool(row) and not row[0].strip().lower().endswith(IMAGE_SUFFIXES)


def read_csv(path: Path) -> tuple[list[str] | None, list[tuple[int, list[str]]]]:
    """(header or None, [(line number, cells)]) with the header detected."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = [(i, r) for i, r in enumerate(csv.reader(fh), start=1) if r and any(c.strip() for c in r)]
    if rows and looks_like_header(rows[0][1]):
        return [c.strip().lower() for c in rows[0][1]], rows[1:]
    return None, rows


def read_mos_table(path: Path) -> dict[str, tuple[str, float, int]]:
    """name -> (prompt, mos, line) from data.csv; columns by header name when present, else positional."""
    header, rows = read_csv(path)
    cols = {"name": 0, "prompt": 1, "mos": 2}
    if header is not None:
        for key in cols:
            if key not in header:
                raise DataError(f"{path}: header {header} has no column {key!r}")
            cols[key] = header.index(key)
    table: dict[str, tuple[str, float, int]] = {}
    for line, row in rows:
        where = f"{path} line {line}"
        if len(row) <= max(cols.values()):
            raise DataError(f"{where}: expected columns name, prompt, mos; got {len(row)} cell(s)")
        name = row[cols["name"]].strip()
        try:
            mos = float(row[cols["mos"]])
        except ValueError as exc:
            raise DataError(
                f"{where} (image {name!r}): field 'mos' is not a number: {row[cols['mos']]!r}"
            ) from exc
        if name in table:
            raise DataError(f"{where}: field 'name': image {name!r} listed twice")
        table[name] = (row[cols["prompt"]], mos, line)
    return table


def read_names(path: Path) -> list[tuple[int, str]]:
    """(line, name) from the first column of a split file."""
    _, rows = read_csv(path)
    return [(line, row[0].strip()) for line, row in rows]


def image_doc(name: str, prompt: str, mos: float, image: str) -> dict:
    """The doc of one AIGIQA image (test and train alike); the group is the prompt, which AIGIQA reuses
    across its generators."""
    return make_doc(
        doc_id=name,
        task_kind="generation",
        paradigm="pointwise",
        request=prompt,
        image_1=image,
        group=prompt,
        target=mos,
    )


def split_docs(
    table: dict[str, tuple[str, float, int]],
    names: list[tuple[int, str]],
    index: dict[str, str],
    split_file: str = "info_test.csv",
) -> list[dict]:
    """One doc per test name; the group is the prompt (AIGIQA reuses prompts across its generators)."""
    docs = []
    seen = set()
    for line, name in names:
        where = f"{split_file} line {line} (image {name!r})"
        if name in seen:
            raise DataError(f"{where}: field 'name' listed twice")
        seen.add(name)
        if name not in table:
            raise DataError(f"{where}: field 'name' has no row in data.csv")
        if name not in index:
            raise DataError(f"{where}: field 'name': image file not found among the AIGIQA images")
        prompt, mos, _ = table[name]
        docs.append(image_doc(name, prompt, mos, index[name]))
    return docs


def _modelscope_failure(reason: str) -> DataError:
    return DataError(
        f"cannot download {MODELSCOPE_IMAGES} from ModelScope ({reason}); set {DATA_ENV} to a local copy "
        f"laid out as in {task_readme('aigiqa')}\nExpected layout:\n{LAYOUT}"
    )


def modelscope_images() -> Path:
    """The AIGIQA images from ModelScope (the optional ``modelscope`` package, extra ``[data]``)."""
    try:
        from modelscope.hub.snapshot_download import snapshot_download
    except ImportError as exc:
        raise _modelscope_failure(
            "the modelscope package is not installed: pip install 'lmms-eval-autorater[data]'"
            f" ({type(exc).__name__}: {exc})"
        ) from exc
    try:
        return Path(snapshot_download(MODELSCOPE_IMAGES, repo_type="dataset"))
    except Exception as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise _modelscope_failure(type(exc).__name__ + (f": {lines[0][:300]}" if lines else "")) from exc


def build_docs() -> list[dict]:
    """aigiqa: the 4,000 test images with prompt and MOS."""
    from lmms_eval_autorater.images import index_images

    base = data_dir()
    if base is not None:
        root = base / "aigiqa"
        check_paths_exist(
            {
                "data.csv": root / "data.csv",
                "info_test.csv": root / "info_test.csv",
                "images": root / "images",
            },
            LAYOUT,
            task_readme("aigiqa"),
        )
        csv_root, image_root = root, root / "images"
    else:
        csv_root = hub_snapshot(
            HUB_CSV_REPO,
            allow_patterns=["data.csv", "info_test.csv"],
            layout=LAYOUT,
            readme=task_readme("aigiqa"),
        )
        image_root = modelscope_images()
    docs = split_docs(
        read_mos_table(csv_root / "data.csv"),
        read_names(csv_root / "info_test.csv"),
        index_images(image_root),
        str(csv_root / "info_test.csv"),
    )
    log_construction("aigiqa", f"{len(docs)} test images with MOS")
    return docs
