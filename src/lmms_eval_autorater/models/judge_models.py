"""lmms-eval models of the AutoRater judge: ``autorater_gpt4o``, ``autorater_gemini``, ``autorater_openai``,
``autorater_internvl``. Thin: each gets its judge from the factory (``judges.factory``), reads the
structured doc fields (through ``task_dict``), judges all docs at once, and returns one verdict envelope
per doc.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from loguru import logger

from lmms_eval_autorater.errors import CacheError
from lmms_eval_autorater.judges.envelope import encode_verdict
from lmms_eval_autorater.judges.factory import build_judge, judge_config
from lmms_eval_autorater.tasks.common import doc_to_request


@contextmanager
def _fatal_cache_errors():
    """A cache file that cannot be used ends the process non-zero: lmms-eval catches ``Exception`` around
    evaluation and exits 0, so the one line goes out as ``SystemExit``."""
    try:
        yield
    except CacheError as exc:
        raise SystemExit(f"autorater: {exc}") from exc


class AutoraterJudgeBase(lmms):
    """Shared wrapper: the factory's judge over the docs of every request, results as envelopes."""

    is_simple = True
    NAME = ""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        self.config = judge_config(self.NAME, kwargs)
        with _fatal_cache_errors():
            self.judge = build_judge(self.config)
        self.backend = self.judge.backend

    def generate_until(self, requests: list[Instance]) -> list[str]:
        """Judge every doc of every request at once; one verdict envelope per request, in order."""
        reqs = []
        for inst in requests:
            _, _, _, doc_id, task, split = inst.args
            reqs.append(doc_to_request(self.task_dict[task][split][doc_id], task, doc_id))
        estimates = self._estimate(reqs)
        with _fatal_cache_errors():
            verdicts = self.judge.judge_all(reqs)
        for v, e in zip(verdicts, estimates or []):
            v.meta["estimate"] = e  # recorded beside what was spent (results: estimated_usd next to cost_usd)
        stats = self.judge.stats
        logger.info(
            f"autorater: {stats.requests} docs judged; {stats.input_errors} input errors, "
            f"{stats.parse_failures} parse failures, {stats.api_failures} API failures, "
            f"{stats.budget_skipped} budget_skipped; "
            f"backend {self.judge.completer.stats()}"
        )
        return [encode_verdict(v, r.paradigm) for v, r in zip(verdicts, reqs)]

    def _estimate(self, reqs: list) -> list[dict] | None:
        """Per doc, what the run is estimated to spend (``judges.estimate``), made before anything is sent;
        None for a local judge, or when the estimate itself fails (logged; the run goes on)."""
        from lmms_eval_autorater.judges.estimate import estimate_requests

        try:
            return estimate_requests(self.judge, reqs)
        except Exception as exc:  # the estimate is advice: a failure of it must not stop the judging
            logger.warning(f"autorater: no cost estimate for this run ({type(exc).__name__}: {exc})")
            return None

    def loglikelihood(self, requests):
        raise NotImplementedError("AutoRater judges generate verdicts; loglikelihood tasks are not supported")

    def generate_until_multi_round(self, requests):
        raise NotImplementedError("AutoRater judges do not support multi-round generation")


class AutoraterAPIJudge(AutoraterJudgeBase):
    """A judge behind an OpenAI-compatible chat API."""


class AutoraterGPT4o(AutoraterAPIJudge):
    """``autorater_gpt4o``: OpenAI GPT-4o, a dated snapshot by default so results are reproducible."""

    NAME = "autorater_gpt4o"


class AutoraterGemini(AutoraterAPIJudge):
    """``autorater_gemini``: Gemini 2.5 Pro through Gemini's OpenAI-compatible endpoint (key in $GEMINI_API_KEY)."""

    NAME = "autorater_gemini"


class AutoraterOpenAICompatible(AutoraterAPIJudge):
    """``autorater_openai``: any OpenAI-compatible server (vLLM, SGLang, ...): ``base_url=`` and ``model=``."""

    NAME = "autorater_openai"


class AutoraterInternVL(AutoraterJudgeBase):
    """``autorater_internvl``: a local InternVL (-hf) judge through transformers; one process per GPU."""

    NAME = "autorater_internvl"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
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
