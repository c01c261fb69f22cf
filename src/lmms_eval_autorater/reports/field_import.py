"""The ``import`` command: a published judge's per-item predictions as a submission of ours.

* ``--format genaibench``: GenAI-Bench's ``results/<task>/<judge>/pairwise.jsonl`` (``idx``, ``model_vote``,
  ``human_vote``, ...). Doc id = ``idx``; the label comes from ``human_vote``; the prediction is the class of
  ``model_vote`` (None, or a vote GenAI-Bench credits for no label, is a parse failure: wrong in GenAI-Bench's
  accuracy, excluded and counted in ours). The file's own ``correct`` is not trusted: ``validate`` recomputes.
* ``--format mmrb2``: MMRB2's predictions JSON (pair id -> ``forward``/``reverse`` lists of ``{"judgement"}``),
  with the labels of the local MMRB2 folder (``$AUTORATER_DATA_DIR/mmrb2``): two docs per pair as our tasks
  make them; a missing judgment is a parse failure (not in MMRB2's denominator, counted).

The submission's metrics are computed with the tasks' own aggregation functions, its conventions are the
task YAML's, so ``validate`` recomputes it and ``leaderboard`` ranks it beside AutoRater runs on the same docs.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lmms_eval_autorater.errors import DataError

HELP = "turn a published judge's per-item predictions (GenAI-Bench, MMRB2) into a checkable submission"
FORMATS = ("genaibench", "mmrb2")


def task_conventions(task: str) -> tuple[str, Any]:
    """(conventions, version) from the task's YAML metadata: what a run of the task reports."""
    import yaml

    class _Loader(yaml.SafeLoader):
        pass

    _Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    path = Path(__file__).resolve().parents[1] / "tasks" / task / f"{task}.yaml"
    meta = (yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader) or {}).get("metadata") or {}
    return str(meta.get("conventions") or ""), meta.get("version")


def genaibench_records(rows: Sequence[Mapping], source: str) -> list[dict]:
    """Per-doc records of a GenAI-Bench ``pairwise.jsonl``; a missing field or unknown label names the line."""
    from lmms_eval_autorater.metrics.field import GENAIBENCH_HUMAN, genaibench_vote_code

    out, seen = [], set()
    for lineno, row in enumerate(rows, start=1):
        where = f"{source} line {lineno}"
        for name in ("idx", "human_vote"):
            if not isinstance(row, Mapping) or row.get(name) is None:
                raise DataError(f"{where}: missing field {name!r}")
        if "model_vote" not in row:
            raise DataError(f"{where}: missing field 'model_vote'")
        idx = str(row["idx"])
        if idx in seen:
            raise DataError(f"{where}: field 'idx' {idx} appears twice")
        seen.add(idx)
        human = row["human_vote"]
        if human not in GENAIBENCH_HUMAN:
            raise DataError(
                f"{where}: field 'human_vote' has unknown label {human!r} (expected {', '.join(GENAIBENCH_HUMAN)})"
            )
        code = genaibench_vote_code(row["model_vote"])
        out.append(
            {
                "doc_id": idx,
                "group": idx,
                "label": GENAIBENCH_HUMAN[human],
                "status": "ok" if code is not None else "parse_failure",
                "pred": code,
            }
        )
    return out


def mmrb2_records(predictions: Mapping, docs: Sequence[Mapping], source: str) -> list[dict]:
    """Per-doc records (both orders) of MMRB2 predictions against our docs of the task."""
    if not isinstance(predictions, Mapping):
        raise DataError(f"{source}: expected a JSON object keyed by pair id")
    known = {str(d["group"]) for d in docs}
    extra = [k for k in predictions if str(k) not in known]
    if extra:
        raise DataError(f"{source}: pair id {extra[0]!r} is not in the local MMRB2 data ({len(extra)} such)")
    out = []
    for d in docs:
        pid, doc_id = str(d["group"]), str(d["doc_id"])
        order = "forward" if doc_id.endswith(":fwd") else "reverse"
        items = (predictions.get(pid) or {}).get(order) or []
        judgement = items[0].get("judgement") if items and isinstance(items[0], Mapping) else None
        pred = {"A": 1, "B": 2}.get(judgement) if judgement else None
        if judgement and pred is None:
            pred = 0  # a judgment that is neither A nor B: counted by MMRB2, as wrong; a tie here
        out.append(
            {
                "doc_id": doc_id,
                "group": pid,
                "label": int(d["label"]),
                "status": "ok" if pred is not None else "parse_failure",
                "pred": pred,
            }
        )
    return out


def build_import(task: str, records: list[dict], *, name: str, source: str, link: str | None = None) -> dict:
    """A submission (our schema) of one published judge on one task, metrics computed from ``records``."""
    from lmms_eval_autorater.reports.submission import FORMAT, FORMAT_VERSION, task_entry
    from lmms_eval_autorater.reports.validate import recompute
    from lmms_eval_autorater.tasks.catalog import task_info

    if not records:
        raise DataError(f"{source}: no prediction")
    info = task_info(task)
    metrics = recompute(info.paradigm, records, task)
    conventions, version = task_conventions(task)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": {
            "name": name,
            "lmms_eval_model": "published",
            "model_args": {"source": Path(source).name},
            "snapshots": [],
            "fingerprints": [],
            "checkpoint_hash": None,
            "parameters": None,
            "open_weights": None,
            "link": link,
        },
        "judge": None,
        "provenance": {
            "plugin_version": None,
            "lmms_eval_version": None,
            "transformers_version": None,
            "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "run_dates": [],
            "results_files": [Path(source).name],
        },
        "tasks": {task: task_entry(task, metrics, records, conventions=conventions, task_version=version)},
    }


def read_jsonl(path: str | Path) -> list[dict]:
    """Lines of a JSONL file; a bad line is a ``DataError`` naming it."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path} line {lineno}: not valid JSON: {exc}") from exc
    return rows


def import_file(fmt: str, task: str, path: str | Path, *, name: str, link: str | None = None) -> dict:
    """The submission of the predictions file ``path`` in format ``fmt`` for ``task``."""
    from lmms_eval_autorater.tasks.catalog import task_info

    info = task_info(task)
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if info.rule != fmt:
        raise DataError(f"task {task!r} is not a {fmt} task")
    if fmt == "genaibench":
        records = genaibench_records(read_jsonl(path), str(path))
    else:
        from lmms_eval_autorater.tasks.catalog import build_docs

        try:
            predictions = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: cannot read MMRB2 predictions ({exc})") from exc
        records = mmrb2_records(predictions, build_docs(task), str(path))
    return build_import(task, records, name=name, source=str(path), link=link)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``import`` command's arguments."""
    parser.add_argument("--format", required=True, choices=FORMATS, help="the predictions file's format")
    parser.add_argument(
        "--task", required=True, help="our task: genaibench_gen, genaibench_edit, mmrb2_t2i, ..."
    )
    parser.add_argument("--input", required=True, help="the published predictions file")
    parser.add_argument("--name", required=True, help="the judge's display name")
    parser.add_argument("--link", help="a URL describing the judge or the source of the predictions")
    parser.add_argument("--output", required=True, help="the submission JSON to write")


def run(args: argparse.Namespace) -> int:
    """Run the ``import`` command; returns the exit code."""
    from lmms_eval_autorater.errors import UsageError as CommandError
    from lmms_eval_autorater.reports.submission import write_json
    from lmms_eval_autorater.reports.validate import validate_submission

    try:
        sub = import_file(args.format, args.task, args.input, name=args.name, link=args.link)
    except (DataError, OSError, ValueError) as exc:
        raise CommandError(str(exc).strip().splitlines()[0]) from exc
    outcome = validate_submission(sub, args.output, use_local_data=False)
    if not outcome.ok:
        raise CommandError(f"the imported predictions do not validate: {outcome.problems[0]}")
    write_json(args.output, sub)
    m = sub["tasks"][args.task]["metrics"]
    extra = f", accuracy_scored {m['accuracy_scored']}" if "accuracy_scored" in m else ""
    print(
        f"{args.task}: accuracy {m['accuracy']} [{m['accuracy_ci_low']}, {m['accuracy_ci_high']}]{extra}, "
        f"n_scored {m['n_scored']} of {sub['tasks'][args.task]['n_docs']}, parse_failures {m['parse_failures']}"
    )
    print(f"wrote {args.output}")
    return 0
