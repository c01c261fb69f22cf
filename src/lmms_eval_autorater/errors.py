"""Typed errors of the whole package (ground floor: imports nothing of ours).

Library code raises these; only the command line (``cli.py``) and the lmms-eval model wrappers turn
them into one line and an exit code. A caller decides by type, never by searching a message.
Each subclass keeps the built-in base it replaces (``ValueError``, ``RuntimeError``), so existing
``except ValueError`` handlers keep working.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class AutoraterError(Exception):
    """Base of every error this package raises on purpose: a user-facing cause on one line."""


class UsageError(AutoraterError, ValueError):
    """Wrong arguments or options found after parsing, or nothing to do (the user can fix the call)."""


class ModelArgError(UsageError):
    """A wrong ``--model_args`` value; the message names the argument and what is accepted."""


class DataError(AutoraterError, ValueError):
    """Annotations or data files missing or malformed; the message names the file (and row, field)."""


class InputError(AutoraterError, ValueError):
    """One input (an image, a row of a user's file) that cannot be used; names the sample, field and file."""


class CheckpointError(AutoraterError, ValueError):
    """A model checkpoint that cannot be found or loaded; names the model and its argument."""


class ConfigError(AutoraterError, RuntimeError):
    """The environment is not set up for the run (a missing API key, an unreachable or offline hub)."""


class CacheError(AutoraterError, RuntimeError):
    """A cache file that cannot be opened or read; names the file and the remedy."""


class RunAborted(SystemExit):
    """Ends a run inside lmms-eval with one line and exit code 1, no traceback.

    lmms-eval 0.7.3 catches ``Exception`` around the evaluation, prints a traceback and exits 0; a
    ``SystemExit`` is not an ``Exception``, so it reaches the shell, which prints its one line.
    """

    def __init__(self, message: str) -> None:
        super().__init__(f"lmms-eval-autorater: error: {message}")


def first_line(exc: BaseException) -> str:
    """The cause of ``exc`` on one line: its first message line (a message puts its cause there and any
    detail, such as a data layout, on later lines); a first line that ends with a colon announces what
    follows, so then the whole message is joined onto one line. Empty: the type's name."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return " ".join(lines) if lines[0].endswith(":") else lines[0]


@contextmanager
def fatal_in_run() -> Iterator[None]:
    """Inside an lmms-eval run, turn our typed errors into ``RunAborted`` (exit 1, one line).

    A bug (any other exception) keeps its traceback: only a cause the user can act on is shortened.
    """
    try:
        yield
    except AutoraterError as exc:
        raise RunAborted(first_line(exc)) from None


__all__ = [
    "AutoraterError",
    "CacheError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "InputError",
    "ModelArgError",
    "RunAborted",
    "UsageError",
    "fatal_in_run",
    "first_line",
]
