"""Download failures name what to do: the repo, the reason, ``$AUTORATER_DATA_DIR`` and the local layout.

The hub builders run in a subprocess with ``HF_HUB_OFFLINE=1`` and an empty ``HF_HOME`` (huggingface_hub
reads both at import), so nothing is cached and nothing goes to the network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from lmms_eval_autorater.tasks import common
from lmms_eval_autorater.tasks.aigiqa import utils as aigiqa
from lmms_eval_autorater.tasks.imagereward_pair import utils as imagereward_pair
from lmms_eval_autorater.tasks.psr import utils as psr

BUILDERS = {
    "imagereward_pair": ("lmms_eval_autorater.tasks.imagereward_pair.utils", imagereward_pair.HUB_REPO),
    "imagereward_point": ("lmms_eval_autorater.tasks.imagereward_point.utils", imagereward_pair.HUB_REPO),
    "aigiqa": ("lmms_eval_autorater.tasks.aigiqa.utils", aigiqa.HUB_CSV_REPO),
}
LAYOUTS = {
    "imagereward_pair": imagereward_pair.LAYOUT,
    "imagereward_point": imagereward_pair.LAYOUT,
    "aigiqa": aigiqa.LAYOUT,
    "psr": psr.LAYOUT,
}

SCRIPT = """
import importlib, json, sys
out = {}
for task, module in json.loads(sys.argv[1]).items():
    try:
        importlib.import_module(module).build_docs()
        out[task] = None
    except Exception as exc:
        out[task] = [type(exc).__name__, str(exc)]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def offline_errors(tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("hf_home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "MODELSCOPE"))}
    env.pop(common.DATA_ENV, None)
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(home), MODELSCOPE_CACHE=str(home / "modelscope"))
    modules = {task: module for task, (module, _) in BUILDERS.items()}
    modules["psr"] = "lmms_eval_autorater.tasks.psr.utils"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(modules)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _assert_names_the_documented_layout(first: str) -> None:
    """The line a command prints is whole: it names where the layout is documented, never ends with a colon."""
    assert f"); set {common.DATA_ENV} to a local copy laid out as in " in first, first
    readme = first.rsplit(" laid out as in ", 1)[1]
    assert readme.endswith("README.md") and Path(readme).is_file(), readme


@pytest.mark.parametrize("task", sorted(BUILDERS))
def test_offline_hub_failure_names_repo_env_and_layout(offline_errors, task):
    _, repo = BUILDERS[task]
    kind, message = offline_errors[task]
    assert kind == "DataError", message
    first = message.splitlines()[0]
    assert first.startswith(f"cannot download {repo} from the Hugging Face hub (")
    _assert_names_the_documented_layout(first)
    assert "LocalEntryNotFoundError" in first or "OfflineModeIsEnabled" in first, first  # the short reason
    assert message.endswith("\n" + LAYOUTS[task])


def test_psr_without_data_dir_names_env_and_layout(offline_errors):
    kind, message = offline_errors["psr"]
    assert kind == "DataError"
    assert message.splitlines()[0].startswith(f"{common.DATA_ENV} is not set.")
    assert (
        f"set {common.DATA_ENV} to a folder holding psr/ laid out as in {common.task_readme('psr')}"
        in message
    )
    assert message.endswith("\n" + psr.LAYOUT)


def test_hub_snapshot_requires_a_layout():
    with pytest.raises(TypeError, match="layout"):
        common.hub_snapshot("org/repo", allow_patterns=["x"])


@pytest.fixture
def csvs_from_hub(monkeypatch, tmp_path):
    """The AIGIQA csv step succeeding, so that the build reaches the ModelScope images."""
    monkeypatch.delenv(common.DATA_ENV, raising=False)
    monkeypatch.setattr(aigiqa, "hub_snapshot", lambda *args, **kwargs: tmp_path)


def _assert_modelscope_message(message: str, reason: str) -> None:
    first = message.splitlines()[0]
    assert first.startswith(f"cannot download {aigiqa.MODELSCOPE_IMAGES} from ModelScope (")
    assert reason in first
    _assert_names_the_documented_layout(first)
    assert message.endswith("\n" + aigiqa.LAYOUT)


def test_aigiqa_without_modelscope_names_the_extra_env_and_layout(csvs_from_hub, monkeypatch):
    for name in ("modelscope", "modelscope.hub", "modelscope.hub.snapshot_download"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    with pytest.raises(common.DataError) as err:
        aigiqa.build_docs()
    _assert_modelscope_message(str(err.value), "pip install 'lmms-eval-autorater[data]'")
    assert isinstance(err.value.__cause__, ImportError)


def test_aigiqa_modelscope_download_failure_names_repo_env_and_layout(csvs_from_hub, monkeypatch):
    def snapshot_download(*args, **kwargs):
        raise ConnectionError("[E1020] Connection failed: Failed to resolve 'modelscope.cn'\nmore detail")

    fake = types.ModuleType("modelscope.hub.snapshot_download")
    fake.snapshot_download = snapshot_download
    monkeypatch.setitem(sys.modules, "modelscope.hub.snapshot_download", fake)
    with pytest.raises(common.DataError) as err:
        aigiqa.build_docs()
    message = str(err.value)
    _assert_modelscope_message(message, "ConnectionError: [E1020] Connection failed")
    assert "more detail" not in message  # only the short reason; the full error is the __cause__
    assert isinstance(err.value.__cause__, ConnectionError)
