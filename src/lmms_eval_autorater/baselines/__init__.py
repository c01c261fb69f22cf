"""Preference-model baselines (Table 2's ImageReward and HPSv3; the reward models PickScore, HPSv2.1, CLIPScore).

Each scorer loads the official checkpoint (a hub id or a local file) into transformers' own
classes and returns the upstream score, so that no upstream package becomes a dependency.
This module holds what the scorers share; it imports nothing heavy at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lmms_eval_autorater import runtime
from lmms_eval_autorater.errors import CheckpointError
from lmms_eval_autorater.runtime import default_device as pick_device  # noqa: F401  (re-exported)
from lmms_eval_autorater.runtime import (
    empty_cuda_cache,  # noqa: F401  (re-exported)
    resolve_dtype,
)

__all__ = ["CheckpointError", "HPSv3Scorer", "ImageRewardScorer", "resolve_file"]


def __getattr__(name: str) -> Any:
    # lazy: importing the package must not import torch
    if name == "ImageRewardScorer":
        from lmms_eval_autorater.baselines.imagereward import ImageRewardScorer

        return ImageRewardScorer
    if name == "HPSv3Scorer":
        from lmms_eval_autorater.baselines.hpsv3 import HPSv3Scorer

        return HPSv3Scorer
    raise AttributeError(name)


def _looks_like_path(ref: str) -> bool:
    """True for what cannot be a hub repo id: a relative/absolute path, a file name, more than one slash."""
    return (
        ref.startswith((".", "/", "~"))
        or ref.count("/") > 1
        or "\\" in ref
        or Path(ref).suffix in (".pt", ".pth", ".bin", ".safetensors", ".json")
    )


def resolve_file(
    ref: str | os.PathLike,
    filename: str,
    *,
    local_files_only: bool | None = None,
    what: str = "checkpoint",
    arg: str = "checkpoint",
) -> Path:
    """Return a local path for ``ref``: an existing file, a folder holding ``filename``, or a hub repo id.

    A hub id is fetched with ``huggingface_hub`` (from the cache only when ``local_files_only``);
    anything missing raises ``CheckpointError`` saying what was looked for and where.
    """
    ref_s = os.fspath(ref)
    path = Path(ref_s).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        inner = path / filename
        if inner.is_file():
            return inner
        raise CheckpointError(f"{what}: folder {path} has no {filename}")
    if _looks_like_path(ref_s):
        raise CheckpointError(f"{what}: no such file {ref_s}")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HFValidationError, LocalEntryNotFoundError

    try:
        return Path(
            hf_hub_download(
                ref_s, filename, local_files_only=runtime.local_files_only(ref_s, local_files_only)
            )
        )
    except LocalEntryNotFoundError as exc:
        if local_files_only is None:  # inferred: the hub is offline or unreachable
            raise runtime.checkpoint_unavailable(ref_s, arg, what) from exc
        raise CheckpointError(
            f"{what}: {filename} of hub repo {ref_s!r} is not in the local Hugging Face cache and "
            f"local_files_only=True; download it first (hf download {ref_s} {filename}) or pass a local file"
        ) from exc
    except HFValidationError as exc:
        raise CheckpointError(f"{what}: {ref_s!r} is neither an existing file nor a hub repo id") from exc
    except EntryNotFoundError as exc:
        raise CheckpointError(f"{what}: hub repo {ref_s!r} has no file {filename}") from exc
    except OSError as exc:  # RepositoryNotFoundError, network errors
        raise CheckpointError(f"{what}: cannot fetch {filename} from hub repo {ref_s!r}: {exc}") from exc


def resolve_dir(
    ref: str | os.PathLike,
    *,
    local_files_only: bool | None = None,
    what: str = "model folder",
    allow_patterns: list[str] | None = None,
    arg: str = "checkpoint",
) -> Path:
    """Return a local folder for ``ref``: an existing folder, or a hub repo id fetched (config files only)."""
    ref_s = os.fspath(ref)
    path = Path(ref_s).expanduser()
    if path.is_dir():
        return path
    if _looks_like_path(ref_s) or path.exists():
        raise CheckpointError(f"{what}: no such folder {ref_s}")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        lfo = runtime.local_files_only(ref_s, local_files_only)
        return Path(snapshot_download(ref_s, allow_patterns=allow_patterns, local_files_only=lfo))
    except LocalEntryNotFoundError as exc:
        if local_files_only is None:  # inferred: the hub is offline or unreachable
            raise runtime.checkpoint_unavailable(ref_s, arg, what) from exc
        raise CheckpointError(
            f"{what}: hub repo {ref_s!r} is not in the local Hugging Face cache and local_files_only is set; "
            "download it first or pass a local folder"
        ) from exc
    except HFValidationError as exc:
        raise CheckpointError(f"{what}: {ref_s!r} is neither an existing folder nor a hub repo id") from exc
    except OSError as exc:
        raise CheckpointError(f"{what}: cannot fetch hub repo {ref_s!r}: {exc}") from exc


def pick_dtype(device: str, dtype: str | None = None):
    """The scorers' dtype: ``runtime.resolve_dtype`` (float32 on CPU; bf16 on CUDA where supported, else fp16;
    ``dtype`` such as "float32" or "bf16" overrides)."""
    return resolve_dtype(dtype or None, device)


def open_image(image: Any):
    """A ``PIL.Image`` as given, or a reference (path or ``zip::member``) opened without mode conversion.

    The upstream packages convert to RGB themselves (ImageReward after resizing), so the mode is kept.
    """
    from PIL import Image

    if isinstance(image, Image.Image):
        return image
    if isinstance(image, (str, os.PathLike)):
        from lmms_eval_autorater.images import open_image as open_bounded

        # bounded like every other reader: file size before reading, pixels before decoding (ImageError)
        return open_bounded(os.fspath(image))
    raise TypeError(f"image must be a PIL.Image or a reference string, got {type(image).__name__}")


def load_state_dict(path: Path, *, what: str = "checkpoint") -> dict:
    """Load a ``.safetensors`` or torch pickle state dict on CPU; a corrupt file raises ``CheckpointError``."""
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path), device="cpu")
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip, safetensors header and size errors all differ
        raise CheckpointError(f"{what}: cannot read {path} ({type(exc).__name__}: {exc})") from exc
    for wrapper in ("model", "state_dict"):  # training checkpoints (HPSv2's: {"state_dict": ...})
        if isinstance(sd, dict) and isinstance(sd.get(wrapper), dict):
            sd = sd[wrapper]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{what}: {path} does not hold a flat state dict of tensors")
    return sd


def load_into_meta_model(
    model,
    state_dict: dict,
    device: str,
    dtype,
    *,
    keep_float32: tuple[str, ...] = (),
    what: str = "checkpoint",
) -> None:
    """Load ``state_dict`` (emptied on the way) into ``model`` built on the meta device (no init cost, no double copy), then
    rebuild the non-persistent buffers (rotary frequencies, position ids) from each module's config.

    Floating tensors are cast to ``dtype`` except those whose key starts with one of ``keep_float32``.
    """
    import torch

    expected = set(model.state_dict())
    missing = sorted(expected - set(state_dict))
    unexpected = sorted(set(state_dict) - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{what}: layout mismatch: missing {len(missing)} keys {missing[:5]}, "
            f"unexpected {len(unexpected)} keys {unexpected[:5]}"
        )
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for k, v in state_dict.items():
        if tuple(v.shape) != shapes[k]:
            raise CheckpointError(
                f"{what}: tensor {k} has shape {tuple(v.shape)}, the model expects {shapes[k]}"
            )
    cast = {}
    for k in list(state_dict):  # pop as we go: one copy of the weights at a time
        v = state_dict.pop(k)
        t = torch.float32 if k.startswith(keep_float32) else dtype
        cast[k] = v.to(device=device, dtype=t) if v.is_floating_point() else v.to(device)
    model.load_state_dict(cast, strict=True, assign=True)
    for mod in model.modules():
        metas = [name for name, buf in mod.named_buffers(recurse=False) if buf.is_meta]
        if not metas:
            continue
        fresh = type(mod)(mod.config)  # the modules holding such buffers take their config alone
        for name in metas:
            setattr(mod, name, getattr(fresh, name).to(device))
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if left:
        raise CheckpointError(f"{what}: tensors left unloaded: {left[:5]}")
