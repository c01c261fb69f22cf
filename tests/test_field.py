"""The field's benchmarks: task builders on local copies in the authors' layouts, import of GenAI-Bench's
published judges (../shared), export/import round trips, validate, leaderboard, and the real lmms-eval CLI."""

from __future__ import annotations

import copy
import json

import pytest

from lmms_eval_autorater.errors import DataError
from lmms_eval_autorater.metrics import field
from tests.datafactory import SHARED
from tests.fielddata import make_genaibench, make_mmrb2

GENAI = SHARED / "genaibench"
needs_genai = pytest.mark.skipif(
    not (GENAI / "published_accuracy.json").is_file(),
    reason=f"{GENAI} absent (the shared benchmarks folder is not mounted: a user's clone has no ../shared)",
)
GENAI_FILES = {
    "genaibench_gen": ("image_generation_votes.jsonl", "image_generation"),
    "genaibench_edit": ("image_edition_votes.jsonl", "image_edition"),
}

MMRB2_PAIRS = [
    {"id": "t2i_000", "chosen": "A"},
    {"id": "t2i_001", "chosen": "B"},
    {"id": "t2i_002", "chosen": "b"},  # build_from_hf.py upper-cases; we accept either case
    {"id": "t2i_003", "chosen": "A"},
]


@pytest.fixture
def datadir(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTORATER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AUTORATER_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "data"


def test_mmrb2_docs_both_orders(datadir):
    from lmms_eval_autorater.tasks.catalog import build_docs

    make_mmrb2(datadir, "t2i", MMRB2_PAIRS)
    docs = build_docs("mmrb2_t2i")
    assert [d["doc_id"] for d in docs[:2]] == ["t2i_000:fwd", "t2i_000:rev"]
    assert [d["label"] for d in docs] == [1, 2, 2, 1, 2, 1, 1, 2]
    fwd, rev = docs[0], docs[1]
    assert (fwd["image_1"], fwd["image_2"]) == (rev["image_2"], rev["image_1"])
    assert fwd["image_1"].endswith("images/t2i_000_a_0.jpg") and fwd["group"] == rev["group"] == "t2i_000"
    assert fwd["request"] == "a prompt 0" and fwd["source_image"] is None


def test_mmrb2_edit_source_and_multi_image_response(datadir):
    from PIL import Image

    from lmms_eval_autorater.tasks.catalog import build_docs

    make_mmrb2(datadir, "edit", [{"id": "e0", "chosen": "A", "n_a": 3}, {"id": "e1", "chosen": "B"}])
    docs = build_docs("mmrb2_edit")
    assert docs[0]["source_image"].endswith("input_images/e0_prompt_0.jpg")
    # a response of three 32x32 images is shown as one image, side by side
    assert Image.open(docs[0]["image_1"]).size == (96, 32)
    assert docs[2]["image_1"].endswith("images/e1_a_0.jpg")


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda p: p.update(chosen="C"),
            r"t2i\.json pairs\[1\] \(id 't2i_001'\): field 'chosen' has unknown label 'C'",
        ),
        (lambda p: p.pop("response_b"), r"t2i\.json pairs\[1\]: missing field 'response_b'"),
        (
            lambda p: p["response_a"].update(response_content=[["text", "no image"]]),
            r"pairs\[1\] \(id 't2i_001'\): field 'response_a.response_content' holds no image",
        ),
    ],
)
def test_mmrb2_bad_rows_name_file_row_field(datadir, change, message):
    from lmms_eval_autorater.tasks.catalog import build_docs

    folder = make_mmrb2(datadir, "t2i", MMRB2_PAIRS)
    data = json.loads((folder / "t2i.json").read_text())
    change(data["pairs"][1])
    (folder / "t2i.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=message):
        build_docs("mmrb2_t2i")


def test_genaibench_docs_and_bad_label(datadir):
    from lmms_eval_autorater.tasks.catalog import build_docs

    make_genaibench(datadir, "image_generation", ["leftvote", "rightvote", "tievote", "bothbad_vote"])
    docs = build_docs("genaibench_gen")
    assert [(d["doc_id"], d["label"]) for d in docs] == [("0", 1), ("1", 2), ("2", 3), ("3", 4)]
    make_genaibench(datadir, "image_edition", ["leftvote", "bothbad_vote"])
    edit = build_docs("genaibench_edit")
    assert edit[1]["source_image"].endswith("1_source_image.png") and edit[1]["request"] == "edit 1"
    make_genaibench(datadir, "image_generation", ["leftvote", "skip"])
    with pytest.raises(
        DataError, match=r"image_generation\.jsonl line 2 \(idx 1\): field 'vote_type' has unknown label"
    ):
        build_docs("genaibench_gen")


def test_four_label_process_results_any_model():
    from lmms_eval_autorater.tasks.common import agg_four_label_accuracy as agg_four_accuracy
    from lmms_eval_autorater.tasks.field_common import FOUR_LABEL_METRICS, process_four_label

    docs = [{"doc_id": str(i), "group": str(i), "label": lab} for i, lab in enumerate([1, 2, 3, 4])]
    outs = ["I think [[A>B]]", "[[A>B]]", "[[A=B]]", "nothing"]
    recs = [process_four_label(d, [o]) for d, o in zip(docs, outs)]
    assert set(recs[0]) == set(FOUR_LABEL_METRICS)
    records = [r["accuracy"] for r in recs]
    assert [r["pred"] for r in records] == [1, 1, 0, None] and records[3]["status"] == "parse_failure"
    assert agg_four_accuracy(records) == pytest.approx(2 / 4)


# ---- GenAI-Bench's published judges --------------------------------------------------------------


def _judge_files(tmp_path, task):
    """Each published judge's predictions as GenAI-Bench's results/<task>/<judge>/pairwise.jsonl."""
    fname, key = GENAI_FILES[task]
    rows = [json.loads(x) for x in (GENAI / fname).read_text().splitlines() if x.strip()]
    published = json.loads((GENAI / "published_accuracy.json").read_text())[key]
    files = {}
    for judge in published:
        lines = [
            {
                "idx": r["idx"],
                "prompt": "",
                "model_vote": r["model_votes"][judge],
                "human_vote": r["human_vote"],
            }
            for r in rows
            if judge in r["model_votes"]
        ]
        path = tmp_path / task / judge / "pairwise.jsonl"
        path.parent.mkdir(parents=True)
        path.write_text("".join(json.dumps(x) + "\n" for x in lines))
        files[judge] = path
    return files, published


@needs_genai
@pytest.mark.parametrize("task", list(GENAI_FILES))
def test_published_genaibench_judges_reproduce_and_validate(tmp_path, task):
    from lmms_eval_autorater.reports.field_import import import_file
    from lmms_eval_autorater.reports.validate import validate_submission

    files, published = _judge_files(tmp_path, task)
    assert len(files) == (19 if task == "genaibench_gen" else 18)
    for judge, path in files.items():
        sub = import_file("genaibench", task, path, name=judge)
        entry = sub["tasks"][task]
        assert entry["n_docs"] == published[judge]["n"], judge
        assert round(100 * entry["metrics"]["accuracy"], 2) == published[judge]["accuracy_pct"], judge
        outcome = validate_submission(sub, judge, use_local_data=False)
        assert outcome.ok, (judge, outcome.problems)
    # a doctored copy: one wrong vote turned right, the metrics left as they were -> validate fails
    sub = import_file("genaibench", task, files["gpt4o"], name="gpt4o")
    bad = copy.deepcopy(sub)
    preds = bad["tasks"][task]["predictions"]
    k = next(i for i, p in enumerate(preds) if not field.genaibench_correct(p["label"], p["pred"]))
    preds[k].update(pred=preds[k]["label"], status="ok")
    problems = validate_submission(bad, "doctored", use_local_data=False).problems
    assert any("metrics.accuracy: reported" in p for p in problems), problems
    # and a doctored headline alone fails too
    bad = copy.deepcopy(sub)
    bad["tasks"][task]["metrics"]["accuracy"] += 0.01
    assert not validate_submission(bad, "doctored", use_local_data=False).ok


@needs_genai
def test_import_command_validate_and_leaderboard(tmp_path, capsys):
    from lmms_eval_autorater.cli import main
    from lmms_eval_autorater.reports.leaderboard import build_leaderboard

    files, published = _judge_files(tmp_path, "genaibench_edit")
    subs = []
    for judge in ("gpt4o", "gemini-1.5-pro", "random"):
        out = tmp_path / f"{judge}.json"
        rc = main(
            [
                "import",
                "--format",
                "genaibench",
                "--task",
                "genaibench_edit",
                "--input",
                str(files[judge]),
                "--name",
                judge,
                "--output",
                str(out),
            ]
        )
        assert rc == 0 and out.is_file()
        subs.append((str(out), json.loads(out.read_text())))
    assert "accuracy_scored" in capsys.readouterr().out
    assert main(["validate", *(p for p, _ in subs)]) == 3  # consistent; no local GenAI-Bench images to verify
    board = build_leaderboard(subs)
    ranked = [(e["name"], round(100 * e["value"], 2)) for e in board["benchmarks"]["genaibench_edit"]]
    assert ranked == [("gemini-1.5-pro", 55.93), ("gpt4o", 53.54), ("random", 25.9)]


def test_import_rejects_unknown_human_vote(tmp_path):
    from lmms_eval_autorater.reports.field_import import import_file

    path = tmp_path / "pairwise.jsonl"
    path.write_text(
        json.dumps({"idx": 0, "model_vote": "[[A>B]]", "human_vote": "leftvote"})
        + "\n"
        + json.dumps({"idx": 1, "model_vote": None, "human_vote": "left"})
        + "\n"
    )
    with pytest.raises(
        DataError, match=r"pairwise\.jsonl line 2: field 'human_vote' has unknown label 'left'"
    ):
        import_file("genaibench", "genaibench_gen", path, name="x")


# ---- MMRB2 export and import -----------------------------------------------------------------------


def test_mmrb2_export_scores_as_compute_accuracy_and_imports_back(datadir, tmp_path):
    from lmms_eval_autorater.metrics import summarize_pairwise
    from lmms_eval_autorater.reports.field_export import mmrb2_predictions
    from lmms_eval_autorater.reports.field_import import import_file
    from lmms_eval_autorater.reports.validate import validate_submission
    from lmms_eval_autorater.tasks.catalog import build_docs

    folder = make_mmrb2(datadir, "t2i", MMRB2_PAIRS)
    docs = build_docs("mmrb2_t2i")
    # judgments in the order shown: fwd docs always "Image 1", rev docs always "Image 2"; one failure
    records = []
    for d in docs:
        failed = d["doc_id"] == "t2i_003:rev"
        pred = None if failed else (1 if d["doc_id"].endswith(":fwd") else 2)
        records.append({**d, "pred": pred, "status": "parse_failure" if failed else "ok"})
    exported = mmrb2_predictions(records)
    assert (
        exported["t2i_000"]["forward"][0]["judgement"] == "A"
        and exported["t2i_000"]["reverse"][0]["judgement"] == "B"
    )
    chosen = {p["id"]: p["chosen"] for p in json.loads((folder / "t2i.json").read_text())["pairs"]}
    chosen = {k: v.upper() for k, v in chosen.items()}
    theirs = field.mmrb2_accuracy(exported, chosen)
    # by hand: every judgment says "A" in the original order; chosen A A: t2i_000 (2 right), t2i_003 (fwd right,
    # rev failed, not counted); chosen B: t2i_001, t2i_002 (4 wrong) -> 3 of 7
    assert (theirs["correct"], theirs["evaluated"]) == (3, 7)
    ours = summarize_pairwise(records)
    assert ours["accuracy"] == pytest.approx(theirs["accuracy"]) and ours["parse_failures"] == 1
    path = tmp_path / "preds.json"
    path.write_text(json.dumps(exported))
    sub = import_file("mmrb2", "mmrb2_t2i", path, name="exported")
    assert sub["tasks"]["mmrb2_t2i"]["metrics"]["accuracy"] == pytest.approx(3 / 7)
    outcome = validate_submission(sub, "sub")  # against the local MMRB2 folder
    assert outcome.ok and outcome.verified == ["mmrb2_t2i"], outcome.problems


# ---- the real lmms-eval CLI ---------------------------------------------------------------------------


class FieldResponder:
    """Answers keyed by the candidate images: MMRB2 docs always 'Image 1'; GenAI-Bench items the class in
    ``four`` (image pair -> verdict word)."""

    def __init__(self, four: dict[tuple[str, str], str]):
        self.four = four

    def __call__(self, request_json: dict) -> str:
        from tests.clitools import sha_of_url
        from tests.openai_server import image_urls

        shas = [sha_of_url(u) for u in image_urls(request_json)]
        key = (shas[-2], shas[-1])
        if key in self.four:
            return json.dumps({"analysis": "looked", "verdict": self.four[key]})
        return json.dumps({"analysis": "looked", "preferred": 1})


@pytest.mark.slow
def test_lmms_eval_cli_mmrb2_and_genaibench_then_export(tmp_path, datadir):
    from lmms_eval_autorater.cli import main
    from lmms_eval_autorater.tasks.catalog import build_docs
    from tests.clitools import metric, run_cli, sha_of_ref
    from tests.openai_server import OpenAIServer

    folder = make_mmrb2(datadir, "t2i", MMRB2_PAIRS)
    make_genaibench(
        datadir, "image_generation", ["leftvote", "rightvote", "tievote", "bothbad_vote", "leftvote"]
    )
    gdocs = build_docs("genaibench_gen")
    # verdicts: right, wrong (1 for a right vote), both_good on a tie (right), both_good on both-bad (wrong),
    # an unknown word (parse failure)
    words = ["1", "1", "both_good", "both_good", "maybe"]
    four = {(sha_of_ref(d["image_1"]), sha_of_ref(d["image_2"])): w for d, w in zip(gdocs, words)}
    env = {
        "AUTORATER_DATA_DIR": str(datadir),
        "AUTORATER_CACHE_DIR": str(tmp_path / "cache"),
        "HF_HUB_OFFLINE": "1",
    }
    with OpenAIServer(FieldResponder(four)) as server:
        results, log = run_cli(
            tmp_path,
            env,
            "--model",
            "autorater_openai",
            "--model_args",
            f"base_url={server.url},model=judge-1",
            "--tasks",
            "mmrb2_t2i,genaibench_gen",
        )
    assert results is not None, log[-3000:]
    # MMRB2: "Image 1" always; chosen A for 2 of 4 pairs -> fwd right there, rev right for the 2 B pairs: 4 of 8
    assert metric(results, "mmrb2_t2i", "accuracy") == pytest.approx(4 / 8)
    assert metric(results, "mmrb2_t2i", "n_scored") == 8
    # GenAI-Bench: 2 right of 5 (the parse failure counts as wrong); ours 2 of 4 with one failure counted
    assert metric(results, "genaibench_gen", "accuracy") == pytest.approx(2 / 5)
    assert metric(results, "genaibench_gen", "accuracy_scored") == pytest.approx(2 / 4)
    assert metric(results, "genaibench_gen", "parse_failures") == 1
    out = tmp_path / "out0"
    assert (
        main(
            [
                "export",
                "--format",
                "mmrb2",
                "--results",
                str(out),
                "--task",
                "mmrb2_t2i",
                "--output",
                str(tmp_path / "mmrb2.json"),
            ]
        )
        == 0
    )
    chosen = {p["id"]: p["chosen"].upper() for p in json.loads((folder / "t2i.json").read_text())["pairs"]}
    theirs = field.mmrb2_accuracy(json.loads((tmp_path / "mmrb2.json").read_text()), chosen)
    assert theirs["accuracy"] == pytest.approx(metric(results, "mmrb2_t2i", "accuracy"))
    assert (
        main(
            [
                "export",
                "--format",
                "genaibench",
                "--results",
                str(out),
                "--task",
                "genaibench_gen",
                "--output",
                str(tmp_path / "pairwise.jsonl"),
            ]
        )
        == 0
    )
    lines = [json.loads(x) for x in (tmp_path / "pairwise.jsonl").read_text().splitlines()]
    assert [x["model_vote"] for x in lines] == ["[[A>B]]", "[[A>B]]", "[[A=B=Good]]", "[[A=B=Good]]", None]
    assert sum(x["correct"] for x in lines) / len(lines) == pytest.approx(2 / 5)
    # the run packs and validates against the local data; the exported GenAI-Bench file imports back
    assert main(["submission", "--results", str(out), "--output", str(tmp_path / "sub.json")]) == 0
    assert main(["validate", str(tmp_path / "sub.json")]) == 0
    assert (
        main(
            [
                "import",
                "--format",
                "genaibench",
                "--task",
                "genaibench_gen",
                "--input",
                str(tmp_path / "pairwise.jsonl"),
                "--name",
                "round trip",
                "--output",
                str(tmp_path / "rt.json"),
            ]
        )
        == 0
    )
    rt = json.loads((tmp_path / "rt.json").read_text())["tasks"]["genaibench_gen"]
    sub = json.loads((tmp_path / "sub.json").read_text())["tasks"]["genaibench_gen"]
    assert rt["docs_hash"] == sub["docs_hash"] and rt["metrics"]["accuracy"] == pytest.approx(2 / 5)
