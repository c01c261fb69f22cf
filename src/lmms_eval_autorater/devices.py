"""Device helpers shared by judges, specialists and baselines; torch is imported only when called."""

from __future__ import annotations

import sys


def default_device(device: str | None) -> str:
    """The ``device`` argument, else ``cuda`` when present, else ``cpu``."""
    if device:
        return str(device)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def empty_cuda_cache() -> None:
    """Return freed GPU memory to the driver after a model is dropped (no-op without torch or CUDA)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
