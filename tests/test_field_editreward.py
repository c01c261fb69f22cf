"""EditReward-Bench: the builder on a local copy in the hub dataset's layout (parquet, embedded images), its
individual and group accuracy on hand-computed cases, and the real lmms-eval CLI with ``export --format editreward``."""

from __future__ import annotations

import json

import pytest

from lmms_eval_autorater.errors import DataError
from lmms_eval_autorater.metrics.field import editreward_label, editreward_summary
from tests.fielddata import make_editreward

GROUPS_3 = [("g1", "A>B>C"), ("g2", "C>A>B"), ("g3", "A>B>C")]
PAIRS_2 = [("e1", "A>B"), ("e2", "B>A"), ("e3", "A=B"), ("e4", "A>B")]


@pytest.fixture
def datadir(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTORATER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AUTORATER_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "data"


@pytest.mark.parametrize(
    ("ranking", "ctype", "n", "label"),
    [
        ("A>B", "AvsB", 2, 1),
        ("B>A", "AvsB", 2, 2),
        ("A=B", "AvsB", 2, 0),
        ("A=B=Bad", "AvsB", 2, 0),
        ("C>A", "AvsC", 3, 2),
        ("B>D", "BvsD", 4, 1),
        ("A=B", "AvsB", 3, None),  # no ties in 3- and 4-candidate sets
        ("A>B", "AvsC", 3, None),  # a ranking of other letters than the comparison's
    ],
)
def test_editreward_label(ranking, ctype, n, label):
    assert editreward_label(ranking, ctype, n) == label


def test_editreward_docs_from_the_authors_layout(datadir):
    from lmms_eval_autorater.images import read_image_bytes
    from lmms_eval_autorater.tasks.catalog import build_docs, task_info

    make_editreward(datadir, 3, GROUPS_3)
    docs = build_docs("editreward_bench_3")
    assert [d["doc_id"] for d in docs[:3]] == ["g1_AvsB", "g1_AvsC", "g1_BvsC"]
    assert [d["group"] for d in docs] == ["g1"] * 3 + ["g2"] * 3 + ["g3"] * 3
    # g2 ranks C>A>B: A over B (1), C over A (2), C over B (2)
    assert [d["label"] for d in docs[3:6]] == [1, 2, 2]
    assert all(d["task_kind"] == "editing" and d["request"] == "edit g1" for d in docs[:3])
    # the same candidate's image, written once under its content hash, in both of its comparisons
    assert docs[0]["image_1"] == docs[1]["image_1"] and docs[0]["image_2"] == docs[2]["image_1"]
    assert read_image_bytes(docs[0]["image_1"]) != read_image_bytes(docs[0]["image_2"])
    assert task_info("editreward_bench_3").template == "editreward"
    make_editreward(datadir, 2, PAIRS_2)
    docs2 = build_docs("editreward_bench_2")
    assert [(d["doc_id"], d["group"], d["label"]) for d in docs2] == [
        ("e1", "e1", 1),
        ("e2", "e2", 2),
        ("e3", "e3", 0),
        ("e4", "e4", 1),
    ]


def test_editreward_bad_rows_name_file_row_field(datadir):
    import pyarrow.parquet as pq

    from lmms_eval_autorater.tasks.catalog import build_docs

    folder = make_editreward(datadir, 3, GROUPS_3)
    table = pq.read_table(folder / "test.parquet").to_pylist()
    table[4]["ranking"] = "A=C"
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(table), folder / "test.parquet")
    with pytest.raises(
        DataError, match=r"test\.parquet row 4 \(id 'g2_AvsC'\): field 'ranking' has unknown label"
    ):
        build_docs("editreward_bench_3")
    table[4]["ranking"] = "C>A"
    table[2]["instruction"] = None
    pq.write_table(pa.Table.from_pylist(table), folder / "test.parquet")
    with pytest.raises(DataError, match=r"row 2: missing field 'instruction'"):
        build_docs("editreward_bench_3")
    with pytest.raises(DataError, match=r"4pair: no \*\.parquet file found"):
        build_docs("editreward_bench_4")


def _rec(label, pred, group, status="ok"):
    return {"label": label, "pred": pred if status == "ok" else None, "status": status, "group": group}


def test_editreward_individual_and_group_accuracy_hand_computed():
    records = [
        # g1: three right -> group right
        _rec(1, 1, "g1"),
        _rec(2, 2, "g1"),
        _rec(1, 1, "g1"),
        # g2: one wrong
        _rec(1, 1, "g2"),
        _rec(2, 1, "g2"),
        _rec(1, 1, "g2"),
        # g3: two right, one unparsable (a result, wrong, as EditReward's "Unknown")
        _rec(1, 1, "g3"),
        _rec(1, 1, "g3"),
        _rec(2, None, "g3", "parse_failure"),
        # g4: two right, one API failure (no result: out of the individual denominator; the group is not right)
        _rec(1, 1, "g4"),
        _rec(2, 2, "g4"),
        _rec(1, None, "g4", "api_error"),
        # g5: only an API failure: no result at all, not a group of the denominator
        _rec(1, None, "g5", "api_error"),
    ]
    s = editreward_summary(records, n_resamples=0)
    # individual: right 3 + 2 + 2 + 2 = 9 of the 11 results (13 comparisons, 2 of them API failures)
    assert s["accuracy"] == pytest.approx(9 / 11)
    # groups with a result: g1..g4; all right: g1 only
    assert s["group_accuracy"] == pytest.approx(1 / 4)
    # ours: failures excluded: 9 right of the 10 scored
    assert s["accuracy_scored"] == pytest.approx(9 / 10)
    assert (s["n_scored"], s["parse_failures"], s["api_failures"], s["groups"]) == (10, 1, 2, 4)
    ties = editreward_summary([_rec(0, 0, "a"), _rec(1, 0, "b"), _rec(0, 2, "c")], n_resamples=0)
    assert ties["accuracy"] == pytest.approx(1 / 3) and ties["predicted_ties"] == 2
    assert ties["group_accuracy"] == pytest.approx(1 / 3)
    s = editreward_summary(records, n_resamples=200)
    assert s["accuracy_ci_low"] <= 9 / 11 <= s["accuracy_ci_high"]


class EditResponder:
    """Answers by the candidate images shown: the entry of ``answers`` for the pair, else Image 1."""

    def __init__(self, answers: dict[tuple[str, str], dict]):
        self.answers = answers

    def __call__(self, request_json: dict) -> str:
        from tests.clitools import sha_of_url
        from tests.openai_server import image_urls

        shas = [sha_of_url(u) for u in image_urls(request_json)]
        answer = self.answers.get((shas[-2], shas[-1]), {"preferred": 1})
        return answer if isinstance(answer, str) else json.dumps({"analysis": "looked", **answer})


@pytest.mark.slow
def test_lmms_eval_cli_editreward_individual_and_group_then_export(tmp_path, datadir):
    from lmms_eval_autorater.cli import main
    from lmms_eval_autorater.tasks.catalog import build_docs
    from tests.clitools import metric, run_cli, sha_of_ref
    from tests.openai_server import OpenAIServer

    make_editreward(datadir, 3, GROUPS_3)
    make_editreward(datadir, 2, PAIRS_2, seed=900)
    docs3, docs2 = build_docs("editreward_bench_3"), build_docs("editreward_bench_2")

    def key(d):
        return sha_of_ref(d["image_1"]), sha_of_ref(d["image_2"])

    answers = {key(docs3[8]): "I cannot tell."}  # g3_BvsC: unparsable
    # 2pair, four classes: e1 Image 1 (right), e2 Image 1 (wrong), e3 both bad (a tie: right), e4 both good (wrong)
    for d, verdict in zip(docs2, ["1", "1", "both_bad", "both_good"]):
        answers[key(d)] = {"verdict": verdict}
    env = {
        "AUTORATER_DATA_DIR": str(datadir),
        "AUTORATER_CACHE_DIR": str(tmp_path / "cache"),
        "HF_HUB_OFFLINE": "1",
    }
    with OpenAIServer(EditResponder(answers)) as server:
        results, log = run_cli(
            tmp_path,
            env,
            "--model",
            "autorater_openai",
            "--model_args",
            f"base_url={server.url},model=judge-1",
            "--tasks",
            "editreward_bench_2,editreward_bench_3",
        )
    assert results is not None, log[-3000:]
    # 3pair, always Image 1: g1 (A>B>C) 3 right; g2 (C>A>B) AvsB right, AvsC and BvsC wrong; g3 AvsB, AvsC right
    # and BvsC unparsable (a result, wrong): individual 6 / 9, group 1 / 3 (g1); ours 6 / 8 with 1 parse failure
    assert metric(results, "editreward_bench_3", "accuracy") == pytest.approx(6 / 9)
    assert metric(results, "editreward_bench_3", "group_accuracy") == pytest.approx(1 / 3)
    assert metric(results, "editreward_bench_3", "accuracy_scored") == pytest.approx(6 / 8)
    assert metric(results, "editreward_bench_3", "parse_failures") == 1
    assert metric(results, "editreward_bench_2", "accuracy") == pytest.approx(2 / 4)
    assert metric(results, "editreward_bench_2", "group_accuracy") == pytest.approx(2 / 4)
    assert metric(results, "editreward_bench_2", "predicted_ties") == 2
    out = tmp_path / "out0"
    exported = tmp_path / "editreward_3pair.json"
    args = ["export", "--format", "editreward", "--results", str(out), "--task", "editreward_bench_3"]
    assert main([*args, "--output", str(exported)]) == 0
    data = json.loads(exported.read_text())
    # EditReward's own totals, recomputed here from is_correct as inference_3pair_hf.py does
    valid = [r for r in data["results"] if r is not None]
    groups: dict[str, list[bool]] = {}
    for r in valid:
        groups.setdefault(r["id"].split("_")[0], []).append(r["is_correct"])
    assert sum(r["is_correct"] for r in valid) / len(valid) == pytest.approx(6 / 9)
    assert sum(len(v) == 3 and all(v) for v in groups.values()) / len(groups) == pytest.approx(1 / 3)
    assert (data["individual_accuracy"], data["group_accuracy"]) == (
        pytest.approx(6 / 9),
        pytest.approx(1 / 3),
    )
    assert [r["model_vote"] for r in valid].count("Unknown") == 1
    # the run packs into a submission whose metrics validate recomputes
    assert main(["submission", "--results", str(out), "--output", str(tmp_path / "sub.json")]) == 0
    assert main(["validate", str(tmp_path / "sub.json")]) == 0


def test_table_field_columns_beside_the_published_numbers(tmp_path, datadir):
    """``table --columns field``: the published rows from catalog/field.yaml, our run's cells in % by the authors'
    rules (computed here by hand), a run over fewer docs than the benchmark marked partial."""
    import csv

    from lmms_eval_autorater.cli import main
    from lmms_eval_autorater.judges.types import Verdict
    from lmms_eval_autorater.tasks.catalog import build_docs
    from tests.fielddata import make_mmrb2
    from tests.runfiles import write_run

    make_editreward(datadir, 3, GROUPS_3)
    make_mmrb2(datadir, "t2i", [{"id": f"p{k}", "chosen": "AB"[k % 2]} for k in range(3)])
    docs = {"editreward_bench_3": build_docs("editreward_bench_3"), "mmrb2_t2i": build_docs("mmrb2_t2i")}

    def image_1(task, i, doc):
        return Verdict("ok", preferred=1, raw='{"preferred": 1}')

    write_run(tmp_path / "runs", docs, image_1, limit=9)
    out = tmp_path / "table"
    assert (
        main(["table", "--columns", "field", "--results", str(tmp_path / "runs"), "--output", str(out)]) == 0
    )
    data = json.loads((out / "field.json").read_text())
    rows = {r["row"]: r for r in data["rows"]}
    assert (
        rows["GPT-4o"]["kind"] == "published" and rows["GPT-4o"]["cells"]["genaibench_edit"]["value"] == 53.54
    )
    assert rows["EditReward"]["cells"]["mmrb2_edit"]["value"] == 67.2
    assert "TIGER-AI-Lab/GenAI-Bench" in rows["GPT-4o"]["cells"]["genaibench_gen"]["source"]
    ours = rows["autorater_openai (judge-1)"]
    # Image 1 always: EditReward 3pair groups g1 (A>B>C) 3 right, g2 (C>A>B) 1, g3 (A>B>C) 3: 7 of 9; group 2 of 3
    er = ours["cells"]["editreward_bench_3"]
    assert er["value"] == pytest.approx(100 * 7 / 9, abs=0.01)
    assert er["group_accuracy"] == pytest.approx(100 * 2 / 3, abs=0.01)
    assert er["partial"] and er["n_docs"] == 9  # --limit, and 9 of the benchmark's 450 comparisons
    # MMRB2: chosen A, B, A; forward right on A pairs (2), reverse right on B pairs (1): 3 of 6
    assert ours["cells"]["mmrb2_t2i"]["value"] == pytest.approx(50.0)
    md = (out / "field.md").read_text()
    assert "GPT-4o (published)" in md and "partial: 9 of 450 docs" in md
    with (out / "field.csv").open() as fh:
        assert {r["task"] for r in csv.DictReader(fh) if r["kind"] == "ours"} == {
            "editreward_bench_3",
            "mmrb2_t2i",
        }
