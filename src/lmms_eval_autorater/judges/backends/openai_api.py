"""Judge backend for the OpenAI chat-completions API and any compatible server (Gemini's
OpenAI endpoint, vLLM, SGLang, ...), through the official ``openai`` client.

The SDK's own retries are switched off (``max_retries=0``): ``CallRunner`` does retries, with
jitter and ``Retry-After``, and counts them. Errors come back as ``BackendError``: retryable for
429, 408/409, 5xx, timeouts, connection errors and unreadable bodies; non-retryable, with a clear
message, for other 4xx. Every error the ``openai`` client raises for a transport or server problem
becomes a ``BackendError``, so anything else that escapes is a bug and propagates. The API key is
read from an environment variable (``api_key_env``; with None: ``$OPENAI_API_KEY`` if set, as the
``openai`` client does, else a placeholder for local servers that need none) and never appears in
messages, reprs, results or the cache (messages are scrubbed of it defensively).
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import math
import os
from typing import Any

from lmms_eval_autorater.errors import ConfigError
from lmms_eval_autorater.judges import prices
from lmms_eval_autorater.judges.args import check_base_url
from lmms_eval_autorater.judges.logprobs import TOP_LOGPROBS
from lmms_eval_autorater.judges.runner import parse_retry_after
from lmms_eval_autorater.judges.types import BackendError, ChatImage, ChatPrompt, Completion
from lmms_eval_autorater.redact import redact_text

log = logging.getLogger(__name__)

#: HTTP statuses worth asking again (the OpenAI SDK retries the same set)
RETRYABLE_STATUSES = frozenset({408, 409, 429})

#: placeholder key for local servers that need none (vLLM's convention)
NO_KEY = "EMPTY"

#: the variable the ``openai`` client reads by default; used when ``api_key_env=None`` if set
DEFAULT_KEY_ENV = "OPENAI_API_KEY"


class MissingAPIKeyError(ConfigError):
    """The environment variable that should hold the API key is unset or empty."""


def estimate_cost_usd(
    usage: dict,
    model: str,
    price_per_mtok_in: float | None = None,
    price_per_mtok_out: float | None = None,
) -> float | None:
    """USD estimate for ``usage`` at the given or listed direct prices (``judges/prices.yaml``); None if unknown."""
    return prices.cost_usd(usage, model, price_per_mtok_in, price_per_mtok_out)


def image_data_url(image: ChatImage) -> str:
    """``data:{mime};base64,...`` for an image part."""
    return f"data:{image.mime};base64,{base64.b64encode(image.data).decode('ascii')}"


def build_messages(prompt: ChatPrompt, image_detail: str | None = None) -> list[dict]:
    """Chat messages: the system text, then one user message with text and images in the given order."""
    content: list[dict] = []
    for part in prompt.parts:
        if isinstance(part, ChatImage):
            image_url: dict[str, Any] = {"url": image_data_url(part)}
            if image_detail is not None:
                image_url["detail"] = image_detail
            content.append({"type": "image_url", "image_url": image_url})
        else:
            content.append({"type": "text", "text": str(part)})
    messages: list[dict] = []
    if prompt.system:
        messages.append({"role": "system", "content": prompt.system})
    messages.append({"role": "user", "content": content})
    return messages


class OpenAIChatBackend:
    """Calls one chat model through the ``openai`` client and returns ``Completion``s with the dated
    snapshot, system fingerprint and token usage (what a leaderboard needs to reproduce a score).

    ``token_param`` names the length limit: ``"max_tokens"`` (default: accepted by gpt-4o, Gemini's
    OpenAI endpoint and vLLM) or ``"max_completion_tokens"`` (required by o-series / gpt-5 models).
    ``send_seed=False`` leaves ``seed`` out for providers that reject it; ``temperature=None`` leaves
    the temperature out (reasoning models accept only the default).

    ``api_key_env`` names the environment variable holding the key (unset or empty: an error).
    ``api_key_env=None`` (local vLLM/SGLang servers) sends ``$OPENAI_API_KEY`` when it is set and
    non-empty, as the ``openai`` client itself does, else the placeholder ``"EMPTY"``.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout: float = 120.0,
        max_tokens: int = 2048,
        seed: int | None = 1234,
        temperature: float | None = 0.0,
        use_json_schema: bool = True,
        price_per_mtok_in: float | None = None,
        price_per_mtok_out: float | None = None,
        provider: str = "openai",
        *,
        token_param: str = "max_tokens",
        send_seed: bool = True,
        image_detail: str | None = None,
        scoring: str = "argmax",
    ) -> None:
        import openai  # the optional [api] extra; imported here so the core imports without it

        if token_param not in ("max_tokens", "max_completion_tokens"):
            raise ValueError(
                f"token_param must be 'max_tokens' or 'max_completion_tokens', got {token_param!r}"
            )
        if scoring not in ("argmax", "expected"):
            raise ValueError(f"scoring must be 'argmax' or 'expected', got {scoring!r}")
        check_base_url(base_url)  # credentials in the URL are refused before anything is sent or written
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.max_tokens = max_tokens
        self.seed = seed
        self.temperature = temperature
        self.use_json_schema = use_json_schema
        self.price_per_mtok_in = price_per_mtok_in
        self.price_per_mtok_out = price_per_mtok_out
        self.provider = provider
        self.token_param = token_param
        self.send_seed = send_seed and seed is not None
        self.image_detail = image_detail
        #: ``expected``: every request asks for ``logprobs`` and ``top_logprobs`` (``judges/logprobs.py``)
        self.scoring = scoring
        self._api_key, self._key_source = self._read_key(api_key_env)
        self._client = openai.OpenAI(base_url=base_url, api_key=self._api_key, max_retries=0, timeout=timeout)

    @staticmethod
    def _read_key(api_key_env: str | None) -> tuple[str, str | None]:
        """(key, the variable it came from); (placeholder, None) for a keyless local server."""
        if api_key_env is None:
            key = os.environ.get(DEFAULT_KEY_ENV, "").strip()
            return (key, DEFAULT_KEY_ENV) if key else (NO_KEY, None)
        key = os.environ.get(api_key_env, "").strip()
        if not key:
            raise MissingAPIKeyError(
                f"environment variable ${api_key_env} is not set or empty: export the API key there, "
                "or pass api_key_env=None for a local server that needs no key"
            )
        return key, api_key_env

    def __repr__(self) -> str:
        return (
            f"OpenAIChatBackend(model={self.model!r}, provider={self.provider!r}, "
            f"base_url={self.base_url!r}, api_key_env={self.api_key_env!r})"
        )

    @property
    def name(self) -> str:
        """Backend name for cache keys and result metadata (the provider label)."""
        return self.provider

    def gen_params(self) -> dict:
        """Every request setting that can change an answer (part of the cache key)."""
        return {
            "temperature": self.temperature,
            "seed": self.seed if self.send_seed else None,
            self.token_param: self.max_tokens,
            "json_schema": self.use_json_schema,
            "image_detail": self.image_detail,
            # the scoring mode (absent: argmax, so the keys of argmax answers are those of before)
            **({"scoring": self.scoring, "top_logprobs": TOP_LOGPROBS} if self.scoring != "argmax" else {}),
        }

    def cost_usd(self, usage: dict) -> float | None:
        """Estimated USD cost of ``usage`` (explicit prices, else the default table; None if unknown)."""
        return estimate_cost_usd(usage, self.model, self.price_per_mtok_in, self.price_per_mtok_out)

    def request_kwargs(self, prompt: ChatPrompt) -> dict:
        """The keyword arguments sent to ``chat.completions.create`` for ``prompt``."""
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": build_messages(prompt, self.image_detail),
            self.token_param: self.max_tokens,
        }
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.send_seed:
            kwargs["seed"] = self.seed + prompt.sample  # samples=N: each answer its own seed
        if self.scoring == "expected":
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = TOP_LOGPROBS
        if prompt.json_schema is not None and self.use_json_schema:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": prompt.schema_name, "schema": prompt.json_schema, "strict": True},
            }
        return kwargs

    @property
    def client(self) -> Any:
        """The ``openai.OpenAI`` client (the Batch API path uses its ``files`` and ``batches``)."""
        return self._client

    def completion_from_body(self, body: dict) -> Completion:
        """A ``Completion`` from a chat-completion JSON body (a Batch API or ``vllm run-batch`` output
        line), parsed exactly as a direct answer; raises ``BackendError`` for a body that is not one."""
        from openai.types.chat import ChatCompletion

        if not isinstance(body, dict):
            raise self._error(f"unreadable response: not a JSON object: {str(body)[:200]!r}", None, True)
        return self._completion(ChatCompletion.construct(**body))

    def scrub(self, text: str) -> str:
        """``text`` with the API key replaced by ``***`` (for messages of other modules)."""
        return self._scrub(text)

    def __call__(self, prompt: ChatPrompt) -> Completion:
        return self.call(prompt)

    def call(self, prompt: ChatPrompt) -> Completion:
        """One request, no retries; raises ``BackendError`` (retryable or not) on failure.

        A null or empty content is returned as ``Completion(text="")``: the runner re-asks once,
        then the parser counts it as a parse failure.
        """
        import openai

        kwargs = self.request_kwargs(prompt)  # outside the try: an error here is a bug, not the API's
        headers: dict = {}
        try:
            # the raw response carries the headers (x-ratelimit-*: read by CallRunner's adaptive concurrency)
            raw = self._client.chat.completions.with_raw_response.create(**kwargs)
            headers = _lower_headers(raw.headers)
            response = raw.parse()
        except openai.APIStatusError as exc:
            raise self._status_error(exc) from None
        except openai.APITimeoutError:
            err = self._error(f"request timed out after {self.timeout:g}s", None, True)
            err.timeout = True  # type: ignore[attr-defined]  # congestion, for CallRunner's AIMD
            raise err from None
        except openai.APIConnectionError as exc:
            raise self._connection_error(exc.__cause__ or exc) from None
        except openai.APIError as exc:  # e.g. a body that fails response validation
            raise self._error(f"unreadable response: {exc}", None, True) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:  # a 200 whose body is not JSON text
            raise self._error(f"unreadable response: {type(exc).__name__}: {exc}", None, True) from None
        except _transport_errors() as exc:  # httpx errors or socket errors that got past the client
            raise self._connection_error(exc) from None
        try:
            completion = self._completion(response)
        except BackendError as err:
            err.headers = headers
            raise
        completion.headers = headers
        return completion

    def _connection_error(self, cause: BaseException) -> BackendError:
        if type(cause).__name__ in ("UnsupportedProtocol", "InvalidURL"):  # never transient
            return self._error(
                f"base_url {self.base_url!r} is not a usable http(s) URL ({type(cause).__name__}: {cause})",
                None,
                False,
            )
        err = self._error(f"connection error: {type(cause).__name__}: {cause}", None, True)
        err.connection = True  # type: ignore[attr-defined]  # read by CallRunner's unreachable-server rule
        return err

    def _completion(self, response: Any) -> Completion:
        """A ``Completion`` from the client's (unvalidated) response object; a body that is not a
        chat completion is an unreadable response (retryable), never an exception of ours."""

        def unreadable(what: str) -> BackendError:
            return self._error(f"unreadable response: {what} in {str(response)[:200]!r}", None, True)

        choices = getattr(response, "choices", None)
        if not isinstance(choices, list):
            raise unreadable("no choices")
        model = _str_or_none(getattr(response, "model", None)) or ""
        if not choices:
            return Completion(text="", model=model, finish_reason=None)
        choice = choices[0]
        message = getattr(choice, "message", None)
        if message is None or isinstance(message, (str, bytes, int, float, list, dict)):
            raise unreadable("no message object")
        text = getattr(message, "content", None)
        if text is not None and not isinstance(text, str):
            raise unreadable("non-text content")
        text = text or ""
        usage = usage_from_response(getattr(response, "usage", None))
        finish_reason = _str_or_none(getattr(choice, "finish_reason", None))
        if not text:
            refusal = getattr(message, "refusal", None)
            log.info(
                "empty answer from %s (finish_reason=%s, refusal=%r)", self.model, finish_reason, refusal
            )
        return Completion(
            text=text,
            model=model,
            fingerprint=_str_or_none(getattr(response, "system_fingerprint", None)),
            usage=usage,
            finish_reason=finish_reason,
            logprobs=logprobs_content(getattr(choice, "logprobs", None)),
        )

    def _scrub(self, text: str) -> str:
        if self._api_key and self._api_key != NO_KEY:
            text = text.replace(self._api_key, "***")
        return redact_text(text)  # endpoint names in messages: the one redaction rule

    def _error(
        self, message: str, status: int | None, retryable: bool, retry_after: float | None = None
    ) -> BackendError:
        err = BackendError(
            self._scrub(f"{self.provider}/{self.model}: {message}"), status=status, retryable=retryable
        )
        err.retry_after = retry_after  # type: ignore[attr-defined]  # read by CallRunner
        return err

    def _status_error(self, exc: Any) -> BackendError:
        status = int(exc.status_code)
        detail = str(getattr(exc, "message", "") or exc)[:500]
        headers = exc.response.headers if getattr(exc, "response", None) is not None else {}
        retry_after = None
        if headers.get("retry-after-ms"):
            try:
                retry_after = max(0.0, float(headers["retry-after-ms"]) / 1000.0)
            except ValueError:
                retry_after = None
        if retry_after is None:
            retry_after = parse_retry_after(headers.get("retry-after"))
        if status == 429 or status in RETRYABLE_STATUSES or status >= 500:
            what = "rate limited (429)" if status == 429 else f"server error {status}"
            hint = f", Retry-After {retry_after:g}s" if retry_after is not None else ""
            err = self._error(f"{what}{hint}: {detail}", status, True, retry_after)
            err.headers = _lower_headers(headers)
            return err
        if self._key_source is None:
            env = "(no key configured: api_key_env=None and $OPENAI_API_KEY unset)"
            auth = (
                f"authentication failed (401): the server wants an API key, but none is configured "
                f"(api_key_env=None and $OPENAI_API_KEY is unset, so the placeholder {NO_KEY!r} was sent). "
                "Fix: export OPENAI_API_KEY=<the server's key>, or pass api_key_env=NAME naming the "
                f"environment variable that holds the server's key: {detail}"
            )
        else:
            env = f"${self._key_source}"
            if self.api_key_env is None:
                env += " (used because api_key_env=None)"
            auth = f"authentication failed (401): invalid or missing API key in {env}: {detail}"
        messages = {
            400: f"bad request (400), not retried: {detail}",
            401: auth,
            403: f"permission denied (403): the key in {env} has no access to model {self.model!r}: {detail}",
            404: f"not found (404): model {self.model!r} or endpoint {self.base_url or 'default'}: {detail}",
            422: f"unprocessable request (422), not retried: {detail}",
        }
        return self._error(messages.get(status, f"HTTP {status}, not retried: {detail}"), status, False)


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def logprobs_content(raw: Any) -> list[dict] | None:
    """``choices[0].logprobs.content`` as plain dicts {token, logprob, bytes, top_logprobs: [{token,
    logprob, bytes}]}, or None when the answer carried none (or not in this shape)."""
    content = _field(raw, "content") if raw is not None else None
    if not isinstance(content, list) or not content:
        return None

    def entry(e: Any) -> dict | None:
        token, logprob = _field(e, "token"), _field(e, "logprob")
        if not isinstance(token, str) or not isinstance(logprob, (int, float)) or isinstance(logprob, bool):
            return None
        raw_bytes = _field(e, "bytes")
        return {
            "token": token,
            "logprob": float(logprob),
            "bytes": list(raw_bytes) if isinstance(raw_bytes, list) else None,
        }

    out = []
    for e in content:
        head = entry(e)
        if head is None:
            return None
        tops = _field(e, "top_logprobs")
        head["top_logprobs"] = [t for t in (entry(x) for x in (tops or [])) if t is not None]
        out.append(head)
    return out


def usage_from_response(raw_usage: Any) -> dict:
    """``{"prompt_tokens", "completion_tokens"}`` billed for one answer; ``{}`` when the answer did not say
    (no ``usage`` field, or no token counts in it): priced as unknown, never as 0.

    Thinking tokens are output tokens. OpenAI counts them inside ``completion_tokens``
    (``completion_tokens_details.reasoning_tokens`` is the breakdown). Gemini's OpenAI-compatible endpoint
    has reported ``completion_tokens`` without the thoughts while ``total_tokens`` includes them; so the
    completion tokens billed are ``max(completion_tokens, total_tokens - prompt_tokens)``: the same
    candidates + thoughts that the Gemini batch path prices (``usageMetadata``; ``gemini_batch.py``).
    ``reasoning_tokens`` (when reported) and ``thoughts_not_in_completion`` (what was added) are kept."""
    if raw_usage is None:
        return {}
    prompt = _count_or_none(_field(raw_usage, "prompt_tokens"))
    completion = _count_or_none(_field(raw_usage, "completion_tokens"))
    if prompt is None and completion is None:
        return {}
    prompt, completion = prompt or 0, completion or 0
    usage: dict = {"prompt_tokens": prompt, "completion_tokens": completion}
    total = _count_or_none(_field(raw_usage, "total_tokens"))
    if total is not None and total > prompt + completion:
        usage["completion_tokens"] = total - prompt
        usage["thoughts_not_in_completion"] = total - prompt - completion
    details = _field(raw_usage, "completion_tokens_details")
    reasoning = _count_or_none(_field(details, "reasoning_tokens")) if details is not None else None
    if reasoning:
        usage["reasoning_tokens"] = reasoning
    return usage


def _count_or_none(value: object) -> int | None:
    """A token count from a response field, or None when the field is absent or not a count."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return max(0, int(value))


def _lower_headers(headers: Any) -> dict:
    """Response headers as a plain dict with lower-case names (empty when there are none)."""
    try:
        return {str(k).lower(): str(v) for k, v in headers.items()}
    except AttributeError:
        return {}


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


@functools.lru_cache(maxsize=1)
def _transport_errors() -> tuple[type[BaseException], ...]:
    """Transport-level exceptions that may escape the ``openai`` client unwrapped: the httpx
    errors of whichever httpx module(s) it uses, and the socket-level ones."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for name in ("httpx2", "httpx"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        if isinstance(getattr(module, "HTTPError", None), type):
            errors.append(module.HTTPError)
    return tuple(errors)
