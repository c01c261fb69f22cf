"""The one place a judge is assembled: validated arguments -> backend, caches, specialist pool, ``Judge``.

Every entry point gets its judge here: the lmms-eval models (``autorater_*``), ``grid``, and the
commands and Python API that judge without lmms-eval around them. Arguments are the same
``key=value`` pairs as lmms-eval's ``--model_args`` (strings or typed values); an unknown key or a
bad value raises ``ModelArgError`` naming it, before anything is loaded or paid for.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from loguru import logger

from lmms_eval_autorater.catalog.models import MODELS as CATALOG
from lmms_eval_autorater.catalog.models import JudgePreset
from lmms_eval_autorater.catalog.models import judges as catalog_judges
from lmms_eval_autorater.judges.args import (
    SPECIALIST_CODES,
    ModelArgError,
    as_bool,
    as_float,
    as_int,
    as_opt_float,
    check_known,
    check_server_url,
    parse_tools,
)
from lmms_eval_autorater.specialists.registry import servable

#: judge name -> preset (the paper's variants included); the names are the lmms-eval model ids, and both
#: come from the model catalog (``catalog.models``)
PRESETS: dict[str, JudgePreset] = {e.id: e.preset for e in catalog_judges() if e.preset is not None}

#: accepted by every judge (lmms-eval itself passes batch_size, max_batch_size and device)
COMMON_ARGS = frozenset(
    {
        "tools",
        "swap",
        "scoring",
        "samples",
        "cache",
        "cache_dir",
        "specialist_device",
        "specialist_batch_size",
        "batch_size",
        "max_batch_size",
        "device",
        "max_image_bytes",
        "max_image_pixels",
    }
    | {f"{c.lower()}_model" for c in SPECIALIST_CODES}
    | {f"{c.lower()}_base_url" for c in servable()}
)
#: the arguments of the specialists alone (the ``assess`` pre-pass: no judge is asked)
SPECIALIST_ARGS = frozenset(
    {"cache_dir", "specialist_device", "specialist_batch_size"}
    | {f"{c.lower()}_model" for c in SPECIALIST_CODES}
    | {f"{c.lower()}_base_url" for c in servable()}
)
API_ARGS = frozenset(
    {
        "model",
        "base_url",
        "api_key_env",
        "concurrency",
        "max_retries",
        "retry_budget",
        "final_round",
        "timeout",
        "max_tokens",
        "seed",
        "temperature",
        "json_schema",
        "price_in",
        "price_out",
        "token_param",
        "send_seed",
        "image_detail",
        "backoff_base",
        "max_cost_usd",
        "batch",
    }
)
LOCAL_ARGS = frozenset(
    {
        "pretrained",
        "max_new_tokens",
        "dtype",
        "max_patches",
        "attn_implementation",
        "revision",
        "local_files_only",
    }
)


@dataclass
class JudgeConfig:
    """Validated judge arguments; ``backend`` holds the backend's own keyword arguments."""

    name: str
    kind: Literal["api", "local"]
    tools: str | list[str] = field(default_factory=list)
    swap: bool = False
    #: ``argmax`` (the integer verdict: the paper's protocol) or ``expected`` (from token probabilities)
    scoring: str = "argmax"
    #: answers per prompt (self-consistency, at a temperature above 0)
    samples: int = 1
    cache: bool = True
    cache_dir: str | None = None
    specialist_models: dict[str, str] = field(default_factory=dict)
    specialist_device: str | None = None
    specialist_batch_size: int = 8
    #: code -> base URL of the OpenAI-compatible server that serves it (``ae_base_url=``, ``qs_base_url=``);
    #: its ``<code>_model`` is then the served model name
    specialist_servers: dict[str, str] = field(default_factory=dict)
    backend: dict[str, Any] = field(default_factory=dict)
    runner: dict[str, Any] = field(default_factory=dict)
    #: API judges: send prompts as Batch API jobs (``judges/batch``) instead of direct calls
    batch: bool = False
    #: the arguments as given (for result metadata)
    args: dict[str, Any] = field(default_factory=dict)
    #: a paper variant (``autorater_gpt4o_grid``, ...): the tools it fixes (``all``, ``auto``, ``grid``, ``none``)
    variant: str | None = None
    #: ``grid`` variants: task -> its specialist subset, and where each came from (``paper`` or a file)
    task_tools: dict[str, list[str]] = field(default_factory=dict)
    subset_source: dict[str, str] = field(default_factory=dict)
    #: caps on every image read and decoded (``images.ImageLimits``; model args max_image_bytes/_pixels)
    max_image_bytes: int | None = None
    max_image_pixels: int | None = None

    def cache_file(self, name: str) -> str:
        """A cache file under ``cache_dir`` (default ``$AUTORATER_CACHE_DIR`` or ~/.cache/lmms_eval_autorater)."""
        from lmms_eval_autorater.kvstore import default_cache_dir

        return os.path.join(str(self.cache_dir or default_cache_dir()), name)


def judge_names(variants: bool = False) -> list[str]:
    """The judge names the factory knows, sorted; the paper's variants (which fix ``tools=``) only when asked."""
    return sorted(e.id for e in catalog_judges(variants=variants) if e.preset is not None)


def judge_config(name: str, args: Mapping[str, Any] | None = None) -> JudgeConfig:
    """Validate ``args`` for judge ``name``; errors name the argument and what is accepted."""
    if name not in PRESETS:
        raise ModelArgError(f"unknown judge {name!r}; known: {', '.join(judge_names(variants=True))}")
    preset = PRESETS[name]
    entry = CATALOG[name]
    kw = dict(args or {})
    allowed = COMMON_ARGS | (API_ARGS if preset.kind == "api" else LOCAL_ARGS)
    if entry.tools == "grid":
        allowed = allowed | {"grid_result"}
    check_known(name, kw, set(allowed))
    if entry.is_variant and "tools" in kw:
        raise ModelArgError(
            f"{name}: model argument tools={kw['tools']} conflicts with the variant, which fixes "
            f"{_fixed_tools_text(entry.tools)}; drop tools=, or use {entry.base} with tools={kw['tools']}"
        )
    for req in preset.required:
        if kw.get(req) in (None, ""):
            raise ModelArgError(f"{name}: model argument {req!r} is required, e.g. {preset.example}")
    cfg = JudgeConfig(
        name=name,
        kind=preset.kind,
        tools=parse_tools(kw.get("tools", _VARIANT_TOOLS.get(entry.tools, "none"))),
        swap=as_bool("swap", kw.get("swap", False)),
        scoring=parse_scoring(kw.get("scoring", "argmax")),
        samples=as_int("samples", kw.get("samples", 1), 1),
        cache=as_bool("cache", kw.get("cache", True)),
        cache_dir=kw.get("cache_dir") or None,
        **_specialist_settings(kw),
        args=kw,
        variant=entry.tools,
        max_image_bytes=None
        if kw.get("max_image_bytes") in (None, "")
        else as_int("max_image_bytes", kw["max_image_bytes"], 1),
        max_image_pixels=None
        if kw.get("max_image_pixels") in (None, "")
        else as_int("max_image_pixels", kw["max_image_pixels"], 1),
    )
    if entry.tools == "grid":
        cfg.task_tools, cfg.subset_source = _grid_subsets(name, entry.paper_group, kw.get("grid_result"))
    if preset.kind == "api":
        _api_config(cfg, preset, kw)
    else:
        _local_config(cfg, preset, kw)
    _check_scoring(cfg, preset)
    return cfg


def _specialist_settings(kw: Mapping[str, Any]) -> dict[str, Any]:
    """The specialist fields of a ``JudgeConfig`` from the model args (a judge's and ``assess``'s alike)."""
    return {
        "specialist_models": {
            c: str(kw[f"{c.lower()}_model"])
            for c in SPECIALIST_CODES
            if kw.get(f"{c.lower()}_model") not in (None, "")
        },
        "specialist_device": kw.get("specialist_device") or None,
        "specialist_batch_size": as_int("specialist_batch_size", kw.get("specialist_batch_size", 8), 1),
        "specialist_servers": specialist_servers(kw),
    }


def specialist_servers(kw: Mapping[str, Any]) -> dict[str, str]:
    """code -> server URL from ``ae_base_url=`` / ``qs_base_url=`` (a URL with credentials is refused)."""
    out = {}
    for code in servable():
        name = f"{code.lower()}_base_url"
        url = kw.get(name)
        if url in (None, ""):
            continue
        check_server_url(str(url), name)
        out[code] = str(url)
    return out


def specialist_config(args: Mapping[str, Any] | None = None) -> JudgeConfig:
    """Validated specialist arguments alone (the ``assess`` pre-pass, which asks no judge): the same names
    and checks as a judge's (``*_model``, ``*_base_url``, ``specialist_device``, ``specialist_batch_size``,
    ``cache_dir``); anything else is a ``ModelArgError`` naming it."""
    kw = dict(args or {})
    check_known("assess", kw, set(SPECIALIST_ARGS))
    return JudgeConfig(
        name="assess",
        kind="local",
        cache_dir=kw.get("cache_dir") or None,
        **_specialist_settings(kw),
        args=kw,
    )


def parse_scoring(value: Any) -> str:
    """``scoring=argmax|expected`` (case-insensitive); anything else names the argument."""
    text = str(value if value is not None else "argmax").strip().lower() or "argmax"
    if text not in ("argmax", "expected"):
        raise ModelArgError(f"model argument scoring={value!r}: expected argmax or expected")
    return text


#: why ``scoring=expected`` cannot run on a provider (checked against its documentation, not guessed)
NO_LOGPROBS = {
    "gemini": (
        "Gemini's OpenAI-compatible endpoint does not document logprobs/top_logprobs for its models "
        "(ai.google.dev/gemini-api/docs/openai), and the native API's responseLogprobs is refused for many "
        'models ("Logprobs is not supported for the current model")'
    ),
}


def _check_scoring(cfg: JudgeConfig, preset: JudgePreset) -> None:
    """Refuse, before anything is loaded or paid for, a scoring mode or sample count the judge cannot honour."""
    if cfg.scoring == "expected" and preset.provider in NO_LOGPROBS:
        raise ModelArgError(
            f"{cfg.name}: scoring=expected needs token log-probabilities, which this judge cannot return: "
            f"{NO_LOGPROBS[preset.provider]}; use scoring=argmax (the default) or samples=N"
        )
    if cfg.samples > 1 and cfg.kind == "api" and not (cfg.backend.get("temperature") or 0) > 0:
        raise ModelArgError(
            f"{cfg.name}: samples={cfg.samples} needs a temperature above 0 (N answers at temperature 0 are "
            "one answer N times); pass e.g. temperature=0.7"
        )
    if cfg.samples > 1 and cfg.kind == "local":
        raise ModelArgError(
            f"{cfg.name}: samples={cfg.samples}: the local judge decodes greedily (one answer per prompt); "
            "use samples=1"
        )
    if cfg.kind == "api":
        cfg.backend["scoring"] = cfg.scoring
    else:
        cfg.backend["output_scores"] = cfg.scoring == "expected"


#: what a variant's fixed tools mean as a ``tools=`` value (``grid`` judges with none until a task is known)
_VARIANT_TOOLS = {"all": "all", "auto": "auto", "none": "none", "grid": "none"}


def _fixed_tools_text(tools: str | None) -> str:
    if tools == "grid":
        return "each task's own specialist subset (the paper's, or grid_result=PATH's)"
    return f"tools={tools}"


def _grid_subsets(
    name: str, group: str | None, grid_result: Any
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """A ``_grid`` variant's subset per task: from ``grid_result=`` (a ``grid --output`` file or a folder of
    them) or, without it, the paper's bracketed subsets of the judge's ``+ Grid`` row."""
    from lmms_eval_autorater.catalog import paper

    if grid_result not in (None, ""):
        found = read_grid_results(str(grid_result))
        tools = {task: _subset(name, codes, source) for task, (codes, source) in found.items()}
        return tools, {task: source for task, (_, source) in found.items()}
    subsets = paper.grid_subsets(group) if group else {}
    if not subsets:
        raise ModelArgError(
            f"{name}: the paper has no + Grid row for this judge, so there is no default subset; pass "
            "grid_result=PATH (the JSON of lmms-eval-autorater grid --output, or a folder of them)"
        )
    where = f"paper ({paper.PAPER_FILE.name}: {paper.grid_row(group)['row']})"
    return (
        {task: _subset(name, codes, where) for task, codes in subsets.items()},
        dict.fromkeys(subsets, where),
    )


def _subset(name: str, codes: list[str], source: str) -> list[str]:
    tools = parse_tools("+".join(codes))
    if not isinstance(tools, list) or not tools:
        raise ModelArgError(f"{name}: {source} names no fixed specialist subset ({codes!r})")
    return tools


def read_grid_results(path: str) -> dict[str, tuple[list[str], str]]:
    """task -> (its chosen subset, the file it came from), from a ``grid --output`` JSON or a folder of them.

    The chosen subset is the held-out winner when the grid was selected on a separate part (``--select_on``),
    else its best. A file that is not a grid result, a grid with no best subset or two files for one task
    is a ``ModelArgError`` naming the file(s).
    """
    root = Path(path).expanduser()
    if root.is_dir():
        files = sorted(root.glob("*.json"))
        if not files:
            raise ModelArgError(f"grid_result={path}: no grid result (*.json) in this folder")
    elif root.is_file():
        files = [root]
    else:
        raise ModelArgError(f"grid_result={path}: no such file or folder")
    out: dict[str, tuple[list[str], str]] = {}
    for f in files:
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelArgError(f"grid_result: cannot read {f} as JSON ({exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("task"), str) or "rows" not in data:
            raise ModelArgError(
                f"grid_result: {f} is not the output of lmms-eval-autorater grid (no task/rows)"
            )
        held = data.get("held_out")
        subset = held.get("subset") if isinstance(held, dict) else data.get("best")
        if not isinstance(subset, str) or not subset:
            raise ModelArgError(
                f"grid_result: {f} has no best subset for task {data['task']} (no subset scored)"
            )
        if data["task"] in out:
            raise ModelArgError(
                f"grid_result: two grid results for task {data['task']}: {out[data['task']][1]} and {f}"
            )
        out[data["task"]] = (subset.split("+"), str(f))
    return out


def _api_config(cfg: JudgeConfig, preset: JudgePreset, kw: dict) -> None:
    key_env = kw.get("api_key_env", preset.key_env)
    max_retries = kw.get("max_retries")
    cfg.batch = as_bool("batch", kw.get("batch", False))
    cfg.backend = {
        "model": kw.get("model") or preset.model,
        "base_url": kw.get("base_url") or preset.base_url,
        "api_key_env": None if key_env is None or str(key_env).lower() in ("none", "") else str(key_env),
        "timeout": as_float("timeout", kw.get("timeout", 120.0)),
        "max_tokens": as_int("max_tokens", kw.get("max_tokens", 2048), 1),
        "seed": as_int("seed", kw.get("seed", 1234)),
        "temperature": as_float("temperature", kw.get("temperature", 0.0)),
        "use_json_schema": as_bool("json_schema", kw.get("json_schema", True)),
        "price_per_mtok_in": as_opt_float("price_in", kw.get("price_in")),
        "price_per_mtok_out": as_opt_float("price_out", kw.get("price_out")),
        "provider": preset.provider,
        "token_param": str(kw.get("token_param", "max_tokens")),
        "send_seed": as_bool("send_seed", kw.get("send_seed", preset.send_seed)),
        "image_detail": kw.get("image_detail") or None,
    }
    if cfg.backend["token_param"] not in ("max_tokens", "max_completion_tokens"):
        raise ModelArgError(
            f"model argument token_param={cfg.backend['token_param']!r}: expected max_tokens or max_completion_tokens"
        )
    concurrency = kw.get("concurrency", "auto")
    cfg.runner = {
        # "auto" (default): adaptive, AIMD (judges/runner.py); an integer pins it
        "concurrency": "auto"
        if str(concurrency).lower() == "auto"
        else as_int("concurrency", concurrency, 1),
        "max_retries": None if max_retries in (None, "", "none") else as_int("max_retries", max_retries, 0),
        "retry_budget": as_float("retry_budget", kw.get("retry_budget", 600.0)),
        "final_round": as_bool("final_round", kw.get("final_round", True)),
        "backoff_base": as_float("backoff_base", kw.get("backoff_base", 1.0)),
    }
    if cfg.runner["retry_budget"] <= 0:
        raise ModelArgError(f"model argument retry_budget={kw.get('retry_budget')!r}: must be > 0 seconds")
    max_cost = as_opt_float("max_cost_usd", kw.get("max_cost_usd"))
    if max_cost is not None:
        from lmms_eval_autorater.judges import prices

        if not max_cost >= 0:
            raise ModelArgError(f"model argument max_cost_usd={kw.get('max_cost_usd')!r}: must be >= 0 USD")
        b = cfg.backend
        if prices.cost_usd({}, b["model"], b["price_per_mtok_in"], b["price_per_mtok_out"]) is None:
            raise ModelArgError(
                f"model argument max_cost_usd={max_cost:g}: no price is known for model {b['model']!r}, so "
                "nothing could be counted against the budget; pass price_in= and price_out= (USD per million "
                "tokens)"
            )
        cfg.runner["max_cost_usd"] = max_cost


def _local_config(cfg: JudgeConfig, preset: JudgePreset, kw: dict) -> None:
    lfo = kw.get("local_files_only")
    cfg.backend = {
        "pretrained": str(kw.get("pretrained") or preset.model),
        "device": kw.get("device") if kw.get("device") not in ("", None) else None,
        "dtype": kw.get("dtype", "auto"),
        "max_new_tokens": as_int("max_new_tokens", kw.get("max_new_tokens", 1024), 1),
        "batch_size": as_int("batch_size", kw.get("batch_size", 4) or 4, 1),
        "local_files_only": None if lfo is None else as_bool("local_files_only", lfo),
        "attn_implementation": kw.get("attn_implementation") or None,
        "max_patches": None if kw.get("max_patches") is None else as_int("max_patches", kw["max_patches"], 1),
        "revision": kw.get("revision") or None,
    }


_warned_prices: set[str] = set()


def build_backend(cfg: JudgeConfig) -> Any:
    """The backend of ``cfg`` (an API client or a lazily loaded local model); raises on a missing key."""
    if cfg.kind == "api":
        from lmms_eval_autorater.judges.backends.openai_api import OpenAIChatBackend

        backend = OpenAIChatBackend(**cfg.backend)
        if backend.cost_usd({"prompt_tokens": 1, "completion_tokens": 1}) is None and (
            backend.model not in _warned_prices
        ):
            _warned_prices.add(backend.model)
            logger.warning(
                f"autorater: no price known for model {backend.model!r}: cost_usd is reported as unknown "
                "(null); pass price_in= and price_out= (USD per million tokens) to count it"
            )
        return backend
    from lmms_eval_autorater.judges.backends.internvl import InternVLBackend

    return InternVLBackend(**cfg.backend)


def build_completer(cfg: JudgeConfig, backend: Any, *, progress: bool = True) -> Any:
    """The cached ``complete_all`` over ``backend``: concurrent with retries (API), batch jobs (API with
    ``batch=true``, ``judges/batch``) or batched generation (local)."""
    cache = None
    if cfg.cache:
        from lmms_eval_autorater.judges.cache import ResponseCache

        cache = ResponseCache(cfg.cache_file("responses.sqlite"))
    if cfg.kind == "api" and cfg.batch:
        from lmms_eval_autorater.judges.batch import LEDGER_FILE, build_batch_completer

        return build_batch_completer(
            backend,
            cache=cache,
            ledger_path=cfg.cache_file(LEDGER_FILE),
            progress=progress,
            retry_budget=cfg.runner["retry_budget"],
            max_cost_usd=cfg.runner.get("max_cost_usd"),
        )
    if cfg.kind == "api":
        from lmms_eval_autorater.judges.pipeline import ApiCompleter

        return ApiCompleter(backend, cache=cache, progress=progress, **cfg.runner)
    from lmms_eval_autorater.judges.pipeline import LocalCompleter

    return LocalCompleter(backend, cache=cache, progress=progress)


def build_pool(cfg: JudgeConfig) -> Any:
    """The specialist pool (each specialist loads lazily, one at a time) with its content cache.

    Specialist outputs are cached whatever ``cache=`` says (that argument is about judge answers).
    """
    from lmms_eval_autorater.specialists.cache import AssessmentCache, SpecialistPool

    kwargs_by_code: dict[str, dict] = {c: {"model": m} for c, m in cfg.specialist_models.items()}
    for code in SPECIALIST_CODES:
        kwargs_by_code.setdefault(code, {})["batch_size"] = cfg.specialist_batch_size
    if cfg.specialist_servers:
        from lmms_eval_autorater.judges.served import build_transport
        from lmms_eval_autorater.specialists.registry import SPECS

        for code, url in cfg.specialist_servers.items():
            # the served model name: <code>_model=, else the catalog checkpoint (what vLLM names it by default)
            model = cfg.specialist_models.get(code) or SPECS[code].default_model
            kwargs_by_code[code].update(
                model=model, base_url=url, transport=build_transport(model, url, cfg.runner)
            )
    cache = AssessmentCache(cfg.cache_file("assessments.sqlite"))
    return SpecialistPool(kwargs_by_code, device=cfg.specialist_device, cache=cache)


def build_judge(
    name_or_config: str | JudgeConfig,
    args: Mapping[str, Any] | None = None,
    *,
    progress: bool = True,
    pool: Any = None,
    per_task: bool = False,
):
    """A ready ``Judge`` for a judge name and its arguments (or a validated ``JudgeConfig``).

    The specialist pool is created when the judge first needs a specialist (``tools=`` or a later
    ``judge.with_tools``); pass ``pool=`` to share one. ``judge.completer`` and ``judge.backend`` expose
    the pieces for statistics. A ``_grid`` variant is built only by its lmms-eval model (``per_task=True``),
    which gives each task its subset with ``judge.with_tools``.
    """
    from lmms_eval_autorater.images import set_image_limits
    from lmms_eval_autorater.judges.judge import Judge
    from lmms_eval_autorater.judges.pipeline import SpecialistAssessor
    from lmms_eval_autorater.judges.prompts import tool_menu
    from lmms_eval_autorater.specialists.registry import applicable
    from lmms_eval_autorater.specialists.render import render_assessments

    cfg = name_or_config if isinstance(name_or_config, JudgeConfig) else judge_config(name_or_config, args)
    if cfg.variant == "grid" and not per_task:
        raise ModelArgError(
            f"{cfg.name} judges each task with its own subset, which only its lmms-eval model knows how to "
            f"apply; here use {CATALOG[cfg.name].base} with tools=SUBSET"
        )
    # every reader in the process (input check, prompts, specialists, reports) decodes under these caps
    set_image_limits(cfg.max_image_bytes, cfg.max_image_pixels)
    backend = build_backend(cfg)
    completer = build_completer(cfg, backend, progress=progress)
    shared: dict[str, Any] = {"pool": pool}

    def make_assessor() -> SpecialistAssessor:
        if shared["pool"] is None:
            shared["pool"] = build_pool(cfg)
        return SpecialistAssessor(shared["pool"])

    judge = Judge(
        completer,
        tools=cfg.tools,
        swap=cfg.swap,
        make_assess=make_assessor,
        render=render_assessments,
        applicable=applicable,
        tool_menu=tool_menu,
        scoring=cfg.scoring,
        samples=cfg.samples,
    )
    judge.config = cfg
    judge.backend = backend
    return judge


__all__ = [
    "PRESETS",
    "read_grid_results",
    "JudgeConfig",
    "JudgePreset",
    "ModelArgError",
    "build_backend",
    "build_completer",
    "build_judge",
    "build_pool",
    "judge_config",
    "specialist_config",
    "judge_names",
]
