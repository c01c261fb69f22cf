"""Grid search over specialist subsets: subset counts, ranked table, one specialist run per input, free rerun."""

from __future__ import annotations

import json

import pytest

from lmms_eval_autorater.experiments import grid
from lmms_eval_autorater.experiments.grid import OPTIMISTIC, halving_schedule, run_grid, split_docs, subsets
from lmms_eval_autorater.judges.factory import build_judge
from lmms_eval_autorater.specialists.cache import AssessmentCache, SpecialistPool
from lmms_eval_autorater.specialists.registry import applicable
from lmms_eval_autorater.tasks.common import make_record
from tests import fakes
from tests.datafactory import standard_data
from tests.openai_server import OpenAIServer, prompt_text


def test_subset_counts_match_the_paper():
    assert len(subsets(applicable("editing"))) == 41
    assert len(subsets(applicable("generation"))) == 14
    assert subsets(["A", "B"], 2) == [("A",), ("B",), ("A", "B")]
    with pytest.raises(ValueError, match="unknown task 'mmmu'"):
        run_grid(None, "mmmu")


def make_model(server, tmp_path):
    pool = SpecialistPool(
        cache=AssessmentCache(tmp_path / "cache" / "assessments.sqlite"), factory=fakes.fake_factory
    )
    return build_judge(
        "autorater_openai",
        {"base_url": server.url, "model": "judge", "cache_dir": str(tmp_path / "cache"), "concurrency": 4},
        pool=pool,
        progress=False,
    )


def psr_docs(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTORATER_DATA_DIR", str(standard_data(tmp_path / "data")))
    from lmms_eval_autorater.tasks.psr.utils import build_docs

    return build_docs()


def test_grid_ranks_subsets_and_reruns_for_free(tmp_path, monkeypatch):
    docs = psr_docs(tmp_path, monkeypatch)
    labels = {d["request"]: d["label"] for d in docs}

    def responder(req):  # right whenever Q-SiT evidence is in the prompt, wrong otherwise
        text = prompt_text(req)
        label = next(lab for r, lab in labels.items() if f"Edit request: {r}" in text)
        return json.dumps({"analysis": "x", "preferred": label if "Q-SiT" in text else 3 - label})

    fakes.CALLS.clear()
    with OpenAIServer(responder) as server:
        result = run_grid(make_model(server, tmp_path), "psr", docs=docs, n_resamples=200)
        cold_requests = server.request_count
        again = run_grid(make_model(server, tmp_path), "psr", docs=docs, n_resamples=200)
        assert server.request_count == cold_requests  # the rerun makes no judge call
    assert len(result.rows) == 41 and cold_requests == 41 * len(docs)
    # every specialist ran exactly once per unique input, never once per subset
    assert (
        result.specialist_invocations
        == result.unique_inputs
        == {c: 2 * len(docs) for c in applicable("editing")}
    )
    assert dict(fakes.CALLS) == result.specialist_invocations
    assert (
        again.specialist_invocations == {}
        and again.judge_calls == 0
        and again.judge_cache_hits == 41 * len(docs)
    )
    with_qs = [r for r in result.rows if "QS" in r.subset]
    assert all(r.metric == 1.0 for r in with_qs) and result.rows[: len(with_qs)] == with_qs
    assert all(r.metric == 0.0 for r in result.rows[len(with_qs) :])
    # the 26 subsets with QS are identical: all tied with the best (none starred arbitrarily); the rest are behind
    assert [r.tied for r in result.rows] == [True] * len(with_qs) + [False] * (41 - len(with_qs))
    assert result.tied_with_best == [r.subset for r in with_qs]
    assert all(r.diff_to_best == -1.0 and r.diff_ci_high == -1.0 for r in result.rows[len(with_qs) :])
    table = result.table()
    assert table.splitlines()[2].startswith("=   1  QS") and "*" not in table.splitlines()[2][:2]
    assert f"= {len(with_qs)} subsets tied with the best" in table
    assert [r.subset for r in again.rows] == [r.subset for r in result.rows]


def test_grid_cli_on_generation_task(tmp_path, monkeypatch, capsys):
    from lmms_eval_autorater import cli

    monkeypatch.setenv("AUTORATER_DATA_DIR", str(standard_data(tmp_path / "data")))
    with OpenAIServer() as server:
        monkeypatch.setattr(
            "lmms_eval_autorater.judges.factory.build_pool",
            lambda cfg: SpecialistPool(
                cache=AssessmentCache(tmp_path / "a.sqlite"), factory=fakes.fake_factory
            ),
        )
        out = tmp_path / "grid.json"
        rc = cli.main(
            [
                "grid",
                "--model",
                "autorater_openai",
                "--model_args",
                f"base_url={server.url},model=judge,cache_dir={tmp_path / 'c'}",
                "--task",
                "imagereward_pair",
                "--n_resamples",
                "100",
                "--output",
                str(out),
            ]
        )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "grid search on imagereward_pair: 14 subsets" in printed
    saved = json.loads(out.read_text())
    assert len(saved["rows"]) == 14 and saved["best"] == saved["rows"][0]["subset"]
    rc = cli.main(
        [
            "grid",
            "--model",
            "autorater_openai",
            "--model_args",
            "base_url=x,model=y,tools=all",
            "--task",
            "psr",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and err == [
        "lmms-eval-autorater grid: error: --model_args must not set tools: the grid chooses the subsets"
    ]


def test_grid_cli_failures_are_one_line(tmp_path, monkeypatch, capsys):
    """A missing key, a bad argument or missing data: exit 1 and one line naming the cause (traceback with --debug)."""
    from lmms_eval_autorater import cli

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("AUTORATER_DATA_DIR", str(tmp_path / "nothing"))
    rc = cli.main(["grid", "--model", "autorater_gpt4o", "--task", "psr"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "$OPENAI_API_KEY is not set" in err[0], err
    rc = cli.main(
        [
            "grid",
            "--model",
            "autorater_openai",
            "--model_args",
            "base_url=x,model=y,concurency=3",
            "--task",
            "psr",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "unknown model argument(s) concurency" in err[0], err
    args = [
        "grid",
        "--model",
        "autorater_openai",
        "--model_args",
        f"base_url=x,model=y,cache_dir={tmp_path}",
        "--task",
        "psr",
    ]
    rc = cli.main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "DataError" in err[0] and "psr" in err[0], err
    rc = cli.main(["--debug", *args])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback (most recent call last)" in err


# -- halving, held-out selection, ties ---------------------------------------------------------------

BEST = frozenset({"AE", "QS"})


def _quality(shown: frozenset) -> float:
    """Right on every doc with exactly AE+QS, on 90% with one more beside them, on the easy third or less
    otherwise: a unique best, two close seconds that small samples cannot tell from it, and the rest."""
    if shown == BEST:
        return 1.0
    return 0.9 if shown > BEST else 0.1 + 0.1 * len(shown & BEST) + 0.05 * ("GD" in shown)


def _one_pair_prompts(tmp_path, monkeypatch, n: int) -> list[dict]:
    from tests.datafactory import make_imagereward

    prompts = [
        {
            "id": f"p{k}",
            "prompt": f"prompt number {k}",
            "ranks": [1, 2] if k % 2 else [2, 1],
            "ratings": [5, 3],
        }
        for k in range(n)
    ]
    make_imagereward(tmp_path / "data", prompts)
    monkeypatch.setenv("AUTORATER_DATA_DIR", str(tmp_path / "data"))
    from lmms_eval_autorater.tasks.imagereward_pair.utils import build_docs

    return build_docs()


def _rule_server(docs):
    import re

    labels = {d["request"]: d["label"] for d in docs}
    request = re.compile(r"^Request: (.*)$", re.M)

    def label_of(text):
        key = request.search(text).group(1)
        return key, labels[key]

    return OpenAIServer(fakes.subset_rule_responder(label_of, _quality))


def test_halving_finds_the_exhaustive_winner_with_a_third_of_the_calls(tmp_path, monkeypatch):
    docs = _one_pair_prompts(tmp_path, monkeypatch, 18)
    with _rule_server(docs) as server:
        model = make_model(server, tmp_path)
        halving = run_grid(
            model, "imagereward_pair", docs=docs, strategy="halving", min_groups=2, n_resamples=200
        )
        halving_calls = server.request_count
        exhaustive = run_grid(
            make_model(server, tmp_path),
            "imagereward_pair",
            docs=docs,
            strategy="exhaustive",
            n_resamples=200,
        )
        rest = server.request_count - halving_calls
    n_pairs = 14 * len(docs)  # what the exhaustive grid asks on a cold cache: every (subset, doc) once
    assert halving.best.subset == exhaustive.best.subset == ("AE", "QS")
    assert halving.best.metric == exhaustive.best.metric == 1.0 and halving.best.n_docs == len(docs)
    assert halving_calls <= n_pairs / 3, (halving_calls, n_pairs)
    # the cache: the exhaustive grid after halving pays exactly for what halving did not ask
    assert rest == n_pairs - halving_calls and exhaustive.judge_cache_hits == halving_calls
    # per-round calls are the completer's counts and add up to what the server saw
    assert sum(st.judge_calls for st in halving.rounds) == halving.judge_calls == halving_calls
    assert [(st.subsets, st.kept, st.n_docs) for st in halving.rounds] == [(14, 5, 2), (5, 2, 6), (2, 2, 18)]
    assert len(halving.rows) == 14 and {r.subset for r in halving.rows} == {r.subset for r in exhaustive.rows}
    # the unique best by metric; only the two close seconds can be within noise of it, never the rest
    close = {("GD", "AE", "QS"), ("AE", "PA", "QS")}
    assert exhaustive.rows[1].metric < 1.0 and {r.subset for r in exhaustive.rows[1:3]} == close
    assert set(exhaustive.tied_with_best[1:]) <= close and not any(r.tied for r in exhaustive.rows[3:])
    assert all(r.diff_ci_high < 0 for r in exhaustive.rows[3:])
    mark = "=" if exhaustive.tied_with_best else "*"
    assert exhaustive.table().splitlines()[2].startswith(f"{mark}   1  AE+QS")
    assert exhaustive.label == OPTIMISTIC and exhaustive.to_json()["label"] == OPTIMISTIC


def test_select_on_reports_on_other_prompts_and_keeps_the_optimistic_number(tmp_path, monkeypatch, capsys):
    from lmms_eval_autorater import cli
    from tests.datafactory import make_imagereward

    monkeypatch.setenv("AUTORATER_DATA_DIR", str(standard_data(tmp_path / "data")))
    from lmms_eval_autorater.tasks.imagereward_pair.utils import build_docs

    docs = {d["doc_id"]: d for d in build_docs()}
    monkeypatch.setattr(
        "lmms_eval_autorater.judges.factory.build_pool",
        lambda cfg: SpecialistPool(cache=AssessmentCache(tmp_path / "a.sqlite"), factory=fakes.fake_factory),
    )
    # a judge that ignores the evidence: every subset gets the same metric
    with OpenAIServer(lambda req: json.dumps({"analysis": "x", "preferred": 1})) as server:
        out = tmp_path / "grid.json"
        args = ["grid", "--model", "autorater_openai", "--task", "imagereward_pair", "--n_resamples", "100"]
        args += ["--model_args", f"base_url={server.url},model=judge,cache_dir={tmp_path / 'c'}"]
        rc = cli.main([*args, "--select_on", "0.5", "--seed", "1", "--output", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0
    saved = json.loads(out.read_text())
    sel, rep = saved["split"]["selection_doc_ids"], saved["split"]["report_doc_ids"]
    assert sel and rep and not set(sel) & set(rep) and set(sel) | set(rep) == set(docs)
    assert not {docs[i]["group"] for i in sel} & {
        docs[i]["group"] for i in rep
    }  # a prompt's pairs go together
    held = saved["held_out"]
    assert held["n_docs"] == len(rep) and saved["n_docs"] == len(sel)
    assert held["metric"] == sum(docs[i]["label"] == 1 for i in rep) / len(
        rep
    )  # "always 1" on the report part
    assert saved["optimistic"]["label"] == OPTIMISTIC == "optimistic: selected on the data it reports"
    assert saved["optimistic"]["n_docs"] == len(rep) and saved["label"] == "selection part"
    assert saved["selection_bias"]["diff"] == 0.0 and saved["selection_bias"]["within_noise"]
    # identical metrics: all 14 tied with the best, none starred
    assert len(saved["tied_with_best"]) == 14 and all(r["tied"] for r in saved["rows"])
    lines = printed.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("grid search on imagereward_pair"))
    rows = lines[top + 2 : top + 16]
    assert len(rows) == 14 and all(line.startswith("=") for line in rows)
    assert f"{OPTIMISTIC} (the report part)" in printed and "reported on the other" in printed
    # a validation split (other prompts): chosen there, reported on the test split
    val = make_imagereward(
        tmp_path / "val", [{"id": "v1", "prompt": "a green cone", "ranks": [1, 2, 3], "ratings": [5, 3, 1]}]
    )
    (val / "metadata-test.parquet").rename(
        tmp_path / "data" / "ImageRewardDB" / "metadata-validation.parquet"
    )
    (val / "images" / "test").rename(tmp_path / "data" / "ImageRewardDB" / "images" / "validation")
    # the same server address as the first run: autorater_openai's cache key holds the server's URL
    port = int(args[-1].split("base_url=http://127.0.0.1:")[1].split("/")[0])
    with OpenAIServer(lambda req: json.dumps({"analysis": "x", "preferred": 1}), port=port) as server:
        args[-1] = f"base_url={server.url},model=judge,cache_dir={tmp_path / 'c'}"
        rc = cli.main([*args, "--select_on", "validation", "--output", str(out)])
        assert rc == 0 and server.request_count == 14 * 3  # the test split's answers are in the cache
    saved = json.loads(out.read_text())
    assert saved["split"]["select_on"] == "the validation split" and saved["n_docs"] == 3
    assert saved["held_out"]["n_docs"] == len(docs) and saved["optimistic"]["n_docs"] == len(docs)
    capsys.readouterr()
    rc = cli.main(
        ["grid", "--model", "autorater_openai", "--model_args", "base_url=x,model=y"]
        + ["--task", "psr", "--select_on", "validation"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        rc == 1 and len(err) == 1 and "--select_on validation: task 'psr' has no split 'validation'" in err[0]
    )


def test_split_and_schedule():
    docs = [{"doc_id": i, "group": f"g{i // 3}"} for i in range(30)]
    sel, rep = split_docs(docs, 0.3, seed=4)
    assert len(sel) == 9 and len(rep) == 21 and sorted(sel + rep) == list(range(30))
    assert not {docs[i]["group"] for i in sel} & {docs[i]["group"] for i in rep}
    assert split_docs(docs, 0.3, seed=4) == (sel, rep) != split_docs(docs, 0.3, seed=5)
    with pytest.raises(ValueError, match="at least 2 groups"):
        split_docs(docs[:3], 0.5)
    assert halving_schedule(41, 466, 3, 8) == [18, 52, 156, 466]
    assert halving_schedule(14, 27, 3, 3) == [3, 9, 27]
    assert halving_schedule(14, 5, 3, 8) == [5, 5, 5]


class _RuleEvaluator(grid._Evaluator):
    """The grid's evaluator over synthetic verdicts (no judge, no server): ``right(subset, doc index)``."""

    def __init__(self, n: int, codes: list[str], right) -> None:
        self.task, self.paradigm, self.n_resamples, self.seed = "psr", "pairwise", 200, 0
        self.docs = [{"doc_id": i, "group": f"set{i}", "label": 1} for i in range(n)]
        self.good, self.codes, self.memo, self.right, self.asked = [True] * n, codes, {}, right, 0

    def calls(self):
        return self.asked, 0

    def records(self, subset, idx):
        for i in idx:
            if (subset, i) not in self.memo:
                self.asked += 1
                pred = 1 if self.right(subset, i) else 2
                self.memo[(subset, i)] = make_record(self.docs[i], "pairwise", "ok", pred)
        return [self.memo[(subset, i)] for i in idx]


def test_halving_stops_early_once_the_best_is_ahead_by_more_than_the_cis():
    codes = applicable("editing")
    best = ("QS", "DF")
    ev = _RuleEvaluator(60, codes, lambda s, i: s == best or i % 5 < 2)  # the rest: right on 40%
    rows, rounds = grid._search(ev, list(range(60)), "halving", max_size=3, eta=3, min_groups=8)
    assert [(st.subsets, st.kept, st.n_groups) for st in rounds] == [
        (41, 14, 8),
        (14, 5, 8),
        (5, 1, 20),
        (1, 1, 60),
    ]
    assert (
        rounds[2].note == "the best is ahead of the rest by more than their CIs"
        and grid.EARLY_STOP_MIN_GROUPS == 20
    )
    assert rounds[3].note == "the winner on all docs" and rounds[3].judge_calls == 40
    assert ev.asked == sum(st.judge_calls for st in rounds) == 41 * 8 + 5 * 12 + 40 < 41 * 60 / 5
    assert rows[0].subset == best and rows[0].n_docs == 60 and rows[0].metric == 1.0 and rows[0].round == 3
    assert all(r.round < 3 and r.n_docs <= 20 for r in rows[1:]) and len(rows) == 41
    # on 8 sets nothing is certain: no early stop there even with a perfect best
    assert rounds[0].note == rounds[1].note == ""


@pytest.mark.parametrize(
    "task", ["genaibench_gen", "editreward_bench_2", "editreward_bench_3", "editreward_bench_4"]
)
def test_grid_refuses_tasks_not_scored_by_the_paradigm_headline(task, capsys):
    """GenAI-Bench's four labels and EditReward-Bench's rule are not the accuracy grid ranks by: refused, one line."""
    from lmms_eval_autorater import cli

    rc = cli.main(["grid", "--model", "autorater_openai", "--task", task])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and f"got {task!r}" in err[0] and "mmrb2_edit" in err[0], err
