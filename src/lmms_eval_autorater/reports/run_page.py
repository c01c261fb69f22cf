"""The ``report`` command: one self-contained HTML page per finished run (no server, no network).

A summary per task (metric with CI, every failure count, cost, tokens, conventions) and a browser of the
docs: request, source and candidate thumbnails (downscaled JPEG ``data:`` URLs, each image once), each
specialist's output, the judge's analysis and verdict beside the human label, the raw answer one click
away; filters (task, wrong only, failures only, by specialist, by prompt) and pagination in plain JS, so
pages of thousands of docs stay responsive. The page's template, script and style live beside this module
(``run_page.html``, ``run_page.js``, ``run_page.css``) and are inlined. Runs are read with ``reports.runs``.

"Wrong" is the task's own notion for pairs (the preferred image is not the human's; a predicted tie counts as
wrong, the tasks' tie policy). For pointwise tasks, a doc is "far off" (shown by the same filter) when the
percentile of the judge's score among the task's scored docs is more than ``FAR_OFF`` from the percentile of
the human score (average ranks for ties).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

HELP = "write a self-contained HTML page of a run: summary and a browser of every doc"
HERE = Path(__file__).parent
#: percentile gap above which a pointwise doc counts as far off
FAR_OFF = 0.25
#: default longest side of a thumbnail, in pixels
THUMB = 192


def summary_keys() -> tuple[str, ...]:
    """The counts the summary shows beside the metric: each failure count, ties, flips, spend, estimate."""
    from lmms_eval_autorater.vocabulary import COUNT_METRICS, ESTIMATE_METRICS, USAGE_METRICS

    return (*COUNT_METRICS, "predicted_ties", "flip_rate", *USAGE_METRICS, *ESTIMATE_METRICS)


def _num(x: Any) -> float | int | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return None if isinstance(x, float) and not math.isfinite(x) else x


def thumbnail(ref: str, size: int = THUMB, errors: list[str] | None = None) -> str | None:
    """The image at ``ref`` (path or ``archive.zip::member``) as a downscaled JPEG data URL; None if unreadable
    (bounded like every image read: a bomb, an oversized image or file, a directory), its reason appended to
    ``errors``."""
    from lmms_eval_autorater.images import ImageError, load_image

    try:
        img = load_image(ref)
    except ImageError as exc:
        if errors is not None:
            errors.append(str(exc))
        return None
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _avg_ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2.0
        i = j + 1
    return ranks


def _pointwise_gaps(records: Sequence[Mapping]) -> dict[int, float]:
    """Index -> |percentile of the judge's score - percentile of the human score| over the scored docs."""
    idx = [i for i, r in enumerate(records) if r.get("status") == "ok" and _num(r.get("pred")) is not None]
    if len(idx) < 2:
        return {}
    n = len(idx) - 1
    pr = _avg_ranks([float(records[i]["pred"]) for i in idx])
    tr = _avg_ranks([float(records[i]["target"]) for i in idx])
    return {i: abs(p - t) / n for i, p, t in zip(idx, pr, tr)}


def page_docs(task: str, paradigm: str, records: Sequence[Mapping], images: dict[str, int]) -> list[dict]:
    """The page's compact doc objects of one task; ``images`` maps each reference to its index (filled here)."""

    def image(ref):
        if not ref:
            return None
        if ref not in images:
            images[ref] = len(images)
        return images[ref]

    gaps = _pointwise_gaps(records) if paradigm == "pointwise" else {}
    out = []
    for i, r in enumerate(records):
        meta = r.get("meta") or {}
        status = r.get("status") or "parse_failure"
        pred = _num(r.get("pred"))
        if paradigm == "pairwise":
            truth = r.get("label")
            wrong = status == "ok" and pred is not None and pred != truth
            gap = None
        else:
            truth = _num(r.get("target"))
            gap = gaps.get(i)
            wrong = gap is not None and gap > FAR_OFF
        specialists = [
            {
                "code": a.get("code"),
                "value": _num(a.get("value")),
                "text": a.get("text"),
                "candidate": a.get("candidate"),
            }
            for a in meta.get("assessments") or []
            if isinstance(a, Mapping)
        ]
        out.append(
            {
                "task": task,
                "id": str(r.get("doc_id")),
                "group": None if r.get("group") is None else str(r.get("group")),
                "request": r.get("request") or "",
                "truth": truth,
                "pred": pred,
                "status": status,
                "wrong": bool(wrong),
                "gap": None if gap is None else round(gap, 3),
                "flipped": r.get("flipped"),
                "analysis": r.get("analysis") or "",
                "raw": r.get("raw") or "",
                "error": r.get("error") or (meta.get("input") or {}).get("reason") or "",
                "tools": list(meta.get("tools") or []),
                # tools=auto: the judge's first pass, choosing its specialists
                "selection": meta.get("auto_analysis") or meta.get("auto_parse_failure") or "",
                "specialists": specialists,
                "snapshot": meta.get("model"),
                "cached": bool(r.get("cached")),
                # scoring=expected / samples=N: the verdict's distribution, p(image 1), or why it fell back
                "probs": meta.get("probs"),
                "p_first": _num(meta.get("p_first")),
                "expected_fallback": meta.get("expected_fallback") or "",
                "images": {
                    k: image(r.get(k)) for k in ("source_image", "image_1", "image_2") if r.get(k) is not None
                },
            }
        )
    return out


def page_data(run, *, thumb: int = THUMB, images: bool = True) -> dict:
    """Everything the page shows about ``run`` (a ``reports.runs.Run``), as one JSON-able dict."""
    from tqdm import tqdm

    from lmms_eval_autorater.redact import public_model_args
    from lmms_eval_autorater.tasks.catalog import TASKS

    refs: dict[str, int] = {}
    tasks, docs = [], []
    for name in [t for t in TASKS if t in run.tasks]:
        tr = run.tasks[name]
        info = TASKS[name]
        records = tr.records()
        m = tr.metrics
        tasks.append(
            {
                "task": name,
                "paradigm": info.paradigm,
                "metric": info.metric,
                "value": _num(m.get(info.metric)),
                "ci_low": _num(m.get(f"{info.metric}_ci_low")),
                "ci_high": _num(m.get(f"{info.metric}_ci_high")),
                "n_docs": len(records),
                "counts": {k: _num(m.get(k)) for k in summary_keys() if k in m},
                "conventions": tr.conventions or "",
            }
        )
        docs.extend(page_docs(name, info.paradigm, records, refs))
    urls: list[str | None] = [None] * len(refs)
    errors: list[str] = []
    if images:
        for ref, k in tqdm(refs.items(), desc="thumbnails", unit="image", disable=len(refs) < 200):
            urls[k] = thumbnail(ref, thumb, errors)
    for err in errors:  # one line per unreadable image, naming the file; the page shows it without a picture
        print(f"report: input error: {err}", file=sys.stderr)
    return {
        "run": {
            "model": run.model,
            "model_args": public_model_args(run.model_args),
            "scoring": str(run.model_args.get("scoring") or "argmax").lower(),
            "samples": int(run.model_args.get("samples") or 1),
            "date": run.date,
            "results_file": str(run.path),
            "versions": {k: v for k, v in (run.versions or {}).items() if v},
        },
        "tasks": tasks,
        "docs": docs,
        "images": urls,
        "image_errors": errors,
        "far_off": FAR_OFF,
    }


def _asset(name: str) -> str:
    return (HERE / name).read_text(encoding="utf-8")


def _script_json(data: Any) -> str:
    """JSON safe inside a ``<script>`` element (no ``</script>``, no ``<!--``)."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render(data: Mapping) -> str:
    """The self-contained page for ``page_data``'s output."""
    import html

    title = f"{data['run']['model']} {data['run']['date']}"
    return (
        _asset("run_page.html")
        .replace("__TITLE__", html.escape(title))
        .replace("/*__STYLE__*/", _asset("run_page.css"))
        .replace("/*__SCRIPT__*/", _asset("run_page.js"))
        .replace("__DATA__", _script_json(data))
    )


def write_report(run, path: str | os.PathLike, **kwargs) -> Path:
    """Write the page of ``run`` to ``path`` (atomically); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(render(page_data(run, **kwargs)), encoding="utf-8")
    os.replace(tmp, path)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``report`` command's arguments."""
    parser.add_argument("--results", nargs="+", required=True, metavar="DIR", help="folders or results files")
    parser.add_argument(
        "--output",
        required=True,
        help="the HTML file to write (one run), or a folder (several runs: <model>_<date>.html each)",
    )
    parser.add_argument("--thumb-size", type=int, default=THUMB, help="longest side of a thumbnail (px)")
    parser.add_argument("--no-images", action="store_true", help="leave the thumbnails out (a smaller page)")


def run(args: argparse.Namespace) -> int:
    """Run the ``report`` command; returns the exit code."""
    from lmms_eval_autorater.errors import UsageError
    from lmms_eval_autorater.reports.runs import RunsError, load_runs

    try:
        runs = load_runs(args.results)
        out = Path(args.output)
        if len(runs) == 1 and out.suffix.lower() in (".html", ".htm"):
            targets = [(runs[0], out)]
        elif out.suffix.lower() in (".html", ".htm"):
            raise UsageError(
                f"{len(runs)} runs found; give --output a folder to get one page per run: "
                + ", ".join(str(r.path) for r in runs)
            )
        else:
            targets = [(r, out / f"{r.path.parent.name}_{r.date}.html") for r in runs]
        for r, target in targets:
            write_report(r, target, thumb=args.thumb_size, images=not args.no_images)
            print(f"wrote {target}")
    except RunsError as exc:
        raise UsageError(str(exc)) from exc
    return 0
