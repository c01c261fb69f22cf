"""Training sources: the public benchmarks' train splits as docs (the tasks' doc schema), never a test doc.

Read like the tasks read theirs: from the Hugging Face hub by default, or with ``$AUTORATER_DATA_DIR``
from local copies in the datasets' own layouts (``LAYOUTS``):

* ``imagereward_pair``: ImageRewardDB ``metadata-train.parquet`` + ``images/train/*.zip``; every
  within-prompt pair of different rank (the test task's rule, ``build_pairs``); same-rank pairs are
  excluded and counted. ``imagereward_point``: every train image with its ``overall_rating`` (1..7).
* ``aigiqa``: ``aigiqa/info_train.csv`` (no header: name, prompt, mos 0..5) + ``aigiqa/images/``.
* ``editreward``: ``EditReward-Data/data/*.parquet`` (HF TIGER-Lab/EditReward-Data, **CC-BY-NC-4.0**:
  non-commercial use only); images are embedded structs {bytes, path}; ``vote_type`` leftvote -> 1,
  rightvote -> 2, ties excluded and counted. Only the sampled rows' images are read; they are written
  once as content-addressed files (``rows.store_image``) so that docs hold plain file references.

``max_samples``: a seeded draw stratified by prompt (``stratified_sample``: round robin over the prompts
in a seeded order, a seeded item from each, so no prompt contributes more than ceil(n / prompts)). The
default per source (``SOURCES[...].default_max_samples``) is 14,000 for each generation source (3 x 14k
= the paper's 42k generation samples) and 13,000 for editreward (the paper's 13k editing samples); the
paper does not say how it drew them. ``0`` takes every doc.

Test-doc guard: a source reads only its train (or validation) files, and after the draw the docs are
checked against the test split's keys where those are available (ImageReward test prompt ids and image
names, AIGIQA ``info_test.csv`` names, PSR source-image hashes for editreward); a doc that overlaps is
excluded, not fatal (one contaminated row of 170k must not cost the rest): it goes to
``SourceBuild.test_overlap`` with its id and why, and ``synthesize`` counts it as ``rejected.test_overlap``.
``SourceBuild.test_guard`` says what was checked and how many docs were excluded.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from lmms_eval_autorater.tasks.common import DataError, check_paths_exist, data_dir, hub_snapshot, make_doc

EDITREWARD_REPO = "TIGER-Lab/EditReward-Data"
EDITREWARD_LICENSE = (
    "EditReward-Data (TIGER-Lab/EditReward-Data) is licensed CC-BY-NC-4.0: non-commercial use only; "
    "rationales and models trained on it inherit the restriction."
)
EDITREWARD_COLUMNS = ("key", "instruction", "vote_type")
EDITREWARD_IMAGES = ("source_img", "left_output_image", "right_output_image")
VOTES = {"leftvote": 1, "rightvote": 2, "tie": None}

LAYOUTS = {
    "imagereward": """$AUTORATER_DATA_DIR/ImageRewardDB/   (a snapshot of the HF dataset repo THUDM/ImageRewardDB)
  metadata-train.parquet              columns image_path, prompt_id, prompt, rank, overall_rating, ...
  metadata-validation.parquet         (for --split validation)
  metadata-test.parquet               optional here: the test-doc guard reads it when present
  images/train/*.zip                  the .webp images, zipped as on the hub, or already extracted""",
    "aigiqa": """$AUTORATER_DATA_DIR/aigiqa/
  info_train.csv  name, prompt, mos for each train image (no header; a header row is tolerated)
  info_test.csv   optional here: the test-doc guard reads its first column when present
  images/         the image files, by name (subfolders and zips are searched too)""",
    "editreward": """$AUTORATER_DATA_DIR/EditReward-Data/   (a snapshot of the HF dataset repo TIGER-Lab/EditReward-Data)
  data/*.parquet    columns key, instruction, source_img, left_output_image, right_output_image
                    (image structs {bytes, path}), left_model, right_model, vote_type, ...""",
}


class TestLeakError(DataError):
    """A training doc shares a key (prompt id, image name, image hash) with the test split."""

    __test__ = False  # not a pytest class


@dataclass(frozen=True)
class SourceInfo:
    """One training source: what kind of docs it gives and how its labels read."""

    name: str
    task_kind: str
    paradigm: str
    label_scale: str
    default_max_samples: int
    splits: tuple[str, ...] = ("train",)
    license: str = ""


SOURCES: dict[str, SourceInfo] = {
    s.name: s
    for s in (
        SourceInfo("imagereward_pair", "generation", "pairwise", "rank", 14_000, ("train", "validation")),
        SourceInfo(
            "imagereward_point",
            "generation",
            "pointwise",
            "overall_rating_1_7",
            14_000,
            ("train", "validation"),
        ),
        SourceInfo("aigiqa", "generation", "pointwise", "mos_0_5", 14_000),
        SourceInfo("editreward", "editing", "pairwise", "vote", 13_000, license=EDITREWARD_LICENSE),
    )
}


@dataclass
class SourceBuild:
    """A source's docs after the draw, with what was read, excluded and checked."""

    info: SourceInfo
    split: str
    docs: list[dict]
    #: docs available before the draw
    available: int = 0
    #: excluded by construction, by reason (``same_rank_pairs``, ``ties``)
    excluded: dict[str, int] = field(default_factory=dict)
    #: data file (relative name) -> hash (see ``file_hash``)
    files: dict[str, str] = field(default_factory=dict)
    test_guard: str = ""
    #: drawn docs excluded because they share a key with the test split: ``{"id", "detail"}`` each
    test_overlap: list[dict] = field(default_factory=list)


def source_info(name: str) -> SourceInfo:
    """The ``SourceInfo`` of ``name``; an unknown name raises ``ValueError`` listing the known ones."""
    if name not in SOURCES:
        raise ValueError(f"unknown training source {name!r}; known: {', '.join(SOURCES)}")
    return SOURCES[name]


# ---------------------------------------------------------------------------------------------
# shared pieces


def stratified_sample(groups: Sequence[str], n: int | None, seed: int) -> list[int]:
    """Indices of a seeded draw of ``n`` items, round robin over the groups (in file order when returned).

    Groups are visited in a seeded order and each gives one seeded item per round, so every group
    contributes at most ceil(n / groups). ``n`` None, 0 or >= len(groups) takes everything.
    """
    if not n or n >= len(groups):
        return list(range(len(groups)))
    rng = random.Random(seed)
    by_group: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        by_group[g].append(i)
    order = sorted(by_group)
    rng.shuffle(order)
    queues = []
    for g in order:
        items = by_group[g][:]
        rng.shuffle(items)
        queues.append(items)
    chosen: list[int] = []
    depth = 0
    while len(chosen) < n:
        for q in queues:
            if depth < len(q):
                chosen.append(q[depth])
                if len(chosen) == n:
                    break
        depth += 1
    return sorted(chosen)


#: files larger than this are hashed by size and their first and last 16 MiB (documented in the manifest)
FULL_HASH_LIMIT = 256 * 2**20
_EDGE = 16 * 2**20


def file_hash(path: Path) -> str:
    """``sha256:<hex>`` of the file, or for files over ``FULL_HASH_LIMIT`` ``sha256-edges:<size>:<hex>``."""
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        if size <= FULL_HASH_LIMIT:
            for chunk in iter(lambda: fh.read(2**20), b""):
                h.update(chunk)
            return f"sha256:{h.hexdigest()}"
        h.update(fh.read(_EDGE))
        fh.seek(size - _EDGE)
        h.update(fh.read(_EDGE))
    return f"sha256-edges:{size}:{h.hexdigest()}"


def _hashes(root: Path, paths: Sequence[Path]) -> dict[str, str]:
    out = {}
    for p in sorted(paths):
        try:
            rel = str(p.relative_to(root))
        except ValueError:
            rel = str(p)
        out[rel] = file_hash(p)
    return out


def _check_split(info: SourceInfo, split: str) -> None:
    if split == "test":
        raise DataError(f"training source {info.name!r}: the test split is never used for training")
    if split not in info.splits:
        raise DataError(
            f"training source {info.name!r} has no split {split!r}; splits: {', '.join(info.splits)}"
        )


def _image_name(path: str) -> str:
    return PurePosixPath(str(path).replace("\\", "/")).name


# ---------------------------------------------------------------------------------------------
# ImageReward


def _imagereward_test_keys(root: Path) -> tuple[set[str], set[str]] | None:
    """(prompt ids, image names) of the ImageReward test split, when its metadata is at hand."""
    from lmms_eval_autorater.tasks.imagereward_pair.utils import read_metadata

    if not (root / "metadata-test.parquet").exists():
        return None
    rows = read_metadata(root, "test")
    return {str(r["prompt_id"]) for r in rows}, {_image_name(r["image_path"]) for r in rows}


def _overlap_note(n: int) -> str:
    return "no overlap" if n == 0 else f"{n} overlapping doc(s) excluded (rejected.test_overlap)"


def _guard_imagereward(root: Path, docs: list[dict]) -> tuple[list[dict], list[dict], str]:
    """(kept docs, excluded ``{"id", "detail"}``, what was checked): a doc sharing a prompt id or an
    image name with the ImageReward test split is excluded."""
    keys = _imagereward_test_keys(root)
    if keys is None:
        return (
            docs,
            [],
            "by construction (metadata-train only); metadata-test.parquet not at hand, keys not compared",
        )
    prompts, names = keys
    kept, overlap = [], []
    for d in docs:
        refs = [d["image_1"], d["image_2"]]
        hit_names = {_image_name(r.split("::")[-1]) for r in refs if r} & names
        if d["group"] in prompts or hit_names:
            what = f"prompt id {d['group']!r}" if d["group"] in prompts else f"image(s) {sorted(hit_names)}"
            overlap.append({"id": d["doc_id"], "detail": f"shares {what} with the ImageReward test split"})
        else:
            kept.append(d)
    note = _overlap_note(len(overlap))
    return (
        kept,
        overlap,
        f"checked against metadata-test.parquet ({len(prompts)} prompt ids, {len(names)} images): {note}",
    )


def build_imagereward(pairwise: bool, split: str, max_samples: int | None, seed: int) -> SourceBuild:
    """``imagereward_pair`` / ``imagereward_point`` docs of ``split`` (train or validation)."""
    from lmms_eval_autorater.tasks.imagereward_pair.utils import (
        dataset_root,
        image_index,
        pair_docs,
        read_metadata,
    )
    from lmms_eval_autorater.tasks.imagereward_point.utils import point_docs

    info = SOURCES["imagereward_pair" if pairwise else "imagereward_point"]
    _check_split(info, split)
    root = dataset_root(split, also=["metadata-test.parquet"], layout=LAYOUTS["imagereward"])
    meta = root / f"metadata-{split}.parquet"
    rows = read_metadata(root, split)
    index = image_index(root, split)
    excluded: dict[str, int] = {}
    if pairwise:
        docs, stats = pair_docs(rows, index, str(meta))
        excluded["same_rank_pairs"] = stats.same_rank_pairs
    else:
        docs = point_docs(rows, index, str(meta))
    available = len(docs)
    docs = [docs[i] for i in stratified_sample([d["group"] for d in docs], max_samples, seed)]
    docs, overlap, guard = _guard_imagereward(root, docs)
    archives = sorted((root / "images" / split).glob("*.zip")) if (root / "images" / split).is_dir() else []
    return SourceBuild(
        info, split, docs, available, excluded, _hashes(root, [meta, *archives]), guard, overlap
    )


# ---------------------------------------------------------------------------------------------
# AIGIQA


def _aigiqa_test_names(csv_root: Path) -> set[str] | None:
    from lmms_eval_autorater.tasks.aigiqa.utils import read_names

    path = csv_root / "info_test.csv"
    return {name for _, name in read_names(path)} if path.exists() else None


def aigiqa_docs(path: Path, index: dict[str, str]) -> list[dict]:
    """One doc per row of ``info_train.csv`` (name, prompt, mos); the group is the prompt."""
    from lmms_eval_autorater.tasks.aigiqa.utils import image_doc, read_mos_table

    docs = []
    for name, (prompt, mos, line) in read_mos_table(path).items():  # the test task's own reader
        if name not in index:
            raise DataError(
                f"{path} line {line}: field 'name': image {name!r} not found among the AIGIQA images"
            )
        docs.append(image_doc(name, prompt, mos, index[name]))
    return docs


def build_aigiqa(split: str, max_samples: int | None, seed: int) -> SourceBuild:
    """``aigiqa`` train docs from ``info_train.csv`` and the images."""
    from lmms_eval_autorater.images import index_images
    from lmms_eval_autorater.tasks.aigiqa.utils import HUB_CSV_REPO, modelscope_images

    info = SOURCES["aigiqa"]
    _check_split(info, split)
    base = data_dir()
    if base is not None:
        root = base / "aigiqa"
        check_paths_exist(
            {"info_train.csv": root / "info_train.csv", "images": root / "images"}, LAYOUTS["aigiqa"]
        )
        csv_root, image_root = root, root / "images"
    else:
        csv_root = hub_snapshot(
            HUB_CSV_REPO, allow_patterns=["info_train.csv", "info_test.csv"], layout=LAYOUTS["aigiqa"]
        )
        image_root = modelscope_images()
    path = csv_root / "info_train.csv"
    docs = aigiqa_docs(path, index_images(image_root))
    available = len(docs)
    docs = [docs[i] for i in stratified_sample([d["group"] for d in docs], max_samples, seed)]
    test = _aigiqa_test_names(csv_root)
    overlap: list[dict] = []
    if test is None:
        guard = "by construction (info_train.csv only); info_test.csv not at hand, names not compared"
    else:
        overlap = [
            {"id": d["doc_id"], "detail": f"{path}: image {d['doc_id']!r} is in info_test.csv"}
            for d in docs
            if d["doc_id"] in test
        ]
        docs = [d for d in docs if d["doc_id"] not in test]
        guard = f"checked against info_test.csv ({len(test)} names): {_overlap_note(len(overlap))}"
    return SourceBuild(info, split, docs, available, {}, _hashes(csv_root, [path]), guard, overlap)


# ---------------------------------------------------------------------------------------------
# EditReward


def _editreward_files() -> tuple[Path, list[Path]]:
    base = data_dir()
    if base is not None:
        root = base / "EditReward-Data"
    else:
        root = hub_snapshot(EDITREWARD_REPO, allow_patterns=["data/*.parquet"], layout=LAYOUTS["editreward"])
    files = sorted((root / "data").glob("*.parquet"))
    if not files:
        raise DataError(f"no parquet files under {root / 'data'}.\nExpected layout:\n{LAYOUTS['editreward']}")
    return root, files


def _struct_bytes(value, where: str, column: str) -> bytes:
    if isinstance(value, dict) and value.get("bytes"):
        return bytes(value["bytes"])
    raise DataError(f"{where}: field {column!r}: no embedded image bytes (got {type(value).__name__})")


def editreward_rows(files: Sequence[Path]) -> tuple[list[tuple[int, int, dict]], int]:
    """(file number, row number, metadata) of every non-tie row, and the number of ties."""
    import pyarrow.parquet as pq

    out, ties = [], 0
    for f, path in enumerate(files):
        pf = pq.ParquetFile(path)
        names = set(pf.schema_arrow.names)
        missing = [c for c in (*EDITREWARD_COLUMNS, *EDITREWARD_IMAGES) if c not in names]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; found {sorted(names)}")
        want = [c for c in ("key", "unique_key", "pair_index", "instruction", "vote_type") if c in names]
        r = 0
        for batch in pf.iter_batches(columns=want, batch_size=4096):
            for row in batch.to_pylist():
                vote = str(row.get("vote_type") or "").strip().lower()
                if vote not in VOTES:
                    raise DataError(
                        f"{path} row {r}: field 'vote_type': unknown vote {row.get('vote_type')!r}"
                    )
                if VOTES[vote] is None:
                    ties += 1
                else:
                    out.append((f, r, {**row, "label": VOTES[vote]}))
                r += 1
    return out, ties


def editreward_images(
    files: Sequence[Path], wanted: dict[int, set[int]]
) -> dict[tuple[int, int], dict[str, bytes]]:
    """The three images of each wanted (file, row), read batch by batch (only those rows are kept)."""
    import pyarrow.parquet as pq

    out: dict[tuple[int, int], dict[str, bytes]] = {}
    for f, rows in wanted.items():
        r = 0
        for batch in pq.ParquetFile(files[f]).iter_batches(columns=list(EDITREWARD_IMAGES), batch_size=256):
            n = batch.num_rows
            hit = [i for i in range(r, r + n) if i in rows]
            if hit:
                cols = {c: batch.column(c) for c in EDITREWARD_IMAGES}
                for i in hit:
                    where = f"{files[f]} row {i}"
                    out[(f, i)] = {
                        c: _struct_bytes(cols[c][i - r].as_py(), where, c) for c in EDITREWARD_IMAGES
                    }
            r += n
    return out


def _psr_source_hashes() -> set[str] | None:
    base = data_dir()
    if base is None or not (base / "psr" / "annotations.jsonl").exists():
        return None
    import json

    from lmms_eval_autorater.images import image_sha256

    out = set()
    folder = base / "psr"
    for line in (folder / "annotations.jsonl").read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            for rel in [rec.get("source"), *(rec.get("edits") or [])]:
                p = folder / str(rel)
                if rel and p.exists():
                    out.add(image_sha256(p.read_bytes()))
    return out


def build_editreward(
    split: str, max_samples: int | None, seed: int, image_dir: str | Path | None = None
) -> SourceBuild:
    """``editreward`` docs (pairwise editing, ties excluded); images stored as content-addressed files."""
    from lmms_eval_autorater.images import image_sha256
    from lmms_eval_autorater.training.rows import store_image

    info = SOURCES["editreward"]
    _check_split(info, split)
    root, files = _editreward_files()
    rows, ties = editreward_rows(files)
    groups = [str(m.get("key")) for _, _, m in rows]
    chosen = [rows[i] for i in stratified_sample(groups, max_samples, seed)]
    wanted: dict[int, set[int]] = defaultdict(set)
    for f, r, _ in chosen:
        wanted[f].add(r)
    images = editreward_images(files, wanted)
    psr = _psr_source_hashes()
    docs, seen_ids, overlap = [], set(), []
    for f, r, meta in chosen:
        img = images[(f, r)]
        doc_id = str(meta.get("unique_key") or f"{meta.get('key')}:{meta.get('pair_index', r)}")
        if doc_id in seen_ids:
            doc_id = f"{doc_id}@{files[f].name}:{r}"
        if psr is not None and any(image_sha256(b) in psr for b in img.values()):
            overlap.append(
                {"id": doc_id, "detail": f"{files[f]} row {r}: an image of this row is a PSR test image"}
            )
            continue
        seen_ids.add(doc_id)
        docs.append(
            make_doc(
                doc_id=doc_id,
                task_kind="editing",
                paradigm="pairwise",
                request=str(meta.get("instruction") or ""),
                source_image=store_image(img["source_img"], image_dir),
                image_1=store_image(img["left_output_image"], image_dir),
                image_2=store_image(img["right_output_image"], image_dir),
                group=str(meta.get("key")),
                label=meta["label"],
            )
        )
    guard = "by construction (EditReward-Data is not a test set here; the editing test task is PSR); " + (
        "PSR images not at hand, hashes not compared"
        if psr is None
        else f"checked against {len(psr)} PSR image hashes: {_overlap_note(len(overlap))}"
    )
    return SourceBuild(info, split, docs, len(rows), {"ties": ties}, _hashes(root, files), guard, overlap)


BUILDERS: dict[str, Callable[..., SourceBuild]] = {
    "imagereward_pair": lambda split, n, seed: build_imagereward(True, split, n, seed),
    "imagereward_point": lambda split, n, seed: build_imagereward(False, split, n, seed),
    "aigiqa": build_aigiqa,
    "editreward": build_editreward,
}


def build_source(
    name: str, split: str = "train", max_samples: int | None = None, seed: int = 0
) -> SourceBuild:
    """The docs of training source ``name`` (``max_samples`` None: the source's default; 0: all)."""
    info = source_info(name)
    n = info.default_max_samples if max_samples is None else max_samples
    return BUILDERS[name](split, n, seed)


def doc_label(info: SourceInfo, doc: dict) -> float:
    """The human label of a source doc: the preferred index (pairwise) or the raw score (pointwise)."""
    return float(doc["label"] if info.paradigm == "pairwise" else doc["target"])
