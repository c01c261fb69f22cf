"""Entry point of the plugin: model manifests for lmms-eval and the task folder.

lmms-eval 0.7.3 loads the ``lmms_eval.models`` entry point group while importing
``lmms_eval.models``, which every CLI path and ``simple_evaluate`` do before a
``TaskManager`` is built. The payload here is a callable: it returns the model
manifests (class paths as strings, imported only when a model is chosen) and adds
this package's ``tasks/`` folder to every ``TaskManager`` index, because 0.7.3 has
no entry point for tasks. ``--include_path`` stays a documented fallback.

This module imports nothing heavy at import time.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Mapping
from pathlib import Path

from lmms_eval_autorater.catalog.models import MODELS as _CATALOG
from lmms_eval_autorater.tasks.catalog import GROUPS, TASKS

TASKS_DIR = str(Path(__file__).resolve().parent / "tasks")

#: model id -> "module:Class" (lazy, as in lm-evaluation-harness), read from the model catalog.
MODELS: dict[str, str] = {model_id: entry.class_path for model_id, entry in _CATALOG.items()}

#: Names our tasks and group register (the task catalog's); an earlier folder (lmms-eval's own first) wins
#: silently, so we check.
TASK_NAMES = (*TASKS, *GROUPS)

_PATCH_FLAG = "_autorater_tasks_dir_added"

#: the parameter of ``TaskManager.initialize_tasks`` that we extend with ``TASKS_DIR``
_INCLUDE_PARAM = "include_path"

#: set once the fallback warning was logged in this process
_fallback_warned = False
#: (task name, shadowing path) pairs already reported in this process
_shadow_warned: set[tuple[str, str]] = set()


def manifests() -> list:
    """Return the ``ModelManifest`` list for lmms-eval and register our task folder."""
    from lmms_eval.models.registry_v2 import ModelManifest

    try:
        add_task_dir_to_lmms_eval()
    except Exception as exc:  # never raise here: a failing entry point hides every later one
        _warn_fallback(exc)
    out = []
    for model_id, path in MODELS.items():
        module, cls = path.split(":")
        out.append(ModelManifest(model_id=model_id, simple_class_path=f"{module}.{cls}"))
    return out


def add_task_dir_to_lmms_eval() -> None:
    """Make every lmms-eval ``TaskManager`` index ``TASKS_DIR`` as if passed to ``--include_path``.

    Idempotent. Set ``AUTORATER_NO_TASK_AUTOLOAD=1`` to turn it off (then use ``--include_path``).
    The wrapper never changes what lmms-eval does when our part fails: it then calls the original
    with the caller's exact arguments and logs one warning per process.
    """
    if os.environ.get("AUTORATER_NO_TASK_AUTOLOAD") == "1":
        return
    from lmms_eval.tasks import TaskManager

    if getattr(TaskManager, _PATCH_FLAG, False):
        return
    original = TaskManager.initialize_tasks

    @functools.wraps(original)
    def initialize_tasks(self, *args, **kwargs):
        try:
            call_args, call_kwargs = _with_tasks_dir(original, self, args, kwargs)
        except Exception as exc:
            _warn_fallback(exc)
            return original(self, *args, **kwargs)
        index = original(self, *call_args, **call_kwargs)  # lmms-eval's own errors propagate as they are
        try:
            _warn_on_shadowed_names(index)
        except Exception as exc:
            _warn_fallback(exc)
            return original(self, *args, **kwargs)
        return index

    TaskManager.initialize_tasks = initialize_tasks
    setattr(TaskManager, _PATCH_FLAG, True)


def _with_tasks_dir(original, self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """The caller's arguments with ``TASKS_DIR`` appended to ``include_path`` (unless already there).

    Raises on anything unexpected (no ``include_path`` parameter, arguments that do not bind,
    an ``include_path`` that is neither None, a path nor a list of paths): the caller falls back.
    """
    signature = inspect.signature(original)
    if _INCLUDE_PARAM not in signature.parameters:
        raise TypeError(f"TaskManager.initialize_tasks{signature} has no {_INCLUDE_PARAM!r} parameter")
    bound = signature.bind(self, *args, **kwargs)
    value = bound.arguments.get(_INCLUDE_PARAM)
    if value is None:
        paths = []
    elif isinstance(value, (str, os.PathLike)):
        paths = [value]
    elif isinstance(value, (list, tuple)):
        paths = list(value)
    else:
        raise TypeError(f"unexpected {_INCLUDE_PARAM}={value!r}")
    if not any(_covers_tasks_dir(p) for p in paths):
        paths.append(TASKS_DIR)
    bound.arguments[_INCLUDE_PARAM] = paths
    return bound.args[1:], bound.kwargs


def _real(path) -> str:
    return os.path.normcase(os.path.realpath(os.fspath(path)))


def _is_within(path, folder) -> bool:
    """True iff ``path`` is ``folder`` or lies below it (both resolved)."""
    path, folder = _real(path), _real(folder)
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:  # different drives
        return False


def _covers_tasks_dir(path) -> bool:
    """True iff indexing ``path`` already indexes ``TASKS_DIR`` (it is that folder or one above it)."""
    return _is_within(TASKS_DIR, path)


def _warn_fallback(exc: BaseException) -> None:
    """One warning per process: our task folder is not added automatically, and what to do instead."""
    global _fallback_warned
    if _fallback_warned:
        return
    _fallback_warned = True
    from loguru import logger

    logger.warning(
        f"lmms-eval-autorater: could not add its task folder to lmms-eval ({type(exc).__name__}: {exc}); "
        f"lmms-eval runs unchanged, so pass --include_path {TASKS_DIR} to use our tasks "
        f"(and set AUTORATER_NO_TASK_AUTOLOAD=1 to silence this)"
    )


def _warn_on_shadowed_names(index: dict) -> None:
    """Earlier task folders win over ours (lmms-eval's own first): say so if one of our names is taken."""
    if not isinstance(index, Mapping):
        raise TypeError(f"TaskManager.initialize_tasks returned {type(index).__name__}, expected a dict")
    for name in TASK_NAMES:
        entry = index.get(name)
        if entry is None:
            continue
        if isinstance(entry, Mapping):
            path, kind = entry.get("yaml_path"), entry.get("type", "entry")
        else:
            path, kind = None, type(entry).__name__
        if isinstance(path, str) and _is_within(path, TASKS_DIR):
            continue
        where = path if isinstance(path, str) else f"a {kind} of that name"
        if (name, str(where)) in _shadow_warned:
            continue
        _shadow_warned.add((name, str(where)))
        from loguru import logger

        logger.warning(f"lmms-eval-autorater: task '{name}' is shadowed by {where}; ours is not used")
