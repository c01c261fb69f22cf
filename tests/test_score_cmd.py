"""``lmms-eval-autorater score``, the generations reader, the Python API's image forms and ``reward``, and
the lmms-eval template over your own generations: all against the local OpenAI-compatible server through
the real openai client. The responder reads each score from the judged image's pixels, so every expected
value is known exactly."""

from __future__ import annotations

import base64
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lmms_eval_autorater.cli import main
from lmms_eval_autorater.errors import InputError
from lmms_eval_autorater.generations.jsonl import generator_name, read_generations
from lmms_eval_autorater.generations.score import mean_ci, read_rows, summary_path
from lmms_eval_autorater.metrics.bootstrap import bootstrap_ci
from lmms_eval_autorater.tasks.common import DataError
from tests.openai_server import OpenAIServer, image_urls, prompt_text

TEMPLATE = (
    Path(__file__).resolve().parents[1] / "src/lmms_eval_autorater/tasks/templates/my_gens.yaml.template"
)
UNPARSABLE = "answer-without-a-score"


def pixels(score: int, variant: int = 0) -> np.ndarray:
    """A 16x16 RGB image whose red channel encodes ``score`` (20 * score + variant)."""
    arr = np.zeros((16, 16, 3), dtype=np.uint8)
    arr[..., 0] = 20 * score + variant % 20
    arr[..., 1] = (37 * variant) % 256
    arr[..., 2] = 99
    return arr


def png(score: int, variant: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels(score, variant)).save(buf, format="PNG")
    return buf.getvalue()


def pixel_responder(request_json: dict) -> str:
    """Score = red channel of the last image's first pixel // 20 (decoded, so any encoding of the same
    pixels gets the same score); a prompt containing UNPARSABLE gets an answer with no score."""
    if UNPARSABLE in prompt_text(request_json):
        return "I would rather not say."
    url = image_urls(request_json)[-1]
    img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
    return json.dumps({"analysis": "read the pixels", "score": img.getpixel((0, 0))[0] // 20})


@pytest.fixture
def server():
    with OpenAIServer(pixel_responder) as srv:
        yield srv


def write_gens(folder: Path, rows: list[dict], name: str = "gens.jsonl") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def make_gens(folder: Path, scores: list[int], corrupt: bool = False) -> Path:
    """Rows g0.. with images in ``folder/images`` scoring ``scores``; optionally a corrupt image row 'bad'."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for k, s in enumerate(scores):
        (folder / "images" / f"g{k}.png").write_bytes(png(s, k))
        rows.append({"id": f"g{k}", "prompt": f"a red square number {k}", "image": f"images/g{k}.png"})
    if corrupt:
        (folder / "images" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
        rows.append({"id": "bad", "prompt": "a broken file", "image": "images/bad.png"})
    return write_gens(folder, rows)


def score_cmd(
    server: OpenAIServer, gens: Path, output: Path, cache_dir: Path, *extra: str, cache=True
) -> int:
    model_args = f"base_url={server.url},model=judge-1,cache_dir={cache_dir},concurrency=4"
    if not cache:
        model_args += ",cache=false"
    return main(
        [
            "score",
            "--input",
            str(gens),
            "--model",
            "autorater_openai",
            "--model_args",
            model_args,
            "--output",
            str(output),
            *extra,
        ]
    )


# ---------------------------------------------------------------------------------------------
# the command


def test_scores_follow_the_responder_corrupt_row_counted_and_rerun_is_cached(tmp_path, server, capsys):
    scores = [3, 7, 9, 5]
    gens = make_gens(tmp_path / "gens", scores, corrupt=True)
    out = tmp_path / "out" / "scores.jsonl"
    assert score_cmd(server, gens, out, tmp_path / "cache") == 0
    assert server.request_count == 4  # the corrupt image was never sent
    rows = read_rows(out)
    assert [r["id"] for r in rows] == ["g0", "g1", "g2", "g3", "bad"]
    assert [r["score"] for r in rows] == [*scores, None]
    assert [r["status"] for r in rows] == ["ok"] * 4 + ["input_error"]
    assert rows[0]["prompt"] == "a red square number 0"
    assert rows[0]["image"] == str((tmp_path / "gens/images/g0.png").resolve())
    assert rows[0]["analysis"] == "read the pixels" and rows[0]["error"] is None
    assert rows[0]["specialists"] == [] and rows[0]["usage"]["prompt_tokens"] > 0
    bad = rows[-1]
    bad_path = str((tmp_path / "gens/images/bad.png").resolve())
    assert bad["error"].startswith(f"input error: id 'bad', field 'image', file {bad_path}: ")

    mean = sum(scores) / 4
    low, high = bootstrap_ci(np.mean, np.array(scores, dtype=float), n_resamples=1000, seed=0)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line == (
        f"scored 4 of 5: mean {mean:.2f} (95% CI {low:.2f}-{high:.2f}); "
        "input errors 1, parse failures 0, API failures 0"
    )
    summary = json.loads(summary_path(out).read_text())
    assert summary_path(out) == tmp_path / "out" / "scores.summary.json"
    assert {k: summary[k] for k in ("n", "n_scored", "input_errors", "parse_failures", "api_failures")} == {
        "n": 5,
        "n_scored": 4,
        "input_errors": 1,
        "parse_failures": 0,
        "api_failures": 0,
    }
    assert (summary["mean"], summary["ci_low"], summary["ci_high"]) == (mean, low, high)
    assert summary["judge"] == "autorater_openai"
    assert summary["model_args"]["model"] == "judge-1"
    assert summary["completer"]["calls_made"] == 4

    # a rerun answers from the cache: no request, the same scores
    assert score_cmd(server, gens, out, tmp_path / "cache") == 0
    assert server.request_count == 4
    again = read_rows(out)
    assert [r["score"] for r in again] == [*scores, None]
    assert json.loads(summary_path(out).read_text())["completer"]["cache_hits"] == 4

    # --limit judges the first N rows only (from the cache here)
    assert score_cmd(server, gens, tmp_path / "two.jsonl", tmp_path / "cache", "--limit", "2") == 0
    assert [r["score"] for r in read_rows(tmp_path / "two.jsonl")] == scores[:2]
    assert server.request_count == 4


def test_parse_failure_is_counted_not_scored(tmp_path, server, capsys):
    gens = make_gens(tmp_path / "gens", [4, 8])
    rows = [json.loads(line) for line in gens.read_text().splitlines()]
    rows[1]["prompt"] = f"{UNPARSABLE} please"
    write_gens(tmp_path / "gens", rows)
    out = tmp_path / "s.csv"
    assert score_cmd(server, gens, out, tmp_path / "cache") == 0
    got = read_rows(out)
    assert [(r["score"], r["status"]) for r in got] == [(4, "ok"), (None, "parse_failure")]
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        "scored 1 of 2: mean 4.00 (95% CI 4.00-4.00); input errors 0, parse failures 1, API failures 0"
    )


def test_edit_rows_send_the_source_first(tmp_path, server):
    folder = tmp_path / "gens"
    (folder / "src.png").parent.mkdir(parents=True)
    (folder / "src.png").write_bytes(png(1, 5))
    (folder / "edit.png").write_bytes(png(6, 5))
    gens = write_gens(
        folder, [{"id": "e", "prompt": "make it redder", "image": "edit.png", "source": "src.png"}]
    )
    out = tmp_path / "s.jsonl"
    assert score_cmd(server, gens, out, tmp_path / "cache") == 0
    (row,) = read_rows(out)
    assert row["score"] == 6 and row["source"] == str((folder / "src.png").resolve())
    (req,) = server.requests
    assert len(image_urls(req.json)) == 2


def test_every_row_an_input_error_fails(tmp_path, server, capsys):
    folder = tmp_path / "gens"
    folder.mkdir()
    for k in range(2):
        (folder / f"b{k}.png").write_bytes(b"garbage")
    gens = write_gens(folder, [{"id": f"b{k}", "prompt": "x", "image": f"b{k}.png"} for k in range(2)])
    out = tmp_path / "s.jsonl"
    assert score_cmd(server, gens, out, tmp_path / "cache") == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("lmms-eval-autorater score: error: every one of the 2 rows of ")
    assert f"first: input error: id 'b0', field 'image', file {(folder / 'b0.png').resolve()}: " in err
    assert server.request_count == 0 and not out.exists()


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            [{"id": "a", "prompt": "p", "image": "ok.png"}, {"id": "b", "image": "ok.png"}],
            ("line 2", "'prompt'", "id 'b'"),
        ),
        ([{"id": "a", "prompt": "", "image": "ok.png"}], ("line 1", "'prompt'", "empty")),
        ([{"id": "a", "prompt": "p", "image": 3}], ("line 1", "'image'", "must be a string")),
        (
            [{"id": "a", "prompt": "p", "image": "ok.png"}, {"id": "a", "prompt": "q", "image": "ok.png"}],
            ("line 2", "'id'", "duplicate id (first on line 1)"),
        ),
        (
            [{"id": "a", "prompt": "p", "image": "gone.png"}],
            ("line 1", "'image'", "image file not found", "gone.png"),
        ),
        (
            [{"id": "a", "prompt": "p", "image": "ok.png", "source": "nosrc.png"}],
            ("line 1", "'source'", "nosrc.png"),
        ),
        (["{not json", {"id": "a", "prompt": "p", "image": "ok.png"}], ("line 1", "not JSON")),
    ],
    ids=[
        "missing-field",
        "empty-field",
        "non-string",
        "duplicate-id",
        "missing-image",
        "missing-source",
        "not-json",
    ],
)
def test_bad_file_fails_before_judging(tmp_path, server, capsys, lines, expected):
    folder = tmp_path / "gens"
    folder.mkdir()
    (folder / "ok.png").write_bytes(png(5))
    gens = folder / "gens.jsonl"
    gens.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    out = tmp_path / "s.jsonl"
    assert score_cmd(server, gens, out, tmp_path / "cache") == 1
    captured = capsys.readouterr()
    err_lines = captured.err.strip().splitlines()
    assert len(err_lines) == 1, captured.err
    (err,) = err_lines
    assert err.startswith(f"lmms-eval-autorater score: error: DataError: {gens.resolve()}: ")
    for part in expected:
        assert part in err, err
    assert server.request_count == 0 and not out.exists()


def test_unknown_output_extension_is_refused(tmp_path, server, capsys):
    gens = make_gens(tmp_path / "gens", [2])
    assert score_cmd(server, gens, tmp_path / "s.xlsx", tmp_path / "cache") == 1
    assert "unknown extension '.xlsx'" in capsys.readouterr().err
    assert server.request_count == 0


def test_output_formats_read_back_the_same_rows(tmp_path, server):
    import pandas as pd

    gens = make_gens(tmp_path / "gens", [2, 10, 6], corrupt=True)
    got = {}
    for ext in ("jsonl", "csv", "parquet"):
        out = tmp_path / f"s.{ext}"
        # no cache: every run is answered afresh, so the rows (usage included) are the same
        assert score_cmd(server, gens, out, tmp_path / "cache", cache=False) == 0
        got[ext] = read_rows(out)
    assert server.request_count == 9
    assert got["jsonl"] == got["csv"] == got["parquet"]
    assert [r["score"] for r in got["jsonl"]] == [2, 10, 6, None]
    # in the tabular files the nested columns are JSON strings and score a nullable integer
    frame = pd.read_parquet(tmp_path / "s.parquet")
    assert str(frame["score"].dtype) == "Int64" and frame["score"].isna().tolist() == [False] * 3 + [True]
    assert json.loads(frame["usage"][0]) == got["jsonl"][0]["usage"]
    assert json.loads(frame["specialists"][0]) == []
    csv = pd.read_csv(tmp_path / "s.csv")
    assert json.loads(csv["usage"][1]) == got["jsonl"][1]["usage"]


# ---------------------------------------------------------------------------------------------
# the reader


def test_read_generations_resolves_paths_and_names(tmp_path):
    folder = tmp_path / "runs"
    (folder / "img").mkdir(parents=True)
    (folder / "img" / "a.png").write_bytes(png(1))
    (tmp_path / "abs.png").write_bytes(png(2))
    path = folder / "sdxl.jsonl"
    path.write_text(
        json.dumps({"id": "a", "prompt": "p", "image": "img/a.png"})
        + "\n\n   \n"
        + json.dumps({"id": "b", "prompt": "q", "image": str(tmp_path / "abs.png"), "source": "img/a.png"})
        + "\n"
    )
    # an absolute path outside the file's folder: refused unless the root covers it or it is allowed
    with pytest.raises(InputError, match=r"line 4 \(id 'b'\): field 'image'.*outside the root"):
        read_generations(path)
    rows = read_generations(path, allow_outside_root=True)
    assert [(r.id, r.prompt, r.image, r.source, r.line) for r in rows] == [
        ("a", "p", str((folder / "img/a.png").resolve()), None, 1),
        ("b", "q", str((tmp_path / "abs.png").resolve()), str((folder / "img/a.png").resolve()), 4),
    ]
    assert generator_name(path) == "sdxl" and generator_name(path, "SDXL-1.0") == "SDXL-1.0"
    with pytest.raises(DataError, match="expected a .jsonl file"):
        read_generations(tmp_path / "gens.json")


# ---------------------------------------------------------------------------------------------
# the Python API


def test_every_image_form_gives_the_same_score(tmp_path, server):
    from lmms_eval_autorater.api import AutoRater

    arr = pixels(7, 3)
    path = tmp_path / "seven.png"
    path.write_bytes(png(7, 3))
    rater = AutoRater(
        "autorater_openai",
        progress=False,
        base_url=server.url,
        model="judge-1",
        cache="false",
        cache_dir=str(tmp_path / "cache"),
    )
    forms = [
        str(path),
        path,
        path.read_bytes(),
        Image.fromarray(arr),
        arr,
        Image.fromarray(arr).convert("RGBA"),
    ]
    results = rater.score_many(["the same red square"] * len(forms), forms)
    assert [(r.status, r.score) for r in results] == [("ok", 7)] * len(forms)
    # path, bytes, PIL and numpy of the same RGB pixels reach the server as the same PNG; RGBA differs
    from tests.openai_server import image_digests

    assert len({d for r in server.requests for d in image_digests(r.json)}) == 2
    assert [r.id for r in results] == [str(k) for k in range(len(forms))]
    one = rater.score("the same red square", arr)
    assert (one.status, one.score, one.id) == ("ok", 7, str(len(forms)))


def test_reward_maps_scores_and_gives_nan_for_failures(tmp_path, server):
    from lmms_eval_autorater.api import AutoRater

    rater = AutoRater(
        "autorater_openai",
        progress=False,
        base_url=server.url,
        model="judge-1",
        cache_dir=str(tmp_path / "c"),
    )
    rewards = rater.reward(
        ["ten", "one", "seven", f"{UNPARSABLE}", "corrupt"],
        [pixels(10), png(1), pixels(7), pixels(4), b"not an image"],
    )
    assert rewards[:3] == [1.0, 0.0, 6 / 9]
    assert math.isnan(rewards[3]) and math.isnan(rewards[4])
    assert server.request_count == 4  # the corrupt image is not sent


def test_mean_ci_is_nan_safe():
    assert all(math.isnan(x) for x in mean_ci([]))
    assert mean_ci([4]) == (4.0, 4.0, 4.0)


# ---------------------------------------------------------------------------------------------
# the lmms-eval template


@pytest.mark.slow
def test_template_through_lmms_eval(tmp_path, server):
    from tests.clitools import metric, run_cli

    folder = tmp_path / "my_eval"
    scores = [2, 9, 6]
    make_gens(folder, scores, corrupt=True)
    shutil.copy(TEMPLATE, folder / "my_gens.yaml")
    env = {"AUTORATER_CACHE_DIR": str(tmp_path / "cache")}
    results, log = run_cli(
        tmp_path,
        env,
        "--include_path",
        str(folder),
        "--model",
        "autorater_openai",
        "--model_args",
        f"base_url={server.url},model=judge-1",
        "--tasks",
        "my_gens",
    )
    assert results is not None, log[-3000:]
    assert server.request_count == 3
    mean, low, high = mean_ci(scores)
    assert metric(results, "my_gens", "mean_score") == pytest.approx(sum(scores) / 3)
    assert metric(results, "my_gens", "mean_score_ci_low") == pytest.approx(low)
    assert metric(results, "my_gens", "mean_score_ci_high") == pytest.approx(high)
    assert metric(results, "my_gens", "n_scored") == 3
    assert metric(results, "my_gens", "input_errors") == 1
    assert (
        metric(results, "my_gens", "parse_failures") == 0 and metric(results, "my_gens", "api_failures") == 0
    )
    assert metric(results, "my_gens", "prompt_tokens") > 0
    # the score command on the same file reports the same mean and CI
    out = tmp_path / "scores.jsonl"
    assert score_cmd(server, folder / "gens.jsonl", out, tmp_path / "cache") == 0
    summary = json.loads(summary_path(out).read_text())
    assert (summary["mean"], summary["ci_low"], summary["ci_high"]) == (mean, low, high)
