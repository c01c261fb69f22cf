"""Reading a generator's file: one JSON object per line, ``{"id", "prompt", "image"}`` (+ ``"source"``).

Every structural problem is found before anything is judged and raised as one ``DataError`` naming the
file, the line, the id (where known) and the field: a line that is not a JSON object, a missing, empty or
non-string field, a duplicate id, an image (or source) file that does not exist. An image file that exists
but does not decode (or is a directory, or too large) is not an error here: the judge's input check turns
it into an ``input_error`` row.

Paths resolve under a root: the file's folder, or ``root=`` (``--root``). A path that leads outside it
(``../../etc/hostname``, ``/proc/self/environ``, a symlink pointing out) is an ``InputError`` naming the
line, id, field and file, since its bytes would be sent to a third-party API, unless the user passes
``allow_outside_root=True`` (``--allow_outside_root``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from lmms_eval_autorater.errors import InputError
from lmms_eval_autorater.tasks.common import DataError

#: the fields every row must have (non-empty strings); ``source`` is optional (edits)
REQUIRED = ("id", "prompt", "image")
OPTIONAL = ("source",)
#: fields holding image paths (relative paths resolve against the file's folder)
IMAGE_FIELDS = ("image", "source")


@dataclass(frozen=True)
class GenRow:
    """One generation: its id, its prompt (or edit request), the image's absolute path, the source's."""

    id: str
    prompt: str
    image: str
    source: str | None = None
    line: int = 0  # 1-based line number in the file (for messages)


def _where(path: Path, line: int, row_id: str | None) -> str:
    return f"{path}: line {line}" + (f" (id {row_id!r})" if row_id is not None else "")


def _resolve(value: str, folder: Path) -> Path:
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else (folder / p)


def read_generations(
    path: str | os.PathLike, *, root: str | os.PathLike | None = None, allow_outside_root: bool = False
) -> list[GenRow]:
    """The rows of a generations JSONL file, in order; a ``DataError`` for the first bad row and an
    ``InputError`` for the first image path outside ``root`` (default: the file's folder)."""
    path = Path(path).expanduser()
    if path.suffix.lower() not in (".jsonl", ".ndjson"):
        raise DataError(f"{path}: expected a .jsonl file (one JSON object per line)")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    path = path.resolve()
    folder = path.parent if root is None else Path(root).expanduser().resolve()
    if root is not None and not folder.is_dir():
        raise DataError(f"--root {root}: no such folder")
    rows: list[GenRow] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as fh:
        for lineno, text in enumerate(fh, 1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{path}: line {lineno}: not JSON ({exc.msg} at column {exc.colno})"
                ) from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}: line {lineno}: expected a JSON object, got {type(obj).__name__}")
            raw_id = obj.get("id")
            row_id = raw_id if isinstance(raw_id, str) and raw_id else None
            where = _where(path, lineno, row_id)
            for name in REQUIRED + OPTIONAL:
                if name not in obj or obj[name] is None:
                    if name in REQUIRED:
                        raise DataError(f"{where}: missing field {name!r}")
                    continue
                value = obj[name]
                if not isinstance(value, str):
                    raise DataError(f"{where}: field {name!r} must be a string, got {type(value).__name__}")
                if not value.strip():
                    raise DataError(f"{where}: field {name!r} is empty")
            if row_id in seen:
                raise DataError(f"{where}: field 'id': duplicate id (first on line {seen[row_id]})")
            seen[row_id] = lineno
            resolved: dict[str, str | None] = {}
            for name in IMAGE_FIELDS:
                value = obj.get(name)
                if value is None:
                    resolved[name] = None
                    continue
                file = _resolve(value, folder)
                real = file.resolve()  # follows symlinks: a link pointing out is outside too
                if not allow_outside_root and not real.is_relative_to(folder):
                    raise InputError(
                        f"{where}: field {name!r}: file {value} resolves to {real}, outside the root {folder}; "
                        "put the images under the file's folder, pass --root, or --allow_outside_root"
                    )
                if not file.exists():
                    raise DataError(f"{where}: field {name!r}: image file not found: {file}")
                resolved[name] = str(real)
            rows.append(
                GenRow(
                    id=row_id,
                    prompt=obj["prompt"],
                    image=resolved["image"],
                    source=resolved["source"],
                    line=lineno,
                )
            )
    if not rows:
        raise DataError(f"{path}: no rows (expected one JSON object per line)")
    return rows


def generator_name(path: str | os.PathLike, name: str | None = None) -> str:
    """The generator's name: ``name`` when given, else the file's stem (``runs/sdxl.jsonl`` -> ``sdxl``)."""
    if name:
        return str(name)
    return Path(path).stem
