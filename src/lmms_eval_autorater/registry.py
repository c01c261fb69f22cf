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

import os
from pathlib import Path

TASKS_DIR = str(Path(__file__).resolve().parent / "tasks")

#: model id -> "module:Class" (lazy, as in lm-evaluation-harness).
MODELS: dict[str, str] = {
    "autorater_gpt4o": "lmms_eval_autorater.models.judge_models:AutoraterGPT4o",
    "autorater_gemini": "lmms_eval_autorater.models.judge_models:AutoraterGemini",
    "autorater_openai": "lmms_eval_autorater.models.judge_models:AutoraterOpenAICompatible",
    "autorater_internvl": "lmms_eval_autorater.models.judge_models:AutoraterInternVL",
    "hpsv3": "lmms_eval_autorater.models.baseline_models:HPSv3Model",
    "imagereward": "lmms_eval_autorater.models.baseline_models:ImageRewardModel",
    "qsit": "lmms_eval_autorater.models.baseline_models:QSiTModel",
}

#: Names our tasks and group register; built-in lmms-eval names win silently, so we check.
TASK_NAMES = ("psr", "imagereward_pair", "imagereward_point", "aigiqa", "autorater_bench")

_PATCH_FLAG = "_autorater_tasks_dir_added"


def manifests() -> list:
    """Return the ``ModelManifest`` list for lmms-eval and register our task folder."""
    from lmms_eval.models.registry_v2 import ModelManifest

    try:
        add_task_dir_to_lmms_eval()
    except Exception as exc:  # never raise here: a failing entry point hides every later one
        from loguru import logger

        logger.warning(
            f"lmms-eval-autorater: could not add its task folder ({exc}); use --include_path {TASKS_DIR}"
        )
    out = []
    for model_id, path in MODELS.items():
        module, cls = path.split(":")
        out.append(ModelManifest(model_id=model_id, simple_class_path=f"{module}.{cls}"))
    return out


def add_task_dir_to_lmms_eval() -> None:
    """Make every lmms-eval ``TaskManager`` index ``TASKS_DIR`` as if passed to ``--include_path``.

    Idempotent. Set ``AUTORATER_NO_TASK_AUTOLOAD=1`` to turn it off (then use ``--include_path``).
    """
    if os.environ.get("AUTORATER_NO_TASK_AUTOLOAD") == "1":
        return
    from lmms_eval.tasks import TaskManager

    if getattr(TaskManager, _PATCH_FLAG, False):
        return
    original = TaskManager.initialize_tasks

    def initialize_tasks(self, include_path=None, include_defaults=True):
        paths = (
            []
            if include_path is None
            else ([include_path] if isinstance(include_path, str) else list(include_path))
        )
        if not any(os.path.realpath(p) == os.path.realpath(TASKS_DIR) for p in paths):
            paths.append(TASKS_DIR)
        index = original(self, include_path=paths, include_defaults=include_defaults)
        _warn_on_shadowed_names(index)
        return index

    initialize_tasks.__wrapped__ = original  # type: ignore[attr-defined]
    TaskManager.initialize_tasks = initialize_tasks
    setattr(TaskManager, _PATCH_FLAG, True)


def _warn_on_shadowed_names(index: dict) -> None:
    """Built-in task names win over included ones: say so loudly if one of ours is hidden."""
    for name in TASK_NAMES:
        entry = index.get(name)
        if entry is None:
            continue
        path = entry.get("yaml_path")
        if isinstance(path, str) and not os.path.realpath(path).startswith(os.path.realpath(TASKS_DIR)):
            from loguru import logger

            logger.warning(f"lmms-eval-autorater: task '{name}' is shadowed by {path}; ours is not used")
