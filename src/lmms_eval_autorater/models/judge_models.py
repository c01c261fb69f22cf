"""lmms-eval models of the AutoRater judge: ``autorater_gpt4o``, ``autorater_gemini``, ``autorater_openai``,
``autorater_internvl`` and the paper's variants (``_all``, ``_auto``, ``_grid``, ``autorater_internvl_ft``,
``autorater_internvl_ft_all``; ``catalog.models``). Thin: each gets its judge from the factory (``judges.factory``), reads the
structured doc fields (through ``task_dict``), judges all docs at once, and returns one verdict envelope
per doc.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from loguru import logger

from lmms_eval_autorater.errors import fatal_in_run
from lmms_eval_autorater.judges.args import ModelArgError
from lmms_eval_autorater.judges.envelope import encode_verdict
from lmms_eval_autorater.judges.factory import build_judge, judge_config
from lmms_eval_autorater.judges.judge import input_error_verdict, require_some_inputs
from lmms_eval_autorater.judges.types import Verdict
from lmms_eval_autorater.tasks.common import doc_to_request


class AutoraterJudgeBase(lmms):
    """Shared wrapper: the factory's judge over the docs of every request, results as envelopes."""

    is_simple = True
    NAME = ""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        with fatal_in_run():  # a bad argument, a missing key, an unusable cache: one line and exit 1
            self.config = judge_config(self.NAME, kwargs)
            self.judge = build_judge(self.config, per_task=True)
        self.backend = self.judge.backend

    def generate_until(self, requests: list[Instance]) -> list[str]:
        """Judge every doc of every request at once; one verdict envelope per request, in order.

        A ``_grid`` variant judges each task's docs with that task's own subset; every variant records its
        name (and a ``_grid`` variant the subset and where it came from) in each verdict's ``meta``. Our
        typed errors (an unusable cache, every input bad) end the run with one line and exit 1."""
        with fatal_in_run():
            return self._generate_until(requests)

    def _generate_until(self, requests: list[Instance]) -> list[str]:
        reqs, tasks = [], []
        for inst in requests:
            _, _, _, doc_id, task, split = inst.args
            reqs.append(doc_to_request(self.task_dict[task][split][doc_id], task, doc_id))
            tasks.append(task)
        verdicts: list[Verdict | None] = [None] * len(reqs)
        used, skipped_input_errors = [], 0
        for judge, idx, extra in self._plan(reqs, tasks):
            part = [reqs[i] for i in idx]
            problems = judge.check(part) if self.config.variant == "grid" else [None]
            if all(p is not None for p in problems):  # a grid run's task that is all input errors (logged)
                out = [input_error_verdict(p) for p in problems]
                skipped_input_errors += len(out)
                for p in problems:
                    logger.error(f"autorater: {p}; not sent, counted in input_errors")
            else:
                estimates = self._estimate(part, judge)
                out = judge.judge_all(part)
                for v, e in zip(out, estimates or []):
                    v.meta["estimate"] = (
                        e  # recorded beside what was spent (results: estimated_usd next to cost_usd)
                    )
                used.append(judge)
            for i, v in zip(idx, out):
                v.meta.update(extra)
                verdicts[i] = v
        self._log_stats(used, skipped_input_errors)
        return [encode_verdict(v, r.paradigm) for v, r in zip(verdicts, reqs)]

    def _plan(self, reqs: list, tasks: list[str]) -> list[tuple[Any, list[int], dict]]:
        """(judge, request indices, verdict metadata) per part of the run: one part, or one per task for a
        ``_grid`` variant. Every task's subset is checked before anything is sent."""
        if self.config.variant is None:
            return [(self.judge, list(range(len(reqs))), {})]
        if self.config.variant != "grid":
            return [(self.judge, list(range(len(reqs))), {"variant": self.NAME})]
        require_some_inputs(self.judge.check(reqs))  # as a single judge_all would: not one usable doc
        parts: dict[str, list[int]] = {}
        for i, task in enumerate(tasks):
            parts.setdefault(task, []).append(i)
        plan = []
        for task, idx in parts.items():
            subset = self._task_subset(task, {reqs[i].task_kind for i in idx})
            judge = self.judge.with_tools(subset)
            judge.config = replace(self.config, tools=list(subset))
            source = self.config.subset_source[task]
            logger.info(f"autorater: {self.NAME} judges {task} with {'+'.join(subset)} (from {source})")
            plan.append(
                (judge, idx, {"variant": self.NAME, "subset": "+".join(subset), "subset_source": source})
            )
        return plan

    def _task_subset(self, task: str, kinds: set[str]) -> list[str]:
        """The ``_grid`` subset of ``task``; a task without one, or a subset that does not apply to its kind,
        is a ``ModelArgError`` naming both."""
        from lmms_eval_autorater.specialists.registry import applicable

        subset = self.config.task_tools.get(task)
        if subset is None:
            named = ", ".join(sorted(self.config.task_tools)) or "none"
            where = self.config.args.get("grid_result") or "the paper"
            raise ModelArgError(
                f"{self.NAME}: no specialist subset for task {task} in {where} (it names: {named}); "
                f"run lmms-eval-autorater grid --task {task} and pass its output as grid_result="
            )
        for kind in sorted(kinds):
            bad = [c for c in subset if c not in applicable(kind)]
            if bad:
                raise ModelArgError(
                    f"{self.NAME}: subset {'+'.join(subset)} for task {task} (from "
                    f"{self.config.subset_source[task]}) has {'+'.join(bad)}, which do not apply to {kind} tasks"
                )
        return subset

    def _log_stats(self, judges: list, skipped_input_errors: int) -> None:
        """One line of the run's counts, summed over the judges of its parts."""
        counts = {
            k: sum(getattr(j.stats, k) for j in judges)
            for k in ("requests", "input_errors", "parse_failures", "api_failures", "budget_skipped")
        }
        counts["requests"] += skipped_input_errors
        counts["input_errors"] += skipped_input_errors
        logger.info(
            f"autorater: {counts['requests']} docs judged; {counts['input_errors']} input errors, "
            f"{counts['parse_failures']} parse failures, {counts['api_failures']} API failures, "
            f"{counts['budget_skipped']} budget_skipped; "
            f"backend {self.judge.completer.stats()}"
        )

    def _estimate(self, reqs: list, judge: Any = None) -> list[dict] | None:
        """Per doc, what the run is estimated to spend (``judges.estimate``), made before anything is sent;
        None for a local judge, or when the estimate itself fails (logged; the run goes on)."""
        from lmms_eval_autorater.judges.estimate import estimate_requests

        try:
            return estimate_requests(judge or self.judge, reqs)
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


# -- the paper's variants (catalog.models): the base judge with tools= fixed -------------------------------


class AutoraterGPT4oAll(AutoraterGPT4o):
    """``autorater_gpt4o_all``: GPT-4o + All (every applicable specialist)."""

    NAME = "autorater_gpt4o_all"


class AutoraterGPT4oAuto(AutoraterGPT4o):
    """``autorater_gpt4o_auto``: GPT-4o + Auto (the judge picks its specialists per sample)."""

    NAME = "autorater_gpt4o_auto"


class AutoraterGPT4oGrid(AutoraterGPT4o):
    """``autorater_gpt4o_grid``: GPT-4o + Grid, each task with its own subset (the paper's or ``grid_result=``)."""

    NAME = "autorater_gpt4o_grid"


class AutoraterGeminiAll(AutoraterGemini):
    """``autorater_gemini_all``: Gemini 2.5 Pro + All."""

    NAME = "autorater_gemini_all"


class AutoraterGeminiAuto(AutoraterGemini):
    """``autorater_gemini_auto``: Gemini 2.5 Pro + Auto."""

    NAME = "autorater_gemini_auto"


class AutoraterGeminiGrid(AutoraterGemini):
    """``autorater_gemini_grid``: Gemini 2.5 Pro + Grid, each task with its own subset."""

    NAME = "autorater_gemini_grid"


class AutoraterInternVLAll(AutoraterInternVL):
    """``autorater_internvl_all``: InternVL3-8B with every applicable specialist (Table 3's setup 4)."""

    NAME = "autorater_internvl_all"


class AutoraterInternVLAuto(AutoraterInternVL):
    """``autorater_internvl_auto``: InternVL3-8B picking its specialists per sample."""

    NAME = "autorater_internvl_auto"


class AutoraterInternVLGrid(AutoraterInternVL):
    """``autorater_internvl_grid``: InternVL3-8B, each task with the subset of ``grid_result=`` (required: the
    paper has no InternVL Grid row)."""

    NAME = "autorater_internvl_grid"


class AutoraterInternVLFt(AutoraterInternVL):
    """``autorater_internvl_ft``: a fine-tuned InternVL (``pretrained=`` required) judging without tools."""

    NAME = "autorater_internvl_ft"


class AutoraterInternVLFtAll(AutoraterInternVL):
    """``autorater_internvl_ft_all``: a fine-tuned InternVL (``pretrained=`` required) with every specialist."""

    NAME = "autorater_internvl_ft_all"
