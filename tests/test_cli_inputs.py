"""Bad input through the real ``lmms-eval`` CLI: caught before anything is sent, named, counted.

A corrupt image makes its doc an input error (task, doc, field and file in the log; ``input_errors``
in the results; never sent, never guessed) on the API and the local judge alike, and the run goes
on; a run whose every doc is an input error fails; a missing annotation field stops the build
before any call, naming the file, the row and the field.
"""

from __future__ import annotations

import json

import pytest

from tests.clitools import TruthResponder, metric, run_cli
from tests.datafactory import make_psr
from tests.openai_server import OpenAIServer, image_urls

pytestmark = pytest.mark.slow

PSR_SETS = [
    {"id": "s1", "votes": ["1", "1", "1"]},
    {"id": "s2", "votes": ["2", "2", "2"]},
    {"id": "s3", "votes": ["1", "1", "1"]},
]


def psr_data(tmp_path, corrupt: tuple[str, ...] = ()):
    """Three kept PSR sets; each name in ``corrupt`` ("s2_e2", ...) gets bytes that are no image."""
    root = tmp_path / "data"
    folder = make_psr(root, PSR_SETS)
    for name in corrupt:
        (folder / "images" / f"{name}.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return root, folder


def build(root):
    import os

    os.environ["AUTORATER_DATA_DIR"] = str(root)
    try:
        from lmms_eval_autorater.tasks.catalog import build_docs

        return build_docs("psr")
    finally:
        del os.environ["AUTORATER_DATA_DIR"]


def test_corrupt_image_is_an_input_error_never_sent(tmp_path):
    root, folder = psr_data(tmp_path, corrupt=("s2_e2",))
    docs = build(root)
    truth = TruthResponder({"psr": [d for d in docs if d["doc_id"] != "s2"]})
    env = {"AUTORATER_DATA_DIR": str(root), "AUTORATER_CACHE_DIR": str(tmp_path / "cache")}
    with OpenAIServer(truth) as server:
        results, log = run_cli(
            tmp_path,
            env,
            "--model",
            "autorater_openai",
            "--model_args",
            f"base_url={server.url},model=judge-1",
            "--tasks",
            "psr",
        )
        assert results is not None, log[-3000:]
        sent = server.request_count
        n_images = {len(image_urls(r.json)) for r in server.requests}
    assert sent == 2 and n_images == {3}  # s1 and s3 only: the corrupt doc cost nothing
    assert metric(results, "psr", "input_errors") == 1
    assert metric(results, "psr", "n_scored") == 2
    assert metric(results, "psr", "parse_failures") == 0 and metric(results, "psr", "api_failures") == 0
    # TruthResponder judges every third doc wrong (index 0 of its two docs): 1 of 2 correct
    assert metric(results, "psr", "accuracy") == pytest.approx(truth.expected_correct["psr"] / 2)
    line = next(x for x in log.splitlines() if "input error" in x)
    assert "task 'psr', doc 's2', field 'image_2'" in line and str(folder / "images" / "s2_e2.png") in line
    sample_file = next((tmp_path / "out0").rglob("*_samples_psr.jsonl"))
    rows = [json.loads(x) for x in sample_file.read_text().splitlines()]
    envelopes = [
        json.loads(r["filtered_resps"][0] if isinstance(r["filtered_resps"], list) else r["filtered_resps"])
        for r in rows
    ]
    failed = [e for e in envelopes if e["status"] != "ok"]
    assert len(envelopes) == 3 and len(failed) == 1
    assert failed[0]["status"] == "input_error" and failed[0]["value"] is None
    assert "s2_e2.png" in failed[0]["error"]


def run_psr_expecting_no_call(tmp_path, root):
    """psr through the CLI with an API judge whose server must receive no request."""
    with OpenAIServer() as server:
        out = run_cli(
            tmp_path,
            {"AUTORATER_DATA_DIR": str(root), "AUTORATER_CACHE_DIR": str(tmp_path / "cache")},
            "--model",
            "autorater_openai",
            "--model_args",
            f"base_url={server.url},model=judge-1",
            "--tasks",
            "psr",
        )
        assert server.request_count == 0
    return out


def test_every_doc_an_input_error_fails_the_run(tmp_path):
    root, _ = psr_data(tmp_path, corrupt=("s1_src", "s2_e1", "s3_e2"))
    results, log = run_psr_expecting_no_call(tmp_path, root)
    assert results is None  # lmms-eval writes no results file for a failed run
    assert "every one of the 3 docs is an input error (nothing was sent)" in log


def test_missing_field_stops_before_any_call(tmp_path):
    root, folder = psr_data(tmp_path)
    lines = folder.joinpath("annotations.jsonl").read_text().splitlines()
    row = json.loads(lines[1])
    del row["edits"]
    lines[1] = json.dumps(row)
    folder.joinpath("annotations.jsonl").write_text("\n".join(lines) + "\n")
    results, log = run_psr_expecting_no_call(tmp_path, root)
    assert results is None
    assert f"{folder / 'annotations.jsonl'} line 2" in log and "missing field 'edits'" in log


def test_local_judge_treats_a_corrupt_image_the_same(tmp_path):
    """autorater_internvl on a tiny random model: the corrupt doc is an input error, the others are judged."""
    pytest.importorskip("transformers")
    from tests.test_internvl_backend import _build_tiny_internvl

    root, _ = psr_data(tmp_path, corrupt=("s3_src",))
    model_dir = tmp_path / "tiny-internvl"
    _build_tiny_internvl(model_dir)
    results, log = run_cli(
        tmp_path,
        {
            "AUTORATER_DATA_DIR": str(root),
            "AUTORATER_CACHE_DIR": str(tmp_path / "cache"),
            "HF_HUB_OFFLINE": "1",
        },
        "--model",
        "autorater_internvl",
        "--model_args",
        f"pretrained={model_dir},max_new_tokens=8,max_patches=1",
        "--tasks",
        "psr",
    )
    assert results is not None, log[-3000:]
    assert metric(results, "psr", "input_errors") == 1
    # a random model writes gibberish: the two readable docs are judged (and fail to parse), none is lost
    assert metric(results, "psr", "n_scored") + metric(results, "psr", "parse_failures") == 2
    assert metric(results, "psr", "api_failures") == 0
    assert "task 'psr', doc 's3', field 'source_image'" in log


def test_hostile_images_are_one_input_error_each_and_the_run_goes_on(tmp_path):
    """Six PSR sets; s1..s4 each carry one hostile image (a 20000x20000 PNG bomb, a 12000x12000 image, a 1 GB
    sparse file, a directory): four input errors, never sent, and s5, s6 judged and scored."""
    from tests.test_hostile_inputs import blank_png

    sets = [{"id": f"s{k}", "votes": [str(1 + k % 2)] * 3} for k in range(1, 7)]
    root = tmp_path / "data"
    folder = make_psr(root, sets)
    docs = build(root)
    assert [d["doc_id"] for d in docs] == [s["id"] for s in sets]
    images = folder / "images"
    blank_png(images / "s1_e1.png", 20000, 20000)
    blank_png(images / "s2_src.png", 12000, 12000)
    with open(images / "s3_e2.png", "wb") as fh:
        fh.truncate(1 << 30)  # sparse: no disk used
    (images / "s4_e1.png").unlink()
    (images / "s4_e1.png").mkdir()
    hostile = {"s1": "image_1", "s2": "source_image", "s3": "image_2", "s4": "image_1"}
    good = [d for d in docs if d["doc_id"] not in hostile]
    truth = TruthResponder({"psr": good})
    env = {"AUTORATER_DATA_DIR": str(root), "AUTORATER_CACHE_DIR": str(tmp_path / "cache")}
    with OpenAIServer(truth) as server:
        results, log = run_cli(
            tmp_path, env, "--model", "autorater_openai", "--model_args", f"base_url={server.url},model=judge-1",
            "--tasks", "psr",
        )  # fmt: skip
        assert results is not None, log[-3000:]
        sent = server.request_count
    assert sent == len(good) == 2  # s5 and s6 only
    assert metric(results, "psr", "input_errors") == len(hostile) == 4
    assert metric(results, "psr", "n_scored") == 2
    assert metric(results, "psr", "parse_failures") == 0 and metric(results, "psr", "api_failures") == 0
    assert metric(results, "psr", "accuracy") == pytest.approx(truth.expected_correct["psr"] / 2)
    lines = [x for x in log.splitlines() if "input error" in x]
    for doc, field in hostile.items():
        mine = [x for x in lines if f"task 'psr', doc '{doc}', field '{field}'" in x]
        assert len(mine) == 1, (doc, lines)
    for name, reason in [
        ("s1_e1", "decompression bomb"),
        ("s2_src", "12000x12000 = 144000000 pixels > max_image_pixels="),
        ("s3_e2", "1073741824 bytes > max_image_bytes="),
        ("s4_e1", "is a directory"),
    ]:
        assert any(str(images / f"{name}.png") in x and reason in x for x in lines), (name, lines)
