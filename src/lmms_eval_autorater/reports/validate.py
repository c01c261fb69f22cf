"""The ``validate`` command: check a leaderboard submission against its schema, itself and the local data.

Three levels, each reported: the JSON Schema (``submission.schema.json``); the submission's own
consistency (every metric recomputed from its per-doc predictions with the tasks' own aggregation
functions, the doc count, the docs hash of its predictions); and, where ``$AUTORATER_DATA_DIR`` holds a
task's data, the predictions against the local labels (the doc set's hash, missing or extra docs, changed
labels, and every metric recomputed with the local truth in the local docs' order).

Hostile files get one line each and never a hang: a file above ``safejson.MAX_JSON_BYTES`` (256 MiB) is
refused before it is read, every decoder failure (not UTF-8, deep nesting, ``NaN``/``Infinity``, huge
integers) is one problem naming the file, every check is linear in the number of predictions, and each
file of a multi-file call is reported whatever the others hold. Predictions are type-checked: a pairwise
``pred`` is 0, 1 or 2 (an integer), a pointwise ``pred`` a finite number, ``status`` ``ok`` has a
prediction and every failure status has none.

Exit codes: 0 every check passed, every task verified against local data; 1 a check failed (each problem
printed, naming the file, the field and both values); 3 every check that could run passed, but at least one
task could not be checked against local data (the reason is printed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

HELP = "check submissions: schema, recomputed metrics, local data"
SCHEMA_FILE = Path(__file__).with_name("submission.schema.json")
#: exit code of a submission that is consistent but was not checked against local data for some task
EXIT_UNVERIFIED = 3


@dataclass
class Outcome:
    """What validating one submission found: problems (failures), notes on what was not checked."""

    path: str
    problems: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)  # tasks checked against local data

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems


@lru_cache(maxsize=1)
def schema() -> dict:
    """The submission's JSON Schema (shipped beside this module)."""
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def _where(path: Iterable) -> str:
    parts = [str(p) if not isinstance(p, int) else f"[{p}]" for p in path]
    return ".".join(parts).replace(".[", "[") or "(top level)"


def schema_problems(sub: Any, limit: int = 20) -> list[str]:
    """The schema violations of ``sub`` (the first ``limit``, then a count), each naming the field and the
    offending value."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    out = []
    errors = sorted(validator.iter_errors(sub), key=lambda e: list(map(str, e.absolute_path)))
    for err in errors[:limit]:
        value = json.dumps(err.instance, default=str)
        if len(value) > 120:
            value = value[:117] + "..."
        out.append(
            f"{_where(err.absolute_path)}: {err.message if len(err.message) < 200 else err.validator} "
            f"(value {value})"
        )
    if len(errors) > limit:
        out.append(f"{len(errors) - limit} more schema violation(s) not listed")
    return out


def _template(paradigm: str, task: str | None) -> str:
    """The metric set of ``task`` (``vocabulary.TASK_METRICS``): the catalog's template of a known task (the
    authors' scoring of GenAI-Bench and EditReward-Bench), else the paradigm's."""
    from lmms_eval_autorater.tasks.catalog import TASKS

    return TASKS[task].template if task is not None and task in TASKS else paradigm


def recomputed_metric_names(paradigm: str, task: str | None = None) -> tuple[str, ...]:
    """The metrics ``validate`` recomputes from predictions: all but what a run spent."""
    from lmms_eval_autorater.vocabulary import ESTIMATE_METRICS, TASK_METRICS, USAGE_METRICS

    names = TASK_METRICS[_template(paradigm, task)]
    return tuple(n for n in names if n not in USAGE_METRICS and n not in ESTIMATE_METRICS)


def recompute(paradigm: str, records: Sequence[Mapping], task: str | None = None) -> dict[str, float | None]:
    """Every recomputable metric of a task from its records, with the tasks' own aggregation functions
    (``task`` picks the authors' ones of the GenAI-Bench and EditReward-Bench tasks)."""
    from lmms_eval_autorater.tasks.common import aggregation

    kind = _template(paradigm, task)
    recs = [dict(r) for r in records]
    return {name: _clean(aggregation(kind, name)(recs)) for name in recomputed_metric_names(paradigm, task)}


def _clean(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def same_number(a, b, tol: float = 1e-9) -> bool:
    """Equal within ``tol`` (absolute and relative); None and NaN equal each other only."""
    a, b = _clean(a), _clean(b)
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


def _records(task: Mapping, truth: Mapping[str, Mapping] | None) -> list[dict]:
    """The aggregation records of a task's predictions; with ``truth`` (doc id -> local doc) its labels."""
    out = []
    for p in task["predictions"]:
        src = truth[p["doc_id"]] if truth is not None else p
        rec = {
            "doc_id": p["doc_id"],
            "group": src.get("group"),
            "status": p["status"],
            "pred": p["pred"],
            "flipped": p.get("flipped"),
        }
        if task["paradigm"] == "pairwise":
            rec["label"] = int(src["label"])
            rec["pred"] = None if p["pred"] is None else int(p["pred"])
        else:
            rec["target"] = float(src["target"])
        out.append(rec)
    return out


def _compare(prefix: str, reported: Mapping, recomputed: Mapping, how: str) -> list[str]:
    """Mismatches of the reported metrics; a metric the run did not report (an older plugin) is skipped,
    the ones that must be there are required by the schema."""
    return [
        f"{prefix}.metrics.{name}: reported {reported[name]!r}, recomputed {value!r} {how}"
        for name, value in recomputed.items()
        if name in reported and not same_number(reported[name], value)
    ]


def local_docs(task: str) -> tuple[list[dict] | None, str]:
    """The task's docs from ``$AUTORATER_DATA_DIR`` (never the hub), or (None, why not)."""
    from lmms_eval_autorater.tasks.common import DATA_ENV, DataError

    if not os.environ.get(DATA_ENV):
        return None, f"{DATA_ENV} is not set"
    from lmms_eval_autorater.tasks.catalog import build_docs

    try:
        return build_docs(task), ""
    except (DataError, OSError, ValueError) as exc:
        return None, str(exc).strip().splitlines()[0]


#: statuses of a doc that has a prediction; every other status has none
PREDICTED = frozenset({"ok"})


def prediction_problems(
    prefix: str, paradigm: str, preds: Sequence[Mapping], limit: int = 5, classes: int = 2
) -> list[str]:
    """Predictions that are not predictions, at most ``limit`` listed plus a count: a pairwise ``pred``
    outside {0, 1, 2} (1.4 is not truncated to 1), a pointwise one that is not a finite number, ``ok``
    without a prediction, a failure status with one."""
    out: list[str] = []
    n_bad = 0
    for k, p in enumerate(preds):
        pred, status = p["pred"], p["status"]
        why = None
        if status in PREDICTED and pred is None:
            why = f"status {status!r} needs a prediction, got null"
        elif status not in PREDICTED and pred is not None:
            why = f"status {status!r} must have no prediction (null), got {pred!r}"
        elif pred is not None and (isinstance(pred, bool) or not isinstance(pred, (int, float))):
            why = f"not a number: {pred!r}"
        elif pred is not None and paradigm == "pairwise" and pred not in range(max(classes, 2) + 1):
            allowed = "0 (tie), 1 or 2" if classes <= 2 else f"0 (tie) or 1..{classes}"
            why = f"a pairwise prediction is {allowed}, got {pred!r}"
        elif pred is not None and not math.isfinite(pred):
            why = f"not a finite number: {pred!r}"
        if why is not None:
            n_bad += 1
            if n_bad <= limit:
                out.append(f"{prefix}.predictions[{k}].pred: {why} (doc {p['doc_id']!r})")
    if n_bad > limit:
        out.append(f"{prefix}.predictions: {n_bad - limit} more bad prediction(s) not listed")
    return out


def check_task(name: str, task: Mapping, docs: list[dict] | None) -> list[str]:
    """Problems of one task entry: doc count, docs hash, metrics recomputed; with ``docs``, against them."""
    from lmms_eval_autorater.tasks.catalog import TASKS, docs_hash

    prefix = f"tasks.{name}"
    problems = []
    info = TASKS[name]
    if task["paradigm"] != info.paradigm:
        problems.append(f"{prefix}.paradigm: {task['paradigm']!r}, but {name} is {info.paradigm}")
        return problems
    preds = task["predictions"]
    ids = [p["doc_id"] for p in preds]
    dup = sorted(i for i, n in Counter(ids).items() if n > 1)
    if dup:
        problems.append(
            f"{prefix}.predictions: doc id(s) {', '.join(map(repr, dup[:5]))} appear more than once"
        )
    bad = prediction_problems(prefix, info.paradigm, preds, classes=info.classes)
    if bad:  # metrics cannot be recomputed from predictions that are not predictions
        return problems + bad
    if task["n_docs"] != len(preds):
        problems.append(f"{prefix}.n_docs: {task['n_docs']}, but there are {len(preds)} predictions")
    own_hash = docs_hash(preds)
    if task["docs_hash"] != own_hash:
        problems.append(
            f"{prefix}.docs_hash: {task['docs_hash']!r}, but the predictions' doc ids and labels hash to {own_hash!r}"
        )
    problems += _compare(
        prefix,
        task["metrics"],
        recompute(info.paradigm, _records(task, None), name),
        "from the submission's predictions",
    )
    if docs is None:
        return problems

    truth_key = "label" if info.paradigm == "pairwise" else "target"
    local = {str(d["doc_id"]): d for d in docs}
    local_hash = docs_hash(docs)
    if task["docs_hash"] != local_hash:
        problems.append(
            f"{prefix}.docs_hash: {task['docs_hash']!r}, but the local data hashes to {local_hash!r}"
        )
    id_set = set(ids)
    missing = [i for i in local if i not in id_set]
    extra = [i for i in ids if i not in local]
    if missing:
        problems.append(f"{prefix}.predictions: {len(missing)} local doc(s) missing, e.g. {missing[:5]}")
    if extra:
        problems.append(f"{prefix}.predictions: {len(extra)} doc(s) not in the local data, e.g. {extra[:5]}")
    for k, p in enumerate(preds):
        d = local.get(p["doc_id"])
        if d is None:
            continue
        if truth_key in p and not same_number(p[truth_key], d[truth_key]):
            problems.append(
                f"{prefix}.predictions[{k}].{truth_key}: {p[truth_key]!r} for doc {p['doc_id']!r}, "
                f"local data has {d[truth_key]!r}"
            )
        if p.get("group") != (None if d.get("group") is None else str(d["group"])):
            problems.append(
                f"{prefix}.predictions[{k}].group: {p.get('group')!r} for doc {p['doc_id']!r}, "
                f"local data has {d.get('group')!r}"
            )
    if missing or extra:
        return problems
    # the local truth, in the submission's order: the order lmms-eval aggregated in (the samples file's,
    # rank by rank in a data-parallel run), on which the seeded bootstrap CI depends
    local_truth = {
        i: {"group": None if d["group"] is None else str(d["group"]), truth_key: d[truth_key]}
        for i, d in local.items()
    }
    problems += _compare(
        prefix,
        task["metrics"],
        recompute(info.paradigm, _records(task, local_truth), name),
        "from the predictions against the local data",
    )
    return problems


def validate_submission(sub: Any, path: str = "<submission>", *, use_local_data: bool = True) -> Outcome:
    """Validate one parsed submission: schema first (a broken structure stops there), then each task."""
    out = Outcome(path)
    out.problems = schema_problems(sub)
    if out.problems:
        return out
    for name, task in sub["tasks"].items():
        docs, why = local_docs(name) if use_local_data else (None, "local data not used")
        try:
            out.problems += check_task(name, task, docs)
        except (KeyError, TypeError, ValueError) as exc:
            out.problems.append(f"tasks.{name}: cannot recompute ({type(exc).__name__}: {exc})")
        if docs is None:
            out.unchecked.append(f"tasks.{name}: not checked against local data ({why})")
        else:
            out.verified.append(name)
    return out


def load_submission(path: str | os.PathLike) -> Any:
    """A submission file parsed; a file too large, unreadable or not JSON raises one ``DataError``
    (a ``ValueError``) naming it (``safejson``)."""
    from lmms_eval_autorater.safejson import load_file

    return load_file(path)


def validate_file(path: str | os.PathLike, *, use_local_data: bool = True) -> Outcome:
    """Validate the submission file at ``path``; whatever the file holds, the result is an ``Outcome``
    (a hostile file is one problem naming it, never an exception that hides the next files)."""
    try:
        sub = load_submission(path)
        return validate_submission(sub, str(path), use_local_data=use_local_data)
    except (ValueError, RecursionError, OverflowError, TypeError, KeyError) as exc:
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        return Outcome(str(path), problems=[reason.removeprefix(f"{path}: ")])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``validate`` command's arguments."""
    parser.add_argument("submissions", nargs="+", metavar="SUB", help="submission JSON files")
    parser.add_argument(
        "--no-local-data",
        action="store_true",
        help="check schema and self-consistency only, even where $AUTORATER_DATA_DIR has the data",
    )


def run(args: argparse.Namespace) -> int:
    """Run the ``validate`` command; returns the exit code (0 verified, 1 failed, 3 partly unverified)."""
    from lmms_eval_autorater.errors import UsageError

    outcomes = []
    for path in args.submissions:  # each file reported as soon as it is checked, whatever the others hold
        o = validate_file(path, use_local_data=not args.no_local_data)
        outcomes.append(o)
        for problem in o.problems:
            print(f"{o.path}: FAIL {problem}")
        for note in o.unchecked:
            print(f"{o.path}: unchecked: {note}")
        if o.ok:
            checked = (
                f"verified against local data: {', '.join(o.verified)}" if o.verified else "no local data"
            )
            print(f"{o.path}: OK (schema, recomputed metrics; {checked})", flush=True)
    failed = [o for o in outcomes if not o.ok]
    if failed:
        first = failed[0]
        raise UsageError(
            f"{sum(len(o.problems) for o in failed)} problem(s) in {len(failed)} submission(s); "
            f"first: {first.path}: {first.problems[0]}"
        )
    return EXIT_UNVERIFIED if any(o.unchecked for o in outcomes) else 0
