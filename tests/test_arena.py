"""``lmms-eval-autorater arena`` end to end: the real openai client against the local OpenAI-compatible server.

Four generators, each image made with ``datafactory.image_bytes(seed)`` for a seed that encodes (generator,
prompt). The responder looks each sent image up by its bytes' hash: it prefers the stronger generator
(A > B > C > D), except that D's images on prompts p0 and p1 are "order-bait": the responder then prefers
whichever image comes first, so judged in both orders those comparisons flip and become ties. D has no p5,
C's p5 image is corrupt (an input error, never sent), and A-vs-B on p3 gets an unparsable answer. Every
count below therefore follows from the rule.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from lmms_eval_autorater.cli import main
from lmms_eval_autorater.generations.arena import plan_matches
from tests.datafactory import image_bytes
from tests.openai_server import OpenAIServer, image_digests

GENS = ("A", "B", "C", "D")
STRENGTH = {"A": 3, "B": 2, "C": 1, "D": 0}
PROMPTS = [f"p{k}" for k in range(6)]
BAIT = {("D", "p0"), ("D", "p1")}  # the responder prefers position 1 whenever one of these is shown
UNPARSABLE = {("A", "p3"), ("B", "p3")}  # A vs B on p3: the answer has no verdict
#: sha256 of an image file -> (generator, prompt id)
IMAGES: dict[str, tuple[str, str]] = {}


def seed_of(gen: str, prompt: str) -> int:
    return 10 * GENS.index(gen) + PROMPTS.index(prompt) + 1


def responder(request_json: dict) -> str:
    shown = [IMAGES[d] for d in image_digests(request_json)]
    (g1, p1), (g2, p2) = shown
    analysis = f"image 1 is {g1} on {p1}, image 2 is {g2} on {p2}"
    if {(g1, p1), (g2, p2)} == UNPARSABLE:
        return "I cannot decide between these."
    if (g1, p1) in BAIT or (g2, p2) in BAIT:
        return json.dumps({"analysis": analysis + "; the first one, always", "preferred": 1})
    preferred = 1 if STRENGTH[g1] > STRENGTH[g2] else 2
    return json.dumps(
        {"analysis": analysis + f"; {g1 if preferred == 1 else g2} is better", "preferred": preferred}
    )


@pytest.fixture
def server():
    with OpenAIServer(responder) as srv:
        yield srv


def make_inputs(folder: Path, prompt_override: dict | None = None) -> list[Path]:
    """One JSONL per generator under ``folder``; D lacks p5, C's p5 image does not decode."""
    paths = []
    for gen in GENS:
        gdir = folder / gen
        gdir.mkdir(parents=True, exist_ok=True)
        rows = []
        for pid in PROMPTS:
            if gen == "D" and pid == "p5":
                continue
            img = gdir / f"{pid}.png"
            if gen == "C" and pid == "p5":
                img.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
            else:
                data = image_bytes(seed_of(gen, pid))
                img.write_bytes(data)
                IMAGES[hashlib.sha256(data).hexdigest()] = (gen, pid)
            prompt = (prompt_override or {}).get((gen, pid), f"a picture for prompt {pid}")
            rows.append({"id": pid, "prompt": prompt, "image": f"{gen}/{pid}.png"})
        path = folder / f"{gen}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        paths.append(path)
    return paths


def arena(server, inputs, out, cache, *extra) -> int:
    argv = ["arena"]
    for p in inputs:
        argv += ["--input", str(p)]
    argv += [
        "--model",
        "autorater_openai",
        "--model_args",
        f"base_url={server.url},model=judge-1,cache_dir={cache},concurrency=4",
        "--output",
        str(out),
        "--n_resamples",
        "200",
        *extra,
    ]
    return main(argv)


#: (a, b) -> (a_wins, b_wins, ties, failures, flips, usable comparisons), from the rule
EXPECTED_PAIRS = {
    ("A", "B"): (5, 0, 0, 1, 0, 5),  # p3 unparsable
    ("A", "C"): (5, 0, 0, 1, 0, 5),  # p5: C's image is corrupt
    ("A", "D"): (3, 0, 2, 0, 2, 5),  # p0, p1 flip
    ("B", "C"): (5, 0, 0, 1, 0, 5),
    ("B", "D"): (3, 0, 2, 0, 2, 5),
    ("C", "D"): (3, 0, 2, 0, 2, 5),
}
#: name -> (wins, losses, ties, failures)
EXPECTED_GENS = {"A": (13, 0, 2, 2), "B": (8, 5, 2, 2), "C": (3, 10, 2, 2), "D": (0, 9, 6, 0)}


def test_arena_counts_ratings_outputs_and_cached_rerun(tmp_path, server, capsys):
    inputs = make_inputs(tmp_path / "gens")
    out = tmp_path / "arena"
    assert arena(server, inputs, out, tmp_path / "cache") == 0
    # every usable-or-unparsable comparison sent twice (both orders); the corrupt image never
    n_sent = sum(
        2 * (judged + (1 if (a, b) == ("A", "B") else 0)) for (a, b), (*_, judged) in EXPECTED_PAIRS.items()
    )
    assert server.request_count == n_sent == 62

    report = json.loads((out / "arena.json").read_text())
    pairs = {(p["a"], p["b"]): p for p in report["pairs"]}
    assert set(pairs) == set(EXPECTED_PAIRS)
    for key, (aw, bw, ties, fails, flips, judged) in EXPECTED_PAIRS.items():
        p = pairs[key]
        assert (p["a_wins"], p["b_wins"], p["ties"], p["failures"], p["flips"]) == (
            aw,
            bw,
            ties,
            fails,
            flips,
        ), key
        assert p["flip_rate"] == pytest.approx(flips / judged)
    assert pairs[("A", "B")]["failures_by_status"] == {"input_error": 0, "parse_failure": 1, "api_error": 0}
    assert pairs[("A", "C")]["failures_by_status"] == {"input_error": 1, "parse_failure": 0, "api_error": 0}
    assert pairs[("A", "D")]["flip_rate"] == pytest.approx(0.4) and pairs[("A", "B")]["n_prompts"] == 6

    gens = report["generators"]
    assert [g["name"] for g in gens] == ["A", "B", "C", "D"]  # sorted by rating: the rule's order
    assert [g["rank"] for g in gens] == [1, 2, 3, 4]
    for g in gens:
        assert (g["wins"], g["losses"], g["ties"], g["failures"]) == EXPECTED_GENS[g["name"]], g["name"]
        assert g["ci_low"] <= g["rating"] <= g["ci_high"]
    ratings = [g["rating"] for g in gens]
    assert ratings == sorted(ratings, reverse=True) and len(set(ratings)) == 4
    assert sum(ratings) == pytest.approx(0.0, abs=1e-6)  # centred at mean 0
    assert report["n_prompts"] == 6 and report["n_comparisons"] == 30 and report["n_failures"] == 3
    assert report["judge"] == "autorater_openai" and report["orders"] == "both"
    assert {"ties", "rating", "ci", "failures", "flip_rate"} <= set(report["conventions"])

    # the table on stdout, in rating order
    printed = capsys.readouterr().out
    table = [line.split() for line in printed.strip().splitlines()[1:5]]
    assert [row[:2] for row in table] == [["1", "A"], ["2", "B"], ["3", "C"], ["4", "D"]]
    md = (out / "arena.md").read_text()
    assert md.index("| 1 | A |") < md.index("| 2 | B |") < md.index("| 4 | D |")

    # the chart is a real PNG
    png = (out / "arena.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(png)) as img:
        assert img.format == "PNG" and img.size[0] > 100

    # the page: exactly the six flipped comparisons, images embedded, nothing external
    page = (out / "disagreements.html").read_text()
    sections = re.findall(
        r'<section class="disagreement" data-id="([^"]*)" data-a="([^"]*)" data-b="([^"]*)"', page
    )
    assert sorted(sections) == sorted((pid, g, "D") for g in "ABC" for pid in ("p0", "p1"))
    srcs = re.findall(r'\bsrc="([^"]*)"', page)
    assert len(srcs) == 12 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not any("http" in s for s in srcs) and "<link" not in page and "<script" not in page
    section = re.search(r'data-id="p0" data-a="A" data-b="D".*?</section>', page, re.S).group(0)
    assert re.findall(r"preferred: <b>(\w)</b>", section) == ["A", "D"]  # each order preferred image 1
    assert "image 1 is A on p0, image 2 is D on p0; the first one, always" in page  # order 1's analysis
    assert "image 1 is D on p0, image 2 is A on p0; the first one, always" in page  # order 2's analysis

    # a rerun answers from the cache: no request, the same results
    before = server.request_count
    assert arena(server, inputs, tmp_path / "again", tmp_path / "cache") == 0
    assert server.request_count == before
    again = json.loads((tmp_path / "again" / "arena.json").read_text())
    assert again["generators"] == report["generators"] and again["pairs"] == report["pairs"]


def test_mismatched_prompt_fails_before_judging(tmp_path, server, capsys):
    inputs = make_inputs(tmp_path / "gens", {("C", "p2"): "something else entirely"})
    out = tmp_path / "arena"
    assert arena(server, inputs, out, tmp_path / "cache") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("lmms-eval-autorater arena: error: DataError: id 'p2': the prompt differs")
    assert str(inputs[0]) in err[0] and str(inputs[2]) in err[0]
    assert server.request_count == 0 and not out.exists()


def test_sampled_pairs_judge_n_pairs_per_prompt(tmp_path, server):
    inputs = make_inputs(tmp_path / "gens")
    out = tmp_path / "arena"
    assert arena(server, inputs, out, tmp_path / "cache", "--pairs", "sample:2", "--seed", "3") == 0
    report = json.loads((out / "arena.json").read_text())
    per_pair = [p["a_wins"] + p["b_wins"] + p["ties"] + p["failures"] for p in report["pairs"]]
    assert sum(per_pair) == 2 * len(PROMPTS)  # 2 pairs on each of the 6 ids
    # the plan the command used: 2 distinct pairs per id, the same for the same seed
    from lmms_eval_autorater.generations.arena import load_generators

    _, rows = load_generators([str(p) for p in inputs], None)
    plan = plan_matches(rows, 2, seed=3)
    assert plan == plan_matches(rows, 2, seed=3) and plan != plan_matches(rows, 2, seed=4)
    for pid in PROMPTS:
        mine = [(m.a, m.b) for m in plan if m.id == pid]
        assert len(mine) == 2 == len(set(mine))
    input_errors = sum(1 for m in plan if m.id == "p5" and 2 in (m.a, m.b))  # C's corrupt p5
    assert server.request_count == 2 * (len(plan) - input_errors)
    assert len(plan_matches(rows, None)) == 5 * 6 + 3  # all: 6 pairs on p0..p4, 3 on p5


def test_one_order_judges_once_and_reports_no_flips(tmp_path, server):
    inputs = make_inputs(tmp_path / "gens")
    out = tmp_path / "arena"
    assert arena(server, inputs, out, tmp_path / "cache", "--one-order") == 0
    assert server.request_count == 31  # 30 usable + the unparsable A-vs-B p3, once each
    report = json.loads((out / "arena.json").read_text())
    assert report["orders"] == "one" and report["n_disagreements"] == 0
    assert all(p["flip_rate"] is None and p["ties"] == 0 for p in report["pairs"])
    # in one order the bait always wins position 1, so D (always image 2) loses everything
    assert [g["name"] for g in report["generators"]] == ["A", "B", "C", "D"]
    assert report["generators"][-1]["losses"] == 15
    assert "no order disagreements" in (out / "disagreements.html").read_text()


def test_names_come_from_stems_or_name_and_must_be_distinct(tmp_path):
    from lmms_eval_autorater.cli import CommandError
    from lmms_eval_autorater.generations.arena import load_generators, parse_pairs

    inputs = [str(p) for p in make_inputs(tmp_path / "gens")]
    names, rows = load_generators(inputs, None)
    assert names == list(GENS) and sorted(rows[3]) == PROMPTS[:5]
    assert load_generators(inputs, ["w", "x", "y", "z"])[0] == ["w", "x", "y", "z"]
    with pytest.raises(CommandError, match="--name given 1 times for 4"):
        load_generators(inputs, ["w"])
    with pytest.raises(CommandError, match="two generators are named 'x'"):
        load_generators(inputs, ["w", "x", "x", "z"])
    with pytest.raises(CommandError, match="at least two"):
        load_generators(inputs[:1], None)
    assert parse_pairs("all") is None and parse_pairs("sample:3") == 3
    for bad in ("sample:0", "sample:x", "some"):
        with pytest.raises(CommandError, match="--pairs"):
            parse_pairs(bad)


#: the budget test's answer: len // 4 = 13 completion tokens, exactly max_tokens, so the budget's reservation
#: (max_tokens at the output price; input is free) equals what each answer is paid
BUDGET_ANSWER = json.dumps({"analysis": "image 1 is the better", "preferred": 1})
BUDGET_MAX_TOKENS = len(BUDGET_ANSWER) // 4
PRICE_OUT = 1000.0  # USD per million tokens
PER_ANSWER = BUDGET_MAX_TOKENS * PRICE_OUT / 1e6


def test_budget_skipped_matches_are_counted_apart_not_as_parse_failures(tmp_path, monkeypatch, capsys):
    """Three generators on two prompts, one order: 6 matches; a budget with room for exactly 4 answers
    leaves 2 matches not sent, counted as budget_skipped (neither failures nor parse failures)."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert BUDGET_MAX_TOKENS == 13
    folder = tmp_path / "gens"
    inputs = []
    for g, gen in enumerate(("X", "Y", "Z")):
        (folder / gen).mkdir(parents=True)
        rows = []
        for pid in ("q0", "q1"):
            (folder / gen / f"{pid}.png").write_bytes(image_bytes(100 + 10 * g + int(pid[1])))
            rows.append({"id": pid, "prompt": f"a picture for {pid}", "image": f"{gen}/{pid}.png"})
        path = folder / f"{gen}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        inputs.append(path)

    def run(out: Path, budget: float) -> int:
        argv = ["arena"]
        for p in inputs:
            argv += ["--input", str(p)]
        model_args = (
            f"base_url={server.url},model=judge-1,cache_dir={tmp_path / 'cache'},concurrency=1,"
            f"max_tokens={BUDGET_MAX_TOKENS},price_in=0,price_out={PRICE_OUT:g},max_cost_usd={budget!r}"
        )
        argv += ["--model", "autorater_openai", "--model_args", model_args, "--one-order"]
        return main([*argv, "--output", str(out), "--n_resamples", "50"])

    with OpenAIServer(lambda req: BUDGET_ANSWER) as server:
        assert run(tmp_path / "arena", 4.5 * PER_ANSWER) == 0
        assert server.request_count == 4
        report = json.loads((tmp_path / "arena" / "arena.json").read_text())
        assert (report["n_comparisons"], report["n_failures"], report["n_budget_skipped"]) == (4, 0, 2)
        assert sum(p["budget_skipped"] for p in report["pairs"]) == 2
        assert all(
            p["failures"] == 0 and p["failures_by_status"]["parse_failure"] == 0 for p in report["pairs"]
        )
        assert all(p["a_wins"] + p["b_wins"] + p["ties"] + p["budget_skipped"] == 2 for p in report["pairs"])
        # each skipped match is one generator pair: counted for both of its generators
        assert sum(g["budget_skipped"] for g in report["generators"]) == 2 * 2
        assert all(g["failures"] == 0 for g in report["generators"])
        assert "2 not sent (budget_skipped" in capsys.readouterr().out

        # a larger budget continues from the response cache: only the 2 skipped matches are sent
        assert run(tmp_path / "again", 1.0) == 0
        assert server.request_count == 4 + 2
        again = json.loads((tmp_path / "again" / "arena.json").read_text())
        assert (again["n_comparisons"], again["n_failures"], again["n_budget_skipped"]) == (6, 0, 0)
