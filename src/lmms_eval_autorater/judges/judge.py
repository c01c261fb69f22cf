"""The AutoRater judge: specialist selection (none / all / auto / fixed), prompts, verdicts, swap.

``Judge.judge_all`` takes every doc of a run at once so that specialists run batched once
per input and backend calls run concurrently; it returns one ``Verdict`` per request, in
order. Failures stay failures: an image that cannot be read or decoded makes its doc an
``input_error`` before anything is sent, an unparsable answer is ``parse_failure``, a call that
failed for good is ``api_error``; none is ever replaced by a guess.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from loguru import logger

from lmms_eval_autorater.errors import AutoraterError
from lmms_eval_autorater.images import ImageError, load_image
from lmms_eval_autorater.judges import contract, logprobs
from lmms_eval_autorater.judges.prompts import build_selection_prompt, build_verdict_prompt
from lmms_eval_autorater.judges.types import (
    BackendError,
    BudgetSkippedError,
    ChatPrompt,
    Completion,
    JudgeRequest,
    Verdict,
)
from lmms_eval_autorater.specialists.types import Assessment

#: prompts -> completions or errors, same order (API runner or local batched generation)
CompleteAll = Callable[[list[ChatPrompt]], list["Completion | BackendError"]]
#: (code, requests) -> per request, the assessments of that specialist on its candidates
AssessFn = Callable[[str, list[JudgeRequest]], list[tuple[Assessment, ...]]]


@dataclass
class JudgeStats:
    """Counts a run reports next to its metrics."""

    requests: int = 0
    input_errors: int = 0
    parse_failures: int = 0
    api_failures: int = 0
    #: docs not judged because ``max_cost_usd`` was reached (neither answers nor failures)
    budget_skipped: int = 0
    selection_failures: int = 0
    swap_flips: int = 0
    #: ``scoring=expected``: docs whose answer had no usable probabilities (they keep the integer verdict)
    expected_fallbacks: int = 0
    tools_selected: dict[str, int] = field(default_factory=dict)


class AllInputsFailedError(AutoraterError, RuntimeError):
    """Every doc of a run is an input error: nothing could be judged (a data problem, not a result)."""


def request_images(req: JudgeRequest) -> list[tuple[str, str]]:
    """(doc field, image reference) of every image of ``req``, in the judge's order."""
    out = [("source_image", req.source)] if req.source is not None else []
    out.extend((f"image_{i}", ref) for i, ref in enumerate(req.candidates, start=1))
    return out


@dataclass(frozen=True)
class InputProblem:
    """Why a doc cannot be judged: the image in ``field`` (``source_image``, ``image_1``, ``image_2``) at
    ``file`` does not open or decode. ``str()`` is the one-line message that is logged and recorded."""

    doc_key: str
    field: str
    file: str
    reason: str

    def __str__(self) -> str:
        task, _, doc = self.doc_key.partition("/")
        return (
            f"input error: task {task!r}, doc {doc!r}, field {self.field!r}, file {self.file}: {self.reason}"
        )


def check_inputs(
    reqs: Sequence[JudgeRequest], seen: dict[str, str | None] | None = None
) -> list[InputProblem | None]:
    """Per request, None when every image opens and decodes, else the first ``InputProblem``.

    Each distinct reference is decoded once: ``seen`` (reference -> error text or None) memoises the
    results across calls, so pairs sharing images, and a judge asked again about the same docs, decode
    nothing twice. Nothing is sent anywhere.
    """
    seen = {} if seen is None else seen
    out: list[InputProblem | None] = []
    for req in reqs:
        problem = None
        for field_name, ref in request_images(req):
            key = ref if isinstance(ref, str) else repr(ref)
            if key not in seen:
                try:
                    load_image(ref)
                    seen[key] = None
                except ImageError as exc:
                    seen[key] = str(exc)
            if seen[key] is not None:
                problem = InputProblem(req.doc_key, field_name, str(ref), seen[key])
                break
        out.append(problem)
    return out


def require_some_inputs(problems: Sequence[InputProblem | None]) -> None:
    """Raise ``AllInputsFailedError`` when every doc is an input error (a data problem, not a result)."""
    if problems and all(p is not None for p in problems):
        raise AllInputsFailedError(
            f"every one of the {len(problems)} docs is an input error (nothing was sent); first: {problems[0]}"
        )


def input_error_verdict(problem: InputProblem) -> Verdict:
    """The verdict of a doc that could not be judged; ``meta["input"]`` keeps the field, file and reason."""
    return Verdict(
        status="input_error",
        error=str(problem),
        meta={"tools": [], "input": {"field": problem.field, "file": problem.file, "reason": problem.reason}},
    )


def swap_request(req: JudgeRequest) -> JudgeRequest:
    """The same pairwise request with the candidates (and their assessments) in the other order."""
    swapped = tuple(
        replace(a, candidate=3 - a.candidate) if a.candidate in (1, 2) else a for a in req.assessments
    )
    return replace(req, candidates=tuple(reversed(req.candidates)), assessments=swapped)


def _completion_meta(c: Completion) -> dict:
    return {
        "model": c.model,
        "fingerprint": c.fingerprint,
        "usage": dict(c.usage),
        "cached": c.cached,
        "finish_reason": c.finish_reason,
    }


def to_verdict(
    result: Completion | BackendError, paradigm: str, classes: int = 2, scoring: str = "argmax"
) -> Verdict:
    """Parse one backend result into a verdict, keeping the raw text and the failure reason; with
    ``scoring="expected"`` also the verdict's probabilities (``with_probabilities``)."""
    verdict = _to_verdict(result, paradigm, classes)
    if scoring == "expected" and verdict.status == "ok" and isinstance(result, Completion):
        with_probabilities(verdict, result, paradigm, classes)
    return verdict


def with_probabilities(verdict: Verdict, result: Completion, paradigm: str, classes: int = 2) -> Verdict:
    """Add the probabilities of an ok verdict from its answer's log-probabilities (``judges/logprobs``):
    ``meta["probs"]`` (value -> p), and ``meta["score_used"]`` (pointwise: the expected score) or
    ``meta["p_first"]`` (pairwise: p(image 1 preferred) over the choices 1 and 2). Without usable
    probabilities the integer verdict stays and ``meta["expected_fallback"]`` says why."""
    value = verdict.score if paradigm == "pointwise" else verdict.preferred
    dist = logprobs.value_distribution(
        result.text, result.logprobs, int(value), paradigm, logprobs.valid_values(paradigm, classes)
    )
    verdict.meta["scoring"] = "expected"
    if not dist.ok:
        verdict.meta["expected_fallback"] = dist.reason
        return verdict
    verdict.meta["probs"] = {str(k): round(p, 6) for k, p in dist.probs.items()}
    if paradigm == "pointwise":
        verdict.meta["score_used"] = dist.expected()
    elif not math.isnan(dist.p_first()):
        verdict.meta["p_first"] = dist.p_first()
    else:
        verdict.meta["expected_fallback"] = "no probability on the choices 1 and 2"
    return verdict


def combine_samples(samples: list[Verdict], paradigm: str) -> Verdict:
    """``samples=N`` (self-consistency): pointwise the mean score (of the expected scores when every
    sample has one, else of the integers), pairwise the majority choice (a tied vote is a tie, 0) with
    ``p_first`` the vote share of image 1 (or, when every sample has probabilities, their mean). Failed
    samples are left out; with none ok, the first failure is the verdict. Usage is the samples' sum."""
    ok = [v for v in samples if v.status == "ok"]
    usage = _sum_usage(*(v.meta.get("usage") for v in samples if "usage" in v.meta))
    cached = all(v.meta.get("cached") for v in samples)
    if not ok:
        out = replace(samples[0])
        out.meta = {**samples[0].meta, "samples": len(samples), "samples_ok": 0}
        return out
    first = ok[0]
    meta = {**first.meta, "usage": usage, "cached": cached, "samples": len(samples), "samples_ok": len(ok)}
    for key in ("score_used", "p_first", "probs", "expected_fallback"):
        meta.pop(key, None)
    fallback = next((v.meta["expected_fallback"] for v in ok if "expected_fallback" in v.meta), None)
    if fallback is not None:
        meta["expected_fallback"] = fallback
    if paradigm == "pointwise":
        values = [
            float(v.meta.get("score_used", v.score)) if fallback is None else float(v.score) for v in ok
        ]
        meta["score_used"] = sum(values) / len(values)
        meta["sample_scores"] = values
        return Verdict(status="ok", analysis=first.analysis, score=first.score, raw=first.raw, meta=meta)
    votes = [int(v.preferred) for v in ok]
    meta["sample_votes"] = votes
    ones, twos = votes.count(1), votes.count(2)
    if all("p_first" in v.meta for v in ok):
        meta["p_first"] = sum(v.meta["p_first"] for v in ok) / len(ok)
    elif ones + twos:
        meta["p_first"] = ones / (ones + twos)
    counts = {c: votes.count(c) for c in set(votes)}
    top = max(counts.values())
    winners = [c for c, n in counts.items() if n == top]
    preferred = winners[0] if len(winners) == 1 else 0
    return Verdict(status="ok", analysis=first.analysis, preferred=preferred, raw=first.raw, meta=meta)


def _to_verdict(result: Completion | BackendError, paradigm: str, classes: int = 2) -> Verdict:
    """Parse one backend result into a verdict, keeping the raw text and the failure reason."""
    if isinstance(result, BudgetSkippedError):
        return Verdict(status="budget_skipped", error=str(result), meta={"budget_skipped": True})
    if isinstance(result, BackendError):
        return Verdict(status="api_error", error=str(result), meta={"http_status": result.status})
    if paradigm == "pairwise" and classes == 4:
        parsed = contract.parse_pairwise4(result.text)
    else:
        parsed = (
            contract.parse_pairwise(result.text)
            if paradigm == "pairwise"
            else contract.parse_pointwise(result.text)
        )
    meta = _completion_meta(result)
    if not parsed.ok:
        return Verdict(
            status="parse_failure", analysis=parsed.analysis, raw=result.text, error=parsed.reason, meta=meta
        )
    meta["form"] = parsed.form
    if paradigm == "pairwise":
        return Verdict(
            status="ok", analysis=parsed.analysis, preferred=int(parsed.value), raw=result.text, meta=meta
        )
    return Verdict(status="ok", analysis=parsed.analysis, score=int(parsed.value), raw=result.text, meta=meta)


def combine_swap(first: Verdict, second: Verdict) -> Verdict:
    """Both orders judged: the verdict stands only if they agree, else a tie (0); failures propagate.

    What the doc spent is what both orders spent, each counted once: ``usage`` sums the orders paid for
    in this run (``cached`` only when both came from the cache), an unknown price stays unknown (None),
    and ``meta["orders"]`` keeps each order's own usage and cache flag. A failed order keeps the other
    order's spend on the verdict.
    """
    usage, cached, orders = _swap_spend(first, second)
    for v in (first, second):
        if v.status != "ok":
            out = replace(v)
            out.meta = {**v.meta, "swap": True, "swap_flipped": None, "orders": orders}
            if usage is not None:
                out.meta.update(usage=usage, cached=cached)
            return out
    # 1 and 2 trade places; a four-class tie (3 both good, 4 both bad) reads the same in both orders
    second_in_original = {1: 2, 2: 1}.get(int(second.preferred), int(second.preferred))
    agree = first.preferred == second_in_original
    preferred = first.preferred if agree else 0
    p_first = None
    if "p_first" in first.meta and "p_first" in second.meta:
        # the two orders' probabilities averaged (the second order's image 1 is the original image 2)
        p_first = (first.meta["p_first"] + 1.0 - second.meta["p_first"]) / 2
        if first.meta.get("scoring") == "expected":  # the choice follows the averaged probability
            preferred = 1 if p_first > 0.5 else 2 if p_first < 0.5 else 0
    meta = {
        **first.meta,
        "usage": usage or {},
        "cached": cached,
        "orders": orders,
        "swap": True,
        "swap_flipped": not agree,
        "swapped_answer": {"preferred_in_original_order": second_in_original, "analysis": second.analysis},
    }
    meta.pop("p_first", None)
    if p_first is not None:
        meta["p_first"] = p_first
        meta["p_first_orders"] = [first.meta["p_first"], 1.0 - second.meta["p_first"]]
    fallback = second.meta.get("expected_fallback")
    if fallback is not None and "expected_fallback" not in meta:
        meta["expected_fallback"] = f"swapped order: {fallback}"
    return Verdict(status="ok", analysis=first.analysis, preferred=preferred, raw=first.raw, meta=meta)


def _swap_spend(first: Verdict, second: Verdict) -> tuple[dict | None, bool, list[dict]]:
    """(usage of the pair, whether it cost nothing in this run, per-order usage and cache flag).

    Orders that got an answer count; of those, the ones asked in this run are summed (a cached order cost
    nothing now), or, when every answered order came from the cache, all of them (what the cache holds).
    None when no order got an answer (nothing was paid)."""
    answered = [v for v in (first, second) if "usage" in v.meta]
    orders = [{"usage": v.meta.get("usage"), "cached": bool(v.meta.get("cached"))} for v in answered]
    if not answered:
        return None, False, orders
    paid = [v for v in answered if not v.meta.get("cached")]
    usage = _sum_usage(*(v.meta.get("usage") for v in (paid or answered)))
    return usage, not paid, orders


def _sum_usage(*usages: dict | None) -> dict:
    """Field-wise sum of usage dicts; a field that is unknown (None, or absent where another has it) in
    any of them is unknown (None) in the sum: an unknown price is never summed as 0."""
    keys: list[str] = []
    for u in usages:
        keys.extend(k for k in (u or {}) if k not in keys)
    out: dict = {}
    for k in keys:
        values = [(u or {}).get(k) for u in usages]
        if any(isinstance(v, bool) for v in values):
            continue
        if all(isinstance(v, (int, float)) for v in values):
            out[k] = sum(values)
        elif any(isinstance(v, (int, float)) or v is None for v in values):
            out[k] = None
    return out


class Judge:
    """Runs the AutoRater pipeline for a list of requests.

    ``tools``: [] (base VLM), a list of codes (a fixed subset: each must apply to the task kind),
    "all" (every applicable code) or "auto" (the judge picks per sample, two passes).
    ``applicable``: task kind -> the codes that apply. ``render``: assessments -> the evidence text.
    """

    def __init__(
        self,
        complete_all: CompleteAll,
        *,
        tools: Sequence[str] | str = (),
        swap: bool = False,
        assess: AssessFn | None = None,
        make_assess: Callable[[], AssessFn] | None = None,
        render: Callable[[list[Assessment], int], str] | None = None,
        applicable: Callable[[str], list[str]] | None = None,
        tool_menu: Callable[[list[str]], str] | None = None,
        scoring: str = "argmax",
        samples: int = 1,
    ) -> None:
        if scoring not in ("argmax", "expected"):
            raise ValueError(f"scoring must be 'argmax' or 'expected', got {scoring!r}")
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        self.complete_all = complete_all
        #: ``argmax`` (the integer verdict, the paper's protocol) or ``expected`` (from token probabilities)
        self.scoring = scoring
        #: answers per prompt (self-consistency); 1: one answer
        self.samples = samples
        self.tools = tools
        self.swap = swap
        self.make_assess = make_assess
        if assess is None and tools and make_assess is not None:
            assess = make_assess()
        self.assess = assess
        self.render = render
        self.applicable = applicable
        self.tool_menu = tool_menu
        self.stats = JudgeStats()
        #: reference -> decode error or None, shared by every ``with_tools`` copy (see ``check_inputs``)
        self.checked_images: dict[str, str | None] = {}
        #: set by the factory: the validated config and the backend (None for hand-built judges)
        self.config = None
        self.backend = None
        if tools and (assess is None or render is None or applicable is None):
            raise ValueError("specialist tools need an assess function and a renderer")

    @property
    def completer(self) -> CompleteAll:
        """The cached ``complete_all`` (its ``stats()`` counts calls, cache hits, retries)."""
        return self.complete_all

    @property
    def pool(self):
        """The specialist pool behind ``assess`` (None when no specialist was needed yet)."""
        return getattr(self.assess, "pool", None)

    def with_tools(self, tools: Sequence[str] | str) -> Judge:
        """The same judge (backend, caches, specialist pool shared) with another selection of specialists."""
        assess = self.assess
        if tools and assess is None and self.make_assess is not None:
            assess = self.assess = self.make_assess()
        other = Judge(
            self.complete_all,
            tools=tools,
            swap=self.swap,
            assess=assess,
            make_assess=self.make_assess,
            render=self.render,
            applicable=self.applicable,
            tool_menu=self.tool_menu,
            scoring=self.scoring,
            samples=self.samples,
        )
        other.config, other.backend = self.config, self.backend
        other.checked_images = self.checked_images
        return other

    def check(self, reqs: Sequence[JudgeRequest]) -> list[InputProblem | None]:
        """``check_inputs`` with this judge's memo: an image already checked is not decoded again."""
        return check_inputs(reqs, self.checked_images)

    # -- selection ------------------------------------------------------------------------
    def _select(self, reqs: list[JudgeRequest]) -> tuple[list[list[str]], list[dict]]:
        """Per request: the codes to use, and what the selection pass said (for the logs)."""
        if self.tools == "all":
            assert self.applicable is not None
            return [self.applicable(r.task_kind) for r in reqs], [{} for _ in reqs]
        if self.tools != "auto":
            fixed = list(self.tools)
            if fixed and self.applicable is not None:
                for kind in sorted({r.task_kind for r in reqs}):
                    bad = [c for c in fixed if c not in self.applicable(kind)]
                    if bad:
                        raise ValueError(
                            f"tools {'+'.join(bad)} do not apply to {kind} tasks; applicable: "
                            f"{'+'.join(self.applicable(kind))}"
                        )
            return [fixed for _ in reqs], [{} for _ in reqs]
        assert self.applicable is not None and self.tool_menu is not None
        prompts = [
            build_selection_prompt(
                r, self.tool_menu(self.applicable(r.task_kind)), self.applicable(r.task_kind)
            )
            for r in reqs
        ]
        results = self.complete_all(prompts)
        chosen, info = [], []
        for req, res in zip(reqs, results):
            if isinstance(res, BackendError):
                chosen.append(None)
                info.append(
                    {"auto_error": str(res), "auto_budget_skipped": isinstance(res, BudgetSkippedError)}
                )
                continue
            parsed = contract.parse_tool_selection(res.text, self.applicable(req.task_kind))
            if not parsed.ok:
                self.stats.selection_failures += 1
                chosen.append(None)
                info.append({"auto_parse_failure": parsed.reason, "auto_raw": res.text})
                continue
            chosen.append(list(parsed.value))
            info.append(
                {
                    "auto_selected": list(parsed.value),
                    "auto_analysis": parsed.analysis,
                    "auto_usage": dict(res.usage),
                    "auto_cached": res.cached,
                }
            )
        return chosen, info

    def _attach_assessments(
        self, reqs: list[JudgeRequest], chosen: list[list[str] | None]
    ) -> list[JudgeRequest]:
        codes = sorted({c for cs in chosen if cs for c in cs})
        per_req: list[list[Assessment]] = [[] for _ in reqs]
        for code in codes:
            idx = [i for i, cs in enumerate(chosen) if cs and code in cs]
            assert self.assess is not None
            results = self.assess(code, [reqs[i] for i in idx])
            for i, assessments in zip(idx, results):
                per_req[i].extend(assessments)
        return [replace(r, assessments=tuple(a)) for r, a in zip(reqs, per_req)]

    def with_assessments(self, reqs: Sequence[JudgeRequest]) -> list[JudgeRequest]:
        """``reqs`` with the chosen specialists' assessments attached, exactly as the judge attaches them
        before its verdict pass (inputs must already be checked; rationale synthesis uses this)."""
        chosen, _ = self._select(list(reqs))
        return self._attach_assessments(list(reqs), chosen)

    # -- main -----------------------------------------------------------------------------
    def judge_all(self, reqs: Sequence[JudgeRequest]) -> list[Verdict]:
        """One verdict per request, in order; the second Auto pass and swaps are batched too."""
        all_reqs = list(reqs)
        self.stats.requests += len(all_reqs)
        bad = self.check(all_reqs)
        for problem in bad:
            if problem is not None:
                self.stats.input_errors += 1
                logger.error(f"autorater: {problem}; not sent, counted in input_errors")
        require_some_inputs(bad)
        good = [i for i, p in enumerate(bad) if p is None]
        judged = iter(self._judge_checked([all_reqs[i] for i in good]) if good else [])
        return [input_error_verdict(p) if p is not None else next(judged) for p in bad]

    def _judge_checked(self, reqs: list[JudgeRequest]) -> list[Verdict]:
        """``judge_all`` for requests whose images all decode."""
        chosen, select_info = self._select(reqs)
        todo = [i for i, c in enumerate(chosen) if c is not None]
        verdicts: list[Verdict | None] = [None] * len(reqs)
        for i, c in enumerate(chosen):
            if c is None:  # the Auto pass failed: the sample fails, it is not judged without tools
                status = "api_error" if "auto_error" in select_info[i] else "parse_failure"
                if select_info[i].get("auto_budget_skipped"):
                    status = "budget_skipped"
                err = (
                    select_info[i].get("auto_error")
                    or f"tool selection: {select_info[i].get('auto_parse_failure')}"
                )
                verdicts[i] = Verdict(
                    status=status,
                    error=err,
                    raw=select_info[i].get("auto_raw", ""),
                    meta=dict(select_info[i]),
                )
        ready = self._attach_assessments([reqs[i] for i in todo], [chosen[i] for i in todo])
        prompts, owners = [], []
        for j, req in enumerate(ready):
            orders = [req, swap_request(req)] if self.swap and req.paradigm == "pairwise" else [req]
            for order, r in enumerate(orders):
                base = self._verdict_prompt(r)
                for k in range(self.samples):
                    prompts.append(replace(base, sample=k) if k else base)
                    owners.append((j, order))
        results = self.complete_all(prompts)
        answers: dict[tuple[int, int], list[Verdict]] = {}
        for (j, order), res in zip(owners, results):
            v = to_verdict(res, ready[j].paradigm, ready[j].classes, self.scoring)
            answers.setdefault((j, order), []).append(v)
        first: dict[int, Verdict] = {}
        second: dict[int, Verdict] = {}
        for (j, order), vs in answers.items():
            v = vs[0] if self.samples == 1 else combine_samples(vs, ready[j].paradigm)
            (first if order == 0 else second)[j] = v
        for j, req in enumerate(ready):
            v = first[j]
            if j in second:
                v = combine_swap(v, second[j])
                if v.meta.get("swap_flipped"):
                    self.stats.swap_flips += 1
            i = todo[j]
            v.meta.update(select_info[i])
            v.meta["tools"] = list(chosen[i] or [])
            v.meta["assessments"] = [a.__dict__ for a in req.assessments]
            for code in chosen[i] or []:
                self.stats.tools_selected[code] = self.stats.tools_selected.get(code, 0) + 1
            verdicts[i] = v
        out = [v for v in verdicts if v is not None]
        assert len(out) == len(reqs)
        for req, v in zip(reqs, out):
            if v.status == "parse_failure":
                self.stats.parse_failures += 1
                logger.warning(
                    f"autorater: parse failure on {req.doc_key}: {v.error}; raw answer: {v.raw[:500]!r}"
                )
            elif v.status == "api_error":
                self.stats.api_failures += 1
                logger.error(f"autorater: API failure on {req.doc_key}: {v.error}")
            elif v.status == "budget_skipped":
                self.stats.budget_skipped += 1
            if v.status == "ok" and "expected_fallback" in v.meta:
                self.stats.expected_fallbacks += 1
                logger.warning(
                    f"autorater: no usable probabilities on {req.doc_key} ({v.meta['expected_fallback']}): "
                    "it keeps its integer verdict, counted in expected_fallbacks"
                )
        skipped = sum(v.status == "budget_skipped" for v in out)
        if skipped:
            logger.warning(
                f"autorater: the budget (max_cost_usd) stopped the run: {skipped} of {len(out)} doc(s) not "
                "judged, counted in budget_skipped; a rerun with a larger max_cost_usd continues from the cache"
            )
        return out

    def _verdict_prompt(self, req: JudgeRequest) -> ChatPrompt:
        evidence = ""
        if req.assessments:
            assert self.render is not None
            evidence = self.render(list(req.assessments), len(req.candidates))
        return build_verdict_prompt(req, evidence)
