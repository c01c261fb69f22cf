"""batch=true: the judges' prompts as Batch API jobs (OpenAI and Gemini protocols), against local stand-ins
driven through the real ``openai`` and ``google-genai`` clients."""

from __future__ import annotations

import json

import pytest
from loguru import logger

from lmms_eval_autorater.judges.args import ModelArgError
from lmms_eval_autorater.judges.backends.openai_api import OpenAIChatBackend
from lmms_eval_autorater.judges.batch import (
    BatchCompleter,
    JobLedger,
    build_batch_completer,
    export_jsonl,
    import_into_judge,
)
from lmms_eval_autorater.judges.cache import ResponseCache
from lmms_eval_autorater.judges.factory import build_judge, judge_config
from lmms_eval_autorater.judges.types import BackendError, ChatImage, ChatPrompt, Completion, JudgeRequest
from tests.batch_server import BatchServer, run_batch_offline
from tests.clitools import TruthResponder, metric, run_cli
from tests.datafactory import image_bytes

SCHEMA = {
    "type": "object",
    "properties": {"analysis": {"type": "string"}, "score": {"type": "integer", "minimum": 1, "maximum": 10}},
    "required": ["analysis", "score"],
    "additionalProperties": False,
}
PROTOCOLS = ("openai", "gemini")


def prompts(n: int, text: str = "rate") -> list[ChatPrompt]:
    return [
        ChatPrompt("judge well", (f"{text} {i}", ChatImage(image_bytes(i))), json_schema=SCHEMA)
        for i in range(n)
    ]


def backend(server: BatchServer, protocol: str, monkeypatch) -> OpenAIChatBackend:
    if protocol == "gemini":
        monkeypatch.setenv("GEMINI_API_KEY", "test-key")
        return OpenAIChatBackend(
            "gemini-2.5-pro", server.gemini_url, "GEMINI_API_KEY", provider="gemini", send_seed=False
        )
    return OpenAIChatBackend("gpt-4o-2024-08-06", server.url, None)


def completer(b, tmp_path, sleep=None, **kw) -> BatchCompleter:
    extra = {"sleep": sleep} if sleep is not None else {}
    return build_batch_completer(
        b,
        cache=ResponseCache(tmp_path / "responses.sqlite"),
        ledger_path=tmp_path / "batches.sqlite",
        progress=False,
        poll_interval=0.001,
        poll_max=0.005,
        **extra,
        **kw,
    )


def texts(results) -> list[str]:
    assert all(isinstance(r, Completion) for r in results), results
    return [r.text for r in results]


# -- the factory ------------------------------------------------------------------------------------


def test_batch_argument_is_validated_and_wired(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    assert judge_config("autorater_gpt4o").batch is False
    assert judge_config("autorater_gpt4o", {"batch": "true"}).batch is True
    with pytest.raises(ModelArgError, match="batch='maybe'"):
        judge_config("autorater_gpt4o", {"batch": "maybe"})
    judge = build_judge(
        "autorater_gpt4o", {"batch": "true", "cache_dir": str(tmp_path), "max_cost_usd": "5"}, progress=False
    )
    assert isinstance(judge.completer, BatchCompleter) and judge.completer.protocol.name == "openai"
    assert judge.completer.max_cost_usd == 5.0
    assert judge.completer.ledger.path == str(tmp_path / "batches.sqlite")
    from lmms_eval_autorater.judges.batch.gemini_batch import native_base_url

    assert native_base_url(judge_config("autorater_gemini").backend["base_url"]) == (None, "v1beta")
    assert native_base_url("http://127.0.0.1:9/v1beta/openai/") == ("http://127.0.0.1:9/", "v1beta")


# -- same answers as direct calls, zero direct calls --------------------------------------------------


@pytest.mark.parametrize("name", ["autorater_gpt4o", "autorater_gemini"])
def test_batch_gives_the_direct_verdicts_and_metrics_at_the_batch_price(name, data, tmp_path, monkeypatch):
    from lmms_eval_autorater.metrics import summarize_pairwise, summarize_pointwise
    from lmms_eval_autorater.tasks.common import doc_to_request, verdict_record

    root, docs = data
    monkeypatch.setenv("AUTORATER_DATA_DIR", str(root))
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    truth = TruthResponder(docs)
    tasks = ("imagereward_pair", "aigiqa")
    reqs = {t: [doc_to_request(d, t, i) for i, d in enumerate(docs[t])] for t in tasks}
    with BatchServer(truth) as server:
        base_url = server.gemini_url if name == "autorater_gemini" else server.url
        runs = {}
        for mode in ("direct", "batch"):
            args = {"base_url": base_url, "cache_dir": str(tmp_path / mode), "batch": str(mode == "batch")}
            judge = build_judge(name, args, progress=False)
            before = server.direct_calls
            runs[mode] = {t: judge.judge_all(reqs[t]) for t in tasks}
            if mode == "batch":
                assert server.direct_calls == before  # zero direct chat-completion calls
                assert judge.completer.stats()["calls_made"] == sum(len(r) for r in reqs.values())
        assert set(server.lines_received.values()) == {1}
        if name == "autorater_gemini":  # GenerateContentRequests: system, text and inline images, the schema
            body = next(iter(server.bodies.values()))
            assert body["systemInstruction"]["parts"][0]["text"]
            assert [p for p in body["contents"][0]["parts"] if "inlineData" in p]
            config = body["generationConfig"]
            assert config["temperature"] == 0.0 and config["maxOutputTokens"] == 2048 and "seed" not in config
            assert (
                config["responseMimeType"] == "application/json"
                and config["responseJsonSchema"]["properties"]
            )
        if name == "autorater_gpt4o":  # each line's body is exactly the request the direct path sent
            direct_bodies = sorted(json.dumps(r, sort_keys=True) for r in server.direct_requests)
            assert sorted(json.dumps(b, sort_keys=True) for b in server.bodies.values()) == direct_bodies
    for t in tasks:
        direct, batch = runs["direct"][t], runs["batch"][t]
        assert [(v.status, v.score, v.preferred) for v in batch] == [
            (v.status, v.score, v.preferred) for v in direct
        ]
        assert all(v.status == "ok" for v in batch)
        summarize = summarize_pairwise if t == "imagereward_pair" else summarize_pointwise
        recs = {
            m: [verdict_record(d, v, docs[t][0]["paradigm"]) for d, v in zip(docs[t], runs[m][t])]
            for m in runs
        }
        sd, sb = summarize(recs["direct"], n_resamples=50), summarize(recs["batch"], n_resamples=50)
        assert {k: v for k, v in sb.items() if "cost" not in k} == {
            k: v for k, v in sd.items() if "cost" not in k
        }
        cost_d = sum(v.meta["usage"]["cost_usd"] for v in direct)
        cost_b = sum(v.meta["usage"]["cost_usd"] for v in batch)
        assert cost_d > 0 and cost_b == pytest.approx(cost_d / 2)  # the listed batch price is half
    if "imagereward_pair" in truth.expected_correct:
        ok = sum(
            v.preferred == d["label"]
            for v, d in zip(runs["batch"]["imagereward_pair"], docs["imagereward_pair"])
        )
        assert ok == truth.expected_correct["imagereward_pair"]


def test_batch_and_direct_share_the_cache(tmp_path):
    with BatchServer() as server:
        b = backend(server, "openai", None)
        ps = prompts(3)
        direct = [b.call(p) for p in ps]
        c = completer(b, tmp_path)
        first = c(ps[:2])
        assert texts(first) == [d.text for d in direct[:2]]
        # answers from batch are answers for the direct path: same keys, same cache
        from lmms_eval_autorater.judges.pipeline import ApiCompleter

        api = ApiCompleter(b, cache=c.cache, progress=False)
        before = server.direct_calls
        assert texts(api(ps)) == [d.text for d in direct] and server.direct_calls == before + 1
        assert texts(c(ps)) == [d.text for d in direct] and c.stats()["cache_hits"] == 3


# -- limits, failures, expiry ------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_files_split_to_the_line_and_byte_limits(protocol, tmp_path, monkeypatch):
    with BatchServer() as server:
        b = backend(server, protocol, monkeypatch)
        c = completer(b, tmp_path, max_lines=2)
        texts(c(prompts(5)))
        assert server.batch_count == 3 and c.stats()["batches_submitted"] == 3
        assert sorted(b["n"] for b in server.batches.values()) == [1, 2, 2]
        sizes = [len(c.protocol.line(c.key(p), p)) for p in prompts(5, "size")]
        assert 3 * min(sizes) > 2 * max(sizes)
        c2 = completer(b, tmp_path / "bytes", max_bytes=2 * max(sizes))
        texts(c2(prompts(5, "size")))
        assert server.batch_count == 6  # 2 + 2 + 1 lines by size
        line = max(sizes)
        huge = ChatPrompt("judge", ("big " * 400,), json_schema=SCHEMA)
        (err,) = completer(b, tmp_path / "huge", max_bytes=line + 10)([huge])
        assert isinstance(err, BackendError) and "over the" in str(err) and server.batch_count == 6


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_line_failures_are_retried_in_a_new_batch_then_counted(protocol, tmp_path, monkeypatch):
    with BatchServer() as server:
        b = backend(server, protocol, monkeypatch)
        c = completer(b, tmp_path, max_line_retries=2)
        ps = prompts(4)
        keys = [c.key(p) for p in ps]
        server.fail_lines(500, times=1, match={keys[0]})  # transient: answered on the retry
        server.fail_lines(503, times=99, match={keys[1]})  # never answered: retried twice, then a failure
        server.fail_lines(400, times=99, match={keys[2]})  # a bad request is not retried
        out = c(ps)
        assert isinstance(out[0], Completion) and isinstance(out[3], Completion)
        assert isinstance(out[1], BackendError) and "after 3 batch attempt(s)" in str(out[1])
        assert isinstance(out[2], BackendError) and out[2].status == 400
        assert [server.lines_received[k] for k in keys] == [2, 3, 1, 1]
        s = c.stats()
        assert s["failures"] == 2 and s["retries"] == 3 and s["calls_made"] == 7
        assert keys[0] in c.cache and keys[1] not in c.cache  # failures are never cached: a rerun asks again


@pytest.mark.parametrize(
    ("protocol", "end"), [("openai", "expired"), ("openai", "cancelled"), ("gemini", "expired")]
)
def test_an_ended_batch_resubmits_only_the_unanswered_lines(protocol, end, tmp_path, monkeypatch):
    with BatchServer() as server:
        b = backend(server, protocol, monkeypatch)
        c = completer(b, tmp_path)
        ps = prompts(5)
        keys = [c.key(p) for p in ps]
        server.end_next_batch(end, answered=2)
        texts(c(ps))
        # OpenAI returns what an expired batch answered; an expired Gemini job returns nothing
        answered = 2 if protocol == "openai" else 0
        assert [server.lines_received[k] for k in keys] == [1] * answered + [2] * (5 - answered)
        assert c.stats()["resubmitted"] == 5 - answered and server.batch_count == 2
        server.end_next_batch("failed")
        server.end_next_batch("failed")
        out = completer(b, tmp_path / "f", max_resubmits=1)(prompts(2, "other"))
        assert all(isinstance(r, BackendError) and "no answer after 2 batches" in str(r) for r in out)


def test_a_budget_submits_in_waves_and_skips_what_cannot_fit(tmp_path):
    from lmms_eval_autorater.judges.runner import conservative_prompt_tokens
    from lmms_eval_autorater.judges.types import BudgetSkippedError

    with BatchServer() as server:
        b = backend(server, "openai", None)
        ps = prompts(6)
        probe = completer(b, tmp_path / "probe")
        bound = max(
            probe.cost_usd(
                {"prompt_tokens": conservative_prompt_tokens(p), "completion_tokens": b.max_tokens}
            )
            for p in ps
        )
        # room for two lines in flight: three waves of two, each after the previous one ended
        c = completer(b, tmp_path, max_cost_usd=2.5 * bound)
        out = c(ps)
        assert (
            texts(out)
            and server.batch_count == 3
            and sorted(x["n"] for x in server.batches.values()) == [2, 2, 2]
        )
        spent = sum(r.usage["cost_usd"] for r in out)
        assert c.stats()["spent_usd"] == pytest.approx(spent, abs=1e-6) and spent <= 2.5 * bound
        # not even one line fits: nothing is sent, every line is budget_skipped (not a failure)
        tight = completer(b, tmp_path / "tight", max_cost_usd=0.5 * bound)
        out = tight(ps[:3] + prompts(2, "new"))
        assert all(isinstance(r, BudgetSkippedError) for r in out) and server.batch_count == 3
        assert tight.stats()["budget_skipped"] == 5 and tight.stats()["failures"] == 0
        # a rerun with a larger budget continues from the cache: only the two new prompts are sent
        more = completer(b, tmp_path, max_cost_usd=10 * bound)
        assert texts(more(ps + prompts(2, "new"))) and more.stats()["calls_made"] == 2


# -- a kill in the middle --------------------------------------------------------------------------


class Killed(BaseException):
    pass


def kill(_delay: float) -> None:
    raise Killed  # the client process stops while it waits for its batches


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_killed_run_reattaches_and_pays_no_line_twice(protocol, tmp_path, monkeypatch):
    with BatchServer(polls_to_finish=3) as server:
        b = backend(server, protocol, monkeypatch)
        ps = prompts(5)
        with pytest.raises(Killed):
            completer(b, tmp_path, sleep=kill, max_lines=3)(ps)
        assert server.batch_count == 2 and JobLedger(tmp_path / "batches.sqlite").counts()["open"] == 2
        again = completer(b, tmp_path)  # a new process: only the cache and the ledger on disk
        texts(again(ps))
        s = again.stats()
        assert s["batches_reattached"] == 2 and s["batches_submitted"] == 0 and s["calls_made"] == 0
        assert server.batch_count == 2 and set(server.lines_received.values()) == {1}
        assert JobLedger(tmp_path / "batches.sqlite").counts()["open"] == 0
        assert again(ps) and again.stats()["cache_hits"] == 5 and server.batch_count == 2


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_polls_failing_past_the_budget_fail_the_lines_but_keep_the_batch(protocol, tmp_path, monkeypatch):
    with BatchServer() as server:
        b = backend(server, protocol, monkeypatch)
        ps = prompts(3)
        server.fail_polls(503, times=10**6)
        out = completer(b, tmp_path, retry_budget=0.02)(ps)
        assert all(isinstance(r, BackendError) and r.status == 503 for r in out)
        assert JobLedger(tmp_path / "batches.sqlite").counts()["open"] == 1  # still running at the provider
        server.fail_polls(503, times=0)
        again = completer(b, tmp_path)
        texts(again(ps))
        assert again.stats()["batches_reattached"] == 1 and again.stats()["calls_made"] == 0
        assert server.batch_count == 1 and set(server.lines_received.values()) == {1}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_lost_create_answer_is_found_by_its_token_not_created_again(protocol, tmp_path, monkeypatch):
    with BatchServer() as server:
        b = backend(server, protocol, monkeypatch)
        ps = prompts(3)
        server.drop_next_create()
        texts(completer(b, tmp_path)(ps))
        assert server.batch_count == 1 and set(server.lines_received.values()) == {1}
        # killed between reserving the lines and learning the batch id: the next run finds it by its token
        ledger = JobLedger(tmp_path / "k" / "batches.sqlite")
        c = completer(b, tmp_path / "k")
        keys = [c.key(p) for p in prompts(2, "k")]
        token = ledger.reserve(c.protocol.scope, keys, 0).token
        c.protocol.submit([c.protocol.line(k, p) for k, p in zip(keys, prompts(2, "k"))], token)
        texts(c(prompts(2, "k")))
        assert c.stats()["batches_reattached"] == 1 and server.batch_count == 2
        assert all(server.lines_received[k] == 1 for k in keys)


# -- offline: vllm run-batch ------------------------------------------------------------------------


def test_jsonl_for_vllm_run_batch_and_its_output_into_the_cache(tmp_path):
    with BatchServer() as server:
        b = backend(server, "openai", None)
        c = completer(b, tmp_path)
        ps = prompts(3)
        assert c.write_jsonl(ps + ps[:1], tmp_path / "in.jsonl") == 3
        lines = [json.loads(x) for x in (tmp_path / "in.jsonl").read_text().splitlines()]
        assert [x["custom_id"] for x in lines] == [c.key(p) for p in ps]
        assert all(
            x["url"] == "/v1/chat/completions" and x["body"] == b.request_kwargs(p) for x, p in zip(lines, ps)
        )
        run_batch_offline(server, tmp_path / "in.jsonl", tmp_path / "out.jsonl", fail={c.key(ps[2])})
        assert c.import_output(tmp_path / "out.jsonl") == {"answers": 2, "errors": 1, "empty": 0}
        assert c.write_jsonl(ps, tmp_path / "left.jsonl") == 1  # only the unanswered prompt is left
        res = c(ps[:2])
        assert texts(res) == [b.call(p).text for p in ps[:2]] and server.batch_count == 0


def test_offline_export_run_import_then_the_judge_answers_from_the_cache(tmp_path):
    reqs = []
    for i in range(3):
        paths = [tmp_path / f"d{i}_{j}.png" for j in range(2)]
        for j, p in enumerate(paths):
            p.write_bytes(image_bytes(10 * i + j))
        reqs.append(
            JudgeRequest(f"imagereward_pair/d{i}", "generation", "pairwise", "a cat", tuple(map(str, paths)))
        )
    with BatchServer() as server:
        args = {"base_url": server.url, "model": "judge-1", "cache_dir": str(tmp_path / "c"), "swap": "true"}
        judge = build_judge("autorater_openai", args, progress=False)
        logged: list[tuple[str, str]] = []
        sink = logger.add(
            lambda m: logged.append((m.record["level"].name, m.record["message"])), level="INFO"
        )
        try:
            assert export_jsonl(judge, reqs, tmp_path / "in.jsonl") == 6  # both orders of each pair
            assert judge.stats.requests == 0 and server.direct_calls == 0
            # an exported prompt is not an API failure: one INFO line, no ERROR line per prompt
            assert [lvl for lvl, _ in logged] == ["INFO"], logged
            assert "6 prompt(s) of 3 doc(s) exported for an offline batch, not sent" in logged[0][1]
            failing = json.loads((tmp_path / "in.jsonl").read_text().splitlines()[1])["custom_id"]
            run_batch_offline(server, tmp_path / "in.jsonl", tmp_path / "part.jsonl", fail={failing})
            logged.clear()
            assert import_into_judge(judge, tmp_path / "part.jsonl") == {
                "answers": 5,
                "errors": 1,
                "empty": 0,
            }
            [(level, line)] = logged  # the failed line is named, with its reason
            assert level == "WARNING" and f"line {failing} answered an error, not cached" in line, line
        finally:
            logger.remove(sink)
        run_batch_offline(server, tmp_path / "in.jsonl", tmp_path / "out.jsonl")
        assert import_into_judge(judge, tmp_path / "out.jsonl")["answers"] == 6
        assert export_jsonl(judge, reqs, tmp_path / "again.jsonl") == 0
        verdicts = judge.judge_all(reqs)
        assert (
            all(v.status == "ok" for v in verdicts) and server.direct_calls == 0 and server.batch_count == 0
        )


# -- through the real lmms-eval CLI -------------------------------------------------------------------


@pytest.mark.slow
def test_batch_true_through_the_lmms_eval_cli(tmp_path, data):
    root, docs = data
    truth = TruthResponder(docs)
    env = {"AUTORATER_DATA_DIR": str(root), "AUTORATER_CACHE_DIR": str(tmp_path / "cache")}
    with BatchServer(truth) as server:
        results, log = run_cli(
            tmp_path,
            env,
            "--model",
            "autorater_openai",
            "--model_args",
            f"base_url={server.url},model=gpt-4o-2024-08-06,batch=true",
            "--tasks",
            "imagereward_pair",
        )
        assert results is not None, log[-3000:]
        assert server.direct_calls == 0 and server.batch_count == 1
        assert set(server.lines_received.values()) == {1}
    n = len(docs["imagereward_pair"])
    assert metric(results, "imagereward_pair", "accuracy") == pytest.approx(
        truth.expected_correct["imagereward_pair"] / n
    )
    assert metric(results, "imagereward_pair", "api_failures") == 0
    assert metric(results, "imagereward_pair", "n_scored") == n
    # spent at the listed batch price
    from lmms_eval_autorater.judges.prices import lookup

    price_in, price_out = lookup("gpt-4o-2024-08-06").per_mtok(batch=True)
    tokens = (
        metric(results, "imagereward_pair", "prompt_tokens"),
        metric(results, "imagereward_pair", "completion_tokens"),
    )
    assert tokens[0] > 0 and metric(results, "imagereward_pair", "cost_usd") == pytest.approx(
        (tokens[0] * price_in + tokens[1] * price_out) / 1e6
    )


def test_a_server_without_the_batch_api_is_named_and_every_line_counted(tmp_path):
    from tests.openai_server import OpenAIServer

    with OpenAIServer() as server:  # chat completions only: /v1/files is a 404
        b = OpenAIChatBackend("judge-1", server.url, None)
        c = completer(b, tmp_path)
        out = c(prompts(3))
        assert all(isinstance(r, BackendError) and "implement the Batch API" in str(r) for r in out)
        assert c.stats()["failures"] == 3 and c.stats()["calls_made"] == 0 and server.request_count == 0
        assert JobLedger(tmp_path / "batches.sqlite").counts() == {"jobs": 1, "open": 0, "closed": 1}
