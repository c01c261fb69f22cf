"""``max_cost_usd``: the runner stops starting requests once spent + in flight would pass the budget;
the docs not judged are ``budget_skipped`` (neither answers nor failures), counted in every summary;
a rerun with a larger budget asks only for the missing answers; an unknown price is an error first.

Through the real ``openai`` client and the local server (``tests/openai_server.py``).
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("openai")

from lmms_eval_autorater.judges.args import ModelArgError  # noqa: E402
from lmms_eval_autorater.judges.factory import build_judge, judge_config  # noqa: E402
from lmms_eval_autorater.judges.judge import Judge  # noqa: E402
from lmms_eval_autorater.judges.runner import CallRunner, conservative_prompt_tokens  # noqa: E402
from lmms_eval_autorater.judges.types import BudgetSkippedError, ChatImage, ChatPrompt, JudgeRequest  # noqa: E402
from lmms_eval_autorater.metrics.summary import summarize_pointwise  # noqa: E402
from lmms_eval_autorater.tasks.common import COUNT_METRICS, pointwise_aggregation, verdict_record  # noqa: E402
from tests.datafactory import image_bytes  # noqa: E402
from tests.openai_server import OpenAIServer  # noqa: E402

#: 33 characters: the server counts len // 4 = 8 completion tokens, exactly max_tokens below, so the
#: budget's reservation (max_tokens at the output price; the input price is 0) equals what is paid
ANSWER = json.dumps({"analysis": "fine", "score": 7})
MAX_TOKENS = 8
PRICE_OUT = 1000.0  # USD per million tokens: one answer costs 8 * 1000 / 1e6 = $0.008
PER_ANSWER = MAX_TOKENS * PRICE_OUT / 1e6


@pytest.fixture(autouse=True)
def no_openai_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture
def requests(tmp_path) -> list[JudgeRequest]:
    reqs = []
    for i in range(12):
        path = tmp_path / f"img{i}.png"
        path.write_bytes(image_bytes(i))
        reqs.append(JudgeRequest(f"t/{i}", "generation", "pointwise", f"a picture {i}", (str(path),)))
    return reqs


def judge_args(server: OpenAIServer, tmp_path, **extra) -> dict:
    return {
        "base_url": server.url,
        "model": "judge-1",
        "cache_dir": str(tmp_path / "cache"),
        "max_tokens": MAX_TOKENS,
        "price_in": 0,
        "price_out": PRICE_OUT,
        "backoff_base": 0.01,
        **extra,
    }


def docs_of(reqs: list[JudgeRequest]) -> list[dict]:
    return [{"doc_id": r.doc_key, "group": r.request, "target": 5.0} for r in reqs]


def test_a_budget_that_stops_mid_run_skips_exactly_the_rest_and_a_rerun_pays_only_for_them(
    tmp_path, requests
):
    budget = 5.5 * PER_ANSWER  # room for exactly 5 answers
    with OpenAIServer(lambda req: ANSWER, latency=0.02) as server:
        judge = build_judge(
            "autorater_openai", judge_args(server, tmp_path, max_cost_usd=budget), progress=False
        )
        verdicts = judge.judge_all(requests)
        assert server.request_count == 5
        statuses = [v.status for v in verdicts]
        assert statuses.count("ok") == 5 and statuses.count("budget_skipped") == 7
        assert (judge.stats.budget_skipped, judge.stats.api_failures, judge.stats.parse_failures) == (7, 0, 0)
        skipped = next(v for v in verdicts if v.status == "budget_skipped")
        assert "max_cost_usd" in skipped.error and skipped.score is None
        stats = judge.completer.stats()
        assert stats["failures"] == 0 and stats["budget_skipped"] == 7
        assert stats["spent_usd"] == pytest.approx(5 * PER_ANSWER) and stats["spent_usd"] <= budget

        # every task's results count them apart: neither scored nor failed
        records = [verdict_record(d, v, "pointwise") for d, v in zip(docs_of(requests), verdicts)]
        assert "budget_skipped" in COUNT_METRICS
        assert pointwise_aggregation("budget_skipped")(records) == 7
        summary = summarize_pointwise(records, n_resamples=0)
        assert (summary["n_scored"], summary["budget_skipped"], summary["api_failures"]) == (5, 7, 0)
        assert pointwise_aggregation("cost_usd")(records) == pytest.approx(5 * PER_ANSWER)

        # a larger budget continues from the response cache: only the 7 missing calls are made
        again = build_judge(
            "autorater_openai", judge_args(server, tmp_path, max_cost_usd=1.0), progress=False
        )
        rerun = again.judge_all(requests)
        assert server.request_count == 5 + 7
        assert [v.status for v in rerun] == ["ok"] * 12
        assert sum(v.meta["cached"] for v in rerun) == 5
        assert again.completer.stats()["spent_usd"] == pytest.approx(7 * PER_ANSWER)


def test_the_conservative_reservation_never_lets_spending_pass_the_budget(tmp_path, requests):
    """Real-size prompts, a price on input tokens, auto concurrency: what is paid stays within the budget."""
    with OpenAIServer(lambda req: ANSWER, latency=0.02) as server:
        free = build_judge(
            "autorater_openai", judge_args(server, tmp_path / "a", price_in=1000.0), progress=False
        )
        free.judge_all(requests[:1])
        per_answer = free.completer.stats()["prompt_tokens"] * 1000.0 / 1e6 + PER_ANSWER
        budget = 8 * per_answer
        judge = build_judge(
            "autorater_openai",
            judge_args(server, tmp_path / "b", price_in=1000.0, max_cost_usd=budget),
            progress=False,
        )
        verdicts = judge.judge_all(requests)
    statuses = [v.status for v in verdicts]
    answered = statuses.count("ok")
    assert 0 < answered < 12 and statuses.count("budget_skipped") == 12 - answered
    spent = sum(v.meta["usage"]["cost_usd"] for v in verdicts if v.status == "ok")
    assert spent <= budget and judge.completer.stats()["spent_usd"] == pytest.approx(spent)


def test_the_reservation_bounds_the_prompt_from_above(requests):
    prompt = ChatPrompt(system="é" * 10, parts=("ab cd", ChatImage(image_bytes(0, size=600))))
    # 16 framing + 20 bytes of system text + 5 of text + 85 + 258 per 512-px tile of the 600x600 image
    assert conservative_prompt_tokens(prompt) == 16 + 20 + 5 + 85 + 258 * 4
    unreadable = ChatPrompt(system="", parts=(ChatImage(b"not an image"),))
    assert conservative_prompt_tokens(unreadable) == 16 + 85 + 258 * 16


def test_unknown_price_with_a_budget_is_an_error_before_anything_is_sent(tmp_path):
    with OpenAIServer() as server:
        args = {"base_url": server.url, "model": "judge-unpriced", "max_cost_usd": "2"}
        with pytest.raises(ModelArgError, match=r"judge-unpriced.*price_in= and price_out="):
            judge_config("autorater_openai", args)
        with pytest.raises(ModelArgError, match="price_in= and price_out="):
            build_judge("autorater_openai", {**args, "price_in": "1"})  # one price is not enough
        with pytest.raises(ModelArgError, match="max_cost_usd='-1': must be >= 0"):
            judge_config("autorater_openai", {**args, "price_in": 1, "price_out": 1, "max_cost_usd": "-1"})
        # a listed model needs no price arguments
        assert judge_config("autorater_gpt4o", {"max_cost_usd": "2"}).runner["max_cost_usd"] == 2.0
        assert server.request_count == 0
    with pytest.raises(ValueError, match="cost_fn"):
        CallRunner(lambda p: None, cache=None, max_cost_usd=1.0)


def test_cached_answers_cost_nothing_against_the_budget(tmp_path, requests):
    with OpenAIServer(lambda req: ANSWER) as server:
        build_judge("autorater_openai", judge_args(server, tmp_path), progress=False).judge_all(requests)
        assert server.request_count == 12
        # a zero budget: every answer is cached, so nothing is skipped and nothing is sent
        judge = build_judge("autorater_openai", judge_args(server, tmp_path, max_cost_usd=0), progress=False)
        assert [v.status for v in judge.judge_all(requests)] == ["ok"] * 12
        assert server.request_count == 12 and judge.completer.stats()["spent_usd"] == 0


def test_a_budget_skip_in_the_auto_pass_makes_the_doc_budget_skipped(requests):
    """tools=auto: a selection prompt that was not sent leaves its doc ``budget_skipped``, not a failure."""

    def complete_all(prompts):
        return [BudgetSkippedError("not sent: max_cost_usd=0 reached") for _ in prompts]

    judge = Judge(
        complete_all,
        tools="auto",
        assess=lambda code, reqs: [() for _ in reqs],
        render=lambda a, n: "",
        applicable=lambda kind: ["GD", "QS"],
        tool_menu=lambda codes: "menu",
    )
    verdicts = judge.judge_all(requests[:3])
    assert [v.status for v in verdicts] == ["budget_skipped"] * 3
    assert (judge.stats.budget_skipped, judge.stats.api_failures) == (3, 0)
