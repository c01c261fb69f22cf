"""The ``synthesize`` command (E-step): a teacher judge writes the analysis that leads to each human label.

For each doc of a training source (``training/sources.py``): the specialists chosen by ``tools=``
(default: all applicable) run once per unique input through the judge's cached pool; the teacher (any
judge backend, built by ``judges.factory.build_judge`` with its response cache, concurrency and
retries) gets the verdict prompt plus a hint with the human label (``prompts.build_teacher_prompt``)
and answers in the judge's contract. Filters, each counted in ``manifest.json``, in this order:
``input_error`` (an image that does not decode; nothing sent), ``api_failure``, ``parse_failure``
(unparsable, or an empty analysis), ``verdict_mismatch`` (pairwise: the preferred image differs from
the label; pointwise: the score is more than 1 away from the label on Likert-10, ``rows.likert10``),
``leak`` (the rationale reveals that the answer was given: ``LEAK_PATTERNS``). Kept rows are in the
``rows.py`` format, with the human label as the training target.

A killed run resumes from the response cache: every answer is cached as it arrives, so a rerun with
the same arguments asks the teacher only what was not answered (the cache must be on: ``cache=true``,
the default).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HELP = "write teacher rationales for the human labels of a training source"

#: ``test_overlap``: drawn docs that share a key with a test split (``sources.SourceBuild.test_overlap``),
#: excluded before anything is asked
REJECT_REASONS = ("verdict_mismatch", "leak", "parse_failure", "api_failure", "input_error", "test_overlap")

#: phrases by which a rationale reveals that it was given the answer (case-insensitive regexes)
LEAK_PATTERNS: tuple[str, ...] = (
    r"\bground[\s-]*truth\b",
    r"\b(?:human\s+)?(?:annotators?|raters?|labell?ers?|evaluators?|judges|voters?|participants)\s+"
    r"(?:have\s+|had\s+)?(?:chose|chosen|preferred|picked|selected|rated|gave|given|scored|voted|labell?ed|judged)\b",
    r"\b(?:we|i)\s+(?:are|were|am|was|have\s+been|had\s+been)\s+(?:told|given|informed)\b",
    r"\b(?:we're|i'm|i've\s+been|we've\s+been)\s+(?:told|given|informed)\b",
    r"\bthe\s+(?:given|provided|known|true|correct|human|target|gold|expected|reference)\s+"
    r"(?:label|answer|judg(?:e)?ment|score|rating|preference|verdict|choice)\b",
    r"\bthe\s+labels?\b(?!\s+(?:on|in)\b)",  # "the label says 2", not "the label on the jar"
    r"\bcorrect\s+answer\b",
    r"\bthe\s+hint\b",
    r"\b(?:as\s+)?(?:stated|indicated|given|provided|specified)\s+in\s+the\s+(?:prompt|question|instructions?)\b",
    r"\bhuman\s+judg(?:e)?ments?\b",
)
_LEAK_RE = re.compile("|".join(f"(?:{p})" for p in LEAK_PATTERNS), re.I)


def find_leak(text: str) -> str | None:
    """The first phrase of ``text`` that reveals a given answer, or None."""
    m = _LEAK_RE.search(text or "")
    return m.group(0) if m else None


@dataclass
class Outcome:
    """One doc's fate: kept (``reason`` None) or rejected with a reason and a detail."""

    reason: str | None
    detail: str = ""
    rationale: str = ""
    value: int | None = None


def judge_answer(result: Any, paradigm: str, target: int) -> Outcome:
    """Filter one teacher result (a ``Completion`` or ``BackendError``) against the target verdict."""
    from lmms_eval_autorater.judges import contract
    from lmms_eval_autorater.judges.types import BackendError

    if isinstance(result, BackendError):
        return Outcome("api_failure", str(result))
    parse = contract.parse_pairwise if paradigm == "pairwise" else contract.parse_pointwise
    parsed = parse(result.text)
    if not parsed.ok:
        return Outcome("parse_failure", parsed.reason)
    rationale = (parsed.analysis or "").strip()
    if not rationale:
        return Outcome("parse_failure", "empty analysis")
    value = int(parsed.value)
    if paradigm == "pairwise" and value != target:
        return Outcome("verdict_mismatch", f"teacher preferred {value}, label {target}", rationale, value)
    if paradigm != "pairwise" and abs(value - target) > 1:
        return Outcome(
            "verdict_mismatch", f"teacher scored {value}, label {target} (Likert-10)", rationale, value
        )
    leak = find_leak(rationale)
    if leak is not None:
        return Outcome("leak", f"rationale says {leak!r}", rationale, value)
    return Outcome(None, "", rationale, value)


@dataclass
class SynthesisResult:
    """What a run produced: kept rows, counts and provenance (written by ``write_output``)."""

    rows: list[dict] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REJECT_REASONS, 0))
    rejected_ids: list[dict] = field(default_factory=list)
    seen: int = 0
    snapshots: set[str] = field(default_factory=set)
    specialist_versions: dict[str, str] = field(default_factory=dict)
    tools_shown: set[str] = field(default_factory=set)


def _teacher_name(judge: Any) -> str:
    backend = judge.backend
    model = next(
        (
            m
            for m in (getattr(backend, "model_name", None), getattr(backend, "model", None))
            if isinstance(m, str)
        ),
        "?",
    )
    name = judge.config.name if judge.config is not None else "judge"
    return f"{name}:{model}"


def synthesize_docs(
    judge: Any, source: str, docs: Sequence[dict], *, chunk: int = 64, progress: bool = True
) -> SynthesisResult:
    """Teacher rationales for ``docs`` of training source ``source``, filtered and counted."""
    from tqdm import tqdm

    from lmms_eval_autorater.judges.contract import PARSER_VERSION
    from lmms_eval_autorater.judges.judge import request_images
    from lmms_eval_autorater.judges.prompts import TEMPLATE_VERSION, build_teacher_prompt
    from lmms_eval_autorater.tasks.common import doc_to_request
    from lmms_eval_autorater.training.rows import contract_answer, label_text, target_verdict
    from lmms_eval_autorater.training.sources import doc_label, source_info

    info = source_info(source)
    teacher = _teacher_name(judge)
    out = SynthesisResult()
    bar = tqdm(total=len(docs), desc=f"synthesize {source}", unit="doc", disable=not progress)
    for start in range(0, len(docs), chunk):
        part = list(docs[start : start + chunk])
        reqs = [doc_to_request(d, source, d["doc_id"]) for d in part]
        problems = judge.check(reqs)
        good = [i for i, p in enumerate(problems) if p is None]
        for d, p in zip(part, problems):
            if p is not None:
                out.rejected["input_error"] += 1
                out.rejected_ids.append({"id": d["doc_id"], "reason": "input_error", "detail": str(p)})
        ready = []
        if good:
            ready = judge.with_assessments([reqs[i] for i in good])
        prompts, meta = [], []
        for i, req in zip(good, ready):
            d = part[i]
            label = doc_label(info, d)
            target = target_verdict(info.paradigm, label, info.label_scale)
            evidence = judge.render(list(req.assessments), len(req.candidates)) if req.assessments else ""
            prompts.append(build_teacher_prompt(req, evidence, label_text(info.paradigm, target)))
            meta.append((d, req, label, target, evidence))
        results = judge.completer(prompts) if prompts else []
        for (d, req, label, target, evidence), res in zip(meta, results):
            o = judge_answer(res, info.paradigm, target)
            if o.reason is not None:
                out.rejected[o.reason] += 1
                out.rejected_ids.append({"id": d["doc_id"], "reason": o.reason, "detail": o.detail[:300]})
                continue
            snapshot = getattr(res, "model", "") or ""
            out.snapshots.add(snapshot)
            versions = {a.code: a.version for a in req.assessments}
            out.specialist_versions.update(versions)
            out.tools_shown.update(versions)
            fields = [f for f, _ in request_images(req)]
            out.rows.append(
                {
                    "id": str(d["doc_id"]),
                    "source": source,
                    "group": str(d["group"]),
                    "paradigm": info.paradigm,
                    "task_kind": info.task_kind,
                    "request": req.request,
                    # references while the run goes; the bytes are embedded by write_output, a shard at a time
                    "images": [ref for _, ref in request_images(req)],
                    "image_fields": fields,
                    "specialists": json.dumps([a.__dict__ for a in req.assessments], sort_keys=True),
                    "evidence": evidence,
                    "tools": list(versions),
                    "label": float(label),
                    "label_scale": info.label_scale,
                    "verdict": int(target),
                    "rationale": o.rationale,
                    "completion": contract_answer(info.paradigm, o.rationale, target),
                    "teacher": teacher,
                    "teacher_snapshot": snapshot,
                    "prompt_version": TEMPLATE_VERSION,
                    "parser_version": PARSER_VERSION,
                    "specialist_versions": json.dumps(versions, sort_keys=True),
                }
            )
        out.seen += len(part)
        bar.update(len(part))
        bar.set_postfix(kept=len(out.rows), rejected=sum(out.rejected.values()))
    bar.close()
    return out


#: rows encoded (image bytes read) and written per shard, so memory holds one shard of images at a time
SHARD_ROWS = 500


def _encoded(row: dict) -> dict:
    from lmms_eval_autorater.training.rows import image_bytes

    return {**row, "images": [{"bytes": image_bytes(x), "path": None} for x in row["images"]]}


def write_output(output: Path, result: SynthesisResult, manifest: dict) -> None:
    """``output`` as a ``datasets`` folder (``load_from_disk``) with ``manifest.json`` and ``rejected.jsonl``.

    Row images may be references or bytes; they are embedded ``SHARD_ROWS`` rows at a time. Written
    beside and then moved into place, so a killed write never leaves half a dataset.
    """
    import shutil

    import datasets

    from lmms_eval_autorater.training.rows import FEATURES

    output = Path(output)
    tmp = output.with_name(f".{output.name}.partial")
    shards_dir = output.with_name(f".{output.name}.shards")
    for d in (tmp, shards_dir):
        if d.exists():
            shutil.rmtree(d)
    shards = []
    for k in range(0, len(result.rows), SHARD_ROWS):
        part = [_encoded(r) for r in result.rows[k : k + SHARD_ROWS]]
        path = shards_dir / f"{k:09d}"
        datasets.Dataset.from_list(part, features=FEATURES).save_to_disk(str(path))
        shards.append(datasets.load_from_disk(str(path)))
    if shards:
        ds = datasets.concatenate_datasets(shards) if len(shards) > 1 else shards[0]
    else:
        ds = datasets.Dataset.from_dict({k: [] for k in FEATURES}, features=FEATURES)
    ds.save_to_disk(str(tmp))
    del ds, shards
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    with open(tmp / "rejected.jsonl", "w") as fh:
        for rec in result.rejected_ids:
            fh.write(json.dumps(rec) + "\n")
    if output.exists():
        shutil.rmtree(output)
    tmp.rename(output)
    if shards_dir.exists():
        shutil.rmtree(shards_dir)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``synthesize`` command's arguments."""
    from lmms_eval_autorater.training.sources import SOURCES

    parser.add_argument("--source", required=True, choices=sorted(SOURCES), help="training source")
    parser.add_argument("--split", default="train", help="train (validation for the ImageReward sources)")
    parser.add_argument("--model", required=True, help="the teacher: a judge name (autorater_openai, ...)")
    parser.add_argument(
        "--model_args",
        default="",
        help="judge arguments as for lmms-eval; tools= chooses the specialists shown (default: all)",
    )
    parser.add_argument("--output", required=True, type=Path, help="dataset folder to write")
    parser.add_argument("--limit", type=int, default=None, help="only the first N docs of the draw")
    parser.add_argument(
        "--max_samples",
        type=int,
        default=None,
        help="seeded draw stratified by prompt (default: the source's, 14000 / 13000 for editreward; 0: all)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw")
    parser.add_argument("--chunk", type=int, default=64, help="docs per specialist/teacher batch")


def run(args: argparse.Namespace) -> int:
    """Run the ``synthesize`` command; returns the exit code."""
    import datetime

    from loguru import logger

    from lmms_eval_autorater.errors import DataError, UsageError
    from lmms_eval_autorater.judges.args import ModelArgError, parse_model_args, parse_tools
    from lmms_eval_autorater.judges.contract import PARSER_VERSION
    from lmms_eval_autorater.judges.factory import build_judge, judge_config
    from lmms_eval_autorater.judges.prompts import TEACHER_VERSION, TEMPLATE_VERSION
    from lmms_eval_autorater.training.rows import SCALES
    from lmms_eval_autorater.training.sources import build_source, source_info

    info = source_info(args.source)
    for name in ("limit", "max_samples"):
        value = getattr(args, name)
        if value is not None and value < 0:
            raise UsageError(f"--{name} must be >= 0, got {value}")
    try:
        model_args = parse_model_args(args.model_args)
        model_args.setdefault("tools", "all")
        cfg = judge_config(args.model, model_args)
    except ModelArgError as exc:
        raise UsageError(str(exc)) from exc
    if cfg.tools == "auto":
        raise UsageError("tools=auto is not for synthesis: choose the specialists shown (all, none or A+B)")
    try:
        parse_tools(model_args["tools"], info.task_kind)
    except ModelArgError as exc:
        raise UsageError(f"--source {args.source} ({info.task_kind}): {exc}") from exc
    if not cfg.cache:
        logger.warning("synthesize: cache=false: a killed run cannot resume without asking the teacher again")
    try:
        build = build_source(args.source, args.split, args.max_samples, args.seed)
    except DataError as exc:
        raise UsageError(str(exc)) from exc
    docs = build.docs[: args.limit] if args.limit is not None else build.docs
    judge = build_judge(cfg)
    result = synthesize_docs(judge, args.source, docs, chunk=max(1, args.chunk))
    if build.test_overlap:
        result.rejected["test_overlap"] = len(build.test_overlap)
        result.rejected_ids.extend({"reason": "test_overlap", **o} for o in build.test_overlap)
        ids = [o["id"] for o in build.test_overlap]
        print(
            f"synthesize {args.source}: {len(ids)} drawn row(s) excluded, they share a prompt or image with a "
            f"test split (manifest rejected.test_overlap): {', '.join(ids[:5])}{', ...' if len(ids) > 5 else ''}"
        )
    stats = judge.completer.stats() if hasattr(judge.completer, "stats") else {}
    manifest = {
        "source": args.source,
        "split": args.split,
        "paradigm": info.paradigm,
        "task_kind": info.task_kind,
        "label_scale": info.label_scale,
        "likert10": (
            "pointwise labels mapped linearly onto 1..10 and rounded half up: "
            + "; ".join(f"{k}: 1 + 9 * (x - {lo:g}) / {hi - lo:g}" for k, (lo, hi) in SCALES.items())
            + "; kept when the teacher's score is within 1 of it"
        ),
        "license": info.license or "see the source dataset's card",
        "seen": result.seen,
        "kept": len(result.rows),
        "rejected": result.rejected,
        "test_overlap_ids": [o["id"] for o in build.test_overlap],
        "excluded": build.excluded,
        "available": build.available,
        "drawn": len(build.docs),
        "max_samples": args.max_samples if args.max_samples is not None else info.default_max_samples,
        "limit": args.limit,
        "seed": args.seed,
        "files": build.files,
        "file_hash_note": "sha256 of the whole file; sha256-edges:<size>: of its first and last 16 MiB above 256 MiB",
        "test_guard": build.test_guard,
        "teacher": {
            "judge": args.model,
            "model": _teacher_name(judge).split(":", 1)[1],
            "snapshots": sorted(result.snapshots),
            "model_args": {k: v for k, v in model_args.items() if "key" not in k.lower()},
        },
        "tools": cfg.tools if isinstance(cfg.tools, str) else list(cfg.tools),
        "tools_shown": sorted(result.tools_shown),
        "specialist_versions": result.specialist_versions,
        "prompt_version": TEMPLATE_VERSION,
        "teacher_version": TEACHER_VERSION,
        "parser_version": PARSER_VERSION,
        "leak_patterns": list(LEAK_PATTERNS),
        "teacher_calls": {k: v for k, v in stats.items() if isinstance(v, (int, float))},
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    write_output(args.output, result, manifest)
    rej = ", ".join(f"{k} {v}" for k, v in result.rejected.items())
    print(f"synthesize {args.source}: seen {result.seen}, kept {len(result.rows)}; rejected: {rej}")
    if info.license:
        print(f"note: {info.license}")
    print(f"wrote {args.output} (datasets.load_from_disk) and {args.output / 'manifest.json'}")
    return 0
