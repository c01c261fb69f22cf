"""Training sources: construction from small files in the datasets' layouts, exclusions, the draw,
and the guard that no test doc enters."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from lmms_eval_autorater.tasks.common import DataError
from lmms_eval_autorater.training import sources
from lmms_eval_autorater.training.sources import build_source, stratified_sample
from tests.datafactory import SHARED, image_bytes


def make_ir(root: Path, split: str, prompts: list[dict], corrupt: set[str] = frozenset()) -> list[str]:
    """``root/ImageRewardDB/metadata-<split>.parquet`` and ``images/<split>/<split>_1.zip``; returns names."""
    import pandas as pd

    folder = root / "ImageRewardDB"
    (folder / "images" / split).mkdir(parents=True, exist_ok=True)
    rows, names = [], []
    with zipfile.ZipFile(folder / "images" / split / f"{split}_1.zip", "w") as zf:
        for p in prompts:
            for k, (rank, rating) in enumerate(zip(p["ranks"], p["ratings"])):
                name = f"{split}-{p['id']}-{k}.webp"
                data = b"not an image" if name in corrupt else image_bytes(len(names) + 500, "WEBP")
                zf.writestr(f"{split}_1/{name}", data)
                names.append(name)
                rows.append(
                    {
                        "image_path": f"images/{split}/{split}_1/{name}",
                        "prompt_id": p["id"],
                        "prompt": p["prompt"],
                        "rank": rank,
                        "overall_rating": rating,
                    }
                )
    pd.DataFrame(rows).to_parquet(folder / f"metadata-{split}.parquet")
    return names


TRAIN = [
    {"id": "t1", "prompt": "a red cube", "ranks": [1, 2, 2, 3], "ratings": [7, 4, 5, 1]},  # 5 pairs, 1 tie
    {"id": "t2", "prompt": "a blue ball", "ranks": [2, 1, 3], "ratings": [3, 6, 2]},  # 3 pairs
]


@pytest.fixture
def data_env(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTORATER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AUTORATER_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


def test_imagereward_pairs_points_and_guard(data_env):
    make_ir(data_env, "train", TRAIN)
    make_ir(data_env, "test", [{"id": "x9", "prompt": "test", "ranks": [1, 2], "ratings": [5, 3]}])
    pair = build_source("imagereward_pair", "train", 0)
    assert (pair.available, len(pair.docs), pair.excluded) == (8, 8, {"same_rank_pairs": 1})
    assert all(d["label"] in (1, 2) and d["paradigm"] == "pairwise" for d in pair.docs)
    assert Counter(d["group"] for d in pair.docs) == {"t1": 5, "t2": 3}
    assert "no overlap" in pair.test_guard and "metadata-train.parquet" in pair.files
    point = build_source("imagereward_point", "train", 0)
    assert len(point.docs) == 7 and sorted(d["target"] for d in point.docs) == [1, 2, 3, 4, 5, 6, 7]
    drawn = build_source("imagereward_pair", "train", 4, seed=1)
    assert len(drawn.docs) == 4 and Counter(d["group"] for d in drawn.docs) == {"t1": 2, "t2": 2}
    # a train prompt id that is also a test prompt id: its docs are excluded and listed, the rest kept
    make_ir(data_env, "test", [{"id": "t2", "prompt": "a blue ball", "ranks": [1, 2], "ratings": [5, 3]}])
    leaky = build_source("imagereward_pair", "train", 0)
    assert len(leaky.docs) == 5 and {d["group"] for d in leaky.docs} == {"t1"}
    assert len(leaky.test_overlap) == 3 and all("test split" in o["detail"] for o in leaky.test_overlap)
    assert {o["id"] for o in leaky.test_overlap} == {d["doc_id"] for d in pair.docs if d["group"] == "t2"}
    assert "3 overlapping doc(s) excluded" in leaky.test_guard
    with pytest.raises(DataError, match="never used for training"):
        build_source("imagereward_point", "test", 0)
    with pytest.raises(DataError, match="no split"):
        build_source("aigiqa", "validation", 0)


def test_validation_split_through_the_catalog(data_env):
    from lmms_eval_autorater.tasks.catalog import build_docs

    make_ir(data_env, "validation", TRAIN[:1])
    assert len(build_docs("imagereward_pair", split="validation")) == 5
    assert len(build_docs("imagereward_point", split="validation")) == 4
    with pytest.raises(ValueError, match="no split 'validation'"):
        build_docs("aigiqa", split="validation")


def test_stratified_sample_no_prompt_dominates():
    groups = ["big"] * 100 + [f"g{i}" for i in range(10) for _ in range(3)]
    idx = stratified_sample(groups, 22, seed=3)
    assert len(idx) == len(set(idx)) == 22 and idx == sorted(idx)
    counts = Counter(groups[i] for i in idx)
    assert max(counts.values()) == 2 and len(counts) == 11
    assert idx == stratified_sample(groups, 22, seed=3) != stratified_sample(groups, 22, seed=4)
    assert stratified_sample(groups, 0, 0) == list(range(130)) == stratified_sample(groups, 999, 0)


def _aigiqa(root: Path, rows: list[list[str]], test_names: list[str]) -> None:
    folder = root / "aigiqa"
    (folder / "images").mkdir(parents=True)
    with open(folder / "info_train.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    with open(folder / "info_test.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([[n, "p"] for n in test_names])
    for k, row in enumerate(rows):
        (folder / "images" / row[0]).write_bytes(image_bytes(k))


def test_aigiqa_from_the_real_train_csv(data_env):
    real = SHARED / "aigiqa" / "info_train.csv"
    if not real.exists():
        pytest.skip(f"{real} absent (the shared benchmarks folder is not mounted)")
    with open(real, newline="") as fh:
        rows = [r for _, r in zip(range(6), csv.reader(fh))]
    _aigiqa(data_env, rows, ["SD15_9999.png"])
    build = build_source("aigiqa", "train", 0)
    assert [d["doc_id"] for d in build.docs] == [r[0] for r in rows]
    assert [d["target"] for d in build.docs] == [float(r[2]) for r in rows]
    assert build.docs[0]["request"] == rows[0][1] and "no overlap" in build.test_guard
    (data_env / "aigiqa" / "info_test.csv").write_text(f"{rows[2][0]},p\n")
    leaky = build_source("aigiqa", "train", 0)
    assert [d["doc_id"] for d in leaky.docs] == [r[0] for k, r in enumerate(rows) if k != 2]
    assert [o["id"] for o in leaky.test_overlap] == [rows[2][0]]


def _editreward(root: Path, votes: list[str]) -> list[dict]:
    import pandas as pd

    folder = root / "EditReward-Data" / "data"
    folder.mkdir(parents=True)
    rows = []
    for i, vote in enumerate(votes):
        rows.append(
            {
                "key": f"k{i // 2}",
                "unique_key": f"u{i}",
                "pair_index": i,
                "instruction": f"make it blue {i}",
                "source_img": {"bytes": image_bytes(900 + i), "path": f"s{i}.png"},
                "left_output_image": {"bytes": image_bytes(700 + i), "path": None},
                "right_output_image": {"bytes": image_bytes(800 + i), "path": None},
                "left_model": "a",
                "right_model": "b",
                "vote_type": vote,
            }
        )
    pd.DataFrame(rows).to_parquet(folder / "train-00000-of-00001.parquet")
    return rows


def test_editreward_ties_excluded_images_embedded(data_env):
    rows = _editreward(data_env, ["leftvote", "tie", "rightvote", "tie", "leftvote"])
    build = build_source("editreward", "train", 0)
    assert (build.available, build.excluded) == (3, {"ties": 2})
    assert [(d["doc_id"], d["label"]) for d in build.docs] == [("u0", 1), ("u2", 2), ("u4", 1)]
    d = build.docs[1]
    assert Path(d["source_image"]).read_bytes() == rows[2]["source_img"]["bytes"]
    assert Path(d["image_2"]).read_bytes() == rows[2]["right_output_image"]["bytes"]
    assert d["task_kind"] == "editing" and d["group"] == "k1"
    assert "CC-BY-NC-4.0" in build.info.license
    # a PSR test image inside the training data: refused
    psr = data_env / "psr"
    psr.mkdir()
    (psr / "src.png").write_bytes(rows[4]["source_img"]["bytes"])
    (psr / "annotations.jsonl").write_text(json.dumps({"id": "s", "source": "src.png", "edits": []}) + "\n")
    leaky = build_source("editreward", "train", 0)
    assert [d["doc_id"] for d in leaky.docs] == ["u0", "u2"]
    assert [o["id"] for o in leaky.test_overlap] == ["u4"] and "PSR" in leaky.test_overlap[0]["detail"]


def test_editreward_unknown_vote_names_file_and_row(data_env):
    _editreward(data_env, ["leftvote", "maybe"])
    with pytest.raises(DataError, match=r"row 1: field 'vote_type'"):
        build_source("editreward", "train", 0)


def test_file_hash_of_large_files_uses_edges(tmp_path, monkeypatch):
    p = tmp_path / "f.bin"
    p.write_bytes(io.BytesIO(b"x" * 1000).getvalue())
    assert sources.file_hash(p).startswith("sha256:")
    monkeypatch.setattr(sources, "FULL_HASH_LIMIT", 10)
    monkeypatch.setattr(sources, "_EDGE", 4)
    assert sources.file_hash(p).startswith("sha256-edges:1000:")
