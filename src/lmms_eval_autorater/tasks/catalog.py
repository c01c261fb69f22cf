"""The benchmarks as data: name -> how its docs are built and what it measures.

The one list that every entry point reads (lmms-eval's task class, ``grid``, the commands):
the task YAMLs name the lmms-eval side (prompts, metrics), this names the docs' builder.
Nothing here imports a model or lmms-eval.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class TaskInfo:
    """One benchmark: its docs' builder (``module:function``), task kind, paradigm and headline metric."""

    name: str
    builder: str
    task_kind: str  # "generation" | "editing"
    paradigm: str  # "pairwise" | "pointwise"

    @property
    def metric(self) -> str:
        """The headline metric: accuracy for pairs, Pearson for points."""
        return "accuracy" if self.paradigm == "pairwise" else "pearson"


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
    )
}

#: the lmms-eval group of the four (Table 2's columns)
GROUP = "autorater_bench"


def task_info(name: str) -> TaskInfo:
    """The ``TaskInfo`` of ``name``; an unknown name raises ``ValueError`` listing the known ones."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name]


def build_docs(name: str) -> list[dict]:
    """Every doc of task ``name`` (reads ``$AUTORATER_DATA_DIR`` or the hub)."""
    module, func = task_info(name).builder.split(":")
    return list(getattr(importlib.import_module(module), func)())
