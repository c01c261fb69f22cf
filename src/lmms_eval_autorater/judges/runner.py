"""Runs many judge calls: cache first, then a bounded thread pool with retries and backoff.

Retryable errors (429, 5xx, timeouts, connection errors) are retried with full-jitter
exponential backoff, never sooner than the server's ``Retry-After``. Every answer is written to
the cache as soon as it arrives, so a run killed halfway resumes without re-asking answered
prompts. Failures are returned in place (never cached), so one bad doc does not stop a run.
"""

from __future__ import annotations

import email.utils
import logging
import random
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed

from tqdm import tqdm

from lmms_eval_autorater.judges.cache import ResponseCache
from lmms_eval_autorater.judges.types import BackendError, ChatPrompt, Completion

log = logging.getLogger(__name__)


def parse_retry_after(value: object) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP date); None if unusable."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return max(0.0, float(value))
    text = str(value).strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class CallRunner:
    """Runs ``call_fn(prompt) -> Completion`` over many prompts with cache, bounded concurrency and retries.

    Statistics accumulate over every ``run`` of this runner: ``calls_made`` (backend attempts,
    retries included), ``cache_hits``, ``retries``, ``failures`` (prompts that ended in an error),
    ``prompt_tokens`` and ``completion_tokens`` (of answers actually requested, not cached ones).

    An empty answer (``text == ""``: null content, a filtered reply) is re-asked ``retry_empty``
    times (default once: such answers are often transient), then returned as is and NOT cached, so
    the parser counts it as a parse failure and a later rerun gets another chance.
    ``Retry-After`` is honoured up to ``retry_after_max`` seconds (guards against absurd values).
    Unexpected exceptions from ``call_fn`` become a non-retryable ``BackendError`` for that prompt.
    """

    def __init__(
        self,
        call_fn: Callable[[ChatPrompt], Completion],
        *,
        cache: ResponseCache | None,
        concurrency: int = 16,
        max_retries: int = 6,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        rng_seed: int | None = None,
        progress_desc: str = "judge",
        sleep: Callable[[float], None] = time.sleep,
        retry_empty: int = 1,
        retry_after_max: float = 600.0,
        progress: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.call_fn = call_fn
        self.cache = cache
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.progress_desc = progress_desc
        self.retry_empty = retry_empty
        self.retry_after_max = retry_after_max
        self.progress = progress
        self._sleep = sleep
        self._rng = random.Random(rng_seed)
        self._lock = threading.Lock()
        self.calls_made = 0
        self.cache_hits = 0
        self.retries = 0
        self.failures = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def stats(self) -> dict:
        """The aggregated counters as a dict (for logs and result metadata)."""
        with self._lock:
            return {
                "calls_made": self.calls_made,
                "cache_hits": self.cache_hits,
                "retries": self.retries,
                "failures": self.failures,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
            }

    def backoff_delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Full-jitter delay ``uniform(0, min(max, base * 2**attempt))``, at least ``retry_after``."""
        cap = min(self.backoff_max, self.backoff_base * (2**attempt))
        with self._lock:
            delay = self._rng.uniform(0.0, cap)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_after_max))
        return delay

    def _count(self, **incr: int) -> None:
        with self._lock:
            for name, n in incr.items():
                setattr(self, name, getattr(self, name) + n)

    def _call_with_retries(self, prompt: ChatPrompt) -> Completion | BackendError:
        attempt = 0
        empty_left = self.retry_empty
        while True:
            self._count(calls_made=1)
            try:
                completion = self.call_fn(prompt)
            except BackendError as err:
                if not err.retryable or attempt >= self.max_retries:
                    if err.retryable:
                        log.warning("giving up after %d attempts: %s", attempt + 1, err)
                    return err
                retry_after = parse_retry_after(getattr(err, "retry_after", None))
                delay = self.backoff_delay(attempt, retry_after)
                log.info("retryable error (%s); retry %d in %.2fs", err, attempt + 1, delay)
            except Exception as exc:  # a bug or an unmapped client error: fail this doc, not the run
                log.warning("judge call raised %s: %s", type(exc).__name__, exc)
                return BackendError(f"unexpected {type(exc).__name__}: {exc}", retryable=False)
            else:
                usage = completion.usage or {}
                self._count(
                    prompt_tokens=int(usage.get("prompt_tokens") or 0),
                    completion_tokens=int(usage.get("completion_tokens") or 0),
                )
                if completion.text or empty_left <= 0 or attempt >= self.max_retries:
                    return completion
                empty_left -= 1
                delay = self.backoff_delay(attempt)
                log.info("empty answer (finish_reason=%s); asking again", completion.finish_reason)
            self._count(retries=1)
            attempt += 1
            if delay > 0:
                self._sleep(delay)

    def run(self, keys_and_prompts: list[tuple[str, ChatPrompt]]) -> list[Completion | BackendError]:
        """Answer every (cache key, prompt), in the given order: cached ones first, the rest in parallel."""
        keys = [k for k, _ in keys_and_prompts]
        results: list[Completion | BackendError | None] = [None] * len(keys_and_prompts)
        cached = self.cache.get_many(keys) if self.cache is not None else {}
        todo: dict[str, list[int]] = {}  # key -> positions; equal keys are asked once
        for i, (key, _) in enumerate(keys_and_prompts):
            if key in cached:
                results[i] = cached[key]
            else:
                todo.setdefault(key, []).append(i)
        self._count(cache_hits=len(keys_and_prompts) - sum(len(v) for v in todo.values()))

        if todo:
            bar = tqdm(
                total=len(todo),
                desc=self.progress_desc,
                unit="call",
                file=sys.stderr,
                disable=not self.progress,
                dynamic_ncols=True,
            )
            pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(todo)))
            try:
                futures = {
                    pool.submit(self._one, key, keys_and_prompts[positions[0]][1]): key
                    for key, positions in todo.items()
                }
                for fut in as_completed(futures):
                    key = futures[fut]
                    result = fut.result()
                    for i in todo[key]:
                        results[i] = result
                    bar.update(1)
                    bar.set_postfix(cached=self.cache_hits, retries=self.retries, failed=self.failures)
            except BaseException:
                # Ctrl-C or a cache write error: drop the queued calls, keep what is cached so far
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            else:
                pool.shutdown(wait=True)
            finally:
                bar.close()
        return results  # type: ignore[return-value]

    def _one(self, key: str, prompt: ChatPrompt) -> Completion | BackendError:
        result = self._call_with_retries(prompt)
        if isinstance(result, BackendError):
            self._count(failures=1)
        elif self.cache is not None and result.text:
            self.cache.put(key, result)  # at once: a killed run keeps every answer received so far
        return result
