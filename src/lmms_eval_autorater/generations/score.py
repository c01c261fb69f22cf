"""``lmms-eval-autorater score``: judge every image of a generations file and write one row per image.

    lmms-eval-autorater score --input gens.jsonl --model autorater_gpt4o --output scores.parquet

The input is JSONL (``{"id", "prompt", "image"}`` per line, ``"source"`` for edits; see
``generations.jsonl``); a structural problem in it fails the command before anything is judged. Every row
is judged through the Python API (``AutoRater.score_many``), so caches, retries and failure accounting are
the benchmarks' own: an image that does not decode is an ``input_error`` row, an unparsable answer a
``parse_failure``, a call that failed for good an ``api_error``; they are counted, never given a score.
The output format follows the file's extension (.jsonl, .csv, .parquet); a summary (mean score with a
95% percentile-bootstrap CI over the scored rows, the failure counts, the judge) goes beside it as
``<output stem>.summary.json`` and on stdout as one line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmms_eval_autorater.judges.factory import judge_names
from lmms_eval_autorater.redact import public_model_args
from lmms_eval_autorater.vocabulary import count_statuses

HELP = "score every image of a generations JSONL file with an AutoRater judge"

FORMATS = (".jsonl", ".csv", ".parquet")
#: output columns, in order (``specialists`` and ``usage`` are JSON strings in CSV and parquet)
COLUMNS = ("id", "prompt", "image", "source", "score", "status", "analysis", "error", "specialists", "usage")
JSON_COLUMNS = ("specialists", "usage")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's options."""
    parser.add_argument("--input", required=True, help="generations JSONL: id, prompt, image (+ source)")
    parser.add_argument("--model", required=True, choices=judge_names(), help="the judge")
    parser.add_argument("--model_args", default="", help="as for lmms-eval, e.g. tools=GD+QS,concurrency=8")
    parser.add_argument("--output", required=True, help="scores file: .jsonl, .csv or .parquet")
    parser.add_argument("--limit", type=int, default=None, help="first N rows only (for trials)")
    parser.add_argument("--n_resamples", type=int, default=1000, help="bootstrap resamples for the 95%% CI")
    add_root_arguments(parser)


def add_root_arguments(parser: argparse.ArgumentParser) -> None:
    """``--root`` and ``--allow_outside_root``: where the image paths of a generations file may lead."""
    parser.add_argument(
        "--root",
        default=None,
        help="folder the image paths resolve under (default: each input file's folder)",
    )
    parser.add_argument(
        "--allow_outside_root",
        action="store_true",
        help="accept image paths that lead outside the root (their bytes are sent to the judge's API)",
    )


def summary_path(output: str | os.PathLike) -> Path:
    """Where the summary of ``output`` goes: ``scores.parquet`` -> ``scores.summary.json``."""
    out = Path(output)
    return out.with_name(out.stem + ".summary.json")


def mean_ci(scores: Sequence[float], n_resamples: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``scores`` and its 95% percentile-bootstrap CI (rows resampled, seeded); nan when empty."""
    import numpy as np

    from lmms_eval_autorater.metrics.bootstrap import bootstrap_ci

    values = np.asarray([float(s) for s in scores], dtype=np.float64)
    if values.size == 0:
        return math.nan, math.nan, math.nan
    low, high = bootstrap_ci(np.mean, values, n_resamples=n_resamples, seed=seed)
    return float(values.mean()), low, high


def result_rows(rows, results) -> list[dict]:
    """One output row per generation (Python values; ``specialists`` a list, ``usage`` a dict)."""
    out = []
    for row, res in zip(rows, results):
        out.append(
            {
                "id": row.id,
                "prompt": row.prompt,
                "image": row.image,
                "source": row.source,
                "score": int(res.score) if res.ok and res.score is not None else None,
                "status": res.status,
                "analysis": res.analysis or "",
                "error": user_error(row.id, res),
                "specialists": [dict(s) if isinstance(s, dict) else _plain(s) for s in res.specialists],
                "usage": dict(res.usage or {}),
            }
        )
    return out


#: the judge's request fields -> the generations file's fields
_FIELDS = {"image_1": "image", "source_image": "source"}


def user_error(row_id: str, result) -> str | None:
    """A result's error in the file's terms; an input error reads ``id 'x', field 'image', file PATH: reason``."""
    problem = result.meta.get("input") if result.status == "input_error" else None
    if not problem:
        return result.error
    field = _FIELDS.get(problem["field"], problem["field"])
    return f"input error: id {row_id!r}, field {field!r}, file {problem['file']}: {problem['reason']}"


def _plain(obj: Any) -> Any:
    """An assessment (dataclass or other object) as JSON-ready data."""
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return obj


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)


def write_rows(rows: list[dict], output: str | os.PathLike) -> None:
    """Write ``rows`` in the format of ``output``'s extension (atomically: a temp file, then a rename)."""
    out = Path(output)
    fmt = out.suffix.lower()
    if fmt not in FORMATS:
        raise ValueError(f"--output {out}: unknown extension {out.suffix!r}; use one of {', '.join(FORMATS)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    if fmt == ".jsonl":
        with tmp.open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    else:
        import pandas as pd

        frame = pd.DataFrame(
            {
                col: (
                    [_json(r[col]) for r in rows]
                    if col in JSON_COLUMNS
                    else pd.array([r[col] for r in rows], dtype="Int64")
                    if col == "score"
                    else pd.array([r[col] for r in rows], dtype="string")
                )
                for col in COLUMNS
            },
            columns=list(COLUMNS),
        )
        if fmt == ".csv":
            import csv

            from lmms_eval_autorater.cells import csv_frame

            # cells a spreadsheet would evaluate get a leading ' (csv_frame); every text cell is quoted, since
            # pandas' minimal quoting leaves a bare \r unquoted and a CR inside a cell would split the row
            csv_frame(frame).to_csv(tmp, index=False, quoting=csv.QUOTE_NONNUMERIC)
        else:
            frame.to_parquet(tmp, index=False)
    os.replace(tmp, out)


def read_rows(path: str | os.PathLike) -> list[dict]:
    """Read a file written by ``write_rows`` back as the same rows (Python values)."""
    path = Path(path)
    fmt = path.suffix.lower()
    if fmt == ".jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    import pandas as pd

    from lmms_eval_autorater.cells import csv_uncell

    if fmt == ".csv":
        frame = pd.read_csv(
            path,
            dtype={c: "string" for c in COLUMNS if c != "score"} | {"score": "Int64"},
            keep_default_na=False,
            na_values={c: [""] for c in COLUMNS if c not in ("analysis", "prompt")},
        )
    elif fmt == ".parquet":
        frame = pd.read_parquet(path)
    else:
        raise ValueError(f"{path}: unknown extension {path.suffix!r}; use one of {', '.join(FORMATS)}")
    rows = []
    for rec in frame.to_dict("records"):
        row = {}
        for col in COLUMNS:
            value = rec.get(col)
            if value is pd.NA or (isinstance(value, float) and math.isnan(value)):
                value = None
            if fmt == ".csv":
                value = csv_uncell(value)
            if col in JSON_COLUMNS and value is not None:
                value = json.loads(value)
            elif col == "score" and value is not None:
                value = int(value)
            elif col == "analysis" and value is None:
                value = ""
            row[col] = value
        rows.append(row)
    return rows


def summarize(rows: list[dict], n_resamples: int = 1000) -> dict:
    """Counts, and the mean score with its 95% CI over the scored rows."""
    scores = [r["score"] for r in rows if r["status"] == "ok" and r["score"] is not None]
    mean, low, high = mean_ci(scores, n_resamples=n_resamples)
    return {
        "n": len(rows),
        "n_scored": len(scores),
        "mean": mean,
        "ci_low": low,
        "ci_high": high,
        **count_statuses(r["status"] for r in rows),
        "n_resamples": n_resamples,
    }


def summary_line(s: dict) -> str:
    """``scored N of M: mean 6.42 (95% CI 6.10-6.75); input errors a, parse failures b, API failures c``."""
    return (
        f"scored {s['n_scored']} of {s['n']}: mean {s['mean']:.2f} "
        f"(95% CI {s['ci_low']:.2f}-{s['ci_high']:.2f}); input errors {s['input_errors']}, "
        f"parse failures {s['parse_failures']}, API failures {s['api_failures']}"
        + (
            f", budget_skipped {s['budget_skipped']} (max_cost_usd reached)"
            if s.get("budget_skipped")
            else ""
        )
    )


def _no_nan(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_no_nan(v) for v in obj]
    return obj


def run(args: argparse.Namespace) -> int:
    """Run the command; raise on failure (the CLI prints one line)."""
    from lmms_eval_autorater.api import AutoRater
    from lmms_eval_autorater.errors import UsageError
    from lmms_eval_autorater.generations.jsonl import read_generations
    from lmms_eval_autorater.judges.args import parse_model_args

    output = Path(args.output)
    if output.suffix.lower() not in FORMATS:
        raise UsageError(
            f"--output {output}: unknown extension {output.suffix!r}; use one of {', '.join(FORMATS)}"
        )
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be >= 1, got {args.limit}")
    if args.n_resamples < 1:
        raise UsageError(f"--n_resamples must be >= 1, got {args.n_resamples}")
    rows = read_generations(  # every structural problem fails here, before anything is judged
        args.input,
        root=getattr(args, "root", None),
        allow_outside_root=getattr(args, "allow_outside_root", False),
    )
    if args.limit is not None:
        rows = rows[: args.limit]
    model_args = parse_model_args(args.model_args)
    rater = AutoRater(args.model, progress=True, **model_args)
    sources = [r.source for r in rows] if any(r.source for r in rows) else None
    results = rater.score_many(
        [r.prompt for r in rows], [r.image for r in rows], sources, ids=[r.id for r in rows]
    )
    if results and all(res.status == "input_error" for res in results):
        raise UsageError(
            f"every one of the {len(results)} rows of {args.input} is an input error (nothing was judged); "
            f"first: {user_error(rows[0].id, results[0])}"
        )
    out_rows = result_rows(rows, results)
    write_rows(out_rows, output)
    summary = summarize(out_rows, n_resamples=args.n_resamples)
    summary.update(
        input=str(Path(args.input).resolve()),
        output=str(output.resolve()),
        judge=args.model,
        model_args=public_model_args(model_args),
        completer=rater.stats(),
    )
    summary_path(output).write_text(
        json.dumps(_no_nan(summary), indent=2, default=str, allow_nan=False) + "\n", encoding="utf-8"
    )
    print(summary_line(summary))
    return 0
