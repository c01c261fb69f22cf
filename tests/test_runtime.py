"""The ground floor's shared rules: runtime (device, dtype, offline) and the vocabulary of statuses and counts."""

from __future__ import annotations

import pytest
import torch

from lmms_eval_autorater import runtime
from lmms_eval_autorater.vocabulary import (
    COUNT_METRICS,
    FAILURE_STATUSES,
    PAIRWISE_METRICS,
    POINTWISE_METRICS,
    STATUSES,
    count_statuses,
)


@pytest.mark.parametrize(
    ("hub", "transformers", "expected"),
    [
        (None, None, False),
        ("1", None, True),
        ("ON", None, True),
        (" yes ", None, True),
        ("True", None, True),
        ("0", None, False),
        ("false", None, False),
        (None, "1", True),
        (
            "",
            "on",
            True,
        ),  # an empty HF_HUB_OFFLINE falls through to TRANSFORMERS_OFFLINE, as huggingface_hub does
        ("0", "1", False),  # a set HF_HUB_OFFLINE wins, as huggingface_hub reads it
        (None, "no", False),
    ],
)
def test_hf_offline_reads_the_variables_as_huggingface_hub(monkeypatch, hub, transformers, expected):
    for name, value in (("HF_HUB_OFFLINE", hub), ("TRANSFORMERS_OFFLINE", transformers)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert runtime.hf_offline() is expected


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when this returns: a connection is refused


def test_local_files_only_explicit_then_offline_then_folder(monkeypatch, tmp_path):
    import socket

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(k, raising=False)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{listener.getsockname()[1]}")  # a reachable hub
    monkeypatch.setattr(runtime, "_hub_probe", None)
    assert runtime.hub_unreachable_reason() is None
    assert runtime.local_files_only("org/model") is False
    listener.close()
    assert runtime.local_files_only(tmp_path) is True  # an existing folder
    assert runtime.local_files_only(tmp_path, False) is False  # explicit wins
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert runtime.local_files_only("org/model") is True
    assert runtime.local_files_only("org/model", False) is False


def test_an_unreachable_hub_means_local_files_only_with_the_reason(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(k, raising=False)
    port = _closed_port()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(runtime, "_hub_probe", None)
    assert runtime.local_files_only("org/model") is True
    assert runtime.hub_unreachable_reason().startswith(f"unreachable (127.0.0.1:{port}: ")
    err = runtime.checkpoint_unavailable("org/model", "gd_model", "specialist GD")
    [line] = str(err).splitlines()
    assert line.startswith(
        "specialist GD: gd_model='org/model' is not in the local Hugging Face cache and the hub"
    )
    assert line.endswith("pass gd_model=<that folder>")


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("float16", torch.float16),
        ("torch.bfloat16", torch.bfloat16),
        ("bf16", torch.bfloat16),
        ("fp16", torch.float16),
        ("half", torch.float16),
        ("fp32", torch.float32),
        (torch.float64, torch.float64),
    ],
)
def test_resolve_dtype_names(arg, expected):
    assert runtime.resolve_dtype(arg, "cpu") is expected
    assert runtime.resolve_dtype(arg, "cuda") is expected  # a named dtype is kept on any device


def test_resolve_dtype_auto_on_cpu_and_errors():
    for arg in (None, "auto"):
        assert runtime.resolve_dtype(arg, "cpu") is torch.float32
        assert runtime.resolve_dtype(arg, "cpu", training=True) is torch.float32
    with pytest.raises(ValueError, match="not a torch dtype: 'float17'"):
        runtime.resolve_dtype("float17", "cpu")
    with pytest.raises(ValueError, match="not a torch dtype: 'Tensor'"):
        runtime.resolve_dtype("Tensor", "cpu")  # an attribute of torch that is not a dtype


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_resolve_dtype_auto_on_cuda():
    bf16 = torch.cuda.is_bf16_supported()
    assert runtime.resolve_dtype("auto", "cuda") is (torch.bfloat16 if bf16 else torch.float16)
    assert runtime.resolve_dtype(None, "cuda:0", training=True) is (torch.bfloat16 if bf16 else torch.float32)


def test_default_device():
    assert runtime.default_device("cpu") == "cpu" and runtime.default_device("cuda:1") == "cuda:1"
    assert runtime.default_device(None) == ("cuda" if torch.cuda.is_available() else "cpu")


def test_one_vocabulary_is_what_every_floor_uses():
    from lmms_eval_autorater.generations import arena, score
    from lmms_eval_autorater.metrics import summary
    from lmms_eval_autorater.tasks import common

    assert summary.STATUSES is STATUSES and common.COUNT_METRICS is COUNT_METRICS
    assert common.PAIRWISE_METRICS is PAIRWISE_METRICS and common.POINTWISE_METRICS is POINTWISE_METRICS
    assert set(FAILURE_STATUSES) == set(STATUSES) - {"ok", "budget_skipped"}
    assert arena.PairTally(0, 1).failures == {"input_error": 0, "parse_failure": 0, "api_error": 0}
    rows = [
        {"status": s, "score": 5 if s == "ok" else None} for s in ("ok", "ok", "budget_skipped", "api_error")
    ]
    s = score.summarize(rows, n_resamples=10)
    assert (
        s["n_scored"],
        s["input_errors"],
        s["parse_failures"],
        s["api_failures"],
        s["budget_skipped"],
    ) == (
        2,
        0,
        0,
        1,
        1,
    )
    assert count_statuses(["parse_failure", "ok", "input_error", "parse_failure"]) == {
        "input_errors": 1,
        "parse_failures": 2,
        "api_failures": 0,
        "budget_skipped": 0,
    }
    with pytest.raises(ValueError, match="unknown status 'fine'"):
        count_statuses(["fine"])


def test_task_metric_lists_come_from_the_vocabulary():
    """Every task's metric_list (filled by the task class, not written in the YAMLs) in vocabulary order."""

    from lmms_eval_autorater.tasks import common
    from lmms_eval_autorater.tasks.catalog import TASKS

    for paradigm, names in (("pairwise", PAIRWISE_METRICS), ("pointwise", POINTWISE_METRICS)):
        listed = common.metric_list(paradigm)
        assert [m["metric"] for m in listed] == list(names)
        better = {m["metric"] for m in listed if m["higher_is_better"]}
        head = {"pairwise": {"accuracy", "accuracy_ci_low", "accuracy_ci_high", "tie_accuracy"}}.get(
            paradigm,
            {"pearson", "pearson_ci_low", "pearson_ci_high", "spearman", "kendall"}
            | {"spearman_ci_low", "spearman_ci_high", "kendall_ci_low", "kendall_ci_high"}
            | {"plcc_logistic", "plcc_logistic_ci_low", "plcc_logistic_ci_high"},
        )
        assert better == head | {"n_scored"}
    from pathlib import Path

    folder = Path(common.__file__).parent
    for name, info in TASKS.items():
        text = (folder / name / f"{name}.yaml").read_text()
        assert "metric_list" not in text and f"include: ../_{info.template}.yaml" in text
        assert info.template == info.paradigm or info.rule in ("genaibench", "editreward")
