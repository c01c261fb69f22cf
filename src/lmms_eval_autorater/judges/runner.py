"""Runs many judge calls: cache first, then a bounded thread pool with retries and backoff.

Transient errors (429, 408/409, 5xx, timeouts, dropped connections, unreadable bodies) are retried
with full-jitter exponential backoff, never sooner than the server's ``Retry-After``, within a time
budget per request; prompts that still fail get one final round after all the others. Every answer
is written to the cache as soon as it arrives, so a run killed halfway resumes without re-asking
answered prompts. API failures are returned in place (never cached), so one bad doc does not stop a
run; an exception that is not a ``BackendError`` is a bug and propagates.
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


class ServerUnreachableError(RuntimeError):
    """No request of a run ever reached the server: a wrong ``base_url`` or a server that is down."""


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

    Retry policy. ``call_fn`` reports API trouble by raising ``BackendError``. A retryable one
    (429, 408/409, 5xx, timeouts, dropped connections, unreadable bodies) is weather, not an answer:
    it is retried with full-jitter exponential backoff (``uniform(0, min(backoff_max,
    backoff_base * 2**attempt))``, never sooner than the server's ``Retry-After``, itself capped at
    ``retry_after_max``) for as long as the request's time budget allows: ``retry_budget`` seconds
    from its first attempt. A retry whose wait would end past the budget is not started, and the
    request ends with its last error. ``max_retries`` (None: no count limit) optionally caps the
    retries as well. A non-retryable ``BackendError`` (a 4xx such as 400/401/404) ends the request
    at once.

    Final round. Prompts that still ended in a retryable error get ONE more round once every other
    prompt of that ``run`` has finished (a fresh budget, the same policy; on by default,
    ``final_round=False`` switches it off) before they are returned as failures: a storm that
    outlasted one request's budget has often passed by then.

    Bugs propagate. Any exception from ``call_fn`` (or the cache) that is not a ``BackendError`` is
    a bug, not an API failure: the queued calls are cancelled, the running ones stop retrying, and
    the exception propagates out of ``run``. It is never counted as a failure.

    Statistics accumulate over every ``run`` of this runner: ``calls_made`` (backend attempts,
    retries included), ``cache_hits``, ``retries``, ``failures`` (prompts that ended in an error,
    after the final round), ``final_round`` (prompts retried in a final round),
    ``final_round_recovered`` (of those, answered), ``prompt_tokens`` and ``completion_tokens``
    (of answers actually requested, not cached ones).

    An empty answer (``text == ""``: null content, a filtered reply) is re-asked ``retry_empty``
    times (default once: such answers are often transient), then returned as is and NOT cached, so
    the parser counts it as a parse failure and a later rerun gets another chance.

    Unreachable server. A connection error is weather once the server has answered, but a run in
    which no request has had any HTTP answer and connection errors have gone on for
    ``unreachable_after`` seconds (default 120) is a wrong ``base_url`` or a server that is down:
    ``run`` stops and raises ``ServerUnreachableError`` instead of spending the whole budget twice
    on every prompt.

    ``sleep`` and ``clock`` (monotonic seconds) are injectable so tests can run the policy on a
    fake clock; with the default ``time.sleep`` a wait ends early when ``run`` is aborting.
    """

    def __init__(
        self,
        call_fn: Callable[[ChatPrompt], Completion],
        *,
        cache: ResponseCache | None,
        concurrency: int = 16,
        max_retries: int | None = None,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        rng_seed: int | None = None,
        progress_desc: str = "judge",
        sleep: Callable[[float], None] = time.sleep,
        retry_empty: int = 1,
        retry_after_max: float = 600.0,
        progress: bool = True,
        retry_budget: float = 600.0,
        final_round: bool = True,
        clock: Callable[[], float] = time.monotonic,
        unreachable_after: float = 120.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if max_retries is not None and max_retries < 0:
            raise ValueError(f"max_retries must be >= 0 or None, got {max_retries}")
        if not retry_budget >= 0:  # also rejects NaN
            raise ValueError(f"retry_budget must be >= 0 seconds, got {retry_budget}")
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
        self.retry_budget = float(retry_budget)
        self.final_round = final_round
        self.unreachable_after = float(unreachable_after)
        self._reached = False  # some request of this runner got an HTTP answer
        self._unreachable_since: float | None = None
        self._unreachable: BackendError | None = None
        self._sleep = sleep
        self._clock = clock
        self._rng = random.Random(rng_seed)
        self._lock = threading.Lock()
        self.calls_made = 0
        self.cache_hits = 0
        self.retries = 0
        self.failures = 0
        self.final_round_prompts = 0
        self.final_round_recovered = 0
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
                "final_round": self.final_round_prompts,
                "final_round_recovered": self.final_round_recovered,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
            }

    def backoff_delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Full-jitter delay ``uniform(0, min(max, base * 2**attempt))``, at least ``retry_after``
        (itself capped at ``retry_after_max``)."""
        cap = min(self.backoff_max, self.backoff_base * (2 ** min(attempt, 64)))
        with self._lock:
            delay = self._rng.uniform(0.0, cap)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_after_max))
        return delay

    def _count(self, **incr: int) -> None:
        with self._lock:
            for name, n in incr.items():
                setattr(self, name, getattr(self, name) + n)

    def _count_left(self, attempt: int) -> bool:
        return self.max_retries is None or attempt < self.max_retries

    def _wait(self, delay: float, stop: threading.Event) -> None:
        if delay <= 0:
            return
        if self._sleep is time.sleep:
            stop.wait(delay)  # the same wait, but it ends at once when run() is aborting
        else:
            self._sleep(delay)

    def _call_with_retries(self, prompt: ChatPrompt, stop: threading.Event) -> Completion | BackendError:
        """One prompt under the retry policy; a fresh budget from now. Non-BackendErrors propagate."""
        deadline = self._clock() + self.retry_budget
        attempt = 0
        empty_left = self.retry_empty
        while True:
            self._count(calls_made=1)
            try:
                completion = self.call_fn(prompt)
            except BackendError as err:
                if err.status is not None:
                    self._reached = True
                elif getattr(err, "connection", False) and self._note_unreachable(err, stop):
                    return err
                if not err.retryable:
                    return err
                if not self._count_left(attempt):
                    log.info(
                        "giving up after %d attempts (max_retries=%d): %s", attempt + 1, self.max_retries, err
                    )
                    return err
                retry_after = parse_retry_after(getattr(err, "retry_after", None))
                delay = self.backoff_delay(attempt, retry_after)
                if self._clock() + delay > deadline:
                    log.info(
                        "giving up after %d attempts: a %.2fs wait would pass the %gs retry budget: %s",
                        attempt + 1,
                        delay,
                        self.retry_budget,
                        err,
                    )
                    return err
                log.info("retryable error (%s); retry %d in %.2fs", err, attempt + 1, delay)
                last: Completion | BackendError = err
            else:
                self._reached = True
                usage = completion.usage or {}
                self._count(
                    prompt_tokens=int(usage.get("prompt_tokens") or 0),
                    completion_tokens=int(usage.get("completion_tokens") or 0),
                )
                if completion.text or empty_left <= 0 or not self._count_left(attempt):
                    return completion
                delay = self.backoff_delay(attempt)
                if self._clock() + delay > deadline:
                    return completion
                empty_left -= 1
                log.info("empty answer (finish_reason=%s); asking again", completion.finish_reason)
                last = completion
            if stop.is_set():
                return last  # run() is aborting: the result is discarded
            self._count(retries=1)
            attempt += 1
            self._wait(delay, stop)
            if stop.is_set():
                return last

    def _note_unreachable(self, err: BackendError, stop: threading.Event) -> bool:
        """Record a connection error; True (and ``stop`` set) once the server counts as unreachable."""
        with self._lock:
            if self._reached:
                return False
            now = self._clock()
            if self._unreachable_since is None:
                self._unreachable_since = now
            if now - self._unreachable_since < self.unreachable_after:
                return False
            self._unreachable = self._unreachable or err
        stop.set()
        return True

    def run(self, keys_and_prompts: list[tuple[str, ChatPrompt]]) -> list[Completion | BackendError]:
        """Answer every (cache key, prompt), in the given order: cached ones first, the rest in parallel,
        then one final round for those that ended in a retryable error.

        Returns a ``Completion`` or a ``BackendError`` per input. Raises whatever non-``BackendError``
        exception a call raised (a bug), after cancelling the queued calls.
        """
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
        if not todo:
            return results  # type: ignore[return-value]

        prompts = {key: keys_and_prompts[positions[0]][1] for key, positions in todo.items()}
        final: dict[str, Completion | BackendError] = {}
        stop = threading.Event()
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
            failed = 0
            later: list[str] = []  # ended in a retryable error: the final round asks again

            def note(key: str, result: Completion | BackendError, last_round: bool) -> None:
                nonlocal failed
                if isinstance(result, BackendError) and result.retryable and not last_round:
                    later.append(key)
                else:
                    final[key] = result
                    failed += isinstance(result, BackendError)
                    bar.update(1)
                bar.set_postfix(
                    cached=self.cache_hits, retries=self.retries, failed=failed, final_round=len(later)
                )

            for key, result in self._round(pool, prompts, stop):
                note(key, result, last_round=not self.final_round)
            self._raise_if_unreachable()
            if later:
                self._final_round(pool, {k: prompts[k] for k in later}, stop, note)
            self._raise_if_unreachable()
        except BaseException as exc:
            # a bug, Ctrl-C or a cache write error: stop retrying, drop the queued calls, keep the cache
            stop.set()
            pool.shutdown(wait=isinstance(exc, Exception), cancel_futures=True)
            raise
        else:
            pool.shutdown(wait=True)
        finally:
            bar.close()
        self._count(failures=sum(isinstance(r, BackendError) for r in final.values()))
        for key, positions in todo.items():
            for i in positions:
                results[i] = final[key]
        return results  # type: ignore[return-value]

    def _raise_if_unreachable(self) -> None:
        if self._unreachable is not None:
            raise ServerUnreachableError(
                f"no HTTP answer from the server in {self.unreachable_after:g}s of connection errors "
                f"(check base_url and that the server is up): {self._unreachable}"
            )

    def _final_round(
        self,
        pool: ThreadPoolExecutor,
        prompts: dict[str, ChatPrompt],
        stop: threading.Event,
        note: Callable[[str, Completion | BackendError, bool], None],
    ) -> None:
        log.warning(
            "final round: asking %d prompt(s) again that ended in a retryable error, with a fresh %gs budget",
            len(prompts),
            self.retry_budget,
        )
        recovered = 0
        still: list[str] = []
        for key, result in self._round(pool, prompts, stop):
            note(key, result, True)
            if isinstance(result, BackendError):
                still.append(str(result.status) if result.status else "no HTTP status")
            else:
                recovered += 1
        self._count(final_round_prompts=len(prompts), final_round_recovered=recovered)
        log.warning(
            "final round: %d of %d recovered, %d still failed%s",
            recovered,
            len(prompts),
            len(prompts) - recovered,
            f" (statuses: {', '.join(sorted(set(still)))})" if still else "",
        )

    def _round(self, pool: ThreadPoolExecutor, prompts: dict[str, ChatPrompt], stop: threading.Event):
        """Yield (key, result) as each prompt of this round finishes; a bug in a call raises here."""
        futures = {pool.submit(self._one, key, prompt, stop): key for key, prompt in prompts.items()}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()

    def _one(self, key: str, prompt: ChatPrompt, stop: threading.Event) -> Completion | BackendError:
        result = self._call_with_retries(prompt, stop)
        if isinstance(result, Completion) and self.cache is not None and result.text:
            self.cache.put(key, result)  # at once: a killed run keeps every answer received so far
        return result
