# ---- guard: which copy of the package is tested ---------------------------------------------
# CI sets AUTORATER_EXPECT_INSTALLED=1 after installing the built wheel (not editable): the suite
# must then import that installed copy, never the checkout's src/, or a file missing from the
# wheel would go unnoticed. The pytest header names the copy under test in every run.
import os
from pathlib import Path

import pytest


def _tested_copy() -> Path:
    import lmms_eval_autorater

    return Path(lmms_eval_autorater.__file__).resolve().parent


def _is_installed(folder: Path) -> bool:
    return "site-packages" in folder.parts or "dist-packages" in folder.parts


# ---- isolation: the suite writes nothing outside its temporary folders ------------------------
# HOME, the XDG and Hugging Face caches and the plugin's own cache folder point into one temporary
# folder for the whole session (xdist workers inherit it from the controller's environment); the
# controller checks at the end that the real ~/.cache/lmms_eval_autorater gained nothing.
_ISOLATED = "AUTORATER_TEST_HOME"
_REAL_CACHE = Path.home() / ".cache" / "lmms_eval_autorater"


def _listing(folder: Path) -> set[str]:
    return {str(p) for p in folder.rglob("*")} if folder.is_dir() else set()


def _isolate(config) -> None:
    if os.environ.get(_ISOLATED):  # an xdist worker: the controller already did it
        return
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="autorater-test-home-"))
    config._autorater_home = home
    config._autorater_real_cache = _listing(_REAL_CACHE)
    os.environ[_ISOLATED] = str(home)
    os.environ["HOME"] = str(home)
    os.environ["XDG_CACHE_HOME"] = str(home / ".cache")
    os.environ["HF_HOME"] = str(home / ".cache" / "huggingface")
    os.environ["AUTORATER_CACHE_DIR"] = str(home / ".cache" / "lmms_eval_autorater")


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    if not hasattr(config, "_autorater_home"):
        return
    import shutil

    shutil.rmtree(config._autorater_home, ignore_errors=True)
    added = sorted(_listing(_REAL_CACHE) - config._autorater_real_cache)
    if added:
        print(f"\nthe suite wrote outside its temporary folders: {added[:5]}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_configure(config):
    _isolate(config)
    if os.environ.get("AUTORATER_EXPECT_INSTALLED") != "1":
        return
    folder = _tested_copy()
    if not _is_installed(folder):
        pytest.exit(
            f"AUTORATER_EXPECT_INSTALLED=1 but lmms_eval_autorater is imported from {folder}, "
            "not from a site-packages folder: the tests would run against the checkout instead of "
            "the installed wheel (an editable install, or the source folder first on sys.path). "
            "Install the wheel non-editable (pip install 'dist/<wheel>[all]') or unset the variable.",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


def pytest_report_header(config):
    folder = _tested_copy()
    kind = "installed copy" if _is_installed(folder) else "source checkout (not installed)"
    expect = os.environ.get("AUTORATER_EXPECT_INSTALLED") == "1"
    return f"lmms_eval_autorater under test: {folder} ({kind}; AUTORATER_EXPECT_INSTALLED={int(expect)})"


# ---- end of guard ----------------------------------------------------------------------------


# ---- shared fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The four small datasets under one AUTORATER_DATA_DIR, and their docs as the builders make them."""
    from tests.datafactory import standard_data

    root = standard_data(tmp_path_factory.mktemp("data"))
    old = os.environ.get("AUTORATER_DATA_DIR")
    os.environ["AUTORATER_DATA_DIR"] = str(root)
    try:
        from lmms_eval_autorater.tasks.catalog import PAPER_TASKS, build_docs

        docs = {task: build_docs(task) for task in PAPER_TASKS}
    finally:
        if old is None:
            del os.environ["AUTORATER_DATA_DIR"]
        else:
            os.environ["AUTORATER_DATA_DIR"] = old
    return root, docs


# ---- tiny random-weight models shared across test modules ----
# Built by the plain functions in tests/tinymodels.py (imported inside each fixture, so that importing this
# conftest stays light); used by test_specialists*.py and test_baselines_cli.py.


@pytest.fixture(scope="module")
def tiny_gd(tmp_path_factory) -> str:
    """A tiny random GroundingDINO model and processor saved to a folder; its path."""
    from tests.tinymodels import build_tiny_gd

    return build_tiny_gd(tmp_path_factory.mktemp("tiny_gd"))


@pytest.fixture(scope="module")
def tiny_pa(tmp_path_factory):
    """A tiny random UperNet + Swin model and the folder holding it as ``hf/``: ``(model, folder)``."""
    from tests.tinymodels import build_tiny_pa

    return build_tiny_pa(tmp_path_factory.mktemp("tiny_pa"))


@pytest.fixture(scope="module")
def qsit_tokenizer():
    """A tiny Qwen2-like byte-level tokenizer with the LLaVA-OneVision special tokens."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests.tinymodels import build_qsit_tokenizer

    return build_qsit_tokenizer()


@pytest.fixture(scope="module")
def qsit_folder(tmp_path_factory, qsit_tokenizer) -> str:
    """A tiny random Q-SiT (LLaVA-OneVision) model and processor saved to a folder; its path."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests.tinymodels import build_qsit_folder

    return build_qsit_folder(tmp_path_factory.mktemp("qsit"), qsit_tokenizer)


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
    """A tiny HF LLaVA model, its original-format checkpoints and their conversion (see build_llava)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests.tinymodels import build_llava

    return build_llava(tmp_path_factory.mktemp("llava"))
