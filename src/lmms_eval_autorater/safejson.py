"""Reading JSON that someone else wrote (submissions, results and samples files) without surprises.

Every way a hostile or broken file can fail the decoder becomes one ``DataError`` naming the file (and
the line, for JSONL): bytes that are not UTF-8, text that is not JSON, nesting deep enough to exhaust the
recursion limit, ``NaN``/``Infinity`` (not JSON; Python accepts them and they overflow later), integers
longer than Python's digit limit, and files above a stated size limit (checked before reading).
Ground floor: imports nothing of ours but ``errors``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lmms_eval_autorater.errors import DataError

#: the largest JSON file read whole (a full submission of every task is a few MB; 80k predictions ~ 10 MB)
MAX_JSON_BYTES = 256 * 1024 * 1024


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (write null)")


def loads(text: str | bytes, where: str, *, allow_nan: bool = False) -> Any:
    """``json.loads`` that raises one ``DataError`` naming ``where`` for every decoder failure;
    ``allow_nan``: accept ``NaN``/``Infinity`` (lmms-eval writes NaN metrics into its results files)."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return json.loads(text, parse_constant=None if allow_nan else _no_constant)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: not UTF-8 text (byte {exc.start})") from None
    except RecursionError:
        raise DataError(f"{where}: JSON nested too deeply to read") from None
    except (ValueError, OverflowError) as exc:  # NaN/Infinity, integers beyond the digit limit
        raise DataError(f"{where}: unreadable JSON value ({str(exc).splitlines()[0][:200]})") from None


def read_bytes(path: str | os.PathLike, max_bytes: int = MAX_JSON_BYTES) -> bytes:
    """The bytes of ``path``, refused before reading when larger than ``max_bytes``."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if p.is_dir():
            raise DataError(f"{p}: is a directory, not a JSON file")
        if size > max_bytes:
            raise DataError(f"{p}: {size} bytes, above the limit of {max_bytes} bytes for a JSON file")
        with p.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise DataError(f"{p}: cannot read ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise DataError(f"{p}: above the limit of {max_bytes} bytes for a JSON file")
    return data


def load_file(path: str | os.PathLike, max_bytes: int = MAX_JSON_BYTES, *, allow_nan: bool = False) -> Any:
    """A JSON file parsed, every failure one ``DataError`` naming the file."""
    return loads(read_bytes(path, max_bytes), str(path), allow_nan=allow_nan)


__all__ = ["MAX_JSON_BYTES", "load_file", "loads", "read_bytes"]
