"""lmms-eval models of the released scorers: Table 2's ``hpsv3``, ``imagereward``, ``qsit``, and the reward
models users compare against, ``pickscore``, ``hpsv2``, ``clipscore``, ``editreward`` and ``editscore`` (editing).

Each scores every candidate image against the request: pointwise tasks get the score, pairwise
tasks the image with the higher score (equal scores are a tie, handled by the task's tie policy).
The raw scores go into the envelope, so they appear in the logged samples. A scorer made for one task
kind (the catalog's ``task_kind``) refuses a task of the other kind before scoring anything; a score that
is not a finite number is a counted failure of its doc (``parse_failures``), never a verdict.
"""

from __future__ import annotations

import math
from typing import Any

from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from loguru import logger
from tqdm import tqdm

from lmms_eval_autorater.catalog.models import MODELS as CATALOG
from lmms_eval_autorater.errors import UsageError, fatal_in_run
from lmms_eval_autorater.judges.args import as_int, check_known
from lmms_eval_autorater.judges.envelope import encode_verdict
from lmms_eval_autorater.judges.judge import check_inputs, input_error_verdict, require_some_inputs
from lmms_eval_autorater.judges.types import Verdict
from lmms_eval_autorater.tasks.common import doc_to_request


def nonfinite_verdict(name: str, req, scores: list[float]) -> Verdict:
    """The verdict of a doc whose model score is NaN or infinite: a failure, never a tie or a number."""
    task, _, doc = req.doc_key.partition("/")
    return Verdict(
        status="parse_failure",
        error=f"task {task!r}, doc {doc!r}: {name} gave a non-finite score {scores} (not a prediction)",
        meta={"model": name, "scores": [repr(x) for x in scores], "nonfinite_score": True},
    )


class BaselineScorerModel(lmms):
    """Shared wrapper: collect every candidate of every doc, score them in batches, compare."""

    is_simple = True
    ALLOWED: set[str] = {"device", "batch_size", "max_batch_size"}
    NAME = "baseline"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        with fatal_in_run():  # a bad argument or checkpoint: one line and exit 1, not lmms-eval's exit 0
            check_known(self.NAME, kwargs, self.ALLOWED)
            self.args = kwargs
            self.batch_size = as_int("batch_size", kwargs.get("batch_size") or 8, 1)
            self.device_arg = kwargs.get("device") or None
            self.scorer = self.build_scorer()

    def default(self, arg: str) -> str | None:
        """``arg`` as given, else the catalog's default checkpoint argument of this model."""
        return self.args.get(arg, CATALOG[self.NAME].defaults.get(arg))

    def build_scorer(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def score(self, prompts: list[str], images: list[str]) -> list[float]:
        """One score per (prompt, image reference)."""
        return list(self.scorer.score(prompts, images))

    def score_keys(self, keys: list[tuple[str, str | None, str]]) -> list[float]:
        """One score per (request, source image or None, candidate image); generation scorers ignore the source."""
        return self.score([p for p, _, _ in keys], [ref for _, _, ref in keys])

    def generate_until(self, requests: list[Instance]) -> list[str]:
        """Score each candidate once; pairwise: the higher score wins, equal scores are a tie (0).

        A doc with an image that does not decode is an input error (logged, counted, not scored); a
        checkpoint that cannot be loaded ends the run with one line (exit 1)."""
        with fatal_in_run():
            return self._generate_until(requests)

    def key_failure(self, key: tuple[str, str | None, str]) -> tuple[str, str] | None:
        """(status, reason) when scoring ``key`` failed in a way the scorer names (``api_error``,
        ``parse_failure``); None otherwise (a non-finite score is still a parse failure)."""
        return None

    def check_tasks(self, kinds: dict[str, str]) -> None:
        """Refuse, before anything is scored, the tasks (name -> task kind) this scorer is not made for."""
        entry = CATALOG.get(self.NAME)
        if entry is None:  # a scorer outside the catalog (a user's subclass): no task kind to check
            return
        wrong = sorted(t for t, kind in kinds.items() if not entry.applies_to(kind))
        if wrong:
            other = "editing" if entry.task_kind == "generation" else "generation"
            raise UsageError(
                f"{self.NAME} scores {entry.task_kind} only; refused: {other} task(s) {', '.join(wrong)} "
                f"(run it on the {entry.task_kind} tasks alone)"
            )

    def _generate_until(self, requests: list[Instance]) -> list[str]:
        reqs = []
        for inst in requests:
            _, _, _, doc_id, task, split = inst.args
            reqs.append(doc_to_request(self.task_dict[task][split][doc_id], task, doc_id))
        self.check_tasks({r.doc_key.split("/", 1)[0]: r.task_kind for r in reqs})
        bad = check_inputs(reqs)
        for error in bad:
            if error is not None:
                logger.error(f"{self.NAME}: {error}; not scored, counted in input_errors")
        require_some_inputs(bad)
        unique: dict[tuple[str, str | None, str], int] = {}
        for r, error in zip(reqs, bad):
            if error is None:
                for ref in r.candidates:
                    unique.setdefault((r.request, r.source, ref), len(unique))
        keys = list(unique)
        scores: list[float] = []
        with tqdm(total=len(keys), desc=f"{self.NAME} scoring", unit="img") as bar:
            for start in range(0, len(keys), self.batch_size):  # one batch at a time: a live progress bar
                chunk = keys[start : start + self.batch_size]
                scores.extend(self.score_keys(chunk))
                bar.update(len(chunk))
        logger.info(
            f"{self.NAME}: scored {len(keys)} images for {len(reqs)} docs ({sum(e is not None for e in bad)} input errors)"
        )
        out = []
        for r, error in zip(reqs, bad):
            if error is not None:
                out.append(encode_verdict(input_error_verdict(error), r.paradigm))
                continue
            s = [float(scores[unique[(r.request, r.source, ref)]]) for ref in r.candidates]
            meta = {"model": self.NAME, "scores": s}
            failed = next(
                (f for ref in r.candidates if (f := self.key_failure((r.request, r.source, ref)))), None
            )
            if failed is not None:
                status, reason = failed
                task, _, doc = r.doc_key.partition("/")
                v = Verdict(
                    status=status, error=f"task {task!r}, doc {doc!r}: {self.NAME}: {reason}", meta=meta
                )
                logger.error(f"{self.NAME}: {v.error}; counted as {status}")
                out.append(encode_verdict(v, r.paradigm))
                continue
            if not all(math.isfinite(x) for x in s):
                v = nonfinite_verdict(self.NAME, r, s)
                logger.error(f"{self.NAME}: {v.error}; counted in parse_failures")
                out.append(encode_verdict(v, r.paradigm))
                continue
            if r.paradigm == "pointwise":
                v = Verdict(status="ok", score=s[0], meta=meta)
            else:
                v = Verdict(status="ok", preferred=1 if s[0] > s[1] else 2 if s[1] > s[0] else 0, meta=meta)
            out.append(encode_verdict(v, r.paradigm))
        return out

    def loglikelihood(self, requests):
        raise NotImplementedError(f"{self.NAME} scores images; loglikelihood tasks are not supported")

    def generate_until_multi_round(self, requests):
        raise NotImplementedError(f"{self.NAME} does not support multi-round generation")


class HPSv3Model(BaselineScorerModel):
    """``hpsv3``: HPSv3 (Qwen2-VL + reward head), score = the head's mu."""

    ALLOWED = BaselineScorerModel.ALLOWED | {"checkpoint", "base_model", "local_files_only", "dtype"}
    NAME = "hpsv3"

    def build_scorer(self):
        from lmms_eval_autorater.baselines.hpsv3 import HPSv3Scorer

        return HPSv3Scorer(
            checkpoint=self.default("checkpoint"),
            base_model=self.default("base_model"),
            device=self.device_arg,
            batch_size=self.batch_size,
            local_files_only=self.args.get("local_files_only"),
            dtype=self.args.get("dtype"),
        )


class ImageRewardModel(BaselineScorerModel):
    """``imagereward``: ImageReward (BLIP + MLP head), z-normalised reward as upstream."""

    ALLOWED = BaselineScorerModel.ALLOWED | {
        "checkpoint",
        "med_config",
        "tokenizer",
        "local_files_only",
        "dtype",
    }
    NAME = "imagereward"

    def build_scorer(self):
        from lmms_eval_autorater.baselines.imagereward import ImageRewardScorer

        return ImageRewardScorer(
            checkpoint=self.default("checkpoint"),
            med_config=self.args.get("med_config"),
            tokenizer=self.default("tokenizer"),
            device=self.device_arg,
            batch_size=self.batch_size,
            local_files_only=self.args.get("local_files_only"),
            dtype=self.args.get("dtype"),
        )


class QSiTModel(BaselineScorerModel):
    """``qsit``: Q-SiT quality score 0..1 (the QS specialist's recipe; the request is not used)."""

    ALLOWED = BaselineScorerModel.ALLOWED | {"pretrained", "local_files_only", "dtype"}
    NAME = "qsit"

    def build_scorer(self):
        from lmms_eval_autorater.specialists.qs import QSiTScorer

        return QSiTScorer(
            pretrained=self.default("pretrained"),
            device=self.device_arg,
            dtype=self.args.get("dtype"),
            batch_size=self.batch_size,
            local_files_only=self.args.get("local_files_only"),
        )

    def score(self, prompts: list[str], images: list[str]) -> list[float]:
        return list(self.scorer.score(images))


class PickScoreModel(BaselineScorerModel):
    """``pickscore``: PickScore_v1, ``logit_scale.exp() * cos(image, prompt)`` (generation tasks)."""

    ALLOWED = BaselineScorerModel.ALLOWED | {"checkpoint", "processor", "local_files_only", "dtype"}
    NAME = "pickscore"

    def build_scorer(self):
        from lmms_eval_autorater.baselines.pickscore import PickScoreScorer

        return PickScoreScorer(
            checkpoint=self.default("checkpoint"),
            processor=self.default("processor"),
            device=self.device_arg,
            batch_size=self.batch_size,
            local_files_only=self.args.get("local_files_only"),
            dtype=self.args.get("dtype"),
        )


class HPSv2Model(BaselineScorerModel):
    """``hpsv2``: HPSv2.1 on open_clip ViT-H-14, the cosine of image and prompt features (generation tasks)."""

    ALLOWED = BaselineScorerModel.ALLOWED | {"checkpoint", "arch", "local_files_only", "dtype"}
    NAME = "hpsv2"

    def build_scorer(self):
        from lmms_eval_autorater.baselines.hpsv2 import HPSv2Scorer

        return HPSv2Scorer(
            checkpoint=self.default("checkpoint"),
            arch=self.default("arch"),
            device=self.device_arg,
            batch_size=self.batch_size,
            local_files_only=self.args.get("local_files_only"),
            dtype=self.args.get("dtype"),
        )


class CLIPScoreModel(BaselineScorerModel):
    """``clipscore``: ``max(100 * cos(image, prompt), 0)`` as torchmetrics defines it (generation tasks)."""

    ALLOWED = BaselineScorerModel.ALLOWED | {"checkpoint", "processor", "local_files_only", "dtype"}
    NAME = "clipscore"

    def build_scorer(self):
        from lmms_eval_autorater.baselines.clipscore import CLIPScoreScorer

        return CLIPScoreScorer(
            checkpoint=self.default("checkpoint"),
            processor=self.args.get("processor"),
            device=self.device_arg,
            batch_size=self.batch_size,
            local_files_only=self.args.get("local_files_only"),
            dtype=self.args.get("dtype"),
        )


class EditRewardModel(BaselineScorerModel):
    """``editreward``: EditReward (Qwen2.5-VL + two reward heads) on (instruction, source, edited) (editing tasks)."""

    ALLOWED = BaselineScorerModel.ALLOWED | {"checkpoint", "base_model", "local_files_only", "dtype"}
    NAME = "editreward"

    def build_scorer(self):
        from lmms_eval_autorater.baselines.editreward import EditRewardScorer

        return EditRewardScorer(
            checkpoint=self.default("checkpoint"),
            base_model=self.default("base_model"),
            device=self.device_arg,
            batch_size=self.batch_size,
            local_files_only=self.args.get("local_files_only"),
            dtype=self.args.get("dtype"),
        )

    def check_sources(self, keys: list[tuple[str, str | None, str]]) -> None:
        """Refuse keys without a source image: editing docs carry one; a doc without one is not an editing doc."""
        missing = sum(src is None for _, src, _ in keys)
        if missing:
            raise UsageError(
                f"{self.NAME}: {missing} candidate(s) have no source image (not an editing task?)"
            )

    def score_keys(self, keys: list[tuple[str, str | None, str]]) -> list[float]:
        self.check_sources(keys)
        return list(
            self.scorer.score([p for p, _, _ in keys], [s for _, s, _ in keys], [c for _, _, c in keys])
        )


class EditScoreModel(EditRewardModel):
    """``editscore``: EditScore (Qwen2.5-VL + the EditScore LoRA, generative: SC and PQ answers) on (instruction,
    source, edited) (editing tasks); in process, or ``base_url=`` an OpenAI-compatible server (``model=``)."""

    ALLOWED = BaselineScorerModel.ALLOWED | {
        "pretrained",
        "lora",
        "local_files_only",
        "dtype",
        "num_pass",
        "seed",
        "temperature",
        "score_range",
        "reduction",
        "max_new_tokens",
        "base_url",
        "model",
        "api_key_env",
        "served_format",
        "concurrency",
        "max_retries",
    }
    NAME = "editscore"

    def build_scorer(self):
        from lmms_eval_autorater.baselines.editscore import MAX_NEW_TOKENS, EditScoreScorer
        from lmms_eval_autorater.judges.args import ModelArgError, as_float, check_server_url

        a = self.args
        self._failures: dict[tuple[str, str | None, str], tuple[str, str]] = {}
        transport = None
        if a.get("base_url"):
            url = str(a["base_url"])
            check_server_url(url, "base_url")
            if not a.get("model"):
                raise ModelArgError(
                    "editscore: base_url= needs model= (the name the server serves the merged model as)"
                )
            transport = _editscore_transport(
                str(a["model"]), url, a.get("api_key_env") or None, a.get("concurrency"), a.get("max_retries")
            )
        elif a.get("model"):
            raise ModelArgError(
                "editscore: model= names a served model; give base_url= too (or pretrained= in process)"
            )
        return EditScoreScorer(
            pretrained=self.default("pretrained"),
            lora=self.default("lora"),
            device=self.device_arg,
            batch_size=self.batch_size,
            local_files_only=self.args.get("local_files_only"),
            dtype=self.args.get("dtype"),
            num_pass=as_int("num_pass", a.get("num_pass", 1), 1),
            seed=as_int("seed", a.get("seed", 42), 0),
            temperature=as_float("temperature", a.get("temperature", 0.7)),
            score_range=as_int("score_range", a.get("score_range", 25), 1),
            reduction=str(a.get("reduction", "average_last")),
            max_new_tokens=as_int("max_new_tokens", a.get("max_new_tokens", MAX_NEW_TOKENS), 1),
            transport=transport,
            served_format=str(a.get("served_format", "qwen")),
        )

    def score_keys(self, keys: list[tuple[str, str | None, str]]) -> list[float]:
        self.check_sources(keys)
        results = self.scorer.score_detailed(
            [p for p, _, _ in keys], [s for _, s, _ in keys], [c for _, _, c in keys]
        )
        for key, res in zip(keys, results):
            if res.failure is not None:
                self._failures[key] = res.failure
        return [r.overall for r in results]

    def key_failure(self, key: tuple[str, str | None, str]) -> tuple[str, str] | None:
        return self._failures.get(key)


def _editscore_transport(model: str, base_url: str, api_key_env, concurrency, max_retries):
    """The served specialists' transport (the judge's OpenAI client, ``CallRunner`` retries and failure counts),
    sending EditScore's sampling settings instead of greedy decoding."""
    from lmms_eval_autorater.judges.served import ServedSpecialistBackend, ServedTransport

    class _Backend(ServedSpecialistBackend):
        def request_kwargs(self, prompt):  # type: ignore[override]
            kwargs = super().request_kwargs(prompt)
            extra = dict(kwargs.pop("extra_body", {}) or {})
            kwargs.update(extra.pop("sampling", {}))
            if extra:
                kwargs["extra_body"] = extra
            return kwargs

    opts: dict = {}
    if concurrency not in (None, ""):
        opts["concurrency"] = (
            concurrency if str(concurrency) == "auto" else as_int("concurrency", concurrency, 1)
        )
    if max_retries not in (None, ""):
        opts["max_retries"] = as_int("max_retries", max_retries, 0)
    return ServedTransport(_Backend(model, base_url, api_key_env=api_key_env), **opts)
