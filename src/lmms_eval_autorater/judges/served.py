"""The transport of the served specialists (``specialists/served.py``): the judge's OpenAI client and runner.

A served specialist (AesExpert, Q-SiT behind vLLM or any OpenAI-compatible server) builds its requests and
reads its answers itself; this module sends them with what the judge's API path already has: the
``openai`` client and its error mapping (``OpenAIChatBackend``: statuses, timeouts, dropped connections,
unreadable bodies), and ``CallRunner`` (bounded or adaptive concurrency, retries with backoff and a final
round, failure counting). Answers are not written to the response cache: the specialist's assessment
cache (content-addressed, keyed with the server identity) holds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lmms_eval_autorater.judges.backends.openai_api import OpenAIChatBackend
from lmms_eval_autorater.judges.types import BackendError, Completion
from lmms_eval_autorater.kvstore import content_key
from lmms_eval_autorater.specialists.served import ServedAnswer, ServedRequest


@dataclass
class ServedCompletion(Completion):
    """A ``Completion`` with the top log-probabilities of each generated token (token -> logprob)."""

    top_logprobs: list[dict[str, float]] = field(default_factory=list)


def top_logprobs_of(choice: Any) -> list[dict[str, float]]:
    """Per generated token, its top alternatives as token -> logprob, from a chat-completion choice."""
    logprobs = getattr(choice, "logprobs", None)
    content = getattr(logprobs, "content", None) if logprobs is not None else None
    out: list[dict[str, float]] = []
    for entry in content or []:
        tops = getattr(entry, "top_logprobs", None) or []
        if isinstance(entry, dict):
            tops = entry.get("top_logprobs") or []
        row: dict[str, float] = {}
        for t in tops:
            token = t.get("token") if isinstance(t, dict) else getattr(t, "token", None)
            lp = t.get("logprob") if isinstance(t, dict) else getattr(t, "logprob", None)
            if isinstance(token, str) and isinstance(lp, (int, float)) and token not in row:
                row[token] = float(lp)
        out.append(row)
    return out


class ServedSpecialistBackend(OpenAIChatBackend):
    """``OpenAIChatBackend`` sending a specialist's ``ServedRequest`` (greedy) and keeping log-probabilities."""

    def __init__(self, model: str, base_url: str, *, timeout: float = 300.0, api_key_env: str | None = None):
        super().__init__(
            model=model,
            base_url=base_url,
            api_key_env=api_key_env,
            timeout=timeout,
            temperature=0.0,
            seed=None,
            use_json_schema=False,
            provider="served",
        )

    def request_kwargs(self, prompt: ServedRequest) -> dict:  # type: ignore[override]
        """The keyword arguments of ``chat.completions.create`` for one specialist request."""
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": list(prompt.messages),
            "max_tokens": prompt.max_tokens,
            "temperature": 0.0,
        }
        if prompt.top_logprobs:
            kwargs.update(logprobs=True, top_logprobs=prompt.top_logprobs)
        if prompt.extra_body:
            kwargs["extra_body"] = dict(prompt.extra_body)
        return kwargs

    def _completion(self, response: Any) -> Completion:
        base = super()._completion(response)
        choices = getattr(response, "choices", None) or []
        tops = top_logprobs_of(choices[0]) if choices else []
        return ServedCompletion(**{**base.__dict__, "top_logprobs": tops})


class ServedTransport:
    """``transport(requests) -> answers`` for a served specialist: ``CallRunner`` over the backend.

    An answer is a ``ServedAnswer``; a request that failed for good is its ``BackendError`` (the specialist
    counts it as that input's ``api_error``). Equal requests are sent once.
    """

    def __init__(
        self,
        backend: ServedSpecialistBackend,
        *,
        concurrency: int | str = "auto",
        max_retries: int | None = None,
        retry_budget: float = 600.0,
        backoff_base: float = 1.0,
        progress: bool = False,
    ) -> None:
        from lmms_eval_autorater.judges.runner import CallRunner

        self.backend = backend
        self.runner = CallRunner(
            backend.call,  # type: ignore[arg-type]  # a ServedRequest stands for the prompt
            cache=None,
            concurrency=concurrency,
            max_retries=max_retries,
            retry_budget=retry_budget,
            backoff_base=backoff_base,
            progress=progress,
            progress_desc=f"specialist {backend.model}",
            estimate_fn=lambda _request: (0, 0),
        )

    def __call__(self, requests: list[ServedRequest]) -> list[ServedAnswer | BaseException]:
        keyed = [(content_key("served-specialist", r.payload()), r) for r in requests]
        out: list[ServedAnswer | BaseException] = []
        for result in self.runner.run(keyed):  # type: ignore[arg-type]
            if isinstance(result, BackendError):
                out.append(result)
            else:
                out.append(ServedAnswer(result.text, list(getattr(result, "top_logprobs", []) or [])))
        return out

    def stats(self) -> dict:
        """The runner's counts: calls made, retries, failures."""
        return self.runner.stats()


def build_transport(model: str, base_url: str, runner: dict | None = None) -> ServedTransport:
    """The transport of a served specialist at ``base_url`` serving ``model``; ``runner``: the judge's
    runner settings (concurrency, max_retries, retry_budget, backoff_base) where it has them."""
    opts = {
        k: v
        for k, v in (runner or {}).items()
        if k in ("concurrency", "max_retries", "retry_budget", "backoff_base")
    }
    return ServedTransport(ServedSpecialistBackend(model, base_url), **opts)


__all__ = [
    "ServedCompletion",
    "ServedSpecialistBackend",
    "ServedTransport",
    "build_transport",
    "top_logprobs_of",
]
