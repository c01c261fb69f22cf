"""The task-folder hook of ``registry``: lmms-eval's real ``TaskManager``, real YAML folders, no mocks.

lmms-eval 0.7.3 has no task entry point, so ``registry.add_task_dir_to_lmms_eval`` wraps
``TaskManager.initialize_tasks``. Each test starts from the unwrapped original (``fresh``) and
monkeypatch puts the process-wide wrapper back afterwards.
"""

from __future__ import annotations

import inspect
import os
from importlib.metadata import entry_points
from pathlib import Path

import lmms_eval.models  # noqa: F401  (runs the entry points and lmms-eval's logger.remove() before our sinks)
import pytest
from lmms_eval.tasks import TaskManager
from loguru import logger

from lmms_eval_autorater import registry

ORIGINAL = inspect.unwrap(TaskManager.initialize_tasks)
OURS = set(registry.TASK_NAMES)


def real(path) -> str:
    return os.path.realpath(os.fspath(path))


@pytest.fixture
def fresh(monkeypatch):
    """lmms-eval's TaskManager as shipped, our once-per-process warning state cleared."""
    monkeypatch.setattr(TaskManager, "initialize_tasks", ORIGINAL)
    monkeypatch.setattr(TaskManager, registry._PATCH_FLAG, False, raising=False)
    monkeypatch.setattr(registry, "_fallback_warned", False)
    monkeypatch.setattr(registry, "_shadow_warned", set())
    monkeypatch.delenv("AUTORATER_NO_TASK_AUTOLOAD", raising=False)


@pytest.fixture
def warnings_logged():
    """Our plugin's loguru warnings, as message strings."""
    messages: list[str] = []
    sink = logger.add(
        lambda message: messages.append(message.record["message"]),
        level="WARNING",
        filter=lambda record: record["message"].startswith("lmms-eval-autorater"),
    )
    yield messages
    logger.remove(sink)


@pytest.fixture
def walked(monkeypatch):
    """The folders lmms-eval walks, in order (a pass-through spy on its real per-folder indexer)."""
    folders: list[str] = []
    indexer = TaskManager._get_task_and_group

    def spy(self, task_dir):
        folders.append(task_dir)
        return indexer(self, task_dir)

    monkeypatch.setattr(TaskManager, "_get_task_and_group", spy)
    return folders


def task_folder(root: Path, name: str, body: str = "") -> Path:
    """A one-task include folder: ``root/<name>/<name>.yaml``."""
    (root / name).mkdir(parents=True)
    (root / name / f"{name}.yaml").write_text(
        f"task: {name}\ndataset_path: nowhere\ntest_split: test\noutput_type: generate_until\n{body}"
    )
    return root


def assert_all_ours(index: dict, names=OURS) -> None:
    for name in names:
        path = index[name]["yaml_path"]
        assert real(path).startswith(real(registry.TASKS_DIR) + os.sep), (name, path)


def test_initialize_tasks_signature_is_what_we_wrap():
    params = [(p.name, p.kind, p.default) for p in inspect.signature(ORIGINAL).parameters.values()]
    pok = inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert params == [
        ("self", pok, inspect.Parameter.empty),
        ("include_path", pok, None),
        ("include_defaults", pok, True),
    ], (
        f"lmms-eval's TaskManager.initialize_tasks{inspect.signature(ORIGINAL)} is no longer "
        "(self, include_path=None, include_defaults=True): re-check registry.add_task_dir_to_lmms_eval"
    )


def test_entry_point_patches_once_and_keeps_the_signature(fresh):
    (ep,) = [e for e in entry_points(group="lmms_eval.models") if e.value.startswith("lmms_eval_autorater.")]
    assert {m.model_id for m in ep.load()()} == set(registry.MODELS)
    patched = TaskManager.initialize_tasks
    assert patched is not ORIGINAL and inspect.unwrap(patched) is ORIGINAL
    assert inspect.signature(patched) == inspect.signature(ORIGINAL)
    registry.add_task_dir_to_lmms_eval()
    assert TaskManager.initialize_tasks is patched  # idempotent: never wrapped twice


def test_no_autoload_env_leaves_task_manager_unpatched(fresh, monkeypatch):
    monkeypatch.setenv("AUTORATER_NO_TASK_AUTOLOAD", "1")
    (ep,) = [e for e in entry_points(group="lmms_eval.models") if e.value.startswith("lmms_eval_autorater.")]
    assert {m.model_id for m in ep.load()()} == set(registry.MODELS)  # the models still register
    assert TaskManager.initialize_tasks is ORIGINAL
    assert not getattr(TaskManager, registry._PATCH_FLAG)
    assert TaskManager(include_defaults=False).task_index == {}
    index = TaskManager(include_path=registry.TASKS_DIR, include_defaults=False).task_index
    assert set(index) == OURS
    assert_all_ours(index)


def test_without_defaults_indexes_exactly_our_tasks(fresh, walked, warnings_logged):
    registry.add_task_dir_to_lmms_eval()
    tm = TaskManager(include_defaults=False)
    assert set(tm.task_index) == OURS  # and nothing of lmms-eval's
    assert_all_ours(tm.task_index)
    from lmms_eval_autorater.tasks.catalog import GROUPS

    assert {n for n in OURS if tm.task_index[n]["type"] == "group"} == set(GROUPS)
    assert {tm.task_index[n]["type"] for n in OURS - set(GROUPS)} == {"python_task"}
    assert walked == [registry.TASKS_DIR]
    assert warnings_logged == []


def test_with_defaults_our_names_are_not_taken_by_builtins(fresh, warnings_logged):
    registry.add_task_dir_to_lmms_eval()
    index = TaskManager().task_index
    assert len(index) > 100  # lmms-eval's own tasks are there
    assert_all_ours(index)
    assert warnings_logged == []


def _symlink(tmp_path: Path) -> str:
    link = tmp_path / "link_to_tasks"
    link.symlink_to(registry.TASKS_DIR, target_is_directory=True)
    return str(link)


SPELLINGS = {
    "str": lambda tmp: registry.TASKS_DIR,
    "list": lambda tmp: [registry.TASKS_DIR],
    "tuple": lambda tmp: (registry.TASKS_DIR,),
    "path": lambda tmp: Path(registry.TASKS_DIR),
    "trailing_slash": lambda tmp: registry.TASKS_DIR + "/",
    "dot_segments": lambda tmp: os.path.join(registry.TASKS_DIR, "psr", ".."),
    "symlink": _symlink,
    "symlink_in_list": lambda tmp: [_symlink(tmp) + "/"],
}


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_explicit_include_of_our_folder_registers_once(fresh, walked, warnings_logged, tmp_path, spelling):
    registry.add_task_dir_to_lmms_eval()
    include = SPELLINGS[spelling](tmp_path)
    index = TaskManager(include_path=include, include_defaults=False).task_index
    assert set(index) == OURS
    assert len(walked) == 1 and real(walked[0]) == real(registry.TASKS_DIR), (
        walked
    )  # walked once, not appended
    assert warnings_logged == []  # no shadowing by our own copy, no fallback


def test_include_of_a_folder_above_ours_is_not_doubled(fresh, walked, warnings_logged):
    registry.add_task_dir_to_lmms_eval()
    package = str(Path(registry.TASKS_DIR).parent)
    index = TaskManager(include_path=package, include_defaults=False).task_index
    assert set(index) == OURS
    assert walked == [package]
    assert warnings_logged == []


def test_other_arguments_pass_through_positionally_or_by_keyword(fresh, walked, tmp_path):
    registry.add_task_dir_to_lmms_eval()
    other = str(task_folder(tmp_path / "other", "foo"))
    tm = TaskManager(include_defaults=False)
    walked.clear()
    assert set(tm.initialize_tasks(other, False)) == OURS | {"foo"}
    assert set(tm.initialize_tasks([other], include_defaults=False)) == OURS | {"foo"}
    assert set(tm.initialize_tasks(include_defaults=False, include_path=other)) == OURS | {"foo"}
    # include_defaults=False kept every time (lmms-eval's folder never walked); the caller's folder first
    assert walked == [other, registry.TASKS_DIR] * 3


@pytest.mark.parametrize("kind", ["task", "tag"])
def test_shadowed_name_warns(fresh, warnings_logged, tmp_path, kind):
    registry.add_task_dir_to_lmms_eval()
    if kind == "task":
        other = task_folder(tmp_path / "other", "psr")
        shadow = str(other / "psr" / "psr.yaml")
    else:
        other = task_folder(tmp_path / "other", "foo", body="tag: psr\n")
        shadow = "a tag of that name"
    index = TaskManager(include_path=str(other), include_defaults=False).task_index
    # lmms-eval merges folders with the earlier one winning; ours is appended last, so theirs wins
    assert index["psr"]["type"] == kind
    assert_all_ours(index, OURS - {"psr"})
    assert warnings_logged == [f"lmms-eval-autorater: task 'psr' is shadowed by {shadow}; ours is not used"]
    TaskManager(include_path=str(other), include_defaults=False)
    assert len(warnings_logged) == 1  # once per process and shadowing folder


def test_sibling_folder_with_a_longer_name_is_not_ours():
    sibling = registry.TASKS_DIR + "_copy/psr/psr.yaml"
    assert not registry._is_within(sibling, registry.TASKS_DIR)
    assert registry._is_within(os.path.join(registry.TASKS_DIR, "psr", "psr.yaml"), registry.TASKS_DIR)


def _boom(*args, **kwargs):
    raise RuntimeError("boom")


@pytest.mark.parametrize("helper", ["_with_tasks_dir", "_warn_on_shadowed_names"])
def test_fallback_when_our_part_fails(fresh, monkeypatch, warnings_logged, tmp_path, helper):
    other = task_folder(tmp_path / "other", "foo")
    expected = TaskManager(include_path=str(other), include_defaults=False).task_index  # unpatched
    assert set(expected) == {"foo"}
    monkeypatch.setattr(registry, helper, _boom)
    registry.add_task_dir_to_lmms_eval()
    for _ in range(2):
        assert TaskManager(include_path=str(other), include_defaults=False).task_index == expected
        assert TaskManager(include_defaults=False).task_index == {}
    assert len(warnings_logged) == 1, warnings_logged
    (message,) = warnings_logged
    assert "RuntimeError: boom" in message
    assert f"--include_path {registry.TASKS_DIR}" in message and "AUTORATER_NO_TASK_AUTOLOAD=1" in message


def test_fallback_when_lmms_eval_renames_the_parameter(fresh, warnings_logged, tmp_path):
    """A stand-in for a future lmms-eval whose method no longer has ``include_path``."""
    other = str(task_folder(tmp_path / "other", "foo"))

    def initialize_tasks(self, paths=None, include_defaults=True):
        return ORIGINAL(self, include_path=paths, include_defaults=include_defaults)

    TaskManager.initialize_tasks = initialize_tasks  # restored by ``fresh``
    registry.add_task_dir_to_lmms_eval()
    tm = object.__new__(TaskManager)
    tm.logger = logger
    assert set(tm.initialize_tasks(paths=[other], include_defaults=False)) == {"foo"}
    assert len(warnings_logged) == 1 and "has no 'include_path' parameter" in warnings_logged[0]


def test_lmms_eval_errors_propagate_unchanged(fresh, walked, warnings_logged, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.yaml").write_text("")  # lmms-eval 0.7.3 asserts on an empty YAML anywhere in a folder
    with pytest.raises(AssertionError) as unpatched:
        TaskManager(include_path=str(bad), include_defaults=False)
    registry.add_task_dir_to_lmms_eval()
    walked.clear()
    with pytest.raises(AssertionError) as patched:
        TaskManager(include_path=str(bad), include_defaults=False)
    assert type(patched.value) is type(unpatched.value) and str(patched.value) == str(unpatched.value)
    assert walked == [str(bad)]  # the original ran once, not again as a fallback
    assert warnings_logged == []
