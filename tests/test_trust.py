"""Issue 16 (items 1, 2, 4, 6, 9): what a run spent is what it paid for, secrets are never shared, the
cache cannot lie, failures end in bounded time, and ``concurrency=auto`` grows as TCP's slow start.

Through the real ``openai`` client against the local servers (``tests/openai_server.py``,
``tests/batch_server.py``); expected values are computed from the servers' own logs.
"""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

pytest.importorskip("openai")

from lmms_eval_autorater.errors import CacheError, ModelArgError  # noqa: E402
from lmms_eval_autorater.judges.backends.openai_api import OpenAIChatBackend  # noqa: E402
from lmms_eval_autorater.judges.cache import ResponseCache  # noqa: E402
from lmms_eval_autorater.judges.factory import build_judge, judge_config  # noqa: E402
from lmms_eval_autorater.judges.pipeline import api_cache_key  # noqa: E402
from lmms_eval_autorater.judges.runner import AdaptiveConcurrency, CallRunner, Ticket  # noqa: E402
from lmms_eval_autorater.judges.types import BackendError, ChatImage, ChatPrompt, Completion, JudgeRequest  # noqa: E402
from tests.batch_server import BatchServer  # noqa: E402
from tests.datafactory import image_bytes  # noqa: E402
from tests.openai_server import OpenAIServer, image_urls, prompt_text  # noqa: E402

PAIR = json.dumps({"analysis": "the first is better", "preferred": 1})
POINT = json.dumps({"analysis": "fine", "score": 7})
PRICE_IN, PRICE_OUT = 2.0, 10.0  # USD per million tokens


@pytest.fixture(autouse=True)
def no_keys(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def pair_requests(tmp_path, n: int) -> list[JudgeRequest]:
    reqs = []
    for i in range(n):
        a, b = tmp_path / f"a{i}.png", tmp_path / f"b{i}.png"
        a.write_bytes(image_bytes(2 * i))
        b.write_bytes(image_bytes(2 * i + 1))
        reqs.append(JudgeRequest(f"t/{i}", "generation", "pairwise", f"pair number {i}", (str(a), str(b))))
    return reqs


def server_usage(req: dict, text: str) -> tuple[int, int]:
    """The tokens the test server bills for one request (its documented counting: words + 85 per image)."""
    return len(prompt_text(req).split()) + 85 * len(image_urls(req)), max(1, len(text) // 4)


def args(server: OpenAIServer, tmp_path, **extra) -> dict:
    return {
        "base_url": server.url,
        "model": "judge-x",
        "cache_dir": str(tmp_path / "cache"),
        "backoff_base": 0.01,
        **extra,
    }


# -- item 1: spend ---------------------------------------------------------------------------------------
def test_swap_after_a_plain_run_reports_exactly_the_reverse_orders_it_paid_for(tmp_path):
    reqs = pair_requests(tmp_path, 6)
    prices = {"price_in": PRICE_IN, "price_out": PRICE_OUT}
    with OpenAIServer(lambda req: PAIR) as server:
        build_judge(
            judge_config("autorater_openai", args(server, tmp_path, **prices)), progress=False
        ).judge_all(reqs)
        first = server.request_count
        swapped = build_judge(
            judge_config("autorater_openai", args(server, tmp_path, swap=True, **prices)), progress=False
        ).judge_all(reqs)
        reverse = server.requests[first:]
    assert first == 6 and len(reverse) == 6
    paid = [server_usage(r.json, PAIR) for r in reverse]
    want_prompt = sum(p for p, _ in paid)
    want_usd = sum(p * PRICE_IN + c * PRICE_OUT for p, c in paid) / 1e6
    assert all(v.meta["cached"] is False for v in swapped)  # the reverse order was paid in this run
    assert sum(v.meta["usage"]["prompt_tokens"] for v in swapped) == want_prompt
    assert sum(v.meta["usage"]["cost_usd"] for v in swapped) == pytest.approx(want_usd)
    assert all([o["cached"] for o in v.meta["orders"]] == [True, False] for v in swapped)


def test_swap_with_an_unknown_price_reports_null_not_zero(tmp_path):
    reqs = pair_requests(tmp_path, 3)
    with OpenAIServer(lambda req: PAIR) as server:
        out = build_judge(
            judge_config("autorater_openai", args(server, tmp_path, swap=True)), progress=False
        ).judge_all(reqs)
    assert [v.meta["usage"]["cost_usd"] for v in out] == [None, None, None]
    assert all(v.meta["usage"]["prompt_tokens"] > 0 for v in out)


def test_an_answer_without_usage_is_unknown_and_the_budget_charges_its_reservation(tmp_path, caplog):
    reqs = pair_requests(tmp_path, 4)
    with OpenAIServer(lambda req: PAIR, usage="none") as server:
        judge = build_judge(
            judge_config(
                "autorater_openai",
                args(
                    server, tmp_path, price_in=PRICE_IN, price_out=PRICE_OUT, max_cost_usd=10, max_tokens=64
                ),
            ),
            progress=False,
        )
        out = judge.judge_all(reqs)
    assert [v.status for v in out] == ["ok"] * 4
    assert [v.meta["usage"]["cost_usd"] for v in out] == [None] * 4
    stats = judge.completer.stats()
    assert stats["usage_missing"] == 4 and stats["spent_usd"] > 0  # never 0: each reservation charged
    assert sum("without a usage field" in r.getMessage() for r in caplog.records) == 1


def test_gemini_thinking_tokens_are_priced_as_output(tmp_path):
    with OpenAIServer(lambda req: POINT, usage="thinking:500") as server:
        backend = OpenAIChatBackend("judge-x", server.url, None, price_per_mtok_in=0, price_per_mtok_out=1e6)
        c = backend.call(ChatPrompt("s", ("rate this",)))
    visible = max(1, len(POINT) // 4)
    assert c.usage["completion_tokens"] == visible + 500 and c.usage["reasoning_tokens"] == 500
    assert backend.cost_usd(c.usage) == pytest.approx(visible + 500)


# -- item 2: secrets -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url", ["http://user:hunter2pass@127.0.0.1:9/v1", "http://127.0.0.1:9/v1?key=hunter2pass"]
)
def test_credentials_in_base_url_are_refused_in_one_line(tmp_path, url):
    with pytest.raises(ModelArgError) as err:
        build_judge(judge_config("autorater_openai", {"base_url": url, "model": "m"}), progress=False)
    text = str(err.value)
    assert "\n" not in text and "base_url" in text and "api_key_env=" in text and "hunter2pass" not in text


def test_every_writer_uses_the_one_redaction_rule():
    from lmms_eval_autorater.generations import score
    from lmms_eval_autorater.redact import public_model_args, redact_text
    from lmms_eval_autorater.reports import submission

    planted = {
        "base_url": "http://u:PLANTED@h/v1?api_key=PLANTED&x=1",
        "api_key": "PLANTED",
        "hf_token": "PLANTED",
        "api_key_env": "MY_KEY",
        "max_tokens": "64",
    }
    for fn in (public_model_args, submission.public_model_args, score.public_model_args):
        shown = fn(planted)
        assert "PLANTED" not in json.dumps(shown)
        assert shown["api_key_env"] == "MY_KEY" and str(shown["max_tokens"]) == "64"
        assert shown["base_url"].startswith("http://h/v1?")
    assert "PLANTED" not in redact_text("404 at endpoint http://u:PLANTED@h/v1 (see logs)")


# -- item 4: the cache cannot lie ------------------------------------------------------------------------
def test_flipped_cache_entries_are_re_asked_and_the_verdicts_are_exact(tmp_path):
    reqs = pair_requests(tmp_path, 8)
    with OpenAIServer(lambda req: PAIR) as server:
        first = build_judge(
            judge_config("autorater_openai", args(server, tmp_path)), progress=False
        ).judge_all(reqs)
        db = tmp_path / "cache" / "responses.sqlite"
        con = sqlite3.connect(db)
        rows = con.execute("SELECT key, value FROM responses").fetchall()
        flipped = rows[:3]
        for key, value in flipped:
            v = json.loads(value)
            v["text"] = v["text"].replace('"preferred": 1', '"preferred": 2')
            con.execute("UPDATE responses SET value=? WHERE key=?", (json.dumps(v), key))
        con.commit()
        con.close()
        before = server.request_count
        judge = build_judge(judge_config("autorater_openai", args(server, tmp_path)), progress=False)
        again = judge.judge_all(reqs)
        asked = server.request_count - before
    assert asked == len(flipped)
    assert [v.preferred for v in again] == [v.preferred for v in first] == [1] * 8
    assert judge.completer.stats()["cache_rejected"] == len(flipped)


def test_a_damaged_cache_file_is_named_with_the_remedy(tmp_path):
    bad = tmp_path / "responses.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CacheError) as err:
        ResponseCache(bad)
    assert str(bad) in str(err.value) and "delete" in str(err.value)


def test_the_same_model_name_on_another_server_is_another_cache_entry():
    prompt = ChatPrompt("s", ("x",))
    a = OpenAIChatBackend("m", "http://127.0.0.1:8000/v1", None, provider="openai-compatible")
    b = OpenAIChatBackend("m", "http://127.0.0.1:8001/v1", None, provider="openai-compatible")
    assert api_cache_key(a, prompt) != api_cache_key(b, prompt)
    g1 = OpenAIChatBackend("gpt-4o-2024-08-06", "http://proxy-a/v1", None)
    g2 = OpenAIChatBackend("gpt-4o-2024-08-06", None, None)
    assert api_cache_key(g1, prompt) == api_cache_key(g2, prompt)


# -- item 6: bounded failures ----------------------------------------------------------------------------
def make_prompts(n: int) -> list[ChatPrompt]:
    return [ChatPrompt("judge", (f"doc-{i:03d} rate it", ChatImage(image_bytes(i)))) for i in range(n)]


def test_a_request_that_always_fails_is_given_up_after_five_attempts(tmp_path):
    n = 40
    bad = {f"doc-{i:03d} " for i in range(0, n, 10)}  # 10% of the bodies fail on every attempt
    with OpenAIServer(lambda req: POINT) as server:
        server.outage(list(bad), status=500)
        backend = OpenAIChatBackend("judge-x", server.url, None)
        runner = CallRunner(
            backend.call, cache=None, backoff_base=0.02, progress=False, retry_budget=600.0, rng_seed=0
        )
        start = time.monotonic()
        out = runner.run([(str(i), p) for i, p in enumerate(make_prompts(n))])
        took = time.monotonic() - start
        attempts = {b: sum(b in prompt_text(r.json) for r in server.requests) for b in bad}
    failed = {i for i, r in enumerate(out) if isinstance(r, BackendError)}
    assert failed == set(range(0, n, 10))
    assert all(isinstance(out[i], Completion) for i in set(range(n)) - failed)
    assert attempts == {b: 5 for b in bad}
    assert runner.gate_stats()["persistent_failures"] == 4 and runner.stats()["final_round"] == 0
    assert took < 60


def test_a_global_outage_keeps_the_long_retry_budget(tmp_path):
    with OpenAIServer(lambda req: POINT) as server:
        server.outage(None, status=500)
        backend = OpenAIChatBackend("judge-x", server.url, None)
        runner = CallRunner(
            backend.call,
            cache=None,
            backoff_base=0.01,
            backoff_max=0.02,
            progress=False,
            retry_budget=1.0,
            final_round=False,
        )
        out = runner.run([(str(i), p) for i, p in enumerate(make_prompts(3))])
    assert all(isinstance(r, BackendError) for r in out)
    assert server.request_count > 3 * 5  # nobody was answered: weather, not the request's fault


def test_batches_that_keep_expiring_while_answering_half_lose_no_line(tmp_path):
    with BatchServer() as server:
        backend = OpenAIChatBackend("gpt-4o-2024-08-06", server.url, None)
        from lmms_eval_autorater.judges.batch import build_batch_completer

        c = build_batch_completer(
            backend,
            cache=ResponseCache(tmp_path / "responses.sqlite"),
            ledger_path=tmp_path / "batches.sqlite",
            progress=False,
            poll_interval=0.001,
            poll_max=0.005,
        )
        n = 32
        for left in (32, 16, 8, 4):  # four expiring batches in a row, each answering half of its lines
            server.end_next_batch("expired", answered=left // 2)
        out = c(make_prompts(n))
    assert all(isinstance(r, Completion) and r.text for r in out)
    assert server.batch_count == 5 and c.stats()["failures"] == 0


# -- item 9: slow start ----------------------------------------------------------------------------------
def test_slow_start_doubles_per_round_until_the_first_sign_of_pressure():
    ctl = AdaptiveConcurrency(8, ceiling=64)

    def answer():
        ctl.on_success(Ticket(ctl.epoch, ctl.limit, ctl.limit, True, 0.0, 0, 0.0), now=0.0)

    for _ in range(8):
        answer()
    assert ctl.limit == 16
    for _ in range(16):
        answer()
    assert ctl.limit == 32
    ctl.on_congestion(Ticket(ctl.epoch, 32, 32, True, 0.0, 0, 0.0), now=1.0, why="429")
    assert ctl.limit == 16 and ctl.cap == 31 and not ctl.slow_start
