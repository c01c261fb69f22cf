"""The lmms-eval task class of every AutoRater task (imported only when lmms-eval builds a task).

lmms-eval would call ``datasets.load_dataset(dataset_path)``; our docs come instead from the
task's builder in ``catalog.TASKS`` (by task name), which reads ``$AUTORATER_DATA_DIR`` or the
hub. Docs hold image references, not decoded images.
"""

from __future__ import annotations

import os
from functools import lru_cache

import datasets
from lmms_eval.api.task import ConfigurableTask

from lmms_eval_autorater.errors import fatal_in_run
from lmms_eval_autorater.tasks.catalog import build_docs, task_info
from lmms_eval_autorater.tasks.common import DATA_ENV, DOC_FIELDS, metric_list

FEATURES = datasets.Features(
    {
        name: datasets.Value("int64" if name == "label" else "float64" if name == "target" else "string")
        for name in DOC_FIELDS
    }
)


@lru_cache(maxsize=8)
def _docs(task: str, data_dir: str) -> tuple[dict, ...]:
    """Docs of one task, built once per process and data folder (a group builds tasks once each)."""
    return tuple(build_docs(task))


def _versions() -> dict[str, str | None]:
    """The plugin's, lmms-eval's and transformers' installed versions (None where not installed), and the
    judge's output-parser and prompt-template versions."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in ("lmms_eval_autorater", "lmms_eval", "transformers"):
        try:
            out[name] = version(name.replace("_", "-"))
        except PackageNotFoundError:
            out[name] = None
    from lmms_eval_autorater.judges.contract import PARSER_VERSION
    from lmms_eval_autorater.judges.prompts import TEMPLATE_VERSION

    return {**out, "parser": PARSER_VERSION, "prompt": TEMPLATE_VERSION}


class AutoraterTask(ConfigurableTask):
    """A ConfigurableTask whose docs come from the catalog's builder instead of ``datasets.load_dataset``;
    its ``metric_list`` (unless the YAML writes one) comes from the one list of metric names for the
    task's template (its paradigm, or the authors' scoring: ``tasks.common.metric_list``)."""

    def __init__(self, config: dict | None = None, **kwargs) -> None:
        config = {k: v for k, v in (config or {}).items() if k != "class"}
        if not config.get("metric_list"):
            config["metric_list"] = metric_list(task_info(config["task"]).template)
        # the versions that produced the run, copied by lmms-eval into the results file (reports/runs.py)
        config["metadata"] = {**(config.get("metadata") or {}), "versions": _versions()}
        super().__init__(config=config, **kwargs)

    def download(self, dataset_kwargs=None) -> None:
        with fatal_in_run():  # missing or malformed data: one line and exit 1, not lmms-eval's exit 0
            docs = list(_docs(self.config.task, os.environ.get(DATA_ENV, "")))
        ds = datasets.Dataset.from_list(docs, features=FEATURES)
        self.dataset = datasets.DatasetDict({self.config.test_split: ds})
        # Docs carry no decoded images (only references), so process_results may see every field.
        self.dataset_no_image = self.dataset
