"""The benchmarks as data: name -> how its docs are built and what it measures.

The one list that every entry point reads (lmms-eval's task class, ``grid``, the commands):
the task YAMLs name the lmms-eval side (prompts, metrics), this names the docs' builder.
Nothing here imports a model or lmms-eval.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class TaskInfo:
    """One benchmark: its docs' builder (``module:function``), task kind, paradigm and headline metric."""

    name: str
    builder: str
    task_kind: str  # "generation" | "editing"
    paradigm: str  # "pairwise" | "pointwise"
    #: pairwise answer classes: 2 (Image 1 / Image 2) or 4 (also both good / both bad: GenAI-Bench)
    classes: int = 2
    #: whose scoring rule the headline follows: "" (ours), "mmrb2", "genaibench", "editreward" (``metrics.field``)
    rule: str = ""

    @property
    def template(self) -> str:
        """The task's YAML template (``tasks/_<template>.yaml``) and metric set (``vocabulary.TASK_METRICS``):
        its paradigm, or the authors' scoring of GenAI-Bench (``four_label``) or EditReward-Bench."""
        return {"genaibench": "four_label", "editreward": "editreward"}.get(self.rule, self.paradigm)

    @property
    def metric(self) -> str:
        """The headline metric: accuracy for pairs, Pearson for points (``metrics.summary.HEADLINE``)."""
        from lmms_eval_autorater.metrics.summary import HEADLINE

        return HEADLINE[self.paradigm]


TASKS: dict[str, TaskInfo] = {
    t.name: t
    for t in (
        TaskInfo("psr", "lmms_eval_autorater.tasks.psr.utils:build_docs", "editing", "pairwise"),
        TaskInfo(
            "imagereward_pair",
            "lmms_eval_autorater.tasks.imagereward_pair.utils:build_docs",
            "generation",
            "pairwise",
        ),
        TaskInfo(
            "imagereward_point",
            "lmms_eval_autorater.tasks.imagereward_point.utils:build_docs",
            "generation",
            "pointwise",
        ),
        TaskInfo("aigiqa", "lmms_eval_autorater.tasks.aigiqa.utils:build_docs", "generation", "pointwise"),
        # the field's benchmarks (group FIELD_GROUP)
        TaskInfo(
            "mmrb2_t2i",
            "lmms_eval_autorater.tasks.mmrb2_t2i.utils:build_docs",
            "generation",
            "pairwise",
            rule="mmrb2",
        ),
        TaskInfo(
            "mmrb2_edit",
            "lmms_eval_autorater.tasks.mmrb2_edit.utils:build_docs",
            "editing",
            "pairwise",
            rule="mmrb2",
        ),
        TaskInfo(
            "genaibench_gen",
            "lmms_eval_autorater.tasks.genaibench_gen.utils:build_docs",
            "generation",
            "pairwise",
            classes=4,
            rule="genaibench",
        ),
        TaskInfo(
            "genaibench_edit",
            "lmms_eval_autorater.tasks.genaibench_edit.utils:build_docs",
            "editing",
            "pairwise",
            classes=4,
            rule="genaibench",
        ),
        # EditReward-Bench: 2-candidate comparisons have tie labels (four-class answers, both ties read as A=B)
        TaskInfo(
            "editreward_bench_2",
            "lmms_eval_autorater.tasks.editreward_bench_2.utils:build_docs",
            "editing",
            "pairwise",
            classes=4,
            rule="editreward",
        ),
        TaskInfo(
            "editreward_bench_3",
            "lmms_eval_autorater.tasks.editreward_bench_3.utils:build_docs",
            "editing",
            "pairwise",
            rule="editreward",
        ),
        TaskInfo(
            "editreward_bench_4",
            "lmms_eval_autorater.tasks.editreward_bench_4.utils:build_docs",
            "editing",
            "pairwise",
            rule="editreward",
        ),
    )
}

#: the paper's four (Table 2's columns, group ``GROUP``)
PAPER_TASKS = ("psr", "imagereward_pair", "imagereward_point", "aigiqa")
#: the lmms-eval group of the field's benchmarks (MMRB2, GenAI-Bench, EditReward-Bench); apart from the paper's four
FIELD_GROUP = "field_bench"
FIELD_TASKS = (
    "mmrb2_t2i",
    "mmrb2_edit",
    "genaibench_gen",
    "genaibench_edit",
    "editreward_bench_2",
    "editreward_bench_3",
    "editreward_bench_4",
)
#: group name -> its tasks (the groups' YAMLs list the same)
GROUPS: dict[str, tuple[str, ...]] = {"autorater_bench": PAPER_TASKS, "field_bench": FIELD_TASKS}

#: the lmms-eval group of the four (Table 2's columns)
GROUP = "autorater_bench"


def task_info(name: str) -> TaskInfo:
    """The ``TaskInfo`` of ``name``; an unknown name raises ``ValueError`` listing the known ones."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name]


#: tasks whose builder takes another split (``build_docs(name, split=...)``): the ImageReward ones
SPLITS: dict[str, tuple[str, ...]] = {
    "imagereward_pair": ("test", "validation", "train"),
    "imagereward_point": ("test", "validation", "train"),
}


def build_docs(name: str, split: str | None = None) -> list[dict]:
    """Every doc of task ``name`` (reads ``$AUTORATER_DATA_DIR`` or the hub); ``split`` None: the test split.

    Another split (``validation`` for selection, ``train``) exists for the tasks in ``SPLITS``.
    """
    module, func = task_info(name).builder.split(":")
    builder = getattr(importlib.import_module(module), func)
    if split is None or split == "test":
        return list(builder())
    if split not in SPLITS.get(name, ()):
        raise ValueError(
            f"task {name!r} has no split {split!r}; splits: {', '.join(SPLITS.get(name, ('test',)))}"
        )
    return list(builder(split=split))


#: what ``docs_hash`` covers: each doc's identity, bootstrap cluster and human truth (not image paths,
#: which differ between machines)
HASHED_FIELDS = ("doc_id", "group", "label", "target")


def docs_hash(docs: Iterable[Mapping]) -> str:
    """``sha256:<hex>`` of a doc set (docs or per-doc records): the same set gives the same hash on any machine.

    Order-free: one canonical JSON line per doc (id and group as strings, label as int, target as float),
    sorted, so a submission's records and the local docs from ``build_docs`` can be compared.
    """
    import hashlib
    import json

    lines = []
    for d in docs:
        label, target, group = d.get("label"), d.get("target"), d.get("group")
        lines.append(
            json.dumps(
                [
                    str(d["doc_id"]),
                    None if group is None else str(group),
                    None if label is None else int(label),
                    None if target is None else float(target),
                ]
            )
        )
    digest = hashlib.sha256("\n".join(sorted(lines)).encode("utf-8")).hexdigest()
    return f"sha256:{digest}"
