"""``concurrency=auto`` (the default): AIMD on the number of requests in flight, rate-limit headers,
the progress bar; an explicit integer pins it. Through the real ``openai`` client and the local
server (``tests/openai_server.py``) with a concurrency limit (429 above N in flight), rate-limit
headers and a fixed latency; the controller's rules also on their own, with hand-made tickets.
"""

from __future__ import annotations

import time

import pytest

pytest.importorskip("openai")

from lmms_eval_autorater.judges.backends.openai_api import OpenAIChatBackend  # noqa: E402
from lmms_eval_autorater.judges.factory import judge_config  # noqa: E402
from lmms_eval_autorater.judges.runner import (  # noqa: E402
    AUTO_CEILING,
    AUTO_START,
    AdaptiveConcurrency,
    CallRunner,
    RateLimits,
    Ticket,
    parse_duration,
)
from lmms_eval_autorater.judges.types import BackendError, ChatPrompt, Completion  # noqa: E402
from tests.openai_server import Fault, OpenAIServer  # noqa: E402

#: what the server may see above N after warm-up: a probe above the learned cap admits one more
SLACK = 1


@pytest.fixture(autouse=True)
def no_openai_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def prompts(n: int) -> list[tuple[str, ChatPrompt]]:
    return [(f"k{i}", ChatPrompt(system="judge", parts=(f"Rate doc {i}.",))) for i in range(n)]


def runner_for(server: OpenAIServer, **kw) -> CallRunner:
    backend = OpenAIChatBackend("gpt-4o", base_url=server.url, api_key_env=None, timeout=5.0)
    kw.setdefault("backoff_base", 0.02)
    kw.setdefault("rng_seed", 0)
    kw.setdefault("progress", False)
    return CallRunner(backend.call, cache=None, **kw)


def test_auto_converges_at_or_below_a_servers_concurrency_limit_and_loses_no_doc():
    n_limit, n = 4, 80
    with OpenAIServer(latency=0.05, max_concurrent=n_limit) as server:
        runner = runner_for(server)
        assert runner.concurrency == "auto" and runner.current_concurrency == AUTO_START > n_limit
        out = runner.run(prompts(n))
        warm = server.requests[n // 2].time  # warm-up: the first half of the requests
        rejected = [r for r in server.requests if r.fault == "concurrency:429"]
    assert all(isinstance(r, Completion) and r.text for r in out)  # no doc lost
    assert rejected, "the server never refused: the test does not exercise the back-off"
    assert runner.current_concurrency <= n_limit
    assert server.admitted_in_flight(after=warm) <= n_limit + SLACK
    gate = runner.gate_stats()
    assert gate["concurrency_backoffs"] >= 1 and gate["concurrency_peak"] >= AUTO_START
    assert runner.failures == 0 and runner.retries == len(rejected)


def test_auto_grows_past_its_start_on_a_latency_bound_server():
    with OpenAIServer(latency=0.15) as server:
        runner = runner_for(server)
        out = runner.run(prompts(160))
    assert all(isinstance(r, Completion) for r in out)
    # the controller doubles to its ceiling; the server sees more than the start in flight (threads on a
    # loaded 2-core machine do not all reach it at once)
    assert runner.controller.peak == AUTO_CEILING == 2 * AUTO_START and server.max_in_flight > AUTO_START
    assert runner.gate_stats()["concurrency_backoffs"] == 0


def test_an_explicit_integer_pins_the_concurrency_through_429s():
    with OpenAIServer(latency=0.02) as server:
        server.inject(Fault.rate_limit(retry_after=None), times=4)
        runner = runner_for(server, concurrency=3)
        out = runner.run(prompts(30))
    assert all(isinstance(r, Completion) for r in out)
    assert server.max_in_flight <= 3 and runner.current_concurrency == 3
    assert runner.gate_stats()["concurrency"] == 3 and runner.gate_stats()["concurrency_backoffs"] == 0


def test_rate_limit_headers_hold_requests_until_the_window_resets():
    window = 0.5
    with OpenAIServer(rate_limit_requests=10, rate_limit_window=window) as server:
        runner = runner_for(server)
        start = time.monotonic()
        out = runner.run(prompts(24))
        wall = time.monotonic() - start
        refused = server.fault_counts().get("ratelimit:429", 0)
    assert all(isinstance(r, Completion) for r in out)
    # 24 requests at 10 per window span three windows (the first one began with the server, so only the
    # second is surely whole); the headers said when each ended, and no request was refused
    assert refused == 0 and wall >= window
    assert runner.gate_stats()["rate_limit_wait_s"] > 0


def test_the_backend_surfaces_response_headers_on_answers_and_on_errors():
    with OpenAIServer(rate_limit_requests=2, rate_limit_window=30.0) as server:
        backend = OpenAIChatBackend("gpt-4o", base_url=server.url, api_key_env=None, timeout=5.0)
        prompt = prompts(1)[0][1]
        first = backend.call(prompt)
        assert first.headers["x-ratelimit-remaining-requests"] == "1"
        assert RateLimits.from_headers(first.headers).remaining_requests == 1
        backend.call(prompt)
        with pytest.raises(BackendError) as err:
            backend.call(prompt)
    assert err.value.status == 429 and err.value.retryable
    limits = RateLimits.from_headers(err.value.headers)
    assert limits.remaining_requests == 0 and 0 < limits.reset_requests <= 30.0
    assert RateLimits.from_headers({"content-type": "application/json"}) is None


def test_reset_durations_parse_as_openai_writes_them():
    assert (
        parse_duration("6m0s") == 360.0 and parse_duration("1.5s") == 1.5 and parse_duration("20ms") == 0.02
    )
    assert parse_duration("1h2m3s") == 3723.0 and parse_duration("2") == 2.0
    assert parse_duration("soon") is None and parse_duration(None) is None


def test_the_progress_bar_shows_the_current_concurrency(capsys):
    with OpenAIServer() as server:
        runner_for(server, progress=True).run(prompts(3))
    assert "conc=" in capsys.readouterr().err


def test_the_factory_defaults_to_auto_and_pins_integers():
    base = {"base_url": "http://127.0.0.1:1/v1", "model": "m"}
    assert judge_config("autorater_openai", base).runner["concurrency"] == "auto"
    assert judge_config("autorater_openai", {**base, "concurrency": "AUTO"}).runner["concurrency"] == "auto"
    assert judge_config("autorater_openai", {**base, "concurrency": "12"}).runner["concurrency"] == 12


def ticket(ctl: AdaptiveConcurrency, active: int, saturated: bool = True, started: float = 0.0) -> Ticket:
    return Ticket(ctl.epoch, active, ctl.limit, saturated, 0.0, 0, started)


def test_aimd_rules_on_hand_made_tickets():
    # the AIMD rules at a slow-start growth of +0.5 per answer (the default, TCP's +1, is tested below)
    ctl = AdaptiveConcurrency(8, ceiling=64, probe_after=10.0, growth=0.5)
    # slow start: +0.5 per answer that found the limit binding; answers that did not, change nothing
    for _ in range(4):
        ctl.on_success(ticket(ctl, ctl.limit), now=1.0)
    assert ctl.limit == 10
    ctl.on_success(ticket(ctl, 2, saturated=False), now=1.0)
    assert ctl.limit == 10
    # a 429: halve once, learn the cap; a second 429 of the same round does not halve again
    old = ticket(ctl, 10)
    ctl.on_congestion(ticket(ctl, 10), now=2.0, why="429")
    assert (ctl.limit, ctl.cap, ctl.decreases) == (5, 9, 1)
    ctl.on_congestion(old, now=2.0, why="429")
    assert (ctl.limit, ctl.decreases) == (5, 1)
    # fast recovery up to the cap, then hold
    for _ in range(20):
        ctl.on_success(ticket(ctl, ctl.limit), now=3.0)
    assert ctl.limit == 9
    # refused at the cap: the cap comes down (10%, at least one), no halving
    ctl.on_congestion(ticket(ctl, 9), now=4.0, why="429")
    assert (ctl.limit, ctl.cap) == (8, 8)
    # after probe_after seconds at the cap without trouble, one more is tried; a round there raises the cap
    for t in (5.0, 16.0):
        ctl.on_success(ticket(ctl, ctl.limit), now=t)
    assert ctl.limit == 9
    for _ in range(9):
        ctl.on_success(ticket(ctl, ctl.limit), now=17.0)
    assert ctl.cap == 9
    # never below the floor, never above the ceiling; a pinned one never moves
    for _ in range(10):
        ctl.on_congestion(ticket(ctl, 1), now=20.0, why="timeout")
    assert ctl.limit == 1
    pinned = AdaptiveConcurrency(fixed=4)
    pinned.on_congestion(ticket(pinned, 4), now=0.0, why="429")
    pinned.on_success(ticket(pinned, 4), now=0.0)
    assert pinned.limit == 4 and not pinned.adaptive


def test_a_latency_plateau_stops_the_growth():
    """More in flight but each answer slower in proportion: throughput no longer grows, so neither does the limit."""
    ctl = AdaptiveConcurrency(8, ceiling=64)
    for i in range(200):
        latency = 0.1 * max(1.0, ctl.limit / 16)  # a server that serves 16 at a time
        ctl.on_success(ticket(ctl, ctl.limit, started=i - latency), now=float(i))
    assert ctl.plateaus == 1 and ctl.cap is not None and 32 <= ctl.limit <= 40
    # a new batch (Auto's second pass answers at other lengths): the plateau's hold is lifted, a 429's is not
    ctl.new_run()
    assert ctl.cap is None
    ctl.on_congestion(ticket(ctl, ctl.limit), now=300.0, why="429")
    ctl.new_run()
    assert ctl.cap is not None
