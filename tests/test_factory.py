"""The judge factory: one validated way to a judge for every entry point, and the facts it reads."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest
from loguru import logger

from lmms_eval_autorater.judges import contract, factory
from lmms_eval_autorater.judges.args import ModelArgError
from lmms_eval_autorater.judges.factory import PRESETS, build_judge, judge_config
from lmms_eval_autorater.judges.types import JudgeRequest
from lmms_eval_autorater.registry import MODELS
from lmms_eval_autorater.specialists.registry import SPECS
from lmms_eval_autorater.tasks.common import pointwise_aggregation
from tests import fakes
from tests.datafactory import image_bytes
from tests.openai_server import OpenAIServer

REPO = Path(__file__).resolve().parents[1]


def test_every_judge_model_has_a_preset_and_back():
    judges = {m for m in MODELS if m.startswith("autorater_")}
    assert judges == set(PRESETS)
    for name in judges:  # each lmms-eval wrapper asks the factory for its own name
        from lmms_eval_autorater.specialists.base import load_class

        assert load_class(MODELS[name]).NAME == name


def test_arguments_are_validated_before_anything_is_built(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ModelArgError, match="unknown model argument\\(s\\) tool; accepted:"):
        judge_config("autorater_gpt4o", {"tool": "all"})
    with pytest.raises(ModelArgError, match="'base_url' is required, e.g. base_url="):
        judge_config("autorater_openai", {"model": "x"})
    with pytest.raises(ModelArgError, match="concurrency='many': expected an integer"):
        judge_config("autorater_openai", {"base_url": "u", "model": "m", "concurrency": "many"})
    with pytest.raises(ModelArgError, match="unknown judge 'autorater_gpt5'"):
        judge_config("autorater_gpt5")
    with pytest.raises(ModelArgError, match="max_patches"):
        judge_config("autorater_gpt4o", {"max_patches": 2})  # a local-only argument on an API judge
    cfg = judge_config("autorater_gpt4o", {"tools": "qs+gd", "swap": "true", "retry_budget": "30"})
    assert cfg.tools == ["GD", "QS"] and cfg.swap is True and cfg.runner["retry_budget"] == 30.0
    assert cfg.runner["max_retries"] is None and cfg.runner["final_round"] is True
    assert cfg.backend["model"] == "gpt-4o-2024-08-06" and cfg.backend["api_key_env"] == "OPENAI_API_KEY"
    gem = judge_config("autorater_gemini")
    assert gem.backend["send_seed"] is False and gem.backend["api_key_env"] == "GEMINI_API_KEY"
    assert judge_config("autorater_openai", {"base_url": "u", "model": "m"}).backend["api_key_env"] is None


def test_specialist_facts_have_one_source():
    assert contract.TOOL_CODES == tuple(SPECS)
    assert contract.TOOL_NAMES == {c: s.name for c, s in SPECS.items()}
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    extras = set(cfg["options.extras_require"])
    for spec in SPECS.values():  # every extra a specialist names exists
        assert spec.extra in extras, (spec.code, spec.extra)


def request(tmp_path: Path, key: str, seed: int) -> JudgeRequest:
    paths = []
    for j in range(2):
        p = tmp_path / f"{key}_{j}.png"
        p.write_bytes(image_bytes(seed + j))
        paths.append(str(p))
    return JudgeRequest(f"imagereward_pair/{key}", "generation", "pairwise", "a cat", tuple(paths))


def test_with_tools_shares_backend_caches_and_pool(tmp_path):
    from lmms_eval_autorater.specialists.cache import AssessmentCache, SpecialistPool

    pool = SpecialistPool(cache=AssessmentCache(tmp_path / "a.sqlite"), factory=fakes.fake_factory)
    with OpenAIServer() as server:
        judge = build_judge(
            "autorater_openai",
            {"base_url": server.url, "model": "judge", "cache_dir": str(tmp_path / "c")},
            pool=pool,
            progress=False,
        )
        assert judge.pool is None  # tools=none: no specialist is touched
        reqs = [request(tmp_path, "d1", 1), request(tmp_path, "d2", 5)]
        base = judge.judge_all(reqs)
        qs = judge.with_tools(["QS"])
        assert qs.pool is pool and qs.completer is judge.completer and qs.backend is judge.backend
        with_qs = qs.judge_all(reqs)
        assert server.request_count == 4 and all(v.status == "ok" for v in base + with_qs)
        assert with_qs[0].meta["tools"] == ["QS"] and base[0].meta["tools"] == []
        judge.with_tools(["QS"]).judge_all(reqs)  # same prompts again: answered from the cache
        assert server.request_count == 4 and judge.completer.stats()["cache_hits"] == 2


def test_unknown_price_is_unknown_not_zero(tmp_path):
    seen: list[str] = []
    sink = logger.add(lambda m: seen.append(str(m)), level="WARNING")
    factory._warned_prices.clear()
    try:
        with OpenAIServer() as server:
            args = {"base_url": server.url, "model": "judge", "cache_dir": str(tmp_path / "c")}
            judge = build_judge("autorater_openai", args, progress=False)
            build_judge("autorater_openai", args, progress=False)  # the warning is said once per model
            reqs = [request(tmp_path, "d1", 1)]
            fresh = judge.judge_all(reqs)[0]
            cached = build_judge("autorater_openai", args, progress=False).judge_all(reqs)[0]
            priced = build_judge(
                "autorater_openai",
                {**args, "cache": "false", "price_in": "2", "price_out": "8"},
                progress=False,
            ).judge_all(reqs)[0]
    finally:
        logger.remove(sink)
    warnings = [m for m in seen if "no price known for model 'judge'" in m]
    assert len(warnings) == 1 and "price_in=" in warnings[0] and "price_out=" in warnings[0]
    assert fresh.meta["usage"]["cost_usd"] is None
    assert cached.meta["usage"]["cost_usd"] == 0.0  # a cached answer costs nothing
    u = priced.meta["usage"]
    assert u["cost_usd"] == pytest.approx((u["prompt_tokens"] * 2 + u["completion_tokens"] * 8) / 1e6)
    cost = pointwise_aggregation("cost_usd")
    assert cost([{"usage": {"cost_usd": None}, "cached": False}, {"usage": {"cost_usd": 0.5}}]) is None
    assert cost([{"usage": {"cost_usd": None}, "cached": True}, {"usage": {"cost_usd": 0.5}}]) == 0.5
    assert cost([{"usage": None, "status": "input_error"}]) == 0.0


def test_input_errors_are_counted_never_sent(tmp_path):
    good = request(tmp_path, "ok", 1)
    bad = request(tmp_path, "bad", 3)
    Path(bad.candidates[1]).write_bytes(b"not an image")
    with OpenAIServer() as server:
        judge = build_judge(
            "autorater_openai", {"base_url": server.url, "model": "m", "cache": "false"}, progress=False
        )
        out = judge.judge_all([good, bad])
        assert server.request_count == 1
        assert [v.status for v in out] == ["ok", "input_error"]
        assert "task 'imagereward_pair', doc 'bad', field 'image_2'" in out[1].error
        assert bad.candidates[1] in out[1].error and judge.stats.input_errors == 1
        from lmms_eval_autorater.judges.judge import AllInputsFailedError

        with pytest.raises(AllInputsFailedError, match="every one of the 1 docs is an input error"):
            judge.judge_all([bad])
        assert server.request_count == 1


def test_local_cache_key_covers_what_changes_an_answer():
    pytest.importorskip("torch")
    from lmms_eval_autorater.judges.backends.internvl import InternVLBackend
    from lmms_eval_autorater.judges.pipeline import LocalCompleter
    from lmms_eval_autorater.judges.types import ChatPrompt

    prompt = ChatPrompt(system="s", parts=("hello",))

    def key(**kw):
        backend = InternVLBackend(pretrained="x", device="cpu", **kw)
        backend._fingerprint = "fp"  # the weights' identity, fixed here: only the settings vary
        return LocalCompleter(backend, cache=None, progress=False).key(prompt)

    base = key()
    variants = [
        {"dtype": "bfloat16"},
        {"attn_implementation": "sdpa"},
        {"max_patches": 2},
        {"min_patches": 2},
        {"crop_to_patches": False},
        {"max_new_tokens": 64},
    ]
    keys = {base} | {key(**v) for v in variants}
    assert len(keys) == len(variants) + 1  # every setting changes the key
    assert key(batch_size=1) == base  # the batch size does not change greedy answers (checked on GPU)


def test_each_image_is_decoded_once_per_judge_family(tmp_path, monkeypatch):
    """``with_tools`` copies share the input-check memo: a grid over 41 subsets decodes each image once."""
    import lmms_eval_autorater.judges.judge as judge_module

    decoded: list[str] = []
    real = judge_module.load_image
    monkeypatch.setattr(judge_module, "load_image", lambda ref: decoded.append(ref) or real(ref))
    reqs = [request(tmp_path, "d1", 1), request(tmp_path, "d2", 5)]
    with OpenAIServer() as server:
        judge = build_judge(
            "autorater_openai", {"base_url": server.url, "model": "m", "cache": "false"}, progress=False
        )
        judge.judge_all(reqs)
        judge.with_tools([]).judge_all(reqs)
        assert judge.with_tools([]).check(reqs) == [None, None]
    assert sorted(decoded) == sorted(ref for r in reqs for ref in r.candidates)
