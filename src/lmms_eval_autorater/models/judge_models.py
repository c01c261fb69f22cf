"""lmms-eval models of the AutoRater judge: ``autorater_gpt4o``, ``autorater_gemini``, ``autorater_openai``,
``autorater_internvl``. Each reads the structured doc fields (through ``task_dict``), runs the judge
over all docs at once, and returns one verdict envelope per doc.
"""

from __future__ import annotations

import os
from typing import Any

from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from loguru import logger

from lmms_eval_autorater.judges.envelope import encode_verdict
from lmms_eval_autorater.judges.types import JudgeRequest
from lmms_eval_autorater.models.args import (
    SPECIALIST_CODES,
    ModelArgError,
    as_bool,
    as_float,
    as_int,
    check_known,
    parse_tools,
)

#: accepted by every judge model (lmms-eval itself passes batch_size, max_batch_size, device)
COMMON_ARGS = {
    "tools",
    "swap",
    "cache",
    "cache_dir",
    "specialist_device",
    "specialist_batch_size",
    "batch_size",
    "max_batch_size",
    "device",
} | {f"{c.lower()}_model" for c in SPECIALIST_CODES}
API_ARGS = {
    "model",
    "base_url",
    "api_key_env",
    "concurrency",
    "max_retries",
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
}
LOCAL_ARGS = {
    "pretrained",
    "max_new_tokens",
    "dtype",
    "max_patches",
    "attn_implementation",
    "revision",
    "local_files_only",
}

NOT_OUR_DOC = (
    "task {task!r} doc {doc_id} has no field {field!r}: AutoRater judges run on the AutoRater tasks "
    "(psr, imagereward_pair, imagereward_point, aigiqa), whose docs carry the structured fields"
)


def doc_to_request(doc: dict, task: str, doc_id: int) -> JudgeRequest:
    """The judge's structured request from a doc; a foreign task's doc gives an error naming the field."""
    for field in ("task_kind", "paradigm", "request", "image_1"):
        if field not in doc or doc[field] is None:
            raise ValueError(NOT_OUR_DOC.format(task=task, doc_id=doc_id, field=field))
    candidates = (doc["image_1"],) if doc["paradigm"] == "pointwise" else (doc["image_1"], doc["image_2"])
    if doc["paradigm"] == "pairwise" and not doc.get("image_2"):
        raise ValueError(NOT_OUR_DOC.format(task=task, doc_id=doc_id, field="image_2"))
    return JudgeRequest(
        doc_key=f"{task}/{doc.get('doc_id', doc_id)}",
        task_kind=doc["task_kind"],
        paradigm=doc["paradigm"],
        request=doc["request"],
        candidates=candidates,
        source=doc.get("source_image") or None,
    )


class AutoraterJudgeBase(lmms):
    """Shared wrapper: argument checking, specialists, doc lookup, the judge run, result logging."""

    is_simple = True
    ALLOWED: set[str] = COMMON_ARGS

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        check_known(type(self).__name__, kwargs, self.ALLOWED)
        self.args = kwargs
        self.tools = parse_tools(kwargs.get("tools", "none"))
        self.swap = as_bool("swap", kwargs.get("swap", False))
        self.use_cache = as_bool("cache", kwargs.get("cache", True))
        self.cache_dir = kwargs.get("cache_dir")
        self.specialist_kwargs = {
            c: kwargs[f"{c.lower()}_model"]
            for c in SPECIALIST_CODES
            if kwargs.get(f"{c.lower()}_model") not in (None, "")
        }
        self.specialist_device = kwargs.get("specialist_device")
        self.specialist_batch_size = as_int(
            "specialist_batch_size", kwargs.get("specialist_batch_size", 8), 1
        )
        self._judge = None
        self.completer = None
        self.pool = None

    # -- pieces ---------------------------------------------------------------------------------
    def cache_file(self, name: str) -> str:
        """A cache file under ``cache_dir`` (default ``$AUTORATER_CACHE_DIR`` or ~/.cache/lmms_eval_autorater)."""
        from lmms_eval_autorater.kvstore import default_cache_dir

        return os.path.join(str(self.cache_dir or default_cache_dir()), name)

    def response_cache(self):
        """The SQLite response cache (None with cache=false)."""
        if not self.use_cache:
            return None
        from lmms_eval_autorater.judges.cache import ResponseCache

        return ResponseCache(self.cache_file("responses.sqlite"))

    def build_completer(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def build_pool(self):
        """The cached specialist pool (specialists load lazily, one at a time)."""
        from lmms_eval_autorater.specialists.cache import AssessmentCache, SpecialistPool

        # Specialist outputs are cached even with cache=false (which is about judge answers): a pool
        # without a cache falls back to the default folder, so give it the one under cache_dir.
        cache = AssessmentCache(self.cache_file("assessments.sqlite"))
        kwargs_by_code = {c: {"model": m} for c, m in self.specialist_kwargs.items()}
        for code in SPECIALIST_CODES:
            kwargs_by_code.setdefault(code, {})["batch_size"] = self.specialist_batch_size
        return SpecialistPool(kwargs_by_code, device=self.specialist_device, cache=cache)

    def build_judge(self, tools: str | list[str] | None = None):
        """The judge for ``tools`` (default: the model argument); backend and pool are built once and shared."""
        from lmms_eval_autorater.judges.judge import Judge

        tools = self.tools if tools is None else tools
        if self.completer is None:
            self.completer = self.build_completer()
        if not tools:
            return Judge(self.completer, tools=[], swap=self.swap)
        from lmms_eval_autorater.judges.pipeline import SpecialistAssessor
        from lmms_eval_autorater.judges.prompts import tool_menu
        from lmms_eval_autorater.specialists.registry import applicable
        from lmms_eval_autorater.specialists.render import render_assessments

        if self.pool is None:
            self.pool = self.build_pool()
        return Judge(
            self.completer,
            tools=tools,
            swap=self.swap,
            assess=SpecialistAssessor(self.pool),
            render=render_assessments,
            applicable=applicable,
            tool_menu=tool_menu,
        )

    # -- lmms-eval API ----------------------------------------------------------------------------
    def generate_until(self, requests: list[Instance]) -> list[str]:
        """Judge every doc of every request at once; one verdict envelope per request, in order."""
        if self._judge is None:
            self._judge = self.build_judge()
        reqs, paradigms = [], []
        for inst in requests:
            _, _, _, doc_id, task, split = inst.args
            doc = self.task_dict[task][split][doc_id]
            req = doc_to_request(doc, task, doc_id)
            reqs.append(req)
            paradigms.append(req.paradigm)
        verdicts = self._judge.judge_all(reqs)
        stats = self._judge.stats
        logger.info(
            f"autorater: {stats.requests} docs judged; {stats.parse_failures} parse failures, "
            f"{stats.api_failures} API failures; backend {self.completer.stats()}"
        )
        return [encode_verdict(v, p) for v, p in zip(verdicts, paradigms)]

    def loglikelihood(self, requests):
        raise NotImplementedError("AutoRater judges generate verdicts; loglikelihood tasks are not supported")

    def generate_until_multi_round(self, requests):
        raise NotImplementedError("AutoRater judges do not support multi-round generation")


class AutoraterAPIJudge(AutoraterJudgeBase):
    """A judge behind an OpenAI-compatible chat API."""

    ALLOWED = COMMON_ARGS | API_ARGS
    DEFAULT_MODEL: str | None = None
    DEFAULT_BASE_URL: str | None = None
    DEFAULT_KEY_ENV: str | None = "OPENAI_API_KEY"
    PROVIDER = "openai"
    SEND_SEED = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = kwargs.get("model") or self.DEFAULT_MODEL
        if not self.model:
            raise ModelArgError(
                f"{type(self).__name__}: model argument 'model' is required, e.g. model=Qwen/Qwen2.5-VL-7B-Instruct"
            )
        self.base_url = kwargs.get("base_url") or self.DEFAULT_BASE_URL
        key_env = kwargs.get("api_key_env", self.DEFAULT_KEY_ENV)
        self.api_key_env = None if str(key_env).lower() in ("none", "") else key_env
        self.concurrency = as_int("concurrency", kwargs.get("concurrency", 16), 1)
        self.max_retries = as_int("max_retries", kwargs.get("max_retries", 6), 0)
        from lmms_eval_autorater.judges.backends.openai_api import OpenAIChatBackend

        self.backend = OpenAIChatBackend(
            model=self.model,
            base_url=self.base_url,
            api_key_env=self.api_key_env,
            timeout=as_float("timeout", kwargs.get("timeout", 120.0)),
            max_tokens=as_int("max_tokens", kwargs.get("max_tokens", 2048), 1),
            seed=as_int("seed", kwargs.get("seed", 1234)),
            temperature=as_float("temperature", kwargs.get("temperature", 0.0)),
            use_json_schema=as_bool("json_schema", kwargs.get("json_schema", True)),
            price_per_mtok_in=None
            if kwargs.get("price_in") is None
            else as_float("price_in", kwargs["price_in"]),
            price_per_mtok_out=None
            if kwargs.get("price_out") is None
            else as_float("price_out", kwargs["price_out"]),
            provider=self.PROVIDER,
            token_param=kwargs.get("token_param", "max_tokens"),
            send_seed=as_bool("send_seed", kwargs.get("send_seed", self.SEND_SEED)),
            image_detail=kwargs.get("image_detail"),
        )
        self.backoff_base = as_float("backoff_base", kwargs.get("backoff_base", 1.0))

    def build_completer(self):
        from lmms_eval_autorater.judges.pipeline import ApiCompleter

        return ApiCompleter(
            self.backend,
            cache=self.response_cache(),
            concurrency=self.concurrency,
            max_retries=self.max_retries,
            backoff_base=self.backoff_base,
        )


class AutoraterGPT4o(AutoraterAPIJudge):
    """``autorater_gpt4o``: OpenAI GPT-4o, a dated snapshot by default so results are reproducible."""

    DEFAULT_MODEL = "gpt-4o-2024-08-06"


class AutoraterGemini(AutoraterAPIJudge):
    """``autorater_gemini``: Gemini 2.5 Pro through Gemini's OpenAI-compatible endpoint (key in $GEMINI_API_KEY)."""

    DEFAULT_MODEL = "gemini-2.5-pro"
    DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/v1beta/openai/"
    DEFAULT_KEY_ENV = "GEMINI_API_KEY"
    PROVIDER = "gemini"
    SEND_SEED = False


class AutoraterOpenAICompatible(AutoraterAPIJudge):
    """``autorater_openai``: any OpenAI-compatible server (vLLM, SGLang, ...): ``base_url=`` and ``model=``."""

    DEFAULT_KEY_ENV = None
    PROVIDER = "openai-compatible"

    def __init__(self, **kwargs: Any) -> None:
        if not kwargs.get("base_url"):
            raise ModelArgError(
                "autorater_openai: model argument 'base_url' is required, "
                "e.g. base_url=http://127.0.0.1:8000/v1,model=OpenGVLab/InternVL3-8B"
            )
        super().__init__(**kwargs)


class AutoraterInternVL(AutoraterJudgeBase):
    """``autorater_internvl``: a local InternVL (-hf) judge through transformers; one process per GPU."""

    ALLOWED = COMMON_ARGS | LOCAL_ARGS

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from lmms_eval_autorater.judges.backends.internvl import InternVLBackend

        lfo = kwargs.get("local_files_only")
        self.backend = InternVLBackend(
            pretrained=kwargs.get("pretrained", "OpenGVLab/InternVL3-8B-hf"),
            device=kwargs.get("device") if kwargs.get("device") not in ("", None) else None,
            dtype=kwargs.get("dtype", "auto"),
            max_new_tokens=as_int("max_new_tokens", kwargs.get("max_new_tokens", 1024), 1),
            batch_size=as_int("batch_size", kwargs.get("batch_size", 4) or 4, 1),
            local_files_only=None if lfo is None else as_bool("local_files_only", lfo),
            attn_implementation=kwargs.get("attn_implementation"),
            max_patches=None
            if kwargs.get("max_patches") is None
            else as_int("max_patches", kwargs["max_patches"], 1),
            revision=kwargs.get("revision"),
        )
        # Data parallel as lmms-eval's own local models do: `accelerate launch` starts one process per GPU,
        # lmms-eval splits the docs by rank and gathers through this accelerator; each process puts its
        # model on cuda:{LOCAL_RANK} (the backend's default device) and shares the on-disk caches.
        from accelerate import Accelerator

        accelerator = Accelerator()
        if accelerator.num_processes > 1:
            self.accelerator = accelerator
        self._rank = accelerator.process_index
        self._world_size = accelerator.num_processes

    @property
    def device(self):
        """The torch device of this process (lmms-eval gathers per-rank counts on it)."""
        import torch

        return torch.device(self.backend.device)

    def build_completer(self):
        from lmms_eval_autorater.judges.pipeline import LocalCompleter

        return LocalCompleter(self.backend, cache=self.response_cache())
