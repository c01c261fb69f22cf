"""Runs many judge calls: cache first, then a thread pool behind an admission gate, with retries and backoff.

Transient errors (429, 408/409, 5xx, timeouts, dropped connections, unreadable bodies) are retried
with full-jitter exponential backoff, never sooner than the server's ``Retry-After``, within a time
budget per request; prompts that still fail get one final round after all the others. Every answer
is written to the cache as soon as it arrives, so a run killed halfway resumes without re-asking
answered prompts. API failures are returned in place (never cached), so one bad doc does not stop a
run; an exception that is not a ``BackendError`` is a bug and propagates.

Every attempt passes one gate first (``Admission``): the concurrency limit (pinned, or adaptive:
``AdaptiveConcurrency``, AIMD), the provider's ``x-ratelimit-remaining-*`` headers, and the cost
budget (``max_cost_usd``): a prompt whose request could pass the budget is not sent and comes back as
``BudgetSkippedError`` (counted as ``budget_skipped``, neither an answer nor a failure).
"""

from __future__ import annotations

import email.utils
import io
import json
import logging
import math
import random
import re
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from tqdm import tqdm

from lmms_eval_autorater.errors import ConfigError
from lmms_eval_autorater.judges.cache import ResponseCache
from lmms_eval_autorater.judges.types import (
    BackendError,
    BudgetSkippedError,
    ChatImage,
    ChatPrompt,
    Completion,
    usage_known,
)

log = logging.getLogger(__name__)

#: ``concurrency="auto"``: adaptive (AIMD) from ``AUTO_START`` requests in flight up to ``AUTO_CEILING``;
#: the start is stock lmms-eval's 32 threads, so a short run is not slower than stock (from 8 it took three
#: rounds to reach 32: 2x stock's time at 64 docs); a server that takes fewer answers 429 and is halved to
AUTO = "auto"
AUTO_START = 32
AUTO_CEILING = 64
#: a request that failed at least this many attempts (server errors, not 429s) while other requests of the
#: run got answers, and that many failures in a row are unlikely as weather (``PERSISTENT_CHANCE``), is given
#: up: its own fault (the stock lmms-eval ``openai`` model gives up after 5 attempts whatever happens)
PERSISTENT_AFTER = 5
#: ... unlikely: ``p ** failures`` below this, with ``p`` the run's rate of first attempts that failed
PERSISTENT_CHANCE = 1e-3


class ServerUnreachableError(ConfigError):
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


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?)(ms|h|m|s)")


def parse_duration(value: object) -> float | None:
    """Seconds from a rate-limit reset value: OpenAI's ``"6m0s"``, ``"1.5s"``, ``"20ms"``, or plain seconds."""
    if value is None:
        return None
    text = str(value).strip().lower()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        return None
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)


@dataclass(frozen=True)
class RateLimits:
    """What a response's ``x-ratelimit-*`` headers say is left in the provider's current window."""

    remaining_requests: int | None = None
    reset_requests: float | None = None
    remaining_tokens: int | None = None
    reset_tokens: float | None = None
    limit_requests: int | None = None
    limit_tokens: int | None = None

    @classmethod
    def from_headers(cls, headers: dict | None) -> RateLimits | None:
        """The limits in ``headers`` (lower-case names), or None when they carry none."""
        if not headers:
            return None

        def count(name: str) -> int | None:
            try:
                return max(0, int(float(headers[name])))
            except (KeyError, TypeError, ValueError):
                return None

        out = cls(
            count("x-ratelimit-remaining-requests"),
            parse_duration(headers.get("x-ratelimit-reset-requests")),
            count("x-ratelimit-remaining-tokens"),
            parse_duration(headers.get("x-ratelimit-reset-tokens")),
            count("x-ratelimit-limit-requests"),
            count("x-ratelimit-limit-tokens"),
        )
        return None if out.remaining_requests is None and out.remaining_tokens is None else out


def image_token_bound(image: ChatImage) -> int:
    """An upper bound on one image's input tokens at OpenAI (any ``detail``) and Gemini: 85 + 258 per
    512-px tile of the unscaled size (both providers count fewer); a size that cannot be read counts
    as 2048 x 2048."""
    width = height = 2048
    try:
        from PIL import Image

        with Image.open(io.BytesIO(image.data)) as im:  # reads the header only
            width, height = im.size
    except Exception:  # noqa: BLE001 - any unreadable image gets the large default
        pass
    return 85 + 258 * math.ceil(max(1, width) / 512) * math.ceil(max(1, height) / 512)


def conservative_prompt_tokens(prompt: ChatPrompt) -> int:
    """An upper bound on the input tokens of ``prompt`` (no tokenizer needed): every UTF-8 byte of the
    text and of the JSON schema as one token (a token is never shorter), 16 for the chat framing, and
    ``image_token_bound`` per image. Used to reserve budget for requests in flight."""
    tokens = 16 + len(prompt.system.encode("utf-8"))
    for part in prompt.parts:
        tokens += image_token_bound(part) if isinstance(part, ChatImage) else len(str(part).encode("utf-8"))
    if prompt.json_schema is not None:
        tokens += len(json.dumps(prompt.json_schema).encode("utf-8"))
    return tokens


@dataclass
class Ticket:
    """One admitted attempt: what the gate knew when it started it."""

    epoch: int  # the concurrency controller's epoch (bumped by each back-off)
    active: int  # requests in flight, this one included
    limit: int  # the concurrency limit it was admitted under
    saturated: bool  # the limit was binding (others waited, or every slot was taken)
    reserve: float  # USD reserved for it against the budget
    tokens: int  # tokens counted against the header allowance
    started: float


class AdaptiveConcurrency:
    """The number of requests allowed in flight: pinned (``fixed``) or adaptive, AIMD.

    Adaptive: starts at ``start``; while no 429 or timeout has arrived it grows by ``growth`` per
    answer (slow start, as TCP's: +1 per answer, so x2 per round of answers; only answers that found
    the limit binding count) for as long as throughput grows: once the answers' moving-average latency is more
    than ``latency_rise`` times the best seen, more in flight buys little more throughput (Little's
    law) and the limit holds there. A 429 or a timeout halves it (``decrease``; once per round:
    errors of requests started before the last back-off do not count again) and records ``cap``, one
    below the highest limit since the refused request was admitted: the server never saw more in
    flight than that, so this ``cap`` is never below what it accepts. Below ``cap`` it recovers fast
    (+0.5 per answer); at ``cap`` it holds, and a 429 there lowers ``cap`` by 10% (at least one)
    instead of halving (it may then undershoot by that much); after ``probe_after`` seconds at ``cap``
    without trouble it tries one more for a round (``cap`` rises if that round passes). ``new_run``
    restarts the latency baseline. Never above ``ceiling`` nor below ``floor``. Not thread-safe:
    ``Admission`` holds the lock.
    """

    def __init__(
        self,
        start: int = AUTO_START,
        *,
        ceiling: int = AUTO_CEILING,
        floor: int = 1,
        decrease: float = 0.5,
        probe_after: float = 30.0,
        latency_rise: float = 2.0,
        growth: float = 1.0,
        fixed: int | None = None,
    ) -> None:
        if fixed is not None and fixed < 1:
            raise ValueError(f"concurrency must be >= 1, got {fixed}")
        if not 1 <= floor <= ceiling:
            raise ValueError(f"need 1 <= floor <= ceiling, got floor={floor}, ceiling={ceiling}")
        if not 0 < decrease < 1:
            raise ValueError(f"decrease must be in (0, 1), got {decrease}")
        self.fixed = fixed
        self.ceiling = fixed if fixed is not None else ceiling
        self.floor = fixed if fixed is not None else floor
        self.decrease = decrease
        self.probe_after = probe_after
        self.latency_rise = latency_rise
        self.growth = growth
        self.value = float(fixed if fixed is not None else min(max(start, floor), ceiling))
        self.cap: int | None = None
        self.slow_start = True
        self.epoch = 0
        self.decreases = 0
        self.plateaus = 0
        self.peak = self.limit
        self._at_cap_since: float | None = None
        self._probe: int | None = None  # saturated answers seen while probing one above the cap
        self._lat: float | None = None  # moving average of the answers' latency (saturated ones)
        self._lat_best: float | None = None
        self._lat_n = 0
        self._epoch_peak: dict[int, int] = {}  # epoch -> the highest limit reached in it
        self._cap_from_plateau = False

    def new_run(self) -> None:
        """A new batch of prompts (e.g. Auto's second pass, with longer answers): the latency baseline
        starts again, and a cap set by a latency plateau (not by a 429) is forgotten."""
        self._lat, self._lat_best, self._lat_n = None, None, 0
        if self._cap_from_plateau:
            self.cap, self._cap_from_plateau, self._at_cap_since = None, False, None

    @property
    def adaptive(self) -> bool:
        """Whether the limit moves (``concurrency=auto``)."""
        return self.fixed is None

    @property
    def limit(self) -> int:
        """Requests allowed in flight now."""
        return max(self.floor, min(self.ceiling, int(self.value)))

    def on_success(self, ticket: Ticket, now: float) -> None:
        """An answer arrived for ``ticket``: maybe grow."""
        if not self.adaptive:
            return
        if not ticket.saturated:
            return  # the limit was not binding: this answer says nothing about it
        if self._plateau(now - ticket.started, now) or ticket.epoch != self.epoch:
            return
        if self.cap is not None and self.value >= self.cap:
            if self._probe is not None and self.limit > self.cap:
                self._probe += 1
                if self._probe >= self.limit:  # a whole round one above the cap without trouble
                    self.cap, self._probe = self.limit, None
                    self._at_cap_since = now
            elif self._at_cap_since is None:
                self._at_cap_since = now
            elif now - self._at_cap_since >= self.probe_after and self.cap < self.ceiling:
                self.value = float(self.cap + 1)  # probe one above the known-good level
                self._epoch_peak[self.epoch] = max(self._epoch_peak.get(self.epoch, 0), self.limit)
                self._probe = 0
            return
        self._at_cap_since = None
        if self.slow_start:
            step = self.growth
        elif self.cap is not None:
            step = 0.5
        else:
            step = 1.0 / self.value
        top = self.cap if self.cap is not None else self.ceiling
        self.value = min(self.value + step, float(top))
        self.peak = max(self.peak, self.limit)
        self._epoch_peak[self.epoch] = max(self._epoch_peak.get(self.epoch, 0), self.limit)

    def _plateau(self, latency: float, now: float) -> bool:
        """Track the answers' latency; True (and growth stopped) once it has grown past ``latency_rise``
        times the best seen: by Little's law throughput then grows much less than the limit does."""
        if latency <= 0:
            return False
        self._lat_n += 1
        self._lat = latency if self._lat is None else 0.8 * self._lat + 0.2 * latency
        if self._lat_n < 8:  # the first answers of a level are too few to judge
            return False
        self._lat_best = self._lat if self._lat_best is None else min(self._lat_best, self._lat)
        if self.cap is not None or self._lat <= self.latency_rise * self._lat_best:
            return False
        self.plateaus += 1
        self.cap = self.limit
        self._cap_from_plateau = True
        self.slow_start = False
        self._at_cap_since = now
        log.info(
            "concurrency: latency %.3fs at %d in flight vs %.3fs at best: holding at %d",
            self._lat,
            self.limit,
            self._lat_best,
            self.cap,
        )
        return True

    def on_congestion(self, ticket: Ticket, now: float, why: str) -> None:
        """A 429 or a timeout for ``ticket``: learn the cap, back off (once per round)."""
        if not self.adaptive:
            return
        # the server saw at most as many in flight as this client admitted while the request was out: at
        # most the highest limit since it was admitted (within an epoch the limit only grows), so one
        # fewer is an upper bound of what it accepts: the cap never falls below the true one
        seen = max(ticket.limit, self._epoch_peak.get(ticket.epoch, 0), self.limit)
        bound = max(self.floor, seen - 1)
        at_cap = self.cap is not None and ticket.limit >= self.cap
        if at_cap and ticket.epoch == self.epoch:  # refused at the cap: it is too high, by 10% or by one
            bound = max(self.floor, min(bound, self.cap - 1, int(0.9 * self.cap)))
        self.cap = bound if self.cap is None else min(self.cap, bound)
        self._cap_from_plateau = False
        self.slow_start = False
        self._at_cap_since = self._probe = None
        if ticket.epoch != self.epoch:
            return  # the back-off for this round was already taken
        before = self.limit
        if at_cap:  # at (or probing just above) the learned cap: it was one too high, refine it
            self.value = min(self.value, float(self.cap))
        else:
            self.value = max(float(self.floor), self.value * self.decrease)
        self.epoch += 1
        self.decreases += 1
        self._epoch_peak = {e: v for e, v in self._epoch_peak.items() if e >= self.epoch - 8}
        log.info(
            "concurrency: %s with %d in flight: %d -> %d (cap %d)",
            why,
            ticket.active,
            before,
            self.limit,
            self.cap,
        )


class Admission:
    """The gate every attempt passes: a free slot under the concurrency limit, the allowance of the
    provider's rate-limit headers, and room in the budget (spent + reserved for requests in flight +
    this request's conservative estimate <= ``max_cost_usd``). A request that could not fit even with
    nothing in flight is not sent, and from then on no request starts (``exhausted``)."""

    def __init__(self, controller: AdaptiveConcurrency, max_cost_usd: float | None = None) -> None:
        self.controller = controller
        self.budget = max_cost_usd
        self.cond = threading.Condition()
        self.active = 0
        self.waiting = 0
        self.spent = 0.0
        self.reserved = 0.0
        self.reserved_tokens = 0  # tokens of the requests in flight (for the token allowance)
        self.exhausted = False
        self.throttled_s = 0.0  # time spent waiting for a rate-limit window to reset
        self._req_left: float | None = None
        self._req_reset = 0.0
        self._req_limit: float | None = None  # the window's size (x-ratelimit-limit-requests)
        self._tok_left: float | None = None
        self._tok_reset = 0.0
        self._tok_limit: float | None = None

    def _rate_wait(self, tokens: int, now: float) -> float:
        waits = []
        # past a reset, a fresh window of the size the headers gave (until the next header says more)
        if self._req_left is not None:
            if now >= self._req_reset:
                self._req_left, self._req_reset = self._req_limit, math.inf
            elif self._req_left < 1:
                waits.append(self._req_reset - now)
        if self._tok_left is not None:
            if now >= self._tok_reset:
                self._tok_left, self._tok_reset = self._tok_limit, math.inf
            elif self._tok_left < tokens:
                waits.append(self._tok_reset - now)
        return max(waits, default=0.0)

    def acquire(self, cost: float, tokens: int, stop: threading.Event) -> Ticket | BudgetSkippedError | None:
        """Wait for a slot; a ``Ticket``, a ``BudgetSkippedError`` (not sent), or None when ``stop`` is set."""
        with self.cond:
            self.waiting += 1
            try:
                while True:
                    if stop.is_set():
                        return None
                    fits = True
                    if self.budget is not None:
                        if self.exhausted or self.spent + cost > self.budget:
                            self.exhausted = True
                            return BudgetSkippedError(
                                f"not sent: max_cost_usd={self.budget:g} reached (spent ${self.spent:.4f}; this "
                                f"request could cost up to ${cost:.4f}); rerun with a larger max_cost_usd to "
                                "judge it: answers received so far are cached"
                            )
                        fits = self.spent + self.reserved + cost <= self.budget
                    now = time.monotonic()
                    wait = self._rate_wait(tokens, now)
                    if fits and wait <= 0 and self.active < self.controller.limit:
                        self.active += 1
                        self.reserved += cost
                        self.reserved_tokens += tokens
                        if self._req_left is not None:
                            self._req_left -= 1
                        if self._tok_left is not None:
                            self._tok_left -= tokens
                        saturated = self.waiting > 1 or self.active >= self.controller.limit
                        limit = self.controller.limit
                        return Ticket(self.controller.epoch, self.active, limit, saturated, cost, tokens, now)
                    timeout = min(wait, 0.5) if wait > 0 else 0.5
                    self.cond.wait(timeout)
                    if wait > 0:
                        self.throttled_s += min(wait, 0.5)
            finally:
                self.waiting -= 1

    def release(self, ticket: Ticket, charged: float, outcome: str, limits: RateLimits | None) -> None:
        """An attempt ended (``outcome``: ``ok``, ``congestion`` or ``error``) having cost ``charged`` USD."""
        now = time.monotonic()
        with self.cond:
            self.active -= 1
            self.reserved = max(0.0, self.reserved - ticket.reserve)
            self.reserved_tokens -= ticket.tokens
            self.spent += charged
            if outcome == "ok":
                self.controller.on_success(ticket, now)
            elif outcome.startswith("congestion"):
                self.controller.on_congestion(ticket, now, outcome.partition(":")[2] or "congestion")
            if limits is not None:
                # what the provider says is left in its window, less the requests still in flight (it may not
                # have counted them yet); answers arrive out of order, so within a window the lowest stands
                if limits.remaining_requests is not None:
                    left = float(limits.remaining_requests) - self.active
                    if self._req_left is not None and now < self._req_reset:
                        left = min(left, self._req_left)
                    self._req_left = left
                    self._req_limit = None if limits.limit_requests is None else float(limits.limit_requests)
                    self._req_reset = now + (1.0 if limits.reset_requests is None else limits.reset_requests)
                if limits.remaining_tokens is not None:
                    left = float(limits.remaining_tokens) - self.reserved_tokens
                    if self._tok_left is not None and now < self._tok_reset:
                        left = min(left, self._tok_left)
                    self._tok_left = left
                    self._tok_limit = None if limits.limit_tokens is None else float(limits.limit_tokens)
                    self._tok_reset = now + (1.0 if limits.reset_tokens is None else limits.reset_tokens)
            self.cond.notify_all()

    def abandon(self, ticket: Ticket) -> None:
        """An attempt that raised a bug: free its slot and reservation, learn nothing."""
        with self.cond:
            self.active -= 1
            self.reserved = max(0.0, self.reserved - ticket.reserve)
            self.reserved_tokens -= ticket.tokens
            self.cond.notify_all()


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

    Persistent failures. A request that failed ``persistent_after`` (5) attempts (429s not counted) while
    other requests were answered since its first failure, when that many failures in a row are unlikely
    as weather (the run's first-attempt failure rate to that power < ``PERSISTENT_CHANCE``), is given up
    as an API failure and not asked again in the final round; a global outage keeps the long budget.

    Final round. Prompts that still ended in a retryable error get ONE more round once every other
    prompt of that ``run`` has finished (a fresh budget, the same policy; on by default,
    ``final_round=False`` switches it off) before they are returned as failures: a storm that
    outlasted one request's budget has often passed by then.

    Concurrency. ``concurrency`` pins the number of requests in flight; ``"auto"`` (the default)
    adapts it (``AdaptiveConcurrency``: from ``start_concurrency`` up to ``max_concurrency``, AIMD on
    429s and timeouts). Either way an attempt also waits while the provider's ``x-ratelimit-remaining-
    requests`` / ``-tokens`` headers say its window is used up. A retry waiting out its backoff holds
    no slot in auto mode.

    Budget. With ``max_cost_usd``, an attempt starts only while what was spent (``cost_fn`` of each
    answer's usage; a timeout or dropped connection counts its reservation, as it may have been billed)
    plus the reservations of the requests in flight plus its own would stay within it; the reservation is
    conservative: ``estimate_fn(prompt)`` -> (prompt tokens, completion tokens), priced by ``cost_fn``
    (default: ``conservative_prompt_tokens`` and no completion tokens). A prompt that cannot fit comes
    back as ``BudgetSkippedError`` and no later attempt starts; cached answers cost nothing and never count.

    Bugs propagate. Any exception from ``call_fn`` (or the cache) that is not a ``BackendError`` is
    a bug, not an API failure: the queued calls are cancelled, the running ones stop retrying, and
    the exception propagates out of ``run``. It is never counted as a failure.

    Statistics accumulate over every ``run`` of this runner: ``calls_made`` (backend attempts,
    retries included), ``cache_hits``, ``retries``, ``failures`` (prompts that ended in an error,
    after the final round), ``final_round`` (prompts retried in a final round),
    ``final_round_recovered`` (of those, answered), ``prompt_tokens`` and ``completion_tokens``
    (of answers actually requested, not cached ones), ``budget_skipped`` (prompts not sent),
    ``spent_usd`` (with a budget), and the concurrency reached.

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
        concurrency: int | str = AUTO,
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
        start_concurrency: int = AUTO_START,
        max_concurrency: int = AUTO_CEILING,
        max_cost_usd: float | None = None,
        cost_fn: Callable[[dict], float | None] | None = None,
        estimate_fn: Callable[[ChatPrompt], tuple[int, int]] | None = None,
        persistent_after: int = PERSISTENT_AFTER,
    ) -> None:
        if persistent_after < 1:
            raise ValueError(f"persistent_after must be >= 1, got {persistent_after}")
        if concurrency != AUTO and (isinstance(concurrency, bool) or not isinstance(concurrency, int)):
            raise ValueError(f"concurrency must be an integer >= 1 or {AUTO!r}, got {concurrency!r}")
        if concurrency != AUTO and concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if max_retries is not None and max_retries < 0:
            raise ValueError(f"max_retries must be >= 0 or None, got {max_retries}")
        if not retry_budget >= 0:  # also rejects NaN
            raise ValueError(f"retry_budget must be >= 0 seconds, got {retry_budget}")
        if max_cost_usd is not None and not max_cost_usd >= 0:
            raise ValueError(f"max_cost_usd must be >= 0 USD, got {max_cost_usd}")
        if max_cost_usd is not None and cost_fn is None:
            raise ValueError("max_cost_usd needs cost_fn (usage -> USD) to count what is spent")
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
        self.max_cost_usd = max_cost_usd
        self.cost_fn = cost_fn
        self.persistent_after = int(persistent_after)
        self._answers = 0  # answers received by this runner (a request failing alone sees them grow)
        self._first_attempts = 0  # first attempts of requests, and of those the ones that failed
        self._first_failed = 0
        self.estimate_fn = estimate_fn or (lambda p: (conservative_prompt_tokens(p), 0))
        self.controller = AdaptiveConcurrency(
            start_concurrency,
            ceiling=max_concurrency,
            fixed=None if concurrency == AUTO else int(concurrency),
        )
        self.admission = Admission(self.controller, max_cost_usd)
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
        self.budget_skipped = 0
        self.persistent_failures = 0

    @property
    def current_concurrency(self) -> int:
        """Requests allowed in flight now (pinned, or where the adaptive limit stands)."""
        return self.controller.limit

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

    def gate_stats(self) -> dict:
        """What the admission gate did: budget skips and spend, the concurrency reached and its back-offs."""
        with self._lock:
            out = {
                "budget_skipped": self.budget_skipped,
                "concurrency": AUTO if self.controller.adaptive else self.controller.limit,
                "concurrency_now": self.controller.limit,
                "concurrency_peak": self.controller.peak,
                "concurrency_backoffs": self.controller.decreases,
                "rate_limit_wait_s": round(self.admission.throttled_s, 3),
                "persistent_failures": self.persistent_failures,
            }
        if self.max_cost_usd is not None:
            out["max_cost_usd"] = self.max_cost_usd
            out["spent_usd"] = round(self.admission.spent, 6)
        return out

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

    def _reservation(self, prompt: ChatPrompt) -> tuple[float, int]:
        """(USD reserved against the budget, tokens against the header allowance) for one request."""
        tokens_in, tokens_out = self.estimate_fn(prompt)
        cost = 0.0
        if self.max_cost_usd is not None and self.cost_fn is not None:
            cost = self.cost_fn({"prompt_tokens": tokens_in, "completion_tokens": tokens_out}) or 0.0
        return cost, int(tokens_in) + int(tokens_out)

    def _settle(self, ticket: Ticket, result: Completion | BackendError) -> None:
        """Release the gate for one attempt: its cost, congestion signal and rate-limit headers."""
        charged = 0.0
        if isinstance(result, Completion):
            outcome = "ok"
            if self.max_cost_usd is not None and self.cost_fn is not None:
                # an answer that did not say what it used is charged its reservation, never 0
                cost = self.cost_fn(result.usage) if usage_known(result.usage) else None
                charged = ticket.reserve if cost is None else cost
        else:
            if result.status == 429:
                outcome = "congestion:429"
            elif getattr(result, "timeout", False):
                outcome = "congestion:timeout"
            else:
                outcome = "error"
            if result.status is None:
                charged = ticket.reserve  # a timeout or dropped connection may have been processed and billed
        self.admission.release(
            ticket, charged, outcome, RateLimits.from_headers(getattr(result, "headers", None))
        )

    def _call_with_retries(self, prompt: ChatPrompt, stop: threading.Event) -> Completion | BackendError:
        """One prompt under the retry policy; a fresh budget from now. Non-BackendErrors propagate."""
        deadline = self._clock() + self.retry_budget
        attempt = 0
        empty_left = self.retry_empty
        cost, tokens = self._reservation(prompt)
        last: Completion | BackendError = BackendError("not sent: the run stopped first")
        failed = 0  # attempts that ended in a retryable error other than a 429
        answers_before: int | None = None  # answers of the run when this request first failed
        while True:
            ticket = self.admission.acquire(cost, tokens, stop)
            if ticket is None:
                return last  # run() is aborting: the result is discarded
            if isinstance(ticket, BudgetSkippedError):
                return ticket
            self._count(calls_made=1, _first_attempts=int(attempt == 0))
            try:
                completion = self.call_fn(prompt)
            except BackendError as err:
                self._settle(ticket, err)
                if err.status is not None:
                    self._reached = True
                elif getattr(err, "connection", False) and self._note_unreachable(err, stop):
                    return err
                if not err.retryable:
                    return err
                if err.status != 429:
                    failed += 1
                    if answers_before is None:
                        answers_before = self._answers
                    if attempt == 0:
                        self._count(_first_failed=1)
                    if (
                        failed >= self.persistent_after
                        and self._answers > answers_before
                        and self._weather_chance(failed) < PERSISTENT_CHANCE
                    ):
                        return self._persistent(err, failed)
                elif attempt == 0:
                    self._count(_first_failed=1)
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
                last = err
            except BaseException:
                self.admission.abandon(ticket)
                raise
            else:
                self._settle(ticket, completion)
                self._reached = True
                with self._lock:
                    self._answers += 1
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

    def _weather_chance(self, failures: int) -> float:
        """How likely ``failures`` failures in a row are by chance: the run's first-attempt failure rate
        (smoothed) to that power. A global outage (every first attempt failing) is 1: never given up."""
        with self._lock:
            p = (self._first_failed + 1) / (self._first_attempts + 2)
        return p**failures

    def _persistent(self, err: BackendError, attempts: int) -> BackendError:
        """Give up a request that keeps failing while the others are answered: an API failure, not asked
        again in the final round."""
        self._count(persistent_failures=1)
        log.info("giving up after %d failed attempts while other requests were answered: %s", attempts, err)
        out = BackendError(
            f"{err} (given up after {attempts} failed attempts while other requests were answered)",
            status=err.status,
            retryable=False,
            headers=err.headers,
        )
        out.persistent = True  # type: ignore[attr-defined]
        return out

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

        Returns a ``Completion``, a ``BackendError`` or a ``BudgetSkippedError`` per input. Raises whatever
        non-``BackendError`` exception a call raised (a bug), after cancelling the queued calls.
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
        with self.admission.cond:
            self.controller.new_run()
        stop = threading.Event()
        bar = tqdm(
            total=len(todo),
            desc=self.progress_desc,
            unit="call",
            file=sys.stderr,
            disable=not self.progress,
            dynamic_ncols=True,
        )
        workers = self.controller.ceiling if self.controller.adaptive else self.controller.limit
        pool = ThreadPoolExecutor(max_workers=min(workers, len(todo)))
        try:
            failed = skipped = 0
            later: list[str] = []  # ended in a retryable error: the final round asks again

            def note(key: str, result: Completion | BackendError, last_round: bool) -> None:
                nonlocal failed, skipped
                if isinstance(result, BudgetSkippedError):
                    final[key] = result
                    skipped += 1
                    bar.update(1)
                elif isinstance(result, BackendError) and result.retryable and not last_round:
                    later.append(key)
                else:
                    final[key] = result
                    failed += isinstance(result, BackendError)
                    bar.update(1)
                postfix = dict(
                    conc=self.controller.limit,
                    cached=self.cache_hits,
                    retries=self.retries,
                    failed=failed,
                    final_round=len(later),
                )
                if self.max_cost_usd is not None:
                    postfix.update(spent=f"${self.admission.spent:.4f}", budget_skipped=skipped)
                bar.set_postfix(postfix)

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
        n_skipped = sum(isinstance(r, BudgetSkippedError) for r in final.values())
        self._count(
            failures=sum(isinstance(r, BackendError) for r in final.values()) - n_skipped,
            budget_skipped=n_skipped,
        )
        if n_skipped:
            log.warning(
                "budget: max_cost_usd=%g stopped the run: %d of %d prompt(s) not sent (budget_skipped); "
                "spent $%.4f; a rerun with a larger max_cost_usd continues from the response cache",
                self.max_cost_usd,
                n_skipped,
                len(todo),
                self.admission.spent,
            )
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
            if isinstance(result, BudgetSkippedError):
                still.append("budget_skipped")
            elif isinstance(result, BackendError):
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
