"""Issue 16 item 7: a baseline score that is NaN or infinite is a counted failure of that doc, never a tie.

No tiny checkpoint gives NaN for chosen docs, so the baseline wrapper's real scoring path
(``BaselineScorerModel.generate_until``, then the tasks' own ``process_results`` and aggregation) runs
with a scorer that returns NaN or +-inf for chosen images and a finite score, known to the test, elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import math

from lmms_eval.api.instance import Instance

from lmms_eval_autorater.models.baseline_models import BaselineScorerModel
from lmms_eval_autorater.tasks import common


def finite(ref: str) -> float:
    """The test's own score of an image: a number from its path's hash."""
    return int(hashlib.sha256(ref.encode()).hexdigest()[:6], 16) / 1e3


class ChosenScorer:
    """Scores every image by ``finite``, except the images in ``special`` (ref -> NaN or +-inf)."""

    def __init__(self, special: dict[str, float]):
        self.special = special

    def score(self, prompts: list[str], images: list[str]) -> list[float]:
        return [self.special.get(ref, finite(ref)) for ref in images]


def run(task: str, docs: list[dict], special: dict[str, float]) -> tuple[list[dict], dict]:
    """The envelopes of ``docs`` through the wrapper, and the task's count metrics."""

    class Model(BaselineScorerModel):
        NAME = "chosen"

        def build_scorer(self):
            return ChosenScorer(special)

    model = Model()
    model.task_dict = {task: {"test": docs}}
    reqs = [
        Instance(
            "generate_until",
            ("", {}, None, i, task, "test"),
            idx=0,
            metadata={"task": task, "doc_id": i, "repeats": 1},
            doc=doc,
        )
        for i, doc in enumerate(docs)
    ]
    outs = model.generate_until(reqs)
    paradigm = docs[0]["paradigm"]
    process = common.process_pairwise if paradigm == "pairwise" else common.process_pointwise
    agg = common.pairwise_aggregation if paradigm == "pairwise" else common.pointwise_aggregation
    names = common.PAIRWISE_METRICS if paradigm == "pairwise" else common.POINTWISE_METRICS
    records = [process(doc, [out])[names[0]] for doc, out in zip(docs, outs)]
    counts = {name: agg(name)(records) for name in common.COUNT_METRICS if name in names}
    return [json.loads(o) for o in outs], counts


def test_nonfinite_pairwise_scores_are_failures_not_ties(data):
    docs = data[1]["imagereward_pair"]
    assert len(docs) >= 6
    nan, inf = float("nan"), float("inf")
    special = {
        docs[0]["image_1"]: nan,  # NaN against a number: compares false both ways, would be a tie
        docs[1]["image_2"]: inf,  # +inf would win
        docs[2]["image_1"]: -inf,
    }
    special.setdefault(docs[3]["image_1"], inf)  # +inf against +inf: equal, would be a tie
    special.setdefault(docs[3]["image_2"], inf)
    failed = {i for i, d in enumerate(docs) if d["image_1"] in special or d["image_2"] in special}
    assert {0, 1, 2, 3} <= failed and len(failed) < len(docs)
    envelopes, counts = run("imagereward_pair", docs, special)
    for i, (doc, env) in enumerate(zip(docs, envelopes)):
        if i in failed:
            assert env["status"] == "parse_failure" and env["value"] is None, env
            assert f"doc {doc['doc_id']!r}" in env["error"] and "non-finite score" in env["error"], env
        else:
            a, b = finite(doc["image_1"]), finite(doc["image_2"])
            assert env["status"] == "ok" and env["value"] == (1 if a > b else 2 if b > a else 0), env
    assert counts["parse_failures"] == len(failed)
    assert counts["n_scored"] == len(docs) - len(failed)
    assert counts["input_errors"] == 0 and counts["api_failures"] == 0


def test_nonfinite_pointwise_scores_are_failures_not_numbers(data):
    docs = data[1]["imagereward_point"]
    special = {docs[0]["image_1"]: float("nan"), docs[1]["image_1"]: float("-inf")}
    envelopes, counts = run("imagereward_point", docs, special)
    assert [e["status"] for e in envelopes[:2]] == ["parse_failure"] * 2
    assert all(e["value"] is None for e in envelopes[:2])
    assert [e["value"] for e in envelopes[2:]] == [finite(d["image_1"]) for d in docs[2:]]
    assert all(math.isfinite(e["value"]) for e in envelopes[2:])
    assert (counts["parse_failures"], counts["n_scored"]) == (2, len(docs) - 2)
