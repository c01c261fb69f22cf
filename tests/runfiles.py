"""Finished lmms-eval runs written the way lmms-eval 0.7.3 writes them, without running lmms-eval.

For the report tests (submission, validate, leaderboard, report page), where the CLI is not what is tested:
each doc's output is our judges' real envelope (``judges.envelope.encode_verdict``), its record comes from
the tasks' own ``process_results`` and every metric from the tasks' own aggregation functions, and the
files have the names, keys and layout of a real run (``<date>_results.json``, ``<date>_samples_<task>.jsonl``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import yaml

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def _conventions(task: str) -> dict:
    """The task YAML's ``metadata`` (``!function`` tags read as plain strings)."""
    import lmms_eval_autorater.tasks as tasks_pkg

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    path = Path(tasks_pkg.__file__).parent / task / f"{task}.yaml"
    return yaml.load(path.read_text(), Loader=Loader)["metadata"]


def _media(doc: dict) -> list[str]:
    return [
        v for v in doc.values() if isinstance(v, str) and ("::" in v or v.lower().endswith(IMAGE_SUFFIXES))
    ]


def write_run(
    out: Path,
    docs: dict[str, list[dict]],
    verdict: Callable,
    *,
    model: str = "autorater_openai",
    model_args: str = "base_url=http://127.0.0.1:9/v1,model=judge-1,tools=none",
    model_name: str = "judge-1",
    date: str = "20260101_120000",
    ranks: int = 1,
    limit: int | None = None,
) -> Path:
    """Write one run over ``docs`` (task -> docs); ``verdict(task, index, doc)`` gives each doc's ``Verdict``.

    ``ranks`` > 1: as a data-parallel run writes it, docs split round-robin over ranks, samples and the
    aggregation chained rank by rank. ``limit``: written as lmms-eval's ``--limit`` (the docs given are the run's).
    Returns the results file.
    """
    from lmms_eval_autorater.judges.envelope import encode_verdict
    from lmms_eval_autorater.judges.prompts import generic_prompt_text
    from lmms_eval_autorater.tasks import common
    from lmms_eval_autorater.tasks.catalog import TASKS

    folder = out / model_name
    folder.mkdir(parents=True, exist_ok=True)
    results, configs, n_samples, hashes = {}, {}, {}, {}
    for task, task_docs in docs.items():
        from lmms_eval_autorater.tasks import field_common
        from lmms_eval_autorater.vocabulary import TASK_METRICS

        paradigm, template = TASKS[task].paradigm, TASKS[task].template
        process = {
            "pairwise": common.process_pairwise,
            "pointwise": common.process_pointwise,
            "four_label": field_common.process_four_label,
            "editreward": field_common.process_editreward,
        }[template]
        names = TASK_METRICS[template]

        def agg(name: str, template: str = template):
            return common.aggregation(template, name)

        lines, records = [], []
        order = [i for r in range(ranks) for i in range(r, len(task_docs), ranks)]
        for i in order:
            doc = task_docs[i]
            envelope = encode_verdict(verdict(task, i, doc), paradigm)
            per_metric = process(doc, [envelope])
            records.append(per_metric[names[0]])
            lines.append(
                json.dumps(
                    {
                        "doc_id": i,
                        "target": str(doc["label"] if paradigm == "pairwise" else doc["target"]),
                        "filtered_resps": envelope,
                        "token_counts": [None],
                        "doc_hash": hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest(),
                        "input_media": _media(doc),
                        **per_metric,
                        "input": generic_prompt_text(doc),
                    }
                )
            )
        (folder / f"{date}_samples_{task}.jsonl").write_text("\n".join(lines) + "\n")
        row = {"alias": task}
        for name in names:
            row[f"{name},none"] = agg(name)(records)
            row[f"{name}_stderr,none"] = "N/A"
        results[task] = row
        configs[task] = {"task": task, "metadata": _conventions(task)}
        n_samples[task] = {"original": len(task_docs), "effective": len(task_docs)}
        hashes[task] = hashlib.sha256(task.encode()).hexdigest()
    data = {
        "results": results,
        "configs": configs,
        "versions": {t: 1 for t in docs},
        "n-samples": n_samples,
        "config": {"model": model, "model_args": model_args, "batch_size": 1, "limit": limit},
        "lmms_eval_version": "0.7.3",
        "date": date,
        "task_hashes": hashes,
        "model_name": model_name,
    }
    path = folder / f"{date}_results.json"
    path.write_text(json.dumps(data, default=str))
    return path
