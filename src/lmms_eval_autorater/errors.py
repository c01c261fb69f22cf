"""Typed errors of the whole package (ground floor: imports nothing of ours).

Library code raises these; only the command line (``cli.py``) and the lmms-eval model wrappers turn
them into one line and an exit code. A caller decides by type, never by searching a message.
Each subclass keeps the built-in base it replaces (``ValueError``, ``RuntimeError``), so existing
``except ValueError`` handlers keep working.
"""

from __future__ import annotations


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


__all__ = [
    "AutoraterError",
    "CacheError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "InputError",
    "ModelArgError",
    "UsageError",
]
