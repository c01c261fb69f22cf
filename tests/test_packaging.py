"""What ships: the imported package, the wheel and the sdist hold every file of src/lmms_eval_autorater.

CI runs the suite against the installed wheel (AUTORATER_EXPECT_INSTALLED=1, see tests/conftest.py),
so the first test catches a file that did not make it into the installed copy. When the tests import
the checkout itself that test passes trivially (both folders are the same one); the slow tests build
the wheel and the sdist from a copy of the working tree and look inside, whichever copy is imported.
They build offline: no build isolation, the venv's setuptools and build (the dev extra).
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import lmms_eval_autorater

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "lmms_eval_autorater"
#: file kinds of the source tree that must ship (modules, task YAMLs, task READMEs)
SHIPPED_SUFFIXES = (".py", ".yaml", ".md")
#: never copied into the build folder: outputs of earlier builds (a stale build/lib would hide a
#: missing file), environments and caches
BUILD_COPY_SKIP = (".git", ".venv", "build", "dist", "results", "outputs", "wheels")
BUILD_COPY_SKIP_ANYWHERE = ("__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache", "*.pyc", "*.sqlite*")


def source_files() -> list[str]:
    """Paths (relative to the package folder, POSIX) of every shipped file of the source tree."""
    files = sorted(
        p.relative_to(SRC).as_posix()
        for p in SRC.rglob("*")
        if p.is_file() and p.suffix in SHIPPED_SUFFIXES and "__pycache__" not in p.parts
    )
    # guard against a glob that finds nothing, which would make every check below pass
    assert "__init__.py" in files and "tasks/psr/psr.yaml" in files and "tasks/psr/README.md" in files, files
    return files


def missing_message(what: str, missing: list[str], where: str) -> str:
    listing = "\n  ".join(missing)
    return f"{len(missing)} file(s) of the source tree missing from {what} ({where}):\n  {listing}"


def copy_build_inputs(dest: Path) -> Path:
    """The working tree without build outputs, environments or caches (a fresh clone's state)."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = set(shutil.ignore_patterns(*BUILD_COPY_SKIP_ANYWHERE)(folder, names))
        if Path(folder) == REPO:
            skipped |= {n for n in names if n in BUILD_COPY_SKIP}
        return skipped

    tree = dest / "tree"
    shutil.copytree(REPO, tree, ignore=ignore, symlinks=True)
    return tree


def run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    output = f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{output}"


def test_source_tree_is_in_the_imported_package():
    folder = Path(lmms_eval_autorater.__file__).resolve().parent
    missing = [f for f in source_files() if not (folder / f).is_file()]
    assert not missing, missing_message("the imported package", missing, str(folder))


def test_all_extra_holds_every_extra():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    extras = cfg["options.extras_require"]
    others = {name for name in extras if name != "all"}
    (requirement,) = [line.strip() for line in extras["all"].splitlines() if line.strip()]
    name, _, listed = requirement.partition("[")
    assert name == cfg["metadata"]["name"], requirement
    listed = {e.strip() for e in listed.rstrip("]").split(",")}
    assert listed == others, f"'all' lacks {sorted(others - listed)}, names unknown {sorted(listed - others)}"


@pytest.mark.slow
def test_wheel_holds_every_source_file_and_the_entry_points(tmp_path):
    tree = copy_build_inputs(tmp_path)
    out = tmp_path / "wheel"
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"]
        + ["-q", "-w", str(out), str(tree)],
        cwd=tmp_path,
    )
    (wheel,) = out.glob("lmms_eval_autorater-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        (entry_points_txt,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        entry_points = configparser.ConfigParser(delimiters=("=",))
        entry_points.read_string(zf.read(entry_points_txt).decode())

    missing = [f for f in source_files() if f"lmms_eval_autorater/{f}" not in names]
    assert not missing, missing_message("the wheel", missing, wheel.name)
    strays = sorted(n for n in names if not n.startswith(("lmms_eval_autorater/", "lmms_eval_autorater-")))
    assert not strays, f"the wheel holds files outside the package: {strays}"

    assert entry_points.has_section("lmms_eval.models"), f"no lmms_eval.models in {entry_points_txt}"
    assert entry_points.has_section("console_scripts"), f"no console_scripts in {entry_points_txt}"
    scripts = entry_points["console_scripts"]
    assert "lmms-eval-autorater" in scripts, f"no lmms-eval-autorater script: {dict(scripts)}"
    for target in [*entry_points["lmms_eval.models"].values(), scripts["lmms-eval-autorater"]]:
        module = target.strip().partition(":")[0]
        assert f"{module.replace('.', '/')}.py" in names, f"entry point {target!r}: module not in the wheel"


@pytest.mark.slow
def test_sdist_holds_every_source_file_and_the_build_files(tmp_path):
    tree = copy_build_inputs(tmp_path)
    out = tmp_path / "sdist"
    run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o", str(out), str(tree)], cwd=tmp_path)
    (sdist,) = out.glob("lmms_eval_autorater-*.tar.gz")
    with tarfile.open(sdist) as tf:
        root = sdist.name.removesuffix(".tar.gz")
        names = {m.name.removeprefix(f"{root}/") for m in tf.getmembers() if m.isfile()}

    expected = [f"src/lmms_eval_autorater/{f}" for f in source_files()]
    expected += ["README.md", "setup.cfg", "pyproject.toml"]
    missing = [f for f in expected if f not in names]
    assert not missing, missing_message("the sdist", missing, sdist.name)
