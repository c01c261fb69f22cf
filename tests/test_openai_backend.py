"""The OpenAI-compatible judge backend, the call runner and the response cache, through the real
``openai`` client against a real local HTTP server (``tests/openai_server.py``)."""

from __future__ import annotations

import base64
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from email.utils import formatdate
from pathlib import Path

import pytest

pytest.importorskip("openai")

from lmms_eval_autorater.judges.backends.openai_api import (  # noqa: E402
    MissingAPIKeyError,
    OpenAIChatBackend,
    estimate_cost_usd,
)
from lmms_eval_autorater.judges.cache import ResponseCache  # noqa: E402
from lmms_eval_autorater.judges.runner import CallRunner, parse_retry_after  # noqa: E402
from lmms_eval_autorater.judges.types import BackendError, ChatImage, ChatPrompt, Completion  # noqa: E402
from tests.openai_server import Fault, OpenAIServer, default_responder, image_urls, prompt_text  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
KEY_ENV = "AUTORATER_TEST_OPENAI_KEY"
SECRET = "sk-test-SECRET-0123456789abcdef"
SCHEMA = {
    "type": "object",
    "properties": {"analysis": {"type": "string"}, "score": {"type": "integer", "minimum": 1, "maximum": 10}},
    "required": ["analysis", "score"],
    "additionalProperties": False,
}


@pytest.fixture
def key_env(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    return KEY_ENV


@pytest.fixture
def server():
    with OpenAIServer(api_key=SECRET) as srv:
        yield srv


def make_backend(srv: OpenAIServer, **kw) -> OpenAIChatBackend:
    kw.setdefault("timeout", 5.0)
    return OpenAIChatBackend("gpt-4o", base_url=srv.url, api_key_env=KEY_ENV, **kw)


def make_prompt(i: int = 0, images: tuple[bytes, ...] = (b"img-a", b"img-b")) -> ChatPrompt:
    parts: list = [f"Rate doc {i}."]
    for j, data in enumerate(images):
        parts += [f"Image {j + 1}:", ChatImage(data, "image/png")]
    parts.append("Answer in JSON.")
    return ChatPrompt(system="You are a strict judge.", parts=tuple(parts), json_schema=SCHEMA)


def keyed(backend: OpenAIChatBackend, prompts: list[ChatPrompt]) -> list[tuple[str, ChatPrompt]]:
    gp = backend.gen_params()
    return [(ResponseCache.key(backend.name, backend.model, "t1", p, gp), p) for p in prompts]


def fast_runner(backend, cache=None, **kw) -> CallRunner:
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("backoff_max", 0.05)
    kw.setdefault("rng_seed", 0)
    kw.setdefault("progress", False)
    return CallRunner(backend.call, cache=cache, **kw)


# -- request shape and recorded facts --------------------------------------------------------------


def test_request_shape_and_recorded_facts(server, key_env):
    backend = make_backend(server)
    prompt = make_prompt(7, images=(b"first-image", b"second-image"))
    out = backend.call(prompt)

    assert server.request_count == 1
    req = server.requests[0]
    body = req.json
    assert req.headers["authorization"] == f"Bearer {SECRET}"
    assert body["model"] == "gpt-4o"
    assert body["temperature"] == 0.0 and body["seed"] == 1234 and body["max_tokens"] == 2048
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "verdict", "schema": SCHEMA, "strict": True},
    }
    assert body["messages"][0] == {"role": "system", "content": "You are a strict judge."}
    user = body["messages"][1]
    assert user["role"] == "user"
    kinds = [p["type"] for p in user["content"]]
    assert kinds == ["text", "text", "image_url", "text", "image_url", "text"]
    urls = image_urls(body)
    assert urls == [
        "data:image/png;base64," + base64.b64encode(b"first-image").decode(),
        "data:image/png;base64," + base64.b64encode(b"second-image").decode(),
    ]
    assert prompt_text(body).splitlines()[1:3] == ["Rate doc 7.", "Image 1:"]

    assert out.model == "gpt-4o-2024-08-06"  # the dated snapshot the server answered with
    assert out.fingerprint == "fp_autorater_test"
    assert out.usage["prompt_tokens"] > 0 and out.usage["completion_tokens"] > 0
    assert out.finish_reason == "stop" and out.cached is False
    assert '"score"' in out.text


def test_options_omit_seed_and_use_max_completion_tokens(server, key_env):
    backend = make_backend(
        server, send_seed=False, token_param="max_completion_tokens", use_json_schema=False
    )
    backend.call(make_prompt())
    body = server.requests[0].json
    assert "seed" not in body and "max_tokens" not in body and "response_format" not in body
    assert body["max_completion_tokens"] == 2048


def test_missing_key_env_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("AUTORATER_UNSET_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match=r"\$AUTORATER_UNSET_KEY"):
        OpenAIChatBackend("gpt-4o", api_key_env="AUTORATER_UNSET_KEY")


def test_no_key_for_local_servers(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # else api_key_env=None sends it
    with OpenAIServer() as srv:  # accepts any key
        backend = OpenAIChatBackend("local-vlm", base_url=srv.url, api_key_env=None)
        assert backend.call(make_prompt()).text
        assert srv.requests[0].headers["authorization"] == "Bearer EMPTY"


def test_cost_estimate(server, key_env):
    usage = {"prompt_tokens": 1_000_000, "completion_tokens": 100_000}
    assert estimate_cost_usd(usage, "gpt-4o-2024-08-06") == pytest.approx(2.5 + 1.0)
    assert estimate_cost_usd(usage, "gemini-2.5-pro") == pytest.approx(1.25 + 1.0)
    assert estimate_cost_usd(usage, "unknown-model") is None
    backend = make_backend(server, price_per_mtok_in=1.0, price_per_mtok_out=2.0)
    assert backend.cost_usd(usage) == pytest.approx(1.2)


# -- faults and retries ---------------------------------------------------------------------------


def test_429_retry_after_is_honoured(server, key_env):
    server.inject(Fault.rate_limit(retry_after="0.4"))
    backend = make_backend(server)
    runner = fast_runner(backend)
    (out,) = runner.run(keyed(backend, [make_prompt()]))
    assert isinstance(out, Completion) and out.text
    assert server.request_count == 2
    waited = server.requests[1].time - server.requests[0].time
    assert waited >= 0.4  # backoff alone would be <= 0.05 s
    assert runner.retries == 1 and runner.calls_made == 2 and runner.failures == 0


def test_parse_retry_after_http_date():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(formatdate(time.time() + 30, usegmt=True)) == pytest.approx(30, abs=2)
    assert parse_retry_after(formatdate(time.time() - 30, usegmt=True)) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_retry_after_floor_with_injected_sleep(server, key_env):
    server.inject(Fault.http(503, retry_after="7"))
    slept: list[float] = []
    backend = make_backend(server)
    runner = fast_runner(backend, sleep=slept.append)
    (out,) = runner.run(keyed(backend, [make_prompt()]))
    assert isinstance(out, Completion) and slept == [7.0]


@pytest.mark.parametrize(
    "fault",
    [Fault.http(500), Fault.http(503), Fault.timeout(1.5), Fault.malformed()],
    ids=["500", "503", "timeout", "malformed"],
)
def test_transient_fault_then_success(server, key_env, fault):
    server.inject(fault)
    backend = make_backend(server, timeout=0.5)
    runner = fast_runner(backend)
    (out,) = runner.run(keyed(backend, [make_prompt()]))
    assert isinstance(out, Completion) and '"score"' in out.text
    assert server.request_count == 2 and runner.retries == 1


def test_persistent_500_gives_up_after_max_retries(server, key_env, tmp_path):
    server.inject(Fault.http(500, "upstream exploded"), times=100)
    backend = make_backend(server)
    cache = ResponseCache(tmp_path / "r.sqlite")
    runner = fast_runner(backend, cache=cache, max_retries=3)
    (out,) = runner.run(keyed(backend, [make_prompt()]))
    assert isinstance(out, BackendError) and out.retryable and out.status == 500
    assert "upstream exploded" in str(out)
    assert server.request_count == 8  # (1 + 3 retries), then the same again in the final round
    assert runner.failures == 1 and runner.retries == 6
    assert runner.stats()["final_round"] == 1 and runner.stats()["final_round_recovered"] == 0
    assert len(cache) == 0  # failures are not cached


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retried(server, key_env, status):
    server.inject(Fault.http(status), times=10)
    backend = make_backend(server)
    runner = fast_runner(backend)
    (out,) = runner.run(keyed(backend, [make_prompt()]))
    assert isinstance(out, BackendError) and not out.retryable and out.status == status
    assert server.request_count == 1 and runner.retries == 0 and runner.failures == 1


def test_401_names_the_env_var_never_the_key(monkeypatch, caplog):
    monkeypatch.setenv(KEY_ENV, "sk-wrong-key-abcdefghijkl")
    caplog.set_level(logging.DEBUG)
    with OpenAIServer(api_key=SECRET) as srv:
        backend = make_backend(srv)
        with pytest.raises(BackendError) as info:
            backend.call(make_prompt())
    msg = str(info.value)
    assert info.value.status == 401 and not info.value.retryable
    assert f"${KEY_ENV}" in msg and "invalid or missing API key" in msg
    assert "sk-wrong-key" not in msg and "sk-wrong-key" not in repr(backend)
    assert "sk-wrong-key" not in caplog.text


def test_empty_answer_is_asked_again_once_then_returned_uncached(server, key_env, tmp_path):
    backend = make_backend(server)
    cache = ResponseCache(tmp_path / "r.sqlite")
    server.inject(Fault.null())
    (out,) = fast_runner(backend, cache=cache).run(keyed(backend, [make_prompt(1)]))
    assert out.text and server.request_count == 2  # one empty answer, asked again once

    server.reset()
    server.inject(Fault.empty(), times=5)
    (out,) = fast_runner(backend, cache=cache).run(keyed(backend, [make_prompt(2)]))
    assert isinstance(out, Completion) and out.text == ""
    assert server.request_count == 2  # not retried forever
    assert len(cache) == 1  # the empty answer was not cached


# -- concurrency ---------------------------------------------------------------------------------


def test_concurrency_is_parallel_and_bounded(key_env):
    n, latency, conc = 24, 0.2, 8
    with OpenAIServer(api_key=SECRET, latency=latency) as srv:
        backend = make_backend(srv)
        runner = fast_runner(backend, concurrency=conc)
        items = keyed(backend, [make_prompt(i) for i in range(n)])
        t0 = time.monotonic()
        out = runner.run(items)
        wall = time.monotonic() - t0
    assert all(isinstance(o, Completion) and o.text for o in out)
    assert wall < n * latency / 3, wall
    assert 2 <= srv.max_in_flight <= conc
    # results come back in the input order, whatever order they finished in
    assert [o.text for o in out] == [default_responder(backend.request_kwargs(p)) for _, p in items]
    assert runner.stats()["calls_made"] == n and runner.prompt_tokens > 0


# -- cache ----------------------------------------------------------------------------------------


def test_cache_rerun_makes_zero_requests_and_one_byte_change_one(server, key_env, tmp_path):
    backend = make_backend(server)
    path = tmp_path / "responses.sqlite"
    prompts = [make_prompt(i) for i in range(5)]
    first = fast_runner(backend, cache=ResponseCache(path)).run(keyed(backend, prompts))
    assert server.request_count == 5 and not any(c.cached for c in first)

    server.reset()
    runner = fast_runner(backend, cache=ResponseCache(path))
    second = runner.run(keyed(backend, prompts))
    assert server.request_count == 0
    assert all(c.cached for c in second) and runner.cache_hits == 5 and runner.calls_made == 0
    assert [c.text for c in second] == [c.text for c in first]
    assert [(c.model, c.fingerprint, c.usage) for c in second] == [
        (c.model, c.fingerprint, c.usage) for c in first
    ]

    changed = list(prompts)
    changed[3] = make_prompt(3, images=(b"img-a", b"img-c"))  # one image byte differs
    fast_runner(backend, cache=ResponseCache(path)).run(keyed(backend, changed))
    assert server.request_count == 1
    assert (
        image_urls(server.requests[0].json)[1]
        == "data:image/png;base64," + base64.b64encode(b"img-c").decode()
    )


def test_cache_key_covers_order_and_params():
    p = make_prompt(0, images=(b"x", b"y"))
    interleave_moved = ChatPrompt(p.system, (p.parts[0], p.parts[2], p.parts[1], *p.parts[3:]), SCHEMA)
    gp = {"temperature": 0.0, "seed": 1234}
    base = ResponseCache.key("openai", "gpt-4o", "t1", p, gp)
    assert base == ResponseCache.key("openai", "gpt-4o", "t1", make_prompt(0, images=(b"x", b"y")), dict(gp))
    images_swapped = make_prompt(0, images=(b"y", b"x"))
    k = ResponseCache.key
    variants = [
        base,
        k("openai", "gpt-4o", "t1", images_swapped, gp),
        k("openai", "gpt-4o", "t1", interleave_moved, gp),
        k("openai", "gpt-4o", "t2", p, gp),
        k("openai", "gpt-4o-mini", "t1", p, gp),
        k("vllm", "gpt-4o", "t1", p, gp),
        k("openai", "gpt-4o", "t1", p, {**gp, "seed": 1}),
        k("openai", "gpt-4o", "t1", ChatPrompt(p.system, p.parts, None), gp),
        k("openai", "gpt-4o", "t1", ChatPrompt("other", p.parts, SCHEMA), gp),
    ]
    assert len(set(variants)) == len(variants)


def test_duplicate_keys_are_asked_once(server, key_env):
    backend = make_backend(server)
    items = keyed(backend, [make_prompt(1), make_prompt(2), make_prompt(1)])
    out = fast_runner(backend).run(items)
    assert server.request_count == 2 and out[0] is out[2]


# -- kill and resume ------------------------------------------------------------------------------

CLIENT = textwrap.dedent(
    """
    from tests.test_openai_backend import keyed, make_prompt
    from lmms_eval_autorater.judges.backends.openai_api import OpenAIChatBackend
    from lmms_eval_autorater.judges.cache import ResponseCache
    from lmms_eval_autorater.judges.runner import CallRunner

    backend = OpenAIChatBackend("gpt-4o", base_url={url!r}, api_key_env={env!r})
    runner = CallRunner(backend.call, cache=ResponseCache({cache!r}), concurrency=2, progress=False)
    runner.run(keyed(backend, [make_prompt(i) for i in range({n})]))
    print("finished", flush=True)
    """
)


def test_kill_and_resume_requests_only_the_missing(key_env, tmp_path):
    n = 30
    cache_path = tmp_path / "responses.sqlite"
    cache = ResponseCache(cache_path)  # created up front, so polling only reads
    with OpenAIServer(api_key=SECRET, latency=0.15) as srv:
        script = CLIENT.format(url=srv.url, env=KEY_ENV, cache=str(cache_path), n=n)
        # the repository first (tests), then whatever PYTHONPATH already names (a worktree's src)
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
        proc = subprocess.Popen([sys.executable, "-c", script], cwd=str(REPO), env=env)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    pytest.fail(f"client exited early with {proc.returncode}")
                if len(cache) >= 6:
                    break
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL

        con = sqlite3.connect(cache_path)
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        con.close()
        done = len(cache)
        assert 6 <= done < n

        srv.reset()
        srv.latency = 0.0
        backend = make_backend(srv)
        items = keyed(backend, [make_prompt(i) for i in range(n)])
        missing = {f"Rate doc {i}." for i, (k, _) in enumerate(items) if k not in cache}
        runner = fast_runner(backend, cache=cache, concurrency=4)
        out = runner.run(items)
        assert srv.request_count == n - done == len(missing)
        assert {prompt_text(r.json).splitlines()[1] for r in srv.requests} == missing
        assert runner.cache_hits == done and all(isinstance(o, Completion) and o.text for o in out)
        assert len(cache) == n


# -- the key never leaks --------------------------------------------------------------------------


def test_api_key_never_in_cache_errors_or_logs(server, key_env, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    backend = make_backend(server, timeout=0.5)
    path = tmp_path / "responses.sqlite"
    cache = ResponseCache(path)
    server.inject(Fault.rate_limit("0"))
    server.inject(Fault.http(500), times=10, match="Rate doc 2.")
    server.inject(Fault.http(400), match="Rate doc 3.")
    # real servers echo (part of) a rejected key: the message must be scrubbed
    server.inject(Fault.http(401, f"Incorrect API key provided: {SECRET}"), match="Rate doc 4.")
    out = fast_runner(backend, cache=cache, max_retries=1).run(
        keyed(backend, [make_prompt(i) for i in range(5)])
    )
    errors = [o for o in out if isinstance(o, BackendError)]
    assert len(errors) == 3 and len(cache) == 2
    assert any(e.status == 401 and "Incorrect API key provided: ***" in str(e) for e in errors)
    assert all(r.headers["authorization"] == f"Bearer {SECRET}" for r in server.requests)
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("responses.sqlite"))
    assert SECRET.encode() not in blob and b"SECRET-0123" not in blob
    for err in errors:
        assert SECRET not in str(err) and SECRET not in repr(err.args)
    assert SECRET not in repr(backend) and SECRET not in str(backend.gen_params())
    assert SECRET not in caplog.text
