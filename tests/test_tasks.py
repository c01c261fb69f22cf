"""Construction rules of the four benchmarks, on synthetic annotations and on the real files in ../shared."""

from __future__ import annotations

import csv
import json
from collections import Counter

import pytest

from lmms_eval_autorater.images import ImageError, load_image
from lmms_eval_autorater.tasks.aigiqa import utils as aigiqa
from lmms_eval_autorater.tasks.common import DataError
from lmms_eval_autorater.tasks.imagereward_pair import utils as irpair
from lmms_eval_autorater.tasks.imagereward_point import utils as irpoint
from lmms_eval_autorater.tasks.psr import utils as psr
from tests.datafactory import SHARED, make_aigiqa, make_imagereward, make_psr, standard_data

needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(),
    reason=f"{SHARED} is absent (it exists beside the project in CI, not in a user's clone)",
)


# ---- PSR mode-vote rule -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "votes, expected",
    [
        (["1", "1", "1", "2", "2"], None),  # 3-2: only 1 vote ahead
        (["1", "1", "1", "2", "tie"], "1"),  # 3-1-1: 60% and 2 ahead
        (["2", "2", "2", "2", "1"], "2"),  # 4-1
        (["1", "1", "2", "2"], None),  # 2-2
        (["tie", "tie", "tie", "1"], "tie"),  # mode tie (dropped later)
        (["1", "1"], "1"),  # 2-0: 100%, 2 ahead
        (["1"], None),  # 1-0: only 1 ahead
        (["1", "1", "2", "tie", "tie", "2", "1"], None),  # 3 of 7 < 50%
        (["1", "1", "1", "2", "tie", "tie"], None),  # 3 of 6 = 50% but only 1 ahead
        (["1", "1", "1", "1", "2", "2", "tie", "tie"], "1"),  # 4 of 8 = 50% exactly and 2 ahead
        ([], None),
    ],
)
def test_psr_mode_vote_boundaries(votes, expected):
    assert psr.mode_vote(votes) == expected


def test_psr_build_counts_and_drops(tmp_path):
    folder = standard_data(tmp_path) / "psr"
    docs, stats = psr.build_docs_from_records(psr.read_annotations(folder / "annotations.jsonl"), folder)
    assert [d["doc_id"] for d in docs] == ["s1", "s2", "s5"]
    assert [d["label"] for d in docs] == [1, 2, 2]
    assert (stats.sets, stats.no_clear_mode, stats.tie_label, stats.kept) == (5, 1, 1, 3)
    assert stats.dropped_ids == {"no_clear_mode": ["s3"], "tie_label": ["s4"]}
    assert "1 dropped (mode is 'tie')" in stats.summary()
    d = docs[0]
    assert d["task_kind"] == "editing" and d["paradigm"] == "pairwise"
    assert d["source_image"].endswith("s1_src.png") and d["image_2"].endswith("s1_e2.png")


def test_psr_paper_arithmetic():
    """452 sets with 8 tie modes and no unclear modes keep 444 (the paper's count)."""
    records = [
        {
            "id": f"t{i}",
            "request": "r",
            "source": "s",
            "edits": ["a", "b"],
            "votes": ["tie"] * 3 if i < 8 else ["1"] * 3 if i % 2 else ["2", "2", "2", "1"],
        }
        for i in range(452)
    ]
    docs, stats = psr.build_docs_from_records(
        records, root=__import__("pathlib").Path("."), check_files=False
    )
    assert (len(docs), stats.tie_label, stats.no_clear_mode) == (444, 8, 0)


@pytest.mark.parametrize(
    "record, message",
    [
        ({"request": "r", "source": "s", "edits": ["a", "b"], "votes": ["1"]}, "missing field 'id'"),
        ({"id": "x", "source": "s", "edits": ["a", "b"], "votes": ["1"]}, "missing field 'request'"),
        ({"id": "x", "request": "r", "source": "s", "edits": ["a"], "votes": ["1"]}, "field 'edits'"),
        (
            {"id": "x", "request": "r", "source": "s", "edits": ["a", "b"], "votes": ["1", "3"]},
            "unknown label '3'",
        ),
        (
            {"id": "x", "request": "r", "source": "s", "edits": ["a", "b"], "votes": ["left"]},
            "unknown label 'left'",
        ),
    ],
)
def test_psr_bad_records_name_line_and_field(record, message, tmp_path):
    with pytest.raises(DataError, match="line 1") as err:
        psr.build_docs_from_records([record], tmp_path, check_files=False)
    assert message in str(err.value)


def test_psr_missing_image_names_set_and_field(tmp_path):
    folder = make_psr(tmp_path, [{"id": "a", "votes": ["1", "1"]}])
    (folder / "images" / "a_e2.png").unlink()
    with pytest.raises(DataError, match=r"id 'a'.*field 'edits\[1\]'.*a_e2.png"):
        psr.build_docs_from_records(psr.read_annotations(folder / "annotations.jsonl"), folder)


def test_psr_without_local_copy_says_votes_are_not_public(monkeypatch, tmp_path):
    monkeypatch.delenv("AUTORATER_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="not public") as err:
        psr.build_docs()
    assert "annotations.jsonl" in str(err.value) and '"votes"' in str(err.value)
    monkeypatch.setenv("AUTORATER_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="not found"):
        psr.build_docs()


def test_psr_malformed_json_line(tmp_path):
    p = tmp_path / "annotations.jsonl"
    p.write_text('{"id": "a"}\n{not json\n')
    with pytest.raises(DataError, match="line 2"):
        psr.read_annotations(p)


# ---- ImageReward --------------------------------------------------------------------------------
def test_build_pairs_excludes_same_rank_and_labels_better_side():
    groups = [("p", [irpair.RankedImage("a", 2), irpair.RankedImage("b", 1), irpair.RankedImage("c", 2)])]
    pairs, stats = irpair.build_pairs(groups)
    assert [(a.name, b.name, lab) for _, a, b, lab in pairs] == [("a", "b", 2), ("b", "c", 1)]
    assert (stats.pairs, stats.same_rank_pairs, stats.images) == (2, 1, 3)


@pytest.mark.parametrize("zipped", [True, False])
def test_imagereward_local_layout(tmp_path, monkeypatch, zipped):
    make_imagereward(
        tmp_path,
        [
            {"id": "p1", "prompt": "a red cube", "ranks": [1, 2, 2, 3], "ratings": [6, 4, 5, 2]},
            {"id": "p2", "prompt": "a blue ball", "ranks": [2, 1, 3], "ratings": [3, 7, 1]},
        ],
        zipped=zipped,
    )
    monkeypatch.setenv("AUTORATER_DATA_DIR", str(tmp_path))
    pairs = irpair.build_docs()
    assert len(pairs) == 8
    assert Counter(d["label"] for d in pairs) == {1: 7, 2: 1}
    assert {d["group"] for d in pairs} == {"p1", "p2"}
    points = irpoint.build_docs()
    assert [d["target"] for d in points] == [6, 4, 5, 2, 3, 7, 1]
    img = load_image(points[0]["image_1"])  # lazily, from the zip or the file
    assert img.size == (32, 32)
    assert all(isinstance(d["image_1"], str) for d in points)


def test_imagereward_missing_column_and_image(tmp_path, monkeypatch):
    import pandas as pd

    folder = make_imagereward(
        tmp_path, [{"id": "p", "prompt": "x", "ranks": [1, 2], "ratings": [5, 3]}], zipped=False
    )
    monkeypatch.setenv("AUTORATER_DATA_DIR", str(tmp_path))
    meta = folder / "metadata-test.parquet"
    frame = pd.read_parquet(meta)
    frame.drop(columns=["overall_rating"]).to_parquet(meta)
    with pytest.raises(DataError, match="missing column.*overall_rating"):
        irpoint.build_docs()
    frame.to_parquet(meta)
    (folder / "images" / "test" / "p-0001.webp").unlink()
    with pytest.raises(DataError, match="prompt_id 'p'.*field 'image_path'.*p-0001.webp"):
        irpair.build_docs()


@needs_shared
def test_imagereward_real_test_split_counts():
    """The real ImageReward test.json: 466 prompts, 2,720 images, 6,399 pairs, 831 same-rank pairs."""
    data = json.loads((SHARED / "imagereward" / "test.json").read_text())
    groups = [
        (
            item["id"],
            [
                irpair.RankedImage(g.rsplit("/", 1)[-1], r)
                for g, r in zip(item["generations"], item["ranking"])
            ],
        )
        for item in data
    ]
    pairs, stats = irpair.build_pairs(groups)
    assert (stats.prompts, stats.images, stats.pairs, stats.same_rank_pairs) == (466, 2720, 6399, 831)
    assert len({a.name for _, images in groups for a in images}) == 2720  # names are unique
    # the pointwise builder keeps every image
    rows = [
        {"image_path": g, "prompt_id": item["id"], "prompt": item["prompt"], "rank": r, "overall_rating": 4}
        for item in data
        for g, r in zip(item["generations"], item["ranking"])
    ]
    index = {g.rsplit("/", 1)[-1]: g for item in data for g in item["generations"]}
    assert len(irpoint.point_docs(rows, index)) == 2720
    docs, _ = irpair.pair_docs(rows, index)
    assert len(docs) == 6399 and len({d["doc_id"] for d in docs}) == 6399


# ---- AIGIQA -------------------------------------------------------------------------------------
@pytest.mark.parametrize("header", [True, False])
def test_aigiqa_local_layout_with_and_without_header(tmp_path, monkeypatch, header):
    names = [f"DALLE2_{i:04d}.png" for i in range(5)]
    make_aigiqa(
        tmp_path, [(n, f"prompt {i % 2}", 1.0 + i) for i, n in enumerate(names)], names[1:4], header=header
    )
    monkeypatch.setenv("AUTORATER_DATA_DIR", str(tmp_path))
    docs = aigiqa.build_docs()
    assert [d["doc_id"] for d in docs] == names[1:4]
    assert [d["target"] for d in docs] == [2.0, 3.0, 4.0]
    assert [d["group"] for d in docs] == ["prompt 1", "prompt 0", "prompt 1"]


def test_aigiqa_errors_name_file_line_and_field(tmp_path, monkeypatch):
    names = ["SD1.5_0001.png", "SD1.5_0002.png"]
    folder = make_aigiqa(tmp_path, [(names[0], "p", 2.0)], names)
    monkeypatch.setenv("AUTORATER_DATA_DIR", str(tmp_path))
    with pytest.raises(
        DataError, match=r"info_test.csv line 3 \(image 'SD1.5_0002.png'\): field 'name' has no row"
    ):
        aigiqa.build_docs()
    (folder / "data.csv").write_text("name,prompt,mos\nSD1.5_0001.png,p,high\n")
    with pytest.raises(DataError, match="line 2.*field 'mos'"):
        aigiqa.build_docs()


def test_aigiqa_header_detection():
    assert aigiqa.looks_like_header(["name", "prompt", "mos"])
    assert aigiqa.looks_like_header(["Image", "Prompt"])
    assert not aigiqa.looks_like_header(["DALLE2_0000.png", "a cat", "3.1"])
    assert not aigiqa.looks_like_header(["MJ_0001.JPG", "x"])


@needs_shared
def test_aigiqa_real_split_arithmetic():
    """15 generators split 7:1:2 per generator: 14,000 train + 2,000 val imply 4,000 test images."""

    def names(f):
        with open(SHARED / "aigiqa" / f, newline="") as fh:
            return [r[0] for r in csv.reader(fh) if r]

    train, val = names("info_train.csv"), names("info_val.csv")
    assert not aigiqa.looks_like_header([train[0]]) and not aigiqa.looks_like_header([val[0]])
    assert (len(train), len(val)) == (14000, 2000) and not set(train) & set(val)
    gen = lambda n: n.rsplit("_", 1)[0]  # noqa: E731
    tr, va = Counter(map(gen, train)), Counter(map(gen, val))
    assert len(tr) == 15 and set(tr) == set(va)
    implied_test = {}
    for g in tr:
        assert tr[g] == 7 * va[g]  # 7:1
        assert (2 * tr[g]) % 7 == 0
        implied_test[g] = 2 * tr[g] // 7
    assert sum(implied_test.values()) == 4000
    assert sum(tr.values()) + sum(va.values()) + 4000 == 20000


# ---- images -------------------------------------------------------------------------------------
def test_corrupt_image_names_sample_and_field(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ImageError, match=r"bad.png.*sample 's7'.*field 'image_2'"):
        load_image(str(bad), sample="s7", field="image_2")
    with pytest.raises(ImageError, match="cannot read image"):
        load_image(str(tmp_path / "absent.png"), sample="s7", field="image_1")
