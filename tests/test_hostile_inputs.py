"""Issue 16 items 3 and 5: hostile files through the real commands: each is one line or one input error,
the run goes on, nothing hangs, nothing a spreadsheet or a page would execute is written verbatim."""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import os
import struct
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

from lmms_eval_autorater import images
from lmms_eval_autorater.cells import csv_cell, md_cell
from lmms_eval_autorater.cli import main
from lmms_eval_autorater.generations.score import read_rows
from lmms_eval_autorater.judges import tokens
from tests.openai_server import image_urls
from tests.test_score_cmd import make_gens, png, score_cmd, server, write_gens  # noqa: F401


def blank_png(path: Path, width: int, height: int) -> Path:
    """A 1-bit all-black PNG written row by row (a few hundred KB for 20000 x 20000, no big buffer)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)
    body = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def hostile_gens(folder: Path) -> Path:
    """Two good rows and one of each hostile file: a bomb, a 12000x12000 image, a 1 GB file, a directory."""
    gens = make_gens(folder, [3, 7])
    imgs = folder / "images"
    blank_png(imgs / "bomb.png", 20000, 20000)
    blank_png(imgs / "big.png", 12000, 12000)
    with open(imgs / "huge.png", "wb") as fh:
        fh.truncate(1 << 30)  # sparse: no disk used
    (imgs / "adir.png").mkdir()
    rows = [json.loads(x) for x in gens.read_text().splitlines()]
    for name in ("bomb", "big", "huge", "adir"):
        rows.append({"id": name, "prompt": f"hostile {name}", "image": f"images/{name}.png"})
    return write_gens(folder, rows)


REASONS = {
    "bomb": "decompression bomb",
    "big": "12000x12000 = 144000000 pixels > max_image_pixels=64000000",
    "huge": "1073741824 bytes > max_image_bytes=67108864",
    "adir": "is a directory",
}


def test_bomb_huge_image_1gb_file_and_directory_are_one_input_error_each(tmp_path, server):  # noqa: F811
    gens = hostile_gens(tmp_path / "gens")
    out = tmp_path / "scores.jsonl"
    start = time.monotonic()
    assert score_cmd(server, gens, out, tmp_path / "cache") == 0
    assert time.monotonic() - start < 60
    assert server.request_count == 2  # only the two good images were sent
    rows = {r["id"]: r for r in read_rows(out)}
    assert [rows[i]["score"] for i in ("g0", "g1")] == [3, 7]
    for name, reason in REASONS.items():
        r = rows[name]
        path = str((tmp_path / "gens/images" / f"{name}.png").resolve())
        assert r["status"] == "input_error" and r["score"] is None, r
        assert r["error"].startswith(f"input error: id {name!r}, field 'image', file {path}: "), r["error"]
        assert reason in r["error"], r["error"]
    summary = json.loads((tmp_path / "scores.summary.json").read_text())
    assert (summary["n_scored"], summary["input_errors"]) == (2, 4)


def test_caps_are_model_args(tmp_path, server):  # noqa: F811
    gens = make_gens(tmp_path / "gens", [4])  # a 16x16 PNG: 256 pixels
    out = tmp_path / "s.jsonl"
    rc = main(
        ["score", "--input", str(gens), "--model", "autorater_openai", "--output", str(out), "--model_args",
         f"base_url={server.url},model=judge-1,cache=false,max_image_pixels=255"]
    )  # fmt: skip
    assert rc == 1 and server.request_count == 0  # every row an input error: nothing judged
    rc = main(
        ["score", "--input", str(gens), "--model", "autorater_openai", "--output", str(out), "--model_args",
         f"base_url={server.url},model=judge-1,cache=false,max_image_pixels=256,max_image_bytes=100000"]
    )  # fmt: skip
    assert rc == 0 and [r["score"] for r in read_rows(out)] == [4]
    images.set_image_limits()


def test_an_image_larger_than_providers_take_is_resized_once_for_request_and_estimate(tmp_path, server):  # noqa: F811
    from lmms_eval_autorater.judges.prompts import build_verdict_prompt
    from lmms_eval_autorater.judges.types import ChatImage, JudgeRequest

    big = tmp_path / "gens" / "images" / "wide.png"
    big.parent.mkdir(parents=True)
    Image.new("RGB", (5000, 1000), (140, 0, 99)).save(big)  # red 140 -> score 7
    gens = write_gens(tmp_path / "gens", [{"id": "w", "prompt": "wide", "image": "images/wide.png"}])
    assert score_cmd(server, gens, tmp_path / "s.jsonl", tmp_path / "cache") == 0
    sent = Image.open(io.BytesIO(base64.b64decode(image_urls(server.requests[0].json)[-1].split(",", 1)[1])))
    assert sent.size == (2048, 410)  # 5000 x 1000 fitted into 2048: 2048 x round(1000 * 2048 / 5000)
    assert read_rows(tmp_path / "s.jsonl")[0]["score"] == 7
    req = JudgeRequest(doc_key="t/w", task_kind="generation", paradigm="pointwise", request="wide",
                       candidates=(str(big),))  # fmt: skip
    img = next(p for p in build_verdict_prompt(req).parts if isinstance(p, ChatImage))
    assert tokens.image_size(img.data) == (2048, 410)
    # Gemini tiles at 768: the estimate counts the 2048 x 410 image sent (3 x 1 tiles), not 5000 x 1000 (7 x 2)
    assert tokens.gemini_image_tokens(*tokens.image_size(img.data)) == 258 * 3


@pytest.mark.parametrize("escape", ["../../../etc/hostname", "/proc/self/environ", "link.png"])
def test_paths_outside_the_root_are_refused_before_anything_is_sent(tmp_path, server, capsys, escape):  # noqa: F811
    folder = tmp_path / "gens"
    gens = make_gens(folder, [3])
    os.symlink("/etc/hostname", folder / "link.png")
    rows = [json.loads(x) for x in gens.read_text().splitlines()]
    rows.append({"id": "evil", "prompt": "p", "image": escape})
    gens = write_gens(folder, rows)
    assert score_cmd(server, gens, tmp_path / "s.jsonl", tmp_path / "cache") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "(id 'evil'): field 'image'" in err[0] and "outside the root" in err[0], err
    assert server.request_count == 0


def test_csv_cells_are_neutralised_and_read_back(tmp_path, server):  # noqa: F811
    payloads = [
        '=HYPERLINK("http://x","y")',
        "=cmd|' /C calc'!A0",
        "@SUM(1+1)",
        "+1+2",
        "-2-3",
        "\tx",
        "\rx",
        "\r=1+1",
    ]
    payloads += ["a\rb", "a\r\nb", 'a,"b"\rc']  # a CR inside a cell: it must stay in its row
    folder = tmp_path / "gens"
    gens = make_gens(folder, [2] * len(payloads))
    rows = [json.loads(x) for x in gens.read_text().splitlines()]
    for r, p in zip(rows, payloads):
        r["id"], r["prompt"] = p, p
    gens = write_gens(folder, rows)
    out = tmp_path / "s.csv"
    assert score_cmd(server, gens, out, tmp_path / "cache") == 0
    import csv

    with open(out, newline="", encoding="utf-8") as fh:
        cells = list(csv.DictReader(fh))
    quoted = ["'" + p if p[0] in "=+-@\t\r" else p for p in payloads]
    assert [c["id"] for c in cells] == quoted
    assert [c["prompt"] for c in cells] == quoted
    assert [c["score"] for c in cells] == ["2"] * len(payloads)
    back = read_rows(out)
    assert [r["id"] for r in back] == payloads and [r["prompt"] for r in back] == payloads  # undone
    assert csv_cell("-0.5") == "-0.5" and csv_cell(-0.5) == -0.5 and csv_cell("a=b") == "a=b"


def test_markdown_cells_escape_pipes_and_html():
    assert md_cell("a|b<script>alert(1)</script>\nx") == "a\\|b&lt;script&gt;alert(1)&lt;/script&gt; x"


# ---- submissions -----------------------------------------------------------------------------------


def _sub(n: int, paradigm: str = "pairwise") -> dict:
    """A submission of one task with ``n`` predictions, self-consistent (validate recomputes it)."""
    from lmms_eval_autorater.reports import validate
    from lmms_eval_autorater.tasks.catalog import docs_hash

    preds = [
        {
            "doc_id": f"d{i}",
            "group": f"g{i % 7}",
            "label": 1 + i % 2,
            "status": "ok",
            "pred": 1 + (i % 3 == 0),
        }
        for i in range(n)
    ]
    task = {
        "paradigm": paradigm, "metric": "accuracy", "n_docs": n, "conventions": "c", "task_version": 1,
        "docs_hash": docs_hash(preds), "predictions": preds,
        "metrics": {"n_scored": n, "input_errors": 0, "parse_failures": 0, "api_failures": 0},
    }  # fmt: skip
    task["metrics"].update(validate.recompute("pairwise", validate._records(task, None)))
    return {"tasks": {"psr": task}}


def test_duplicate_check_is_linear(monkeypatch):
    """80k predictions with one duplicate: the check_task time grows linearly (a ratio between two sizes)."""
    from lmms_eval_autorater.reports import validate

    monkeypatch.setattr(validate, "recompute", lambda *args, **kwargs: {})  # time the checks, not the CIs

    def timed(n: int) -> float:
        task = _sub(n)["tasks"]["psr"]
        task["predictions"][-1]["doc_id"] = "d0"
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            problems = validate.check_task("psr", task, None)
            best = min(best, time.perf_counter() - start)
        assert any("'d0' appear more than once" in p for p in problems), problems
        return best

    small, large = timed(10_000), timed(80_000)
    assert large / small < 8 * 3  # linear: 8x the size; quadratic would be ~64x


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_every_decoder_error_is_one_line_and_every_file_is_reported(tmp_path, capsys):
    files = [
        _write(tmp_path / "deep.json", "[" * 100_000 + "]" * 100_000),
        _write(tmp_path / "latin1.json", b'{"name": "caf\xe9"}'),
        _write(tmp_path / "inf.json", '{"tasks": {"psr": {"n_docs": Infinity}}}'),
        _write(tmp_path / "bigint.json", '{"n": ' + "9" * 5000 + "}"),
        _write(tmp_path / "notjson.json", "{nope"),
    ]
    rc = main(["validate", "--no-local-data", *map(str, files)])
    assert rc == 1
    out = capsys.readouterr().out.splitlines()
    for f in files:
        mine = [line for line in out if line.startswith(f"{f}: FAIL")]
        assert len(mine) == 1, (f, out)
    text = "\n".join(out)
    assert "nested too deeply" in text and "not UTF-8" in text and "Infinity is not valid JSON" in text


def test_predictions_are_type_checked(tmp_path):
    from lmms_eval_autorater.reports import validate

    for k, change, expected in [
        (1, {"pred": 1.4}, "a pairwise prediction is 0 (tie), 1 or 2, got 1.4"),
        (2, {"pred": 2.4}, "got 2.4"),
        (3, {"pred": None}, "status 'ok' needs a prediction"),
        (4, {"status": "api_error"}, "status 'api_error' must have no prediction"),
        (5, {"pred": True}, "not a number: True"),
    ]:
        task = _sub(12)["tasks"]["psr"]
        assert validate.check_task("psr", copy.deepcopy(task), None) == []
        task["predictions"][k].update(change)
        problems = validate.check_task("psr", task, None)
        assert any(f"predictions[{k}].pred: " in p and expected in p for p in problems), problems


# ---- the same hostile files through arena and report ------------------------------------------------


def hostile_files(folder: Path) -> dict[str, Path]:
    """The four hostile files of ``hostile_gens`` under ``folder``, by name."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {name: folder / f"{name}.png" for name in REASONS}
    blank_png(files["bomb"], 20000, 20000)
    blank_png(files["big"], 12000, 12000)
    with open(files["huge"], "wb") as fh:
        fh.truncate(1 << 30)
    files["adir"].mkdir()
    return files


@pytest.fixture
def arena_server():
    from tests.openai_server import OpenAIServer
    from tests.test_arena import responder

    with OpenAIServer(responder) as srv:
        yield srv


def test_hostile_images_through_arena_are_one_input_error_each(tmp_path, arena_server):
    """A's six images are fine; B's p0, p1 are fine and p2..p5 are the bomb, the 12000x12000 image, the 1 GB
    file and the directory: each of those four prompts is one input error of the pair, never sent; A wins
    the two judged prompts in both orders (the responder prefers the stronger generator)."""
    from tests.datafactory import image_bytes
    from tests.test_arena import IMAGES, arena, seed_of

    folder = tmp_path / "gens"
    hostile = dict(zip(["p2", "p3", "p4", "p5"], hostile_files(folder / "B").values()))
    inputs = []
    for gen in ("A", "B"):
        (folder / gen).mkdir(parents=True, exist_ok=True)
        rows = []
        for k in range(6):
            pid = f"p{k}"
            if not (gen == "B" and pid in hostile):
                data = image_bytes(seed_of(gen, pid))
                (folder / gen / f"{pid}.png").write_bytes(data)
                IMAGES[hashlib.sha256(data).hexdigest()] = (gen, pid)
            image = f"{gen}/{hostile[pid].name}" if gen == "B" and pid in hostile else f"{gen}/{pid}.png"
            rows.append({"id": pid, "prompt": f"a picture for prompt {pid}", "image": image})
        inputs.append(write_gens(folder, rows, f"{gen}.jsonl"))
    out = tmp_path / "arena"
    start = time.monotonic()
    assert arena(arena_server, inputs, out, tmp_path / "cache") == 0
    assert time.monotonic() - start < 60
    assert arena_server.request_count == 4  # p0, p1 in both orders; nothing hostile was sent
    (pair,) = json.loads((out / "arena.json").read_text())["pairs"]
    assert (pair["a"], pair["b"], pair["a_wins"], pair["b_wins"], pair["ties"]) == ("A", "B", 2, 0, 0)
    assert pair["failures"] == 4
    assert pair["failures_by_status"] == {"input_error": 4, "parse_failure": 0, "api_error": 0}


def test_hostile_images_through_report_are_one_input_error_each(tmp_path, data, capsys):
    """A run whose psr samples point at the four hostile files: the page is written, each file is one
    input-error line naming it (and has no thumbnail), every other image gets its thumbnail."""
    from lmms_eval_autorater.judges.types import Verdict
    from tests.runfiles import write_run

    files = hostile_files(tmp_path / "hostile")
    docs = copy.deepcopy(data[1]["psr"])
    assert len(docs) == 3
    docs[0]["image_1"], docs[0]["image_2"] = str(files["bomb"]), str(files["big"])
    docs[1]["image_1"], docs[1]["image_2"] = str(files["huge"]), str(files["adir"])
    write_run(tmp_path / "run", {"psr": docs}, lambda task, i, doc: Verdict("ok", preferred=doc["label"]))
    out = tmp_path / "page.html"
    start = time.monotonic()
    assert main(["report", "--results", str(tmp_path / "run"), "--output", str(out)]) == 0
    assert time.monotonic() - start < 60
    err = [line for line in capsys.readouterr().err.splitlines() if "input error" in line]
    assert len(err) == 4, err
    for name, reason in REASONS.items():
        mine = [line for line in err if str(files[name]) in line]
        assert len(mine) == 1 and reason in mine[0], (name, err)
    page = json.loads(
        out.read_text().split('<script id="run-data" type="application/json">', 1)[1].split("</script>", 1)[0]
    )
    assert len(page["image_errors"]) == 4
    assert len(page["docs"]) == 3  # one task: the page's docs in the run's order
    shown = {doc[f]: page["images"][k] for d, doc in zip(page["docs"], docs) for f, k in d["images"].items()}
    assert len(shown) == 9
    assert {ref for ref, url in shown.items() if url is None} == {str(f) for f in files.values()}
    assert all(url.startswith("data:image/jpeg;base64,") for url in shown.values() if url is not None)
