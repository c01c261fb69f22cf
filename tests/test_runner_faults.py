"""The retry policy of ``CallRunner`` under realistic fault storms: a time budget per request instead
of a retry count, ``Retry-After``, a final round for prompts that ran out, and bugs that propagate.

Everything goes through the real ``openai`` client and the real local server
(``tests/openai_server.py``): seeded random 5xx/429 storms, outages aimed at named docs, scripted
faults. Budget arithmetic is also checked exactly on a fake clock.
"""

from __future__ import annotations

import logging
import random
import threading
import time

import pytest

pytest.importorskip("openai")

from lmms_eval_autorater.judges.backends.openai_api import OpenAIChatBackend  # noqa: E402
from lmms_eval_autorater.judges.cache import ResponseCache  # noqa: E402
from lmms_eval_autorater.judges.judge import Judge  # noqa: E402
from lmms_eval_autorater.judges.pipeline import ApiCompleter  # noqa: E402
from lmms_eval_autorater.judges.runner import PERSISTENT_AFTER, CallRunner  # noqa: E402
from lmms_eval_autorater.judges.types import BackendError, ChatImage, ChatPrompt, Completion, JudgeRequest  # noqa: E402
from tests.datafactory import image_bytes  # noqa: E402
from tests.openai_server import (  # noqa: E402
    Fault,
    OpenAIServer,
    body_digest,
    image_match,
    prompt_text,
    seeded_fault_status,
)

SECRET = "sk-test-SECRET-server-key-42"
STORM = {500: 0.3, 429: 0.1}  # the user report: 30% HTTP 500, 10% HTTP 429 with Retry-After 1 s
SCHEMA = {
    "type": "object",
    "properties": {"analysis": {"type": "string"}, "score": {"type": "integer", "minimum": 1, "maximum": 10}},
    "required": ["analysis", "score"],
    "additionalProperties": False,
}
RUNNER_LOG = "lmms_eval_autorater.judges.runner"


@pytest.fixture(autouse=True)
def no_openai_key(monkeypatch):
    """api_key_env=None picks up $OPENAI_API_KEY: keep the developer's real key out of these tests."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def backend_for(srv: OpenAIServer, **kw) -> OpenAIChatBackend:
    kw.setdefault("timeout", 5.0)
    return OpenAIChatBackend("gpt-4o", base_url=srv.url, api_key_env=None, **kw)


def make_prompt(i: int) -> ChatPrompt:
    image = f"image-of-doc-{i}".encode()
    return ChatPrompt(
        system="You are a strict judge.",
        parts=(f"Rate doc {i}.", "Image:", ChatImage(image, "image/png"), "Answer in JSON."),
        json_schema=SCHEMA,
    )


def keyed(backend: OpenAIChatBackend, prompts: list[ChatPrompt]) -> list[tuple[str, ChatPrompt]]:
    gp = backend.gen_params()
    return [(ResponseCache.key(backend.name, backend.model, "t1", p, gp), p) for p in prompts]


def leading_faults(backend: OpenAIChatBackend, prompt: ChatPrompt, seed: int, rates=STORM) -> list[int]:
    """The statuses the seeded server gives this prompt's 1st, 2nd, ... request before answering it."""
    digest = body_digest(backend.request_kwargs(prompt))
    out: list[int] = []
    while (status := seeded_fault_status(rates, seed, digest, len(out))) is not None:
        out.append(status)
    return out


def texts(results) -> list[str]:
    return [r.text if isinstance(r, Completion) else f"ERROR {r}" for r in results]


class FakeTime:
    """A monotonic clock that only moves when the runner sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        if self.now > 1e5:  # a runaway retry loop: fail (a non-BackendError propagates), never hang
            raise AssertionError(f"still retrying after {self.now:g} fake seconds")


class Snapshot(logging.Handler):
    """Records the server's request count at the moment the final round is announced."""

    def __init__(self, server: OpenAIServer) -> None:
        super().__init__(logging.DEBUG)
        self.server = server
        self.at: list[int] = []
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if msg.startswith("final round"):
            self.messages.append(msg)
            if "asking" in msg:
                self.at.append(self.server.request_count)


# -- the user report: a storm of 500s and 429s ---------------------------------------------------


def test_default_policy_answers_every_prompt_of_a_seeded_storm():
    n, seed = 60, 5  # 52 faults, the longest run 4 in a row (429, 429, 500, 429): waits <= 15 s
    prompts = [make_prompt(i) for i in range(n)]
    with OpenAIServer() as calm:
        backend = backend_for(calm)
        clean = CallRunner(backend.call, cache=None, concurrency=16, progress=False).run(
            keyed(backend, prompts)
        )
    assert all(isinstance(r, Completion) and r.text for r in clean)

    with OpenAIServer(fault_rates=STORM, fault_seed=seed, retry_after="1") as srv:
        backend = backend_for(srv)
        plan = [leading_faults(backend, p, seed) for p in prompts]
        runner = CallRunner(backend.call, cache=None, concurrency=16, progress=False, rng_seed=0)
        assert (runner.max_retries, runner.retry_budget, runner.backoff_base, runner.final_round) == (
            None,
            600.0,
            1.0,
            True,
        )  # the defaults are the policy under test
        t0 = time.monotonic()
        out = runner.run(keyed(backend, prompts))
        wall = time.monotonic() - t0
        counts = srv.fault_counts()
        seen = {body_digest(r.json) for r in srv.requests}
    print(f"\nseeded storm: {n} prompts, {sum(map(len, plan))} faults, wall {wall:.1f}s")

    assert texts(out) == texts(clean)  # every prompt answered, and with the fault-free answer
    n_faults = sum(len(p) for p in plan)
    assert counts == {
        "random:500": sum(p.count(500) for p in plan),
        "random:429": sum(p.count(429) for p in plan),
    }
    assert counts["random:429"] > 0 and counts["random:500"] > 0 and max(map(len, plan)) == 4
    assert seen == {body_digest(backend.request_kwargs(p)) for p in prompts}  # the client sends what we hash
    stats = runner.stats()
    assert stats["failures"] == 0 and stats["final_round"] == 0 and stats["final_round_recovered"] == 0
    assert stats["retries"] == n_faults and stats["calls_made"] == n + n_faults
    assert wall < 60, wall


def test_the_storm_that_beat_six_retries_is_answered():
    """Seed 31 gives one prompt 7 faults in a row: a 6-retry count gives up on it (the reported
    failure); the final round, or the time budget, answers it."""
    n, seed = 60, 31
    prompts = [make_prompt(i) for i in range(n)]
    fast = dict(concurrency=16, backoff_base=0.01, backoff_max=0.05, rng_seed=0, progress=False)
    with OpenAIServer(fault_rates=STORM, fault_seed=seed, retry_after="1") as srv:
        backend = backend_for(srv)
        plan = [leading_faults(backend, p, seed) for p in prompts]
        unlucky = [i for i, p in enumerate(plan) if len(p) > 6]
        assert len(unlucky) == 1 and len(plan[unlucky[0]]) == 7

        old = CallRunner(backend.call, cache=None, max_retries=6, final_round=False, **fast)
        out = old.run(keyed(backend, prompts))
        assert [i for i, r in enumerate(out) if isinstance(r, BackendError)] == unlucky
        assert out[unlucky[0]].retryable and out[unlucky[0]].status == plan[unlucky[0]][-1]
        assert old.failures == 1 and srv.request_count == sum(min(len(p) + 1, 7) for p in plan)

        srv.reset()  # the same requests draw the same faults again
        counted = CallRunner(backend.call, cache=None, max_retries=6, **fast)
        out = counted.run(keyed(backend, prompts))
        assert all(isinstance(r, Completion) for r in out)
        assert counted.stats()["final_round"] == 1 and counted.stats()["final_round_recovered"] == 1
        assert counted.failures == 0 and srv.request_count == sum(len(p) + 1 for p in plan)

        srv.reset()
        budget = CallRunner(backend.call, cache=None, **fast)  # max_retries=None: only the 600 s budget
        out = budget.run(keyed(backend, prompts))
        assert all(isinstance(r, Completion) for r in out)
        assert budget.stats()["final_round"] == 0 and budget.failures == 0
        assert budget.retries == sum(len(p) for p in plan)


def test_seeded_faults_do_not_depend_on_thread_timing():
    prompts = [make_prompt(i) for i in range(30)]
    seqs = []
    with OpenAIServer(fault_rates={500: 0.3, 503: 0.1}, fault_seed=11, latency=0.01) as srv:
        backend = backend_for(srv)
        for conc in (1, 16):
            srv.reset()
            runner = CallRunner(
                backend.call, cache=None, concurrency=conc, backoff_base=0.001, progress=False
            )
            assert all(isinstance(r, Completion) for r in runner.run(keyed(backend, prompts)))
            per_body: dict[str, list] = {}
            for r in srv.requests:
                per_body.setdefault(body_digest(r.json), []).append(r.fault)
            seqs.append(per_body)
    assert seqs[0] == seqs[1]
    expected = {
        body_digest(backend.request_kwargs(p)): [
            f"random:{s}" for s in leading_faults(backend, p, 11, {500: 0.3, 503: 0.1})
        ]
        + [None]
        for p in prompts
    }
    assert seqs[0] == expected and sum(len(v) for v in expected.values()) > len(prompts)


# -- outages aimed at named docs -------------------------------------------------------------------


def test_outage_of_named_docs_fails_exactly_those_in_bounded_attempts(tmp_path):
    """Issue 16: docs that fail on every attempt while the others are answered are given up after
    ``PERSISTENT_AFTER`` attempts (not a whole budget and a final round); the rest of the run weathers 500s."""
    n = 60
    paths = []
    for i in range(n):
        p = tmp_path / f"doc{i}.png"
        p.write_bytes(image_bytes(i))
        paths.append(str(p))
    reqs = [
        JudgeRequest(f"doc-{i}", "generation", "pointwise", f"request number {i:03d}", (paths[i],))
        for i in range(n)
    ]
    # two docs named by a distinctive prompt string, one by the hash of its image
    targets = {7: "request number 007", 23: "request number 023", 41: image_match(image_bytes(41))}
    with OpenAIServer(fault_rates={500: 0.2}, fault_seed=3) as srv:
        srv.outage(match=list(targets.values()))
        backend = backend_for(srv)
        completer = ApiCompleter(
            backend, cache=None, concurrency=16, backoff_base=0.05, retry_budget=2.0, progress=False
        )
        assert completer.runner.retry_budget == 2.0 and completer.runner.max_retries is None
        judge = Judge(completer, tools=[])
        snap = Snapshot(srv)
        logging.getLogger(RUNNER_LOG).addHandler(snap)
        try:
            t0 = time.monotonic()
            verdicts = judge.judge_all(reqs)
            wall = time.monotonic() - t0
        finally:
            logging.getLogger(RUNNER_LOG).removeHandler(snap)
        records = list(srv.requests)
    print(f"\noutage of 3/60 docs with a 2 s budget: wall {wall:.1f}s")

    failed = [i for i, v in enumerate(verdicts) if v.status != "ok"]
    assert failed == sorted(targets)
    for i in failed:
        assert verdicts[i].status == "api_error" and verdicts[i].meta["http_status"] == 503
        assert "503" in verdicts[i].error
    assert judge.stats.api_failures == 3
    stats = completer.stats()
    assert stats["failures"] == 3 and stats["final_round"] == 0 and stats["persistent_failures"] == 3
    assert stats["retries"] > 0 and srv.fault_counts().get("random:500", 0) > 0  # others weathered 500s

    def doc(r) -> int:
        return int(prompt_text(r.json).split("request number ")[1][:3])

    by_doc: dict[int, list] = {}
    for r in records:
        by_doc.setdefault(doc(r), []).append(r)
    assert set(by_doc) == set(range(n))
    for i in targets:
        assert all(r.fault == "outage:503" for r in by_doc[i])  # every request of a target failed
        assert len(by_doc[i]) == PERSISTENT_AFTER  # given up after a bounded number of attempts
    assert not any(
        r.fault and r.fault.startswith("outage") for i, rs in by_doc.items() if i not in targets for r in rs
    )
    # given up as persistent failures: no final round asks them again
    assert snap.at == [] and snap.messages == []


def test_outage_ends_when_cleared_and_inject_targets_one_image():
    with OpenAIServer() as srv:
        backend = backend_for(srv)
        srv.outage(match="Rate doc 3.")
        srv.inject(Fault.http(502), times=2, match=image_match(b"image-of-doc-5"))
        for _ in range(3):
            with pytest.raises(BackendError) as info:
                backend.call(make_prompt(3))
            assert info.value.status == 503 and info.value.retryable
        with pytest.raises(BackendError, match="502"):
            backend.call(make_prompt(5))
        assert backend.call(make_prompt(13)).text  # "Rate doc 13." does not contain "Rate doc 3."
        assert backend.call(make_prompt(15)).text  # another image
        srv.end_outage("Rate doc 3.")
        assert backend.call(make_prompt(3)).text
        with pytest.raises(BackendError, match="502"):
            backend.call(make_prompt(5))
        assert backend.call(make_prompt(5)).text  # times=2 used up
        assert [r.fault for r in srv.requests] == [
            "outage:503",
            "outage:503",
            "outage:503",
            "scripted:502",
            None,
            None,
            None,
            "scripted:502",
            None,
        ]


# -- what ends a request -----------------------------------------------------------------------------


def test_non_retryable_400_ends_at_once_without_final_round():
    with OpenAIServer() as srv:
        srv.inject(Fault.http(400, "bad image"), times=10, match="Rate doc 4.")
        backend = backend_for(srv)
        runner = CallRunner(backend.call, cache=None, concurrency=4, rng_seed=0, progress=False)
        out = runner.run(keyed(backend, [make_prompt(i) for i in range(8)]))
        asked = [prompt_text(r.json) for r in srv.requests]
    assert [i for i, r in enumerate(out) if isinstance(r, BackendError)] == [4]
    assert out[4].status == 400 and not out[4].retryable and "bad image" in str(out[4])
    assert sum("Rate doc 4." in t for t in asked) == 1 and len(asked) == 8
    assert runner.stats() | {"prompt_tokens": 0, "completion_tokens": 0} == {
        "calls_made": 8,
        "cache_hits": 0,
        "retries": 0,
        "failures": 1,
        "final_round": 0,
        "final_round_recovered": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
    }


def expected_waits(rng: random.Random, budget: float, base: float, cap: float) -> list[float]:
    """The full-jitter waits the runner takes before the next wait would pass the budget."""
    waits, t, k = [], 0.0, 0
    while True:
        d = rng.uniform(0.0, min(cap, base * 2**k))
        if t + d > budget:
            return waits
        waits.append(d)
        t += d
        k += 1


def test_budget_not_a_count_ends_retries_on_a_fake_clock():
    budget, base, cap = 100.0, 1.0, 8.0
    fake = FakeTime()
    with OpenAIServer() as srv:
        srv.outage(match=None)  # every request: 503
        backend = backend_for(srv)
        runner = CallRunner(
            backend.call,
            cache=None,
            retry_budget=budget,
            backoff_base=base,
            backoff_max=cap,
            rng_seed=5,
            progress=False,
            sleep=fake.sleep,
            clock=fake.clock,
        )
        (out,) = runner.run(keyed(backend, [make_prompt(0)]))
        requests = srv.request_count
    rng = random.Random(5)
    first, second = expected_waits(rng, budget, base, cap), expected_waits(rng, budget, base, cap)
    assert isinstance(out, BackendError) and out.status == 503 and out.retryable
    assert fake.slept == first + second  # the budget, in full, then a fresh one in the final round
    assert requests == len(first) + 1 + len(second) + 1
    assert len(first) > 6  # far more than the old count of 6 retries
    assert sum(first) <= budget < sum(first) + cap
    assert runner.stats()["final_round"] == 1 and runner.failures == 1


@pytest.mark.parametrize(
    ("retry_after", "retry_after_max", "final_round", "slept", "requests"),
    [
        (
            "4",
            600.0,
            False,
            [4.0, 4.0],
            3,
        ),  # waits 4 s at t=0 and t=4; at t=8 a 4 s wait would end at 12 > 10
        ("30", 600.0, False, [], 1),  # the server asks for more than the whole budget: the request ends
        ("30", 600.0, True, [], 2),  # ... and once more in the final round
        ("30", 5.0, False, [5.0, 5.0], 3),  # an absurd Retry-After is capped at retry_after_max
    ],
)
def test_retry_after_beyond_the_remaining_budget_ends_the_request(
    retry_after, retry_after_max, final_round, slept, requests
):
    fake = FakeTime()
    with OpenAIServer() as srv:
        srv.outage(match=None, status=503, retry_after=retry_after)
        backend = backend_for(srv)
        runner = CallRunner(
            backend.call,
            cache=None,
            retry_budget=10.0,
            retry_after_max=retry_after_max,
            final_round=final_round,
            rng_seed=0,
            progress=False,
            sleep=fake.sleep,
            clock=fake.clock,
        )
        (out,) = runner.run(keyed(backend, [make_prompt(0)]))
        assert srv.request_count == requests
    assert isinstance(out, BackendError) and out.status == 503
    assert fake.slept == slept
    assert runner.stats()["final_round"] == int(final_round) and runner.failures == 1


# -- transport trouble is an API error, a bug is a bug ------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault.drop(),
        Fault.truncated(),
        Fault.malformed(),
        Fault.timeout(1.5),
        Fault.raw(b"null"),
        Fault.raw(b"[1, 2]"),
        Fault.raw(b'{"error": {"message": "overloaded"}}'),
        Fault.raw(b'{"choices": "x"}'),
        Fault.raw(b'{"choices": [{"message": "hi", "finish_reason": "stop"}]}'),
        Fault.raw(b'{"choices": [{"message": {"content": 5}, "finish_reason": "stop"}]}'),
        Fault.raw(b"\xff\xfe{"),
        Fault.raw(b"upstream says hello", content_type="text/plain"),
        Fault.raw(b"<html>bad gateway</html>", status=502, content_type="text/html"),
    ],
    ids=[
        "drop",
        "truncated",
        "malformed",
        "timeout",
        "json-null",
        "json-list",
        "error-in-200",
        "choices-str",
        "message-str",
        "content-int",
        "bad-utf8",
        "text-plain",
        "502-html",
    ],
)
def test_every_transport_or_body_fault_is_a_retryable_backend_error(fault):
    with OpenAIServer() as srv:
        backend = backend_for(srv, timeout=0.5)
        srv.inject(fault)
        with pytest.raises(BackendError) as info:
            backend.call(make_prompt(0))
        assert info.value.retryable
        srv.inject(fault)
        runner = CallRunner(backend.call, cache=None, backoff_base=0.01, rng_seed=0, progress=False)
        (out,) = runner.run(keyed(backend, [make_prompt(0)]))
    assert isinstance(out, Completion) and out.text
    assert runner.retries == 1 and runner.failures == 0


def test_bad_base_url_is_not_retried():
    backend = OpenAIChatBackend("gpt-4o", base_url="localhost:8000/v1", api_key_env=None)
    with pytest.raises(BackendError, match="not a usable http") as info:
        backend.call(make_prompt(0))
    assert not info.value.retryable


def test_a_bug_in_call_fn_propagates_and_is_not_a_failure():
    with OpenAIServer(latency=0.05) as srv:
        backend = backend_for(srv)

        def call(prompt: ChatPrompt) -> Completion:
            if prompt.parts[0] == "Rate doc 5.":
                raise KeyError("verdict")  # our own bug, not the API's
            return backend.call(prompt)

        runner = CallRunner(call, cache=None, concurrency=4, rng_seed=0, progress=False)
        with pytest.raises(KeyError, match="verdict"):
            runner.run(keyed(backend, [make_prompt(i) for i in range(40)]))
        sent = srv.request_count
        time.sleep(0.3)
        assert srv.request_count == sent  # no worker carries on after run() raised
    assert sent <= 12  # the queued prompts were cancelled
    assert runner.failures == 0 and runner.stats()["final_round"] == 0


def test_a_bug_stops_a_retry_that_is_waiting():
    with OpenAIServer() as srv:
        srv.outage(match="Rate doc 0.", retry_after="30")
        backend = backend_for(srv)
        started = threading.Event()

        def call(prompt: ChatPrompt) -> Completion:
            if prompt.parts[0] == "Rate doc 1.":
                time.sleep(0.3)  # doc 0 is waiting out its Retry-After by now
                raise RuntimeError("bug in the parser")
            started.set()
            return backend.call(prompt)

        runner = CallRunner(call, cache=None, concurrency=2, progress=False)
        t0 = time.monotonic()
        with pytest.raises(RuntimeError, match="bug in the parser"):
            runner.run(keyed(backend, [make_prompt(0), make_prompt(1)]))
        elapsed = time.monotonic() - t0
        assert started.is_set() and srv.request_count == 1
    assert elapsed < 5, elapsed  # not the 30 s Retry-After
    assert runner.failures == 0


# -- the API key of a local server ---------------------------------------------------------------------


def test_openai_api_key_is_used_when_api_key_env_is_none(monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    with OpenAIServer(require_key=SECRET) as srv:
        backend = backend_for(srv)
        runner = CallRunner(backend.call, cache=None, progress=False)
        out = runner.run(keyed(backend, [make_prompt(i) for i in range(3)]))
        assert all(isinstance(o, Completion) and o.text for o in out)
        assert all(r.headers["authorization"] == f"Bearer {SECRET}" for r in srv.requests)

        monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-abcdefghijkl")
        wrong = backend_for(srv)
        with pytest.raises(BackendError) as info:
            wrong.call(make_prompt(0))
    msg = str(info.value)
    assert info.value.status == 401 and not info.value.retryable
    assert "$OPENAI_API_KEY (used because api_key_env=None)" in msg
    assert SECRET not in repr(backend) and "sk-wrong-key" not in msg + repr(wrong)
    assert SECRET not in caplog.text and "sk-wrong-key" not in caplog.text


def test_placeholder_key_401_says_how_to_fix_it(caplog):
    with OpenAIServer(require_key=SECRET) as srv:
        backend = backend_for(srv)
        runner = CallRunner(backend.call, cache=None, progress=False)
        (out,) = runner.run(keyed(backend, [make_prompt(0)]))
        assert srv.requests[0].headers["authorization"] == "Bearer EMPTY"
    assert isinstance(out, BackendError) and out.status == 401 and not out.retryable
    msg = str(out)
    assert "export OPENAI_API_KEY=" in msg and "api_key_env=NAME" in msg and "'EMPTY'" in msg
    assert runner.stats()["calls_made"] == 1 and runner.stats()["final_round"] == 0 and runner.failures == 1


def test_explicit_key_env_unset_is_still_an_error(monkeypatch):
    from lmms_eval_autorater.judges.backends.openai_api import MissingAPIKeyError

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)  # not a fallback for an explicitly named variable
    monkeypatch.delenv("AUTORATER_UNSET_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match=r"\$AUTORATER_UNSET_KEY") as info:
        OpenAIChatBackend("gpt-4o", api_key_env="AUTORATER_UNSET_KEY")
    assert SECRET not in str(info.value)
    monkeypatch.setenv("OPENAI_API_KEY", "  ")  # blank: the placeholder, as if unset
    with OpenAIServer() as srv:
        backend_for(srv).call(make_prompt(0))
        assert srv.requests[0].headers["authorization"] == "Bearer EMPTY"


def test_a_server_that_never_answers_stops_the_run_instead_of_spending_every_budget():
    """Connection refused from the first call on: after ``unreachable_after`` seconds the run raises,
    naming the cause, rather than retrying every prompt for its whole budget twice."""
    import socket
    import time

    from lmms_eval_autorater.judges.backends.openai_api import OpenAIChatBackend
    from lmms_eval_autorater.judges.runner import CallRunner, ServerUnreachableError
    from lmms_eval_autorater.judges.types import ChatPrompt

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = OpenAIChatBackend(
        model="m", base_url=f"http://127.0.0.1:{port}/v1", api_key_env=None, timeout=2
    )
    runner = CallRunner(
        backend.call, cache=None, concurrency=4, backoff_base=0.05, unreachable_after=1.0, progress=False
    )
    prompts = [(f"k{i}", ChatPrompt(system="s", parts=(f"p{i}",))) for i in range(8)]
    start = time.monotonic()
    with pytest.raises(
        ServerUnreachableError, match="no HTTP answer from the server in 1s.*connection error"
    ):
        runner.run(prompts)
    assert time.monotonic() - start < 30  # not 8 prompts x 600 s x 2 rounds
    assert runner.stats()["final_round"] == 0
