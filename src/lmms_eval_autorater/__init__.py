"""AutoRater for lmms-eval: VLM judges that read specialist image assessments.

Kept import-light: importing the package pulls in no torch and no transformers.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``from lmms_eval_autorater import AutoRater`` without importing the judge stack at package import."""
    if name in ("AutoRater", "Result"):
        from lmms_eval_autorater import api

        return getattr(api, name)
    raise AttributeError(f"module 'lmms_eval_autorater' has no attribute {name!r}")
