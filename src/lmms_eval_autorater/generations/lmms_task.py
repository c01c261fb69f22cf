"""An lmms-eval task over the user's own generations file (see ``tasks/templates/README.md``).

The template YAML names ``GenerationsTask`` as its class and the generations JSONL as
``dataset_kwargs.data_files`` (with ``dataset_path: json``, so lmms-eval resolves a relative path against
the YAML's folder). The docs are built from the file by ``generation_docs`` in the tasks' doc schema
(pointwise; editing when a row has a source). There is no human score, so the task reports the mean
Likert score with a 95% percentile-bootstrap CI (the same numbers as ``lmms-eval-autorater score``) and
the failure counts; failed rows are counted, never scored.

Imported only by lmms-eval when it builds the task (it needs lmms-eval and datasets).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import datasets
from lmms_eval.api.task import ConfigurableTask

from lmms_eval_autorater.tasks.common import DataError, make_doc, make_record, pointwise_aggregation
from lmms_eval_autorater.tasks.lmms_task import FEATURES
from lmms_eval_autorater.vocabulary import COUNT_METRICS, HIGHER_IS_BETTER, USAGE_METRICS

#: the metrics of the template, each aggregated from the same per-doc record
GENERATION_METRICS = ("mean_score", "mean_score_ci_low", "mean_score_ci_high", *COUNT_METRICS, *USAGE_METRICS)
N_RESAMPLES = 1000


def generation_docs(path: str | os.PathLike) -> list[dict]:
    """Docs of a generations JSONL file (``generations.jsonl.read_generations`` checks every row)."""
    from lmms_eval_autorater.generations.jsonl import read_generations

    return [
        make_doc(
            doc_id=row.id,
            task_kind="editing" if row.source else "generation",
            paradigm="pointwise",
            request=row.prompt,
            source_image=row.source,
            image_1=row.image,
            group=row.prompt,
            target=math.nan,  # no human score for the user's own images
        )
        for row in read_generations(path)
    ]


def generations_path(config) -> Path:
    """The generations file a task config names (``dataset_kwargs.data_files``, else ``metadata.generations``)."""
    kwargs = getattr(config, "dataset_kwargs", None) or {}
    metadata = getattr(config, "metadata", None) or {}
    value = kwargs.get("data_files") if isinstance(kwargs, dict) else None
    if value is None and isinstance(metadata, dict):
        value = metadata.get("generations")
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if isinstance(value, dict) and len(value) == 1:
        value = next(iter(value.values()))
    if not isinstance(value, str) or not value:
        raise DataError(
            f"task {getattr(config, 'task', '?')!r}: name the generations file in the YAML as "
            "dataset_kwargs: {data_files: gens.jsonl} (a path relative to the YAML's folder, or absolute)"
        )
    path = Path(value).expanduser()
    if not path.is_file():
        raise DataError(
            f"task {getattr(config, 'task', '?')!r}: generations file not found: {value} "
            "(a relative path is taken against the YAML's folder, so the file must exist there)"
        )
    return path


def metric_list() -> list[dict]:
    """lmms-eval's ``metric_list`` of a generations task, from ``GENERATION_METRICS`` (the template does not
    repeat it; a YAML that writes its own list keeps it)."""
    return [
        {"metric": n, "aggregation": globals()[f"agg_{n}"], "higher_is_better": n in HIGHER_IS_BETTER}
        for n in GENERATION_METRICS
    ]


class GenerationsTask(ConfigurableTask):
    """A ConfigurableTask whose docs come from the generations JSONL named in its YAML."""

    def __init__(self, config: dict | None = None, **kwargs) -> None:
        config = {k: v for k, v in (config or {}).items() if k != "class"}
        if not config.get("metric_list"):
            config["metric_list"] = metric_list()
        super().__init__(config=config, **kwargs)

    def download(self, dataset_kwargs=None) -> None:
        docs = generation_docs(generations_path(self.config))
        ds = datasets.Dataset.from_list(docs, features=FEATURES)
        self.dataset = datasets.DatasetDict({self.config.test_split: ds})
        self.dataset_no_image = self.dataset


def process_generation(doc: dict, results: Sequence[str]) -> dict:
    """lmms-eval ``process_results``: the doc's record (status, score) under every metric key."""
    from lmms_eval_autorater.judges.envelope import decode_output

    out = decode_output(results[0] if results else "", "pointwise")
    record = make_record(doc, "pointwise", out.status, out.value, out.meta)
    return {name: record for name in GENERATION_METRICS}


def _scores(records: list[dict]) -> list[float]:
    return [
        float(r["pred"])
        for r in records
        if r.get("status") == "ok" and r.get("pred") is not None and math.isfinite(float(r["pred"]))
    ]


def _count(records: list[dict], status: str) -> float:
    return float(sum(r.get("status") == status for r in records))


def _mean_ci(records: list[dict]) -> tuple[float, float, float]:
    from lmms_eval_autorater.generations.score import mean_ci

    return mean_ci(_scores(records), n_resamples=N_RESAMPLES, seed=0)


def agg_mean_score(records: list[dict]) -> float:
    """Mean Likert score (1..10) over the scored docs; nan when none is scored."""
    return _mean_ci(records)[0]


def agg_mean_score_ci_low(records: list[dict]) -> float:
    """Lower end of the 95% percentile-bootstrap CI of the mean score (1000 resamples, seed 0)."""
    return _mean_ci(records)[1]


def agg_mean_score_ci_high(records: list[dict]) -> float:
    """Upper end of the 95% percentile-bootstrap CI of the mean score."""
    return _mean_ci(records)[2]


def agg_n_scored(records: list[dict]) -> float:
    return float(len(_scores(records)))


def agg_input_errors(records: list[dict]) -> float:
    return _count(records, "input_error")


def agg_parse_failures(records: list[dict]) -> float:
    # status "ok" without a usable score is recorded as a parse failure by make_record
    return _count(records, "parse_failure")


def agg_api_failures(records: list[dict]) -> float:
    return _count(records, "api_error")


def agg_budget_skipped(records: list[dict]) -> float:
    return _count(records, "budget_skipped")


agg_cost_usd = pointwise_aggregation("cost_usd")
agg_prompt_tokens = pointwise_aggregation("prompt_tokens")
agg_completion_tokens = pointwise_aggregation("completion_tokens")
