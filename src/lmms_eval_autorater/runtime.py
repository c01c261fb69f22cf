"""Runtime policy shared by specialists, baselines, judges and training: device, dtype, offline (ground floor).

One rule each, so that a model is placed and typed the same way whoever loads it. torch is imported only
when a function needs it (importing this module stays light).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

#: the values that switch an environment flag on (as huggingface_hub reads them, case-insensitive)
TRUTHY = frozenset({"1", "true", "yes", "on"})
#: the environment variables that keep the Hugging Face stack offline
OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
#: short dtype names accepted beside torch's own (``float16``, ``torch.bfloat16``, ...)
DTYPE_ALIASES = {"bf16": "bfloat16", "fp16": "float16", "half": "float16", "fp32": "float32"}


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


def resolve_dtype(dtype: Any, device: str, *, training: bool = False) -> Any:
    """The torch dtype to load a model in on ``device``.

    ``None`` or ``"auto"``: on a CUDA device, bfloat16 where the GPU supports it, else float16 for inference
    and float32 for training (float16 weights without loss scaling do not train); float32 elsewhere.
    A torch dtype is kept; a name (``"float16"``, ``"torch.bfloat16"``, ``"bf16"``, ``"fp16"``, ``"half"``,
    ``"fp32"``) is looked up; anything else raises ``ValueError`` naming what is accepted.
    """
    import torch

    if dtype is None or dtype == "auto":
        if str(device).startswith("cuda") and torch.cuda.is_available():
            with torch.cuda.device(device):
                if torch.cuda.is_bf16_supported():
                    return torch.bfloat16
            return torch.float32 if training else torch.float16
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    name = str(dtype).strip()
    value = getattr(torch, DTYPE_ALIASES.get(name, name.removeprefix("torch.")), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(
            f"not a torch dtype: {dtype!r}; use auto, a torch dtype name (float32, bfloat16, float16) "
            f"or one of {sorted(DTYPE_ALIASES)}"
        )
    return value


def hf_offline() -> bool:
    """True when the environment keeps the Hugging Face stack offline, read as huggingface_hub reads it:
    ``HF_HUB_OFFLINE``, or where that is unset or empty ``TRANSFORMERS_OFFLINE``, is 1/true/yes/on (any case)."""
    value = os.environ.get(OFFLINE_ENV[0]) or os.environ.get(OFFLINE_ENV[1]) or ""
    return value.strip().lower() in TRUTHY


#: seconds the one connection probe of the hub may take (a machine without network answers at once)
HUB_PROBE_TIMEOUT = 3.0
_PROXY_ENV = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
_hub_probe: str | None = None


def _probe_hub() -> str:
    """'' when a TCP connection to the hub's endpoint opens, else why not (one probe per process).

    Behind a proxy a direct connection says nothing, so the hub is assumed reachable there.
    """
    if any(os.environ.get(k) for k in _PROXY_ENV):
        return ""
    import socket
    from urllib.parse import urlparse

    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=HUB_PROBE_TIMEOUT).close()
    except OSError as exc:
        return f"unreachable ({host}:{port}: {exc.strerror or type(exc).__name__})"
    return ""


def hub_unreachable_reason() -> str | None:
    """None when the Hugging Face hub may be used; else why not: the offline variables, or no connection.

    Checked before a download is tried, so that a checkpoint missing from the local cache fails at once
    instead of after the hub client's retries (minutes without network).
    """
    if hf_offline():
        return f"offline ({OFFLINE_ENV[0]} is set)"
    global _hub_probe
    if _hub_probe is None:
        _hub_probe = _probe_hub()
    return _hub_probe or None


def local_files_only(pretrained: str | os.PathLike, explicit: bool | None = None) -> bool:
    """Whether to load ``pretrained`` without the hub: the explicit setting, else True when it is an existing
    folder, or when the hub is offline per the environment or cannot be reached (cached files still load)."""
    if explicit is not None:
        return bool(explicit)
    return Path(os.fspath(pretrained)).expanduser().is_dir() or hub_unreachable_reason() is not None


def checkpoint_unavailable(model: str, arg: str, what: str) -> Exception:
    """The one-line error for a checkpoint that is neither a local folder nor in the local Hugging Face cache
    while the hub cannot be used: it names the model, its argument and the local-folder alternative."""
    from lmms_eval_autorater.errors import CheckpointError

    reason = hub_unreachable_reason() or "not used (local_files_only)"
    return CheckpointError(
        f"{what}: {arg}={model!r} is not in the local Hugging Face cache and the hub is {reason}; "
        f"download it where there is network (hf download {model}) and pass {arg}=<that folder>"
    )


__all__ = [
    "DTYPE_ALIASES",
    "OFFLINE_ENV",
    "TRUTHY",
    "default_device",
    "empty_cuda_cache",
    "hf_offline",
    "checkpoint_unavailable",
    "hub_unreachable_reason",
    "local_files_only",
    "resolve_dtype",
]
