"""AesExpert (AE) and Q-SiT (QS) behind an OpenAI-compatible server (vLLM, SGLang, ...), as specialists.

The in-process path (``ae.py``, ``qs.py``) runs the checkpoint through ``generate`` / one forward pass in
transformers; here the same checkpoint, served, gets the same prompt and the same parsing:

* AE: system ``AE_SYSTEM``, user ``<image>`` + ``AE_QUESTION``; greedy, at most ``max_new_tokens`` tokens;
  the text is the trimmed answer. The converted folder's chat template (``ae.LLAVA_V1_CHAT_TEMPLATE``)
  renders exactly ``ae.llava_v1_prompt``; ``add_special_tokens`` asks the server to prepend ``<s>`` as the
  in-process processor does (the template itself has no BOS).
* QS: user ``QSIT_PROMPT`` + image, then the assistant turn opened with ``QSIT_ASSISTANT_PREFIX`` and
  continued (``continue_final_message``, no generation prompt), one token, ``top_logprobs``. The score is
  the softmax over the log-probabilities of the five level words weighted 1..0: log-probabilities are the
  logits shifted by one constant, so this is ``quality_from_logits`` of the in-process path exactly. A level
  word outside the server's top ``QS_TOP_LOGPROBS`` has a probability below the smallest one listed and is
  counted as 0 (``levels_missing`` counts them); an answer with none of the five is a parse failure.

Transport (concurrency, retries, failure counting) is not here: the judge core hands each specialist a
``transport(requests) -> answers`` callable (``judges/served.py``, built on the judge's ``CallRunner``), so
this floor imports no judge. The cache key is the in-process one plus the server identity (the model name
at the server's URL, without credentials): a served result never stands in for an in-process one.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lmms_eval_autorater.errors import InputError
from lmms_eval_autorater.images import guess_mime, read_image_bytes
from lmms_eval_autorater.redact import redact_url
from lmms_eval_autorater.specialists.base import Specialist, SpecialistInput, SpecialistSpec
from lmms_eval_autorater.specialists.registry import SPECS
from lmms_eval_autorater.specialists.types import Assessment

#: log-probabilities asked for per generated token (vLLM's default ``--max-logprobs`` is 20)
QS_TOP_LOGPROBS = 20
#: requests a served specialist hands to the transport at once (the server batches them continuously)
SERVED_BATCH = 64


@dataclass(frozen=True)
class ServedRequest:
    """One chat-completion request of a served specialist: messages in the OpenAI format, the length limit,
    how many top log-probabilities to return (0: none) and server-specific fields (vLLM's extra body)."""

    messages: tuple[dict, ...]
    max_tokens: int
    top_logprobs: int = 0
    extra_body: dict = field(default_factory=dict)

    def payload(self) -> dict:
        """Everything that decides the answer (the transport's de-duplication key is made from it)."""
        return {
            "messages": list(self.messages),
            "max_tokens": self.max_tokens,
            "top_logprobs": self.top_logprobs,
            "extra_body": self.extra_body,
        }


@dataclass
class ServedAnswer:
    """A server's answer: the text, and per generated token its top log-probabilities (token -> logprob)."""

    text: str
    top_logprobs: list[dict[str, float]] = field(default_factory=list)


#: requests -> per request an answer, or the exception it failed with for good (after the runner's retries)
Transport = Callable[[list[ServedRequest]], list["ServedAnswer | BaseException"]]


class ParseError(ValueError):
    """A served answer that cannot be read as the specialist's output."""


def image_part(ref: str) -> dict:
    """The ``image_url`` part of an image reference: its original bytes as a data URL (no re-encoding, so
    the server decodes the same pixels as the in-process path)."""
    data = read_image_bytes(ref)
    encoded = base64.b64encode(data).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:{guess_mime(data)};base64,{encoded}"}}


def quality_from_logprobs(
    top: dict[str, float], levels: Sequence[str] | None = None, weights: Sequence[float] | None = None
) -> tuple[float, int]:
    """(Q-SiT score in 0..1, level words missing from ``top``) from one token's top log-probabilities.

    Softmax over the five level words' log-probabilities, weighted 1, 0.75, 0.5, 0.25, 0 (the in-process
    ``quality_from_logits``: a softmax does not change when every logit moves by the same constant). A
    missing word counts as probability 0; none present raises ``ParseError``.
    """
    from lmms_eval_autorater.specialists.qs import QSIT_LEVELS, QSIT_WEIGHTS

    levels = QSIT_LEVELS if levels is None else levels
    weights = QSIT_WEIGHTS if weights is None else weights
    found = [(w, float(top[word])) for word, w in zip(levels, weights, strict=True) if word in top]
    found = [(w, lp) for w, lp in found if math.isfinite(lp)]
    if not found:
        shown = ", ".join(sorted(top)[:8]) or "none"
        raise ParseError(
            f"none of the level words {', '.join(levels)} among the top log-probabilities ({shown})"
        )
    best = max(lp for _, lp in found)
    exps = [(w, math.exp(lp - best)) for w, lp in found]
    total = sum(e for _, e in exps)
    return sum(w * e for w, e in exps) / total, len(levels) - len(found)


class ServedSpecialist(Specialist):
    """A specialist whose model answers through an OpenAI-compatible server (``transport``)."""

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        transport: Transport | None = None,
        device: str | None = None,
        local_files_only: bool | None = None,
        batch_size: int = SERVED_BATCH,
    ) -> None:
        if not base_url:
            raise ValueError(f"{self.spec.code}: a served specialist needs base_url")
        super().__init__(model=model, device=None, local_files_only=local_files_only, batch_size=SERVED_BATCH)
        del device, batch_size  # the server owns the device and the batching
        self.base_url = str(base_url)
        self.transport = transport

    @property
    def server(self) -> str:
        """The server identity in cache keys and results: model name at the URL, without credentials."""
        return f"{self.model_name}@{redact_url(self.base_url).rstrip('/')}"

    @property
    def in_process_version(self) -> str:
        """The version of the in-process specialist with the same checkpoint and prompt settings."""
        raise NotImplementedError

    @property
    def version(self) -> str:
        """The in-process version (prompt settings included) plus the server identity."""
        return f"{self.in_process_version}:served:{self.server}"

    def _load(self) -> None:
        if self.transport is None:
            raise ValueError(f"{self.spec.code}: served specialist at {self.server} has no transport")

    def _release(self) -> None:
        pass  # nothing in memory here

    def request(self, item: SpecialistInput) -> ServedRequest:
        raise NotImplementedError

    def parse(self, answer: ServedAnswer) -> Assessment:
        raise NotImplementedError

    def _assess_batch(self, items: list[SpecialistInput]) -> list[Assessment]:
        from lmms_eval_autorater.specialists.cache import failure

        out: list[Assessment | None] = [None] * len(items)
        sent: list[int] = []
        requests = []
        for i, item in enumerate(items):
            try:
                requests.append(self.request(item))
                sent.append(i)
            except InputError as exc:
                out[i] = failure(self.spec.code, self.version, exc, "input_error")
        assert self.transport is not None
        answers = self.transport(requests) if requests else []
        if len(answers) != len(requests):
            raise RuntimeError(
                f"{self.spec.code}: transport returned {len(answers)} answers for {len(requests)}"
            )
        for i, ans in zip(sent, answers, strict=True):
            if isinstance(ans, BaseException):
                out[i] = failure(self.spec.code, self.version, ans, "api_error")
                continue
            try:
                out[i] = self.parse(ans)
            except ParseError as exc:
                out[i] = failure(self.spec.code, self.version, exc, "parse_failure")
        return [a for a in out if a is not None]


def _ae_defaults() -> tuple[Any, ...]:
    from lmms_eval_autorater.specialists import ae

    return ae.AesExpert, ae.AE_SYSTEM, ae.AE_QUESTION, ae.AE_MAX_NEW_TOKENS


class ServedAesExpert(ServedSpecialist):
    """AesExpert (code "AE") through a server: the same prompt and trimming as ``ae.AesExpert``."""

    spec: ClassVar[SpecialistSpec] = SPECS["AE"]

    def __init__(self, *args: Any, max_new_tokens: int | None = None, question: str | None = None, **kw: Any):
        _, system, default_question, default_tokens = _ae_defaults()
        super().__init__(*args, **kw)
        self.system = system
        self.question = default_question if question is None else question
        self.max_new_tokens = default_tokens if max_new_tokens is None else int(max_new_tokens)

    @property
    def in_process_version(self) -> str:
        # the in-process AesExpert's own rule (a hash of non-default prompt settings); nothing is loaded
        cls = _ae_defaults()[0]
        return cls(model=self.model_name, max_new_tokens=self.max_new_tokens, question=self.question).version

    def request(self, item: SpecialistInput) -> ServedRequest:
        return ServedRequest(
            messages=(
                {"role": "system", "content": [{"type": "text", "text": self.system}]},
                {
                    "role": "user",
                    "content": [image_part(item.image), {"type": "text", "text": self.question}],
                },
            ),
            max_tokens=self.max_new_tokens,
            extra_body={"add_special_tokens": True},
        )

    def parse(self, answer: ServedAnswer) -> Assessment:
        text = (answer.text or "").strip()
        if not text:
            raise ParseError("empty answer")
        return Assessment(code=self.spec.code, value=None, text=text, version=self.version)


class ServedQSiT(ServedSpecialist):
    """Q-SiT (code "QS") through a server: the score from the level words' log-probabilities."""

    spec: ClassVar[SpecialistSpec] = SPECS["QS"]

    def __init__(self, *args: Any, **kw: Any) -> None:
        kw.pop("dtype", None)
        super().__init__(*args, **kw)
        #: level words that were not among the top log-probabilities (each counted as probability 0)
        self.levels_missing = 0

    @property
    def in_process_version(self) -> str:
        from lmms_eval_autorater.specialists.qs import QSiT

        return QSiT(model=self.model_name).version

    def request(self, item: SpecialistInput) -> ServedRequest:
        from lmms_eval_autorater.specialists.qs import QSIT_ASSISTANT_PREFIX, QSIT_PROMPT

        return ServedRequest(
            messages=(
                {"role": "user", "content": [{"type": "text", "text": QSIT_PROMPT}, image_part(item.image)]},
                {"role": "assistant", "content": QSIT_ASSISTANT_PREFIX},
            ),
            max_tokens=1,
            top_logprobs=QS_TOP_LOGPROBS,
            extra_body={"add_generation_prompt": False, "continue_final_message": True},
        )

    def parse(self, answer: ServedAnswer) -> Assessment:
        if not answer.top_logprobs:
            raise ParseError("no log-probabilities in the answer (does the server support logprobs?)")
        score, missing = quality_from_logprobs(answer.top_logprobs[0])
        self.levels_missing += missing
        return Assessment(code=self.spec.code, value=float(score), text=None, version=self.version)


__all__ = [
    "ParseError",
    "QS_TOP_LOGPROBS",
    "ServedAesExpert",
    "ServedAnswer",
    "ServedQSiT",
    "ServedRequest",
    "ServedSpecialist",
    "Transport",
    "image_part",
    "quality_from_logprobs",
]
