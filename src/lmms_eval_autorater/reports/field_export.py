"""The ``export`` command: a run's predictions in the benchmark authors' own submission formats.

* ``mmrb2``: a JSON object keyed by pair id with ``forward`` and ``reverse`` lists holding one
  ``{"judgement": "A"|"B", ...}`` each, the judgement in the order shown (the reverse doc shows B as Image 1,
  so its "A" means B; MMRB2's ``compute_accuracy.py`` flips it back). A failed judgment is written with
  ``judgement`` null (MMRB2 then leaves it out of its denominator, as we do); a tie is ``"tie"`` (counted, wrong).
* ``genaibench``: ``pairwise.jsonl`` lines ``idx``, the prompt fields, ``response``, ``model_vote``
  (``[[A>B]]``, ``[[B>A]]``, ``[[A=B=Good]]``, ``[[A=B=Bad]]``, ``[[A=B]]`` or null), ``human_vote`` and
  ``correct`` (GenAI-Bench's rule), in idx order: the mean of ``correct`` is GenAI-Bench's accuracy.
* ``editreward``: the results JSON of EditReward's ``inference_{2,3,4}pair_hf.py``: ``results`` (one per
  comparison, null for an API or input failure as theirs, ``model_vote`` "Unknown" for an unparsable answer),
  ``total_examples``, ``correct_examples``, ``accuracy`` (2pair) or ``individual_accuracy``, ``total_groups``,
  ``correct_groups`` and ``group_accuracy`` (3pair, 4pair). Votes name the images in the order shown:
  ``A`` = candidate_1 (Image 1), ``B`` = candidate_2 (Image 2).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

HELP = "write a run's predictions in a benchmark's own format (MMRB2, GenAI-Bench, EditReward-Bench)"
FORMATS = ("mmrb2", "genaibench", "editreward")


def mmrb2_predictions(records: Sequence[Mapping]) -> dict[str, dict]:
    """MMRB2's predictions object from our per-doc records of an mmrb2 task (both orders)."""
    out: dict[str, dict] = {}
    for r in records:
        doc_id = str(r["doc_id"])
        pid, _, order = doc_id.rpartition(":")
        if order not in ("fwd", "rev"):
            raise ValueError(f"doc {doc_id!r} is not an MMRB2 doc (<pair id>:fwd or :rev)")
        pred = r.get("pred") if r.get("status") == "ok" else None
        judgement = None if pred is None else {1: "A", 2: "B"}.get(int(pred), "tie")
        item = {"judgement": judgement, "status": r.get("status")}
        if r.get("raw"):
            item["response"] = r["raw"]
        entry = out.setdefault(pid, {"forward": [], "reverse": []})
        entry["forward" if order == "fwd" else "reverse"] = [item]
    return out


def genaibench_lines(records: Sequence[Mapping], task: str) -> list[dict]:
    """GenAI-Bench ``pairwise.jsonl`` lines from our per-doc records of a genaibench task, in idx order."""
    from lmms_eval_autorater.metrics.field import HUMAN_OF_CODE, VOTE_OF_CODE, genaibench_correct

    prompt_key = "prompt" if task == "genaibench_gen" else "instruct_prompt"
    lines = []
    for r in sorted(records, key=lambda r: int(r["doc_id"])):
        pred = r.get("pred") if r.get("status") == "ok" else None
        label = int(r["label"])
        lines.append(
            {
                "idx": int(r["doc_id"]),
                prompt_key: r.get("request"),
                "response": r.get("raw"),
                "model_vote": None if pred is None else VOTE_OF_CODE[int(pred)],
                "human_vote": HUMAN_OF_CODE[label],
                "correct": genaibench_correct(label, None if pred is None else int(pred)),
            }
        )
    return lines


def editreward_results(records: Sequence[Mapping], task: str) -> dict:
    """EditReward's results JSON from our per-comparison records of an editreward_bench task, with its totals
    computed as its scripts compute them from ``is_correct`` (``metrics.field.editreward_summary``'s rule)."""
    from lmms_eval_autorater.metrics.field import EDITREWARD_RESULT_STATUSES

    vote = {1: "A>B", 2: "B>A", 0: "A=B"}
    n = int(task.rsplit("_", 1)[1])
    results: list[dict | None] = []
    groups: dict[str, list[bool]] = {}
    for r in records:
        status = r.get("status")
        if status not in EDITREWARD_RESULT_STATUSES:
            results.append(None)
            continue
        pred = r.get("pred") if status == "ok" else None
        correct = pred is not None and int(pred) == int(r["label"])
        results.append(
            {
                "id": str(r["doc_id"]),
                "instruction": r.get("request"),
                "human_vote": vote[int(r["label"])],
                "model_response": r.get("raw"),
                "model_vote": "Unknown" if pred is None else vote[int(pred)],
                "is_correct": correct,
            }
        )
        groups.setdefault(str(r["group"]), []).append(correct)
    valid = [x for x in results if x is not None]
    correct = sum(x["is_correct"] for x in valid)
    size = {str(r["group"]): 0 for r in records}
    for r in records:
        size[str(r["group"])] += 1
    out: dict = {"dataset_name": "TIGER-Lab/EditReward-Bench", "data_type": f"{n}pair"}
    out["total_examples"] = len(valid)
    out["correct_examples"] = correct
    accuracy = correct / len(valid) if valid else 0
    if n == 2:
        out["accuracy"] = accuracy
    else:
        good = sum(len(v) == size[g] and all(v) for g, v in groups.items())
        out.update(
            individual_accuracy=accuracy,
            total_groups=len(groups),
            correct_groups=good,
            group_accuracy=good / len(groups) if groups else 0,
        )
    out["results"] = results
    return out


def export_run(fmt: str, results: Sequence[str], task: str, output: str | Path) -> int:
    """Write ``task``'s predictions of the run(s) at ``results`` in format ``fmt`` to ``output``; returns the
    number of predictions written."""
    from lmms_eval_autorater.reports.runs import load_runs
    from lmms_eval_autorater.reports.submission import write_json
    from lmms_eval_autorater.tasks.catalog import task_info

    if task_info(task).rule != fmt:
        raise ValueError(f"task {task!r} is not a {fmt} task")
    runs = [r for r in load_runs(results) if task in r.tasks]
    if len(runs) != 1:
        raise ValueError(f"{len(runs)} runs of task {task!r} in {', '.join(results)}: export one run")
    records = runs[0].tasks[task].records()
    if fmt == "mmrb2":
        data = mmrb2_predictions(records)
        write_json(output, data)
        return sum(len(v["forward"]) + len(v["reverse"]) for v in data.values())
    if fmt == "editreward":
        data = editreward_results(records, task)
        write_json(output, data)
        return len(data["results"])
    lines = genaibench_lines(records, task)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    return len(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``export`` command's arguments."""
    parser.add_argument("--format", required=True, choices=FORMATS, help="the benchmark's own format")
    parser.add_argument(
        "--results", nargs="+", required=True, metavar="DIR", help="the lmms-eval run folder(s)"
    )
    parser.add_argument("--task", required=True, help="the task to export (mmrb2_t2i, genaibench_gen, ...)")
    parser.add_argument("--output", required=True, help="the file to write")


def run(args: argparse.Namespace) -> int:
    """Run the ``export`` command; returns the exit code."""
    from lmms_eval_autorater.errors import UsageError as CommandError
    from lmms_eval_autorater.reports.runs import RunsError

    try:
        n = export_run(args.format, args.results, args.task, args.output)
    except (RunsError, ValueError, OSError) as exc:
        raise CommandError(str(exc).strip().splitlines()[0]) from exc
    print(f"wrote {n} prediction(s) of {args.task} to {args.output} ({args.format} format)")
    return 0
