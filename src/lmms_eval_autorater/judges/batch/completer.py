"""``BatchCompleter``: the judge's ``complete_all`` over a provider's Batch API, at the batch price.

Same interface, cache and cache keys as ``pipeline.ApiCompleter``, so batch and direct runs share
answers. Per call: cached prompts are answered from the cache; the ledger is asked which open
batches already hold the others (a killed run re-attaches to them); the rest are written as JSONL
lines (``custom_id`` = the cache key), split to the provider's per-file limits and submitted; then
every open batch is polled with backoff until it ends. Each answer goes into the cache as it is
read. A line the provider answered with a retryable error is asked again in a new batch, at most
``max_line_retries`` times, then counted as an API failure; lines of an expired, cancelled or
failed batch that have no answer are resubmitted, never the answered ones, for as long as batches make
progress: only ``max_resubmits`` batches in a row that answered none of their lines end a line as an API
failure. With ``max_cost_usd``, a line is submitted only while what was spent plus an upper bound of the
lines in flight (prompt bound + ``max_tokens``, at the batch price) stays within it: the rest wait for
batches to end, and what still does not fit is ``budget_skipped``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from lmms_eval_autorater.judges import prices
from lmms_eval_autorater.judges.batch.jobs import Job, JobLedger
from lmms_eval_autorater.judges.batch.protocol import BatchProtocol, JobStatus
from lmms_eval_autorater.judges.cache import ResponseCache
from lmms_eval_autorater.judges.pipeline import api_cache_key
from lmms_eval_autorater.judges.types import (
    BackendError,
    BudgetSkippedError,
    ChatPrompt,
    Completion,
    usage_known,
)

log = logging.getLogger(__name__)


class BatchCompleter:
    """``complete_all`` through batch jobs: ``__call__(prompts)``, ``key(prompt)``, ``stats()``.

    ``poll_interval`` seconds between polls at first, times ``poll_factor`` after each poll in which
    no batch ended, up to ``poll_max``. ``retry_budget`` seconds bound the retries of a failing
    upload/create, and how long polling may fail in a row before the open lines are returned as
    API failures (their batches stay in the ledger: a rerun re-attaches). ``max_lines``/``max_bytes``
    override the protocol's per-file limits. ``max_cost_usd`` bounds what the completer spends (over all
    its calls) at the batch price. ``sleep``/``clock`` are injectable for tests.
    """

    def __init__(
        self,
        backend: Any,
        protocol: BatchProtocol,
        *,
        cache: ResponseCache | None,
        ledger: JobLedger,
        max_lines: int | None = None,
        max_bytes: int | None = None,
        max_line_retries: int = 2,
        max_resubmits: int = 3,
        poll_interval: float = 10.0,
        poll_max: float = 300.0,
        poll_factor: float = 1.5,
        retry_budget: float = 600.0,
        max_cost_usd: float | None = None,
        progress: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.protocol = protocol
        self.cache = cache
        self.ledger = ledger
        self.max_lines = int(max_lines or protocol.max_lines)
        self.max_bytes = int(max_bytes or protocol.max_bytes)
        if self.max_lines < 1 or self.max_bytes < 1:
            raise ValueError(f"max_lines and max_bytes must be >= 1, got {self.max_lines}, {self.max_bytes}")
        self.max_line_retries = max_line_retries
        self.max_resubmits = max_resubmits
        self.poll_interval = poll_interval
        self.poll_max = poll_max
        self.poll_factor = poll_factor
        self.retry_budget = retry_budget
        self.max_cost_usd = max_cost_usd
        if max_cost_usd is not None and self.cost_usd({"prompt_tokens": 1, "completion_tokens": 1}) is None:
            raise ValueError(
                f"max_cost_usd={max_cost_usd:g} needs a price for model {backend.model!r}, which the price "
                "table does not list: pass price_in= and price_out= (USD per million tokens)"
            )
        self.spent_usd = 0.0
        self.progress = progress
        self._sleep = sleep
        self._clock = clock
        self.counts = {
            "calls_made": 0,  # lines submitted (each one a paid request), retries and resubmissions included
            "cache_hits": 0,
            "retries": 0,  # lines asked again after a line error or an empty answer
            "resubmitted": 0,  # lines asked again because their batch ended without answering them
            "failures": 0,
            "budget_skipped": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "batches_submitted": 0,
            "batches_reattached": 0,
            "poll_errors": 0,
        }

    # -- the completer interface -------------------------------------------------------------------
    def key(self, prompt: ChatPrompt) -> str:
        """The response-cache key of ``prompt`` (the same as for direct calls); also the line's custom_id."""
        return api_cache_key(self.backend, prompt)

    def stats(self) -> dict:
        """Lines submitted (``calls_made``), cache hits, retries, resubmissions, failures, tokens, batches."""
        out = {"mode": "batch", "protocol": self.protocol.name, **self.counts}
        if self.max_cost_usd is not None:
            out["spent_usd"] = round(self.spent_usd, 6)
        return out

    def cost_usd(self, usage: dict) -> float | None:
        """USD of ``usage`` at the batch price (explicit ``price_in``/``price_out`` taken as given)."""
        b = self.backend
        return prices.cost_usd(usage, b.model, b.price_per_mtok_in, b.price_per_mtok_out, batch=True)

    def __call__(self, prompts: list[ChatPrompt]) -> list[Completion | BackendError]:
        keys = [self.key(p) for p in prompts]
        cached = self.cache.get_many(keys) if self.cache is not None else {}
        todo: dict[str, ChatPrompt] = {}
        for k, p in zip(keys, prompts):
            if k not in cached:
                todo.setdefault(k, p)
        self.counts["cache_hits"] += sum(k in cached for k in keys)
        results = _Run(self, todo).run() if todo else {}
        out: list[Completion | BackendError] = []
        for k in keys:
            if k in cached:
                out.append(cached[k])
                continue
            r = results[k]
            if isinstance(r, Completion):  # an answer without usage: unknown, never 0
                r.usage = {**r.usage, "cost_usd": self.cost_usd(r.usage) if usage_known(r.usage) else None}
            out.append(r)
        return out

    # -- offline batches (vllm run-batch) ------------------------------------------------------------
    def write_jsonl(self, prompts: Iterable[ChatPrompt], path: str | Path) -> int:
        """Write the batch lines of the prompts that have no cached answer to ``path`` (one per key);
        returns how many. The same file feeds ``vllm run-batch -i PATH -o OUT --model M``."""
        keys: dict[str, ChatPrompt] = {}
        for p in prompts:
            keys.setdefault(self.key(p), p)
        cached = self.cache.get_many(keys) if self.cache is not None else {}
        n = 0
        with open(path, "wb") as fh:
            for k, p in keys.items():
                if k not in cached:
                    fh.write(self.protocol.line(k, p))
                    n += 1
        return n

    def import_output(self, path: str | Path) -> dict[str, int]:
        """Read a Batch API or ``vllm run-batch`` output file into the response cache; returns
        ``{"answers", "errors", "empty"}`` (errors and empty answers are not cached)."""
        from lmms_eval_autorater.judges.batch.offline import import_output

        if self.cache is None:
            raise ValueError("import_output needs the response cache (cache=true)")
        return import_output(self.backend, self.cache, path)


class _Run:
    """One ``BatchCompleter`` call: re-attach, submit, poll, read, retry, until every line has a result."""

    def __init__(self, owner: BatchCompleter, todo: dict[str, ChatPrompt]) -> None:
        self.o = owner
        self.p = owner.protocol
        self.todo = todo
        self.results: dict[str, Completion | BackendError] = {}
        self.active: list[Job] = []
        self.resubmits: dict[str, int] = {}
        self.empty_retried: set[str] = set()
        self.provider_done: dict[str, int] = {}
        self.reserved: dict[str, float] = {}  # key -> USD bound of a line in flight (with a budget)
        self.waiting: list[tuple[str, int]] = []  # (key, attempt): lines waiting for budget
        self.bar = tqdm(
            total=len(todo),
            desc=f"judge {owner.backend.model} (batch)",
            unit="line",
            file=sys.stderr,
            disable=not owner.progress,
            dynamic_ncols=True,
        )

    # -- bookkeeping ---------------------------------------------------------------------------------
    def _settle(self, key: str, result: Completion | BackendError) -> None:
        if key in self.results or key not in self.todo:
            return
        self.results[key] = result
        if isinstance(result, BudgetSkippedError):
            self.o.counts["budget_skipped"] += 1
        elif isinstance(result, BackendError):
            self.o.counts["failures"] += 1
        self.bar.update(1)

    def _fail(self, keys: Iterable[str], err: BackendError) -> None:
        for k in keys:
            self._settle(k, BackendError(str(err), status=err.status, retryable=False))

    def _postfix(self) -> None:
        self.bar.set_postfix(
            batches=len(self.active),
            provider_done=sum(self.provider_done.get(j.token, 0) for j in self.active),
            retries=self.o.counts["retries"],
            failed=self.o.counts["failures"],
        )

    def _with_retries(
        self, what: str, fn: Callable[[], Any], on_retry: Callable[[], Any] | None = None
    ) -> Any:
        """``fn()`` retried on retryable ``BackendError`` with backoff within ``retry_budget``;
        ``on_retry()`` returning non-None before a retry ends the wait with that value."""
        deadline = self.o._clock() + self.o.retry_budget
        delay = self.o.poll_interval
        while True:
            try:
                return fn()
            except BackendError as err:
                if not err.retryable or self.o._clock() + delay > deadline:
                    raise
                log.info("%s: %s; again in %.2fs", what, err, delay)
                self.o._sleep(delay)
                delay = min(self.o.poll_max, delay * self.o.poll_factor)
                if on_retry is not None:
                    found = on_retry()
                    if found is not None:
                        return found

    # -- the run -------------------------------------------------------------------------------------
    def run(self) -> dict[str, Completion | BackendError]:
        try:
            self._reattach()
            covered = {k for j in self.active for k in j.custom_ids}
            self._submit([k for k in self.todo if k not in covered], attempt=0)
            self._poll()
        finally:
            self.bar.close()
        missing = [k for k in self.todo if k not in self.results]
        if missing:  # cannot happen: every path settles its lines; say so loudly instead of dropping docs
            raise RuntimeError(f"batch run ended with {len(missing)} line(s) without a result")
        return self.results

    def _reattach(self) -> None:
        for job in self.o.ledger.open_jobs(self.p.scope, self.todo):
            if job.batch_id is None:  # killed between reserving and learning the batch id: look it up
                try:
                    found = self._with_retries("find batch", lambda t=job.token: self.p.find(t))
                except BackendError as err:
                    # unknown whether the batch exists: its lines fail this run rather than risk paying twice
                    self._fail([k for k in job.custom_ids if k in self.todo], err)
                    continue
                if found is None:
                    self.o.ledger.close(job, "never created")
                    continue
                self.o.ledger.attach(job, found)
            log.info("re-attached to batch %s (%d lines)", job.batch_id, len(job.custom_ids))
            if self.o.max_cost_usd is not None:  # already submitted: in flight whatever the budget says
                self.reserved.update({k: self._bound(k) for k in job.custom_ids if k in self.todo})
            self.o.counts["batches_reattached"] += 1
            self.active.append(job)

    def _submit(self, keys: list[str], attempt: int) -> None:
        """Submit ``keys`` as batches of at most ``max_lines`` lines and ``max_bytes`` bytes each."""
        covered = {k for j in self.active for k in j.custom_ids}
        keys = [k for k in dict.fromkeys(keys) if k not in covered and k not in self.results]
        if self.o.max_cost_usd is not None:
            keys = self._within_budget(keys, attempt)
        chunk: list[tuple[str, bytes]] = []
        size = 0
        for k in keys:
            line = self.p.line(k, self.todo[k])
            if len(line) > self.o.max_bytes:
                self._settle(
                    k,
                    BackendError(
                        f"{self.p.name}/{self.o.backend.model}: the batch line of this prompt is {len(line)} bytes, "
                        f"over the {self.o.max_bytes}-byte file limit; not sent",
                        retryable=False,
                    ),
                )
                continue
            if chunk and (len(chunk) >= self.o.max_lines or size + len(line) > self.o.max_bytes):
                self._submit_one(chunk, attempt)
                chunk, size = [], 0
            chunk.append((k, line))
            size += len(line)
        if chunk:
            self._submit_one(chunk, attempt)

    def _bound(self, key: str) -> float:
        """An upper bound of a line's USD at the batch price: its prompt bound plus ``max_tokens``."""
        from lmms_eval_autorater.judges.runner import conservative_prompt_tokens

        usage = {
            "prompt_tokens": conservative_prompt_tokens(self.todo[key]),
            "completion_tokens": int(getattr(self.o.backend, "max_tokens", 0) or 0),
        }
        return float(self.o.cost_usd(usage) or 0.0)

    def _within_budget(self, keys: list[str], attempt: int) -> list[str]:
        """The keys that fit the budget now (reserved); the others wait for batches to end, or, when
        nothing is in flight that could free room, are ``budget_skipped``."""
        budget = float(self.o.max_cost_usd or 0.0)
        fit: list[str] = []
        for k in keys:
            bound = self._bound(k)
            in_flight = sum(self.reserved.values())
            if self.o.spent_usd + in_flight + bound <= budget:
                self.reserved[k] = bound
                fit.append(k)
            elif self.active or fit:  # something will be in flight: wait for it to end
                self.waiting.append((k, attempt))
            else:
                self._settle(
                    k,
                    BudgetSkippedError(
                        f"not sent: max_cost_usd={budget:g} would be passed (spent ${self.o.spent_usd:.4f}, "
                        f"this line's bound ${bound:.4f} at the batch price); a rerun with a larger budget "
                        "continues from the cache",
                        retryable=False,
                    ),
                )
        return fit

    def _submit_waiting(self) -> None:
        waiting, self.waiting = self.waiting, []
        for attempt in sorted({a for _, a in waiting}):
            self._submit([k for k, a in waiting if a == attempt], attempt)

    def _submit_one(self, chunk: list[tuple[str, bytes]], attempt: int) -> None:
        job = self.o.ledger.reserve(self.p.scope, [k for k, _ in chunk], attempt)
        lines = [line for _, line in chunk]
        try:
            # a create whose answer was lost may still have made the batch: look it up before asking again
            batch_id, input_file = self._with_retries(
                "submit batch",
                lambda: self.p.submit(lines, job.token),
                on_retry=lambda: (lambda b: None if b is None else (b, None))(self._find_quietly(job.token)),
            )
        except BackendError as err:
            if not err.retryable:  # refused: no batch was made
                self.o.ledger.close(job, "not submitted")
            # else the job stays reserved: whether a create got through is unknown, so the next run
            # looks the token up in the provider's list before it submits these lines again
            log.warning("batch of %d line(s) not submitted: %s", len(chunk), err)
            self._fail(job.custom_ids, err)
            for k in job.custom_ids:
                self.reserved.pop(k, None)
            return
        self.o.ledger.attach(job, batch_id, input_file)
        self.o.counts["batches_submitted"] += 1
        self.o.counts["calls_made"] += len(chunk)
        self.active.append(job)
        log.info("submitted batch %s: %d line(s), attempt %d", batch_id, len(chunk), attempt)

    def _find_quietly(self, token: str) -> str | None:
        try:
            return self.p.find(token)
        except BackendError:
            return None

    def _poll(self) -> None:
        delay = self.o.poll_interval
        last_ok = self.o._clock()
        while self.active or self.waiting:
            if not self.active:  # nothing in flight: what fits now goes, the rest is budget_skipped
                self._submit_waiting()
                continue
            ended: list[tuple[Job, JobStatus]] = []
            failing: BackendError | None = None
            for job in list(self.active):
                try:
                    status = self.p.status(str(job.batch_id))
                except BackendError as err:
                    if err.retryable:
                        self.o.counts["poll_errors"] += 1
                        failing = err
                        continue
                    # the provider does not know the batch (deleted, another account): its lines go again
                    log.warning("batch %s cannot be read (%s): resubmitting its lines", job.batch_id, err)
                    status = JobStatus(state="failed", message=str(err))
                else:
                    last_ok = self.o._clock()
                self.provider_done[job.token] = status.done
                if status.state != "running":
                    ended.append((job, status))
            if failing is not None and self.o._clock() - last_ok > self.o.retry_budget:
                # the batches keep running at the provider and stay in the ledger: a rerun re-attaches
                self._fail([k for j in self.active for k in j.custom_ids if k in self.todo], failing)
                self._fail([k for k, _ in self.waiting], failing)
                return
            if ended:
                for job, _status in ended:
                    self.active.remove(job)
                read: list[tuple[Job, JobStatus]] = []
                for job, status in ended:
                    try:
                        retry, resubmit = self._read(job, status)
                    except BackendError as err:
                        # results not readable now: the job stays open in the ledger, a rerun reads it
                        log.warning("results of batch %s not readable: %s", job.batch_id, err)
                        self._fail([k for k in job.custom_ids if k in self.todo], err)
                        for k in job.custom_ids:
                            self.reserved.pop(k, None)
                        continue
                    self._submit(retry, job.attempt + 1)
                    self._submit(resubmit, job.attempt)
                    read.append((job, status))
                for job, status in read:
                    self.o.ledger.close(job, status.state)
                if self.waiting:
                    self._submit_waiting()
                delay = self.o.poll_interval
            self._postfix()
            if self.active and not ended:
                self.o._sleep(delay)
                delay = min(self.o.poll_max, delay * self.o.poll_factor)

    def _read(self, job: Job, status: JobStatus) -> tuple[list[str], list[str]]:
        """Take an ended batch's results: answers into the cache; (lines to retry, lines to resubmit)."""
        retry: list[str] = []
        seen: set[str] = set()
        if status.results:
            lines = self._with_retries("read batch results", lambda: list(self.p.results(status)))
        else:
            lines = []
        for key, result in lines:
            seen.add(key)
            if isinstance(result, Completion):
                usage = result.usage or {}
                if key in self.todo and key not in self.results:
                    self.o.counts["prompt_tokens"] += int(usage.get("prompt_tokens") or 0)
                    self.o.counts["completion_tokens"] += int(usage.get("completion_tokens") or 0)
                    # an answer that did not say what it used is charged its upper bound, never 0
                    cost = self.o.cost_usd(usage) if usage_known(usage) else None
                    self.o.spent_usd += float(cost) if cost is not None else self._bound(key)
                if result.text:
                    if self.o.cache is not None:
                        self.o.cache.put(key, result)  # at once: a killed run keeps every answer read
                    self._settle(key, result)
                elif (
                    key in self.todo
                    and key not in self.empty_retried
                    and job.attempt < self.o.max_line_retries
                ):
                    self.empty_retried.add(key)  # an empty answer is often transient: ask once more
                    retry.append(key)
                else:
                    self._settle(key, result)  # not cached: the parser counts it, a rerun asks again
                continue
            if key not in self.todo or key in self.results:
                continue
            if result.retryable and job.attempt < self.o.max_line_retries:
                retry.append(key)
            else:
                tries = job.attempt + 1
                self._settle(
                    key,
                    BackendError(
                        f"{result.message} (after {tries} batch attempt(s))",
                        status=result.status,
                        retryable=False,
                    ),
                )
        for key in job.custom_ids:  # this batch is over: its lines are no longer in flight
            self.reserved.pop(key, None)
        resubmit: list[str] = []
        # a batch that answered some of its lines made progress: its unanswered lines go again with their
        # count of fruitless batches reset; only ``max_resubmits`` batches in a row that answered none of
        # their lines end a line as an API failure (bounded: each round with progress settles a line)
        progress = any(k in seen for k in job.custom_ids)
        for key in job.custom_ids:
            if key in seen or key not in self.todo or key in self.results:
                continue
            n = 0 if progress else self.resubmits.get(key, 0)
            if n >= self.o.max_resubmits:
                self._settle(
                    key,
                    BackendError(
                        f"{self.p.name}/{self.o.backend.model}: no answer after {n + 1} batches in a row that "
                        f"answered none of their lines (the last one {status.state}"
                        f"{': ' + status.message if status.message else ''})",
                        retryable=False,
                    ),
                )
                continue
            self.resubmits[key] = n + 1
            resubmit.append(key)
        self.o.counts["retries"] += len(retry)
        self.o.counts["resubmitted"] += len(resubmit)
        if resubmit:
            log.warning(
                "batch %s %s with %d line(s) unanswered: resubmitting only those",
                job.batch_id,
                status.state,
                len(resubmit),
            )
        return retry, resubmit
