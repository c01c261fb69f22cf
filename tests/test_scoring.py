"""scoring=expected (verdict probabilities from token log-probabilities), samples=N, and the metrics of scores
and probabilities; against the local OpenAI-compatible servers through the real ``openai`` client."""

from __future__ import annotations

import hashlib
import math
import re

import numpy as np
import pytest
import scipy.stats
from scipy.optimize import curve_fit

from lmms_eval_autorater.judges.args import ModelArgError
from lmms_eval_autorater.judges.factory import build_judge, judge_config
from lmms_eval_autorater.judges.logprobs import locate_value, value_distribution
from lmms_eval_autorater.judges.types import JudgeRequest
from lmms_eval_autorater.metrics.calibration import (
    brier,
    choose_tie_threshold,
    ece,
    group_split,
    plcc_logistic,
    tie_accuracy,
    tie_calibrated_accuracy,
)
from lmms_eval_autorater.tasks.common import (
    make_doc,
    pairwise_aggregation,
    pointwise_aggregation,
    verdict_record,
)
from tests.batch_server import BatchServer
from tests.datafactory import image_bytes
from tests.openai_server import OpenAIServer, ProbabilityRule, image_digests, prompt_text

# -- the token rule ---------------------------------------------------------------------------------------


def tok(token: str, logprob: float = 0.0, tops: list[tuple[str, float]] | None = None) -> dict:
    tops = tops if tops is not None else [(token, 1.0)]
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode()),
        "top_logprobs": [{"token": t, "logprob": math.log(p), "bytes": list(t.encode())} for t, p in tops],
    }


def spell(*tokens: dict) -> str:
    return "".join(t["token"] for t in tokens)


def test_whole_number_tokens_give_the_renormalised_expected_score():
    """GPT-4o keeps "10" in one token; alternatives that are not scores ("a") are left out, then renormalised."""
    content = [
        tok('{"score": '),
        tok("10", math.log(0.5), [("10", 0.5), ("9", 0.25), ("7", 0.15), ("a", 0.1)]),
        tok("}"),
    ]
    d = value_distribution(spell(*content), content, 10, "pointwise", range(1, 11))
    assert d.probs == pytest.approx({10: 0.5 / 0.9, 9: 0.25 / 0.9, 7: 0.15 / 0.9})
    assert d.expected() == pytest.approx((10 * 0.5 + 9 * 0.25 + 7 * 0.15) / 0.9)


def test_a_token_that_holds_the_key_and_the_value_is_read_after_its_prefix():
    """A token ':7' (prefix ':' shared by the alternatives) and an alternative without the prefix (ignored)."""
    content = [tok('{"score"'), tok(":7", math.log(0.6), [(":7", 0.6), (":8", 0.3), ("8", 0.1)]), tok("}")]
    d = value_distribution(spell(*content), content, 7, "pointwise", range(1, 11))
    assert d.probs == pytest.approx({7: 0.6 / 0.9, 8: 0.3 / 0.9})


def test_ten_split_into_one_and_zero_is_read_through_the_next_token():
    """Digit-splitting tokenizers: chosen "1" then "0" -> p(10) = p("1") * p("0" | "1"); p(1) from the
    closing alternative; a non-chosen alternative "1" would end with its token (the documented rule)."""
    content = [
        tok('{"score": '),
        tok("1", math.log(0.6), [("1", 0.6), ("9", 0.4)]),
        tok("0", math.log(0.75), [("0", 0.75), ("}", 0.25)]),
        tok("}"),
    ]
    d = value_distribution(spell(*content), content, 10, "pointwise", range(1, 11))
    assert d.probs == pytest.approx({1: 0.6 * 0.25, 9: 0.4, 10: 0.6 * 0.75})
    # the same tokens with "1" as the verdict (the model wrote 1 then "}")
    content1 = [content[0], content[1], tok("}", math.log(0.25), [("0", 0.75), ("}", 0.25)])]
    d1 = value_distribution(spell(*content1), content1, 1, "pointwise", range(1, 11))
    assert d1.probs == pytest.approx({1: 0.15, 9: 0.4, 10: 0.45})
    # chosen "9": the alternative "1" has no visible continuation: nothing shows whole-number tokens, so it is
    # the valid completion nearest 9, i.e. 10; beside a chosen "2" it is 1
    content9 = [content[0], tok("9", math.log(0.4), [("9", 0.4), ("1", 0.6)]), tok("}")]
    assert value_distribution(
        spell(*content9), content9, 9, "pointwise", range(1, 11)
    ).probs == pytest.approx({9: 0.4, 10: 0.6})
    content2 = [content[0], tok("2", math.log(0.4), [("2", 0.4), ("1", 0.6)]), tok("}")]
    assert value_distribution(
        spell(*content2), content2, 2, "pointwise", range(1, 11)
    ).probs == pytest.approx({2: 0.4, 1: 0.6})
    # a token of two digits in the answer shows whole-number tokens: "1" is 1
    whole = [tok('{"n": '), tok("12"), tok(', "score": '), content9[1], tok("}")]
    assert value_distribution(spell(*whole), whole, 9, "pointwise", range(1, 11)).probs == pytest.approx(
        {9: 0.4, 1: 0.6}
    )


def test_no_usable_probabilities_say_why():
    assert not value_distribution('{"score": 7}', None, 7, "pointwise", range(1, 11)).ok
    wrong = [tok('{"score": '), tok("8"), tok("}")]  # does not spell the text
    assert "do not spell" in value_distribution('{"score": 7}', wrong, 7, "pointwise", range(1, 11)).reason
    only_words = [tok('{"score": '), tok("7", 0.0, [("seven", 1.0)]), tok("}")]
    assert not value_distribution(spell(*only_words), only_words, 7, "pointwise", range(1, 11)).ok


def test_the_value_is_located_after_the_key_never_in_a_denominator():
    text = 'Image 1 has 2 cats. {"analysis": "2 of them", "preferred": 2}'
    assert locate_value(text, 2, "pairwise") == (text.rindex("2"), text.rindex("2") + 1)
    assert locate_value("Score: 10/10", 10, "pointwise") == (7, 9)
    assert locate_value("I give it 8 out of 10", 10, "pointwise") is None


# -- metrics --------------------------------------------------------------------------------------------


def test_brier_and_ece_by_hand():
    labels = [1, 2, 1, 2, 1]
    p = [0.9, 0.2, 0.4, 0.65, 1.0]
    assert brier(labels, p) == pytest.approx(np.mean([0.1**2, 0.2**2, 0.6**2, 0.65**2, 0.0]))
    # bins: 0.2 -> [0.2,0.3) y=0; 0.4 -> y=1; 0.65 -> y=0; 0.9 -> y=1; 1.0 -> last bin, y=1
    expected = (abs(0.2 - 0) + abs(0.4 - 1) + abs(0.65 - 0) + abs(0.9 - 1) + abs(1.0 - 1)) / 5
    assert ece(labels, p) == pytest.approx(expected)
    two_in_a_bin = ece([1, 2], [0.71, 0.79])  # one bin: |0.75 - 0.5|
    assert two_in_a_bin == pytest.approx(0.25)


def test_plcc_logistic_matches_scipy_fit_then_pearson():
    rng = np.random.default_rng(0)
    x = rng.uniform(1, 10, 80)
    y = 1 / (1 + np.exp(-(x - 5.5))) * 4 + rng.normal(0, 0.2, 80)

    def f(v, b1, b2, b3, b4):
        return (b1 - b2) / (1 + np.exp(-(v - b3) / abs(b4))) + b2

    params, _ = curve_fit(f, x, y, p0=[y.max(), y.min(), x.mean(), x.std() / 4 + 1e-3], maxfev=20000)
    want = scipy.stats.pearsonr(f(x, *params), y)[0]
    assert plcc_logistic(x, y) == pytest.approx(want, abs=1e-6)
    assert plcc_logistic(x, y) > scipy.stats.pearsonr(x, y)[0]  # the fit straightens the S curve


def test_tie_threshold_is_chosen_on_the_selection_prompts_only():
    labels = [1, 0, 2, 0, 1, 2]
    p = [0.9, 0.52, 0.1, 0.45, 0.6, 0.3]
    assert tie_accuracy(labels, p, 0.0) == pytest.approx(4 / 6)  # both human ties missed
    assert tie_accuracy(labels, p, 0.03) == pytest.approx(5 / 6)  # 0.52 is a tie now
    assert tie_accuracy(labels, p, 0.05) == pytest.approx(6 / 6)
    assert choose_tie_threshold(labels, p) == pytest.approx(0.05)
    groups = ["a", "a", "b", "b", "c", "c"]
    sel, rep = group_split(groups, 0.5, seed=0)
    assert not {groups[i] for i in sel} & {groups[i] for i in rep}
    out = tie_calibrated_accuracy(labels, p, groups, seed=0)
    t = choose_tie_threshold([labels[i] for i in sel], [p[i] for i in sel])
    assert out["tie_threshold"] == t and out["tie_report_docs"] == len(rep)
    assert out["tie_accuracy"] == tie_accuracy([labels[i] for i in rep], [p[i] for i in rep], t)


# -- judges against the local server -------------------------------------------------------------------


def point_dist(i: int) -> dict[int, float]:
    """Doc i's known score distribution: mass on three neighbouring scores, argmax moving with i."""
    centre = 2 + i % 8
    return {centre - 1: 0.2 + 0.02 * (i % 3), centre: 0.5, centre + 1: 0.3 - 0.02 * (i % 3)}


def pair_dist(i: int) -> dict[int, float]:
    p1 = [0.9, 0.7, 0.55, 0.35, 0.2, 0.8][i % 6]
    return {1: p1, 2: 1 - p1}


def doc_index(request_json: dict) -> int:
    return int(re.search(r"item number (\d+)", prompt_text(request_json)).group(1))


@pytest.fixture
def imgs(tmp_path):
    out = []
    for k in range(3):
        path = tmp_path / f"i{k}.png"
        path.write_bytes(image_bytes(k))
        out.append(str(path))
    return out


def point_reqs(imgs, n=12):
    reqs = [
        JudgeRequest(f"aigiqa/{i}", "generation", "pointwise", f"item number {i}", (imgs[i % 3],))
        for i in range(n)
    ]
    docs = [
        make_doc(doc_id=i, paradigm="pointwise", group=f"g{i // 2}", target=float((i * 7) % 11))
        for i in range(n)
    ]
    return reqs, docs


def pair_reqs(imgs, n=12):
    reqs = [
        JudgeRequest(
            f"psr/{i}", "generation", "pairwise", f"item number {i}", (imgs[i % 3], imgs[(i + 1) % 3])
        )
        for i in range(n)
    ]
    docs = [
        make_doc(doc_id=i, paradigm="pairwise", group=f"g{i // 2}", label=1 + (i % 4 == 3)) for i in range(n)
    ]
    return reqs, docs


def judge(server, tmp_path, **args):
    base = {"base_url": server.url, "cache_dir": str(tmp_path), "concurrency": "4"}
    return build_judge("autorater_gpt4o", {**base, **{k: str(v) for k, v in args.items()}}, progress=False)


def aggregate(paradigm, records, name):
    agg = pairwise_aggregation if paradigm == "pairwise" else pointwise_aggregation
    return agg(name)(records)


@pytest.mark.parametrize("split", [False, True])
def test_pointwise_reports_the_pearson_of_the_expected_scores(split, imgs, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    rule = ProbabilityRule(lambda r: point_dist(doc_index(r)), split_digits=split)
    reqs, docs = point_reqs(imgs)
    with OpenAIServer(rule.responder, logprobs=rule.logprobs) as server:
        j = judge(server, tmp_path, scoring="expected")
        verdicts = j.judge_all(reqs)
        assert all(r.json["logprobs"] is True and r.json["top_logprobs"] == 20 for r in server.requests)
    records = [verdict_record(d, v, "pointwise") for d, v in zip(docs, verdicts)]
    expected = [sum(k * p for k, p in point_dist(i).items()) / sum(point_dist(i).values()) for i in range(12)]
    assert [r["pred"] for r in records] == pytest.approx(expected)
    targets = [d["target"] for d in docs]
    assert aggregate("pointwise", records, "pearson") == pytest.approx(
        scipy.stats.pearsonr(targets, expected)[0]
    )
    integers = [max(point_dist(i), key=point_dist(i).get) for i in range(12)]
    assert aggregate("pointwise", records, "pearson") != pytest.approx(
        scipy.stats.pearsonr(targets, integers)[0]
    )
    assert aggregate("pointwise", records, "spearman") == pytest.approx(
        scipy.stats.spearmanr(targets, expected)[0]
    )
    assert aggregate("pointwise", records, "expected_fallbacks") == 0 and j.stats.expected_fallbacks == 0


def test_psr_brier_is_exact_and_accuracy_is_unchanged(imgs, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    rule = ProbabilityRule(lambda r: pair_dist(doc_index(r)))
    reqs, docs = pair_reqs(imgs)
    runs = {}
    with OpenAIServer(rule.responder, logprobs=rule.logprobs) as server:
        for mode in ("argmax", "expected"):
            verdicts = judge(server, tmp_path / mode, scoring=mode).judge_all(reqs)
            runs[mode] = [verdict_record(d, v, "pairwise") for d, v in zip(docs, verdicts)]
        asked = [r.json for r in server.requests]
    assert sum("top_logprobs" in b for b in asked) == len(reqs)  # every expected-mode request asked
    labels = [d["label"] for d in docs]
    p = [pair_dist(i)[1] for i in range(12)]
    want = np.mean([(1 - (q if lab == 1 else 1 - q)) ** 2 for lab, q in zip(labels, p)])
    assert aggregate("pairwise", runs["expected"], "brier") == pytest.approx(want)
    assert [r["p"] for r in runs["expected"]] == pytest.approx(p)
    assert aggregate("pairwise", runs["expected"], "accuracy") == aggregate(
        "pairwise", runs["argmax"], "accuracy"
    )
    assert math.isnan(aggregate("pairwise", runs["argmax"], "brier"))  # no probabilities: not measured


def test_a_server_without_logprobs_gives_integers_counted_as_fallbacks(imgs, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    rule = ProbabilityRule(lambda r: point_dist(doc_index(r)))
    reqs, docs = point_reqs(imgs, 6)
    with OpenAIServer(rule.responder) as server:  # answers carry "logprobs": null
        j = judge(server, tmp_path, scoring="expected")
        verdicts = j.judge_all(reqs)
    records = [verdict_record(d, v, "pointwise") for d, v in zip(docs, verdicts)]
    assert [r["pred"] for r in records] == [max(point_dist(i), key=point_dist(i).get) for i in range(6)]
    assert aggregate("pointwise", records, "expected_fallbacks") == 6 == j.stats.expected_fallbacks
    assert all("no log-probabilities" in v.meta["expected_fallback"] for v in verdicts)


def test_swap_averages_the_two_orders_probabilities(imgs, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    # p(the image shown first wins), biased to the first position, keyed by the bytes of the image shown first
    bias = {hashlib.sha256(image_bytes(k)).hexdigest(): q for k, q in enumerate((0.8, 0.45, 0.3))}
    first_image = {imgs[k]: q for k, q in enumerate((0.8, 0.45, 0.3))}

    def dist(r):
        p = bias[image_digests(r)[0]]
        return {1: p, 2: 1 - p}

    rule = ProbabilityRule(dist)
    reqs, docs = pair_reqs(imgs, 3)
    with OpenAIServer(rule.responder, logprobs=rule.logprobs) as server:
        verdicts = judge(server, tmp_path, scoring="expected", swap="true").judge_all(reqs)
    for i, v in enumerate(verdicts):
        a, b = reqs[i].candidates
        want = (first_image[a] + 1 - first_image[b]) / 2
        assert v.meta["p_first"] == pytest.approx(want)
        assert v.preferred == (1 if want > 0.5 else 2 if want < 0.5 else 0)


def test_batch_lines_ask_for_logprobs_and_give_the_same_probabilities(imgs, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    rule = ProbabilityRule(lambda r: pair_dist(doc_index(r)))
    reqs, _ = pair_reqs(imgs, 6)
    with BatchServer(rule.responder, logprobs=rule.logprobs) as server:
        base = {"base_url": server.url, "scoring": "expected"}
        batch = build_judge(
            "autorater_gpt4o", {**base, "batch": "true", "cache_dir": str(tmp_path / "b")}, progress=False
        )
        verdicts = batch.judge_all(reqs)
        assert all(b["logprobs"] is True and b["top_logprobs"] == 20 for b in server.bodies.values())
    assert [v.meta["p_first"] for v in verdicts] == pytest.approx([pair_dist(i)[1] for i in range(6)])


def test_scoring_mode_is_part_of_the_cache_key_and_samples_are_cached_per_index(imgs, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    rule = ProbabilityRule(lambda r: point_dist(doc_index(r)))
    reqs, _ = point_reqs(imgs, 4)
    with OpenAIServer(rule.responder, logprobs=rule.logprobs) as server:
        judge(server, tmp_path, scoring="argmax").judge_all(reqs)
        assert server.request_count == 4
        judge(server, tmp_path, scoring="expected").judge_all(reqs)
        assert server.request_count == 8  # not answered from the argmax answers
        j = judge(server, tmp_path, samples=3, temperature=0.7)
        verdicts = j.judge_all(reqs)
        assert server.request_count == 8 + 12
        seeds = sorted({r.json["seed"] for r in server.requests[8:]})
        assert seeds == [1234, 1235, 1236]
        judge(server, tmp_path, samples=3, temperature=0.7).judge_all(reqs)
        assert server.request_count == 20  # every sample index from the cache
    for v in verdicts:
        assert v.meta["samples"] == 3 and v.meta["score_used"] == pytest.approx(
            np.mean(v.meta["sample_scores"])
        )
        assert v.meta["usage"]["prompt_tokens"] > 0


def test_pairwise_samples_vote_with_p_the_vote_share():
    from lmms_eval_autorater.judges.judge import combine_samples
    from lmms_eval_autorater.judges.types import Verdict

    votes = [Verdict("ok", preferred=p, meta={"usage": {"prompt_tokens": 10}}) for p in (1, 2, 1)]
    v = combine_samples(votes, "pairwise")
    assert v.preferred == 1 and v.meta["p_first"] == pytest.approx(2 / 3)
    assert v.meta["usage"]["prompt_tokens"] == 30
    tied = combine_samples(votes[:2], "pairwise")
    assert tied.preferred == 0 and tied.meta["p_first"] == pytest.approx(0.5)


def test_arguments_stop_at_start_with_one_line(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    with pytest.raises(ModelArgError, match="scoring=expected needs token log-probabilities") as err:
        judge_config("autorater_gemini", {"scoring": "expected"})
    assert "\n" not in str(err.value)
    with pytest.raises(ModelArgError, match="samples=3 needs a temperature above 0"):
        judge_config("autorater_gpt4o", {"samples": "3"})
    with pytest.raises(ModelArgError, match="scoring='mean'"):
        judge_config("autorater_gpt4o", {"scoring": "mean"})
    assert judge_config("autorater_gpt4o", {"scoring": "expected"}).backend["scoring"] == "expected"
    assert judge_config("autorater_internvl", {"scoring": "expected"}).backend["output_scores"] is True


@pytest.mark.slow
def test_the_lmms_eval_cli_reports_expected_pearson_and_exact_brier(data, tmp_path):
    """Through the real lmms-eval CLI: aigiqa's Pearson is that of the expected scores (not the integers),
    psr's Brier is exact and its accuracy that of the argmax run, and a server without log-probabilities
    gives the integers counted in expected_fallbacks."""
    from tests.clitools import metric, run_cli, sha_of_ref, sha_of_url
    from tests.openai_server import image_urls

    root, docs = data
    pair_p = {}
    for i, d in enumerate(docs["psr"]):
        q = [0.85, 0.3, 0.65, 0.15][i % 4]
        pair_p[(sha_of_ref(d["image_1"]), sha_of_ref(d["image_2"]))] = q
        pair_p[(sha_of_ref(d["image_2"]), sha_of_ref(d["image_1"]))] = 1 - q
    point = {sha_of_ref(d["image_1"]): point_dist(i) for i, d in enumerate(docs["aigiqa"])}

    def dist(r):
        shas = [sha_of_url(u) for u in image_urls(r)]
        if len(shas) >= 2 and (shas[-2], shas[-1]) in pair_p:
            q = pair_p[(shas[-2], shas[-1])]
            return {1: q, 2: 1 - q}
        return point[shas[-1]]

    rule = ProbabilityRule(dist)
    env = {"AUTORATER_DATA_DIR": str(root), "OPENAI_API_KEY": "sk-test"}
    out = {}
    with OpenAIServer(rule.responder, logprobs=rule.logprobs) as server:
        for mode in ("argmax", "expected"):
            args = f"base_url={server.url},scoring={mode},concurrency=4,cache_dir={tmp_path / mode}"
            out[mode], log = run_cli(
                tmp_path, env, "--model", "autorater_gpt4o", "--model_args", args, "--tasks", "psr,aigiqa"
            )
            assert out[mode] is not None, log[-3000:]
        asked = [r.json for r in server.requests]
    assert sum(bool(b.get("logprobs")) and b.get("top_logprobs") == 20 for b in asked) == len(asked) // 2
    targets = [d["target"] for d in docs["aigiqa"]]
    exp = [sum(k * p for k, p in point_dist(i).items()) for i in range(len(targets))]
    assert metric(out["expected"], "aigiqa", "pearson") == pytest.approx(
        scipy.stats.pearsonr(targets, exp)[0]
    )
    ints = [max(point_dist(i), key=point_dist(i).get) for i in range(len(targets))]
    assert metric(out["argmax"], "aigiqa", "pearson") == pytest.approx(scipy.stats.pearsonr(targets, ints)[0])
    labels = [d["label"] for d in docs["psr"]]
    p1 = [[0.85, 0.3, 0.65, 0.15][i % 4] for i in range(len(labels))]
    want = np.mean([(1 - (q if lab == 1 else 1 - q)) ** 2 for lab, q in zip(labels, p1)])
    assert metric(out["expected"], "psr", "brier") == pytest.approx(want)
    assert metric(out["expected"], "psr", "accuracy") == metric(out["argmax"], "psr", "accuracy")
    assert metric(out["expected"], "psr", "expected_fallbacks") == 0
    with OpenAIServer(rule.responder) as bare:  # no log-probabilities in any answer
        args = f"base_url={bare.url},scoring=expected,concurrency=4,cache_dir={tmp_path / 'bare'}"
        res, log = run_cli(
            tmp_path, env, "--model", "autorater_gpt4o", "--model_args", args, "--tasks", "aigiqa"
        )
    assert res is not None, log[-3000:]
    assert metric(res, "aigiqa", "expected_fallbacks") == len(targets)
    assert metric(res, "aigiqa", "pearson") == pytest.approx(metric(out["argmax"], "aigiqa", "pearson"))
