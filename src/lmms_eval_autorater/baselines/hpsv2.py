"""HPSv2.1 (Wu et al., 2023): an open_clip ViT-H-14 fine-tuned on HPD v2, scored as the ``hpsv2`` package does.

The checkpoint is the package's own file (``HPS_v2.1_compressed.pt`` in hub repo
``catalog.models.HPSV2_CHECKPOINT``): ``{"state_dict": <open_clip CLIP state dict>}``. It loads into
open_clip's ``CLIP`` (open-clip-torch, the ``rewards`` extra) built from the architecture's config
(``ViT-H-14`` by default; a JSON file of an open_clip ``model_cfg`` for other sizes).

The package's scoring (``hpsv2.img_score.score``), kept:

- the image is turned into a tensor, resized (bicubic) so that its longer side is the model's input size,
  padded with zeros to a square, centred, then normalised with OpenAI's CLIP mean and std (the package's
  ``light_augmentation`` validation transform, ``ResizeMaxSize``);
- the prompt goes through open_clip's tokenizer (77 tokens, lower-cased);
- the score is the cosine of the normalised image and text features (no logit scale): about 0.2..0.35 on
  the released checkpoint.

Differences, on purpose: an RGBA image is converted to RGB (the package keeps 4 channels, which its 3-channel
patch embedding then rejects); a non-square image whose longer side already equals the input size is padded
(the package skips padding there and fails). Resizing uses the installed torchvision's default
(antialiased since torchvision 0.17, as the package gets today).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmms_eval_autorater.baselines import (
    CheckpointError,
    empty_cuda_cache,
    load_state_dict,
    open_image,
    pick_device,
    pick_dtype,
    resolve_file,
)
from lmms_eval_autorater.catalog.models import HPSV2_ARCH, HPSV2_CHECKPOINT, HPSV2_FILE

#: OpenAI's CLIP normalisation (open_clip's ``OPENAI_DATASET_MEAN`` / ``_STD``), as the package uses
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)


def _open_clip():
    try:
        import open_clip
    except ImportError as exc:
        raise CheckpointError(
            "hpsv2 needs open_clip: pip install 'lmms-eval-autorater[rewards]' (open-clip-torch)"
        ) from exc
    return open_clip


def model_config(arch: str) -> dict[str, Any]:
    """The open_clip ``model_cfg`` of ``arch``: a config name open_clip ships, or a JSON file holding one."""
    path = Path(arch).expanduser()
    if path.suffix == ".json" or path.is_file():
        try:
            cfg = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"HPSv2 arch: cannot read the open_clip config {path}: {exc}") from exc
        return cfg.get("model_cfg", cfg)
    cfg = _open_clip().get_model_config(arch)
    if cfg is None:
        raise CheckpointError(f"HPSv2 arch: {arch!r} is neither an open_clip model config nor a JSON file")
    return cfg


def preprocess(image: Any, size: int):
    """The package's validation transform: RGB tensor, longer side resized to ``size``, zero-padded square,
    normalised. Returns a float tensor of shape (3, size, size)."""
    import torchvision.transforms.functional as F
    from torchvision.transforms import InterpolationMode

    img = open_image(image).convert("RGB")
    t = F.to_tensor(img)
    h, w = t.shape[1:]
    scale = size / float(max(h, w))
    nh, nw = h, w
    if scale != 1.0:
        nh, nw = round(h * scale), round(w * scale)
        t = F.resize(t, [nh, nw], InterpolationMode.BICUBIC)
    pad_h, pad_w = size - nh, size - nw
    if pad_h or pad_w:
        t = F.pad(t, padding=[pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2], fill=0)
    return F.normalize(t, IMAGE_MEAN, IMAGE_STD)


class HPSv2Scorer:
    """HPSv2.1 per (prompt, image) pair: the cosine of open_clip image and text features, higher is better."""

    def __init__(
        self,
        checkpoint: str = HPSV2_CHECKPOINT,
        arch: str = HPSV2_ARCH,
        device: str | None = None,
        batch_size: int = 16,
        local_files_only: bool | None = None,
        dtype: str | None = None,
    ) -> None:
        self.checkpoint = str(checkpoint)
        self.arch = str(arch)
        self.device_arg = device
        self.batch_size = max(1, int(batch_size))
        self.local_files_only = local_files_only
        self.dtype_arg = dtype
        self.model = None

    def load(self) -> HPSv2Scorer:
        """Resolve the checkpoint and load the model now (otherwise done on first ``score``)."""
        if self.model is not None:
            return self
        import torch

        open_clip = _open_clip()
        cfg = model_config(self.arch)
        path = resolve_file(
            self.checkpoint, HPSV2_FILE, local_files_only=self.local_files_only, what="HPSv2 checkpoint"
        )
        sd = load_state_dict(path, what="HPSv2 checkpoint")
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
        with torch.device("meta"):
            model = open_clip.model.CLIP(**cfg, output_dict=True)
        expected = model.state_dict()
        missing = sorted(set(expected) - set(sd))
        unexpected = sorted(set(sd) - set(expected))
        if missing or unexpected:
            raise CheckpointError(
                f"HPSv2 checkpoint {path}: not an open_clip {self.arch} state dict: missing {len(missing)} keys "
                f"{missing[:5]}, unexpected {len(unexpected)} keys {unexpected[:5]}"
            )
        for k, v in sd.items():
            if tuple(v.shape) != tuple(expected[k].shape):
                raise CheckpointError(
                    f"HPSv2 checkpoint {path}: tensor {k} has shape {tuple(v.shape)}, {self.arch} expects "
                    f"{tuple(expected[k].shape)} (wrong arch=?)"
                )
        self.device = pick_device(self.device_arg)
        self.dtype = pick_dtype(self.device, self.dtype_arg)
        model.load_state_dict(
            {
                k: v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device)
                for k, v in sd.items()
            },
            strict=True,
            assign=True,
        )
        n = model.context_length
        model.attn_mask = torch.full((n, n), float("-inf"), device=self.device).triu_(1)
        left = [k for k, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
        if left:
            raise CheckpointError(f"HPSv2 checkpoint {path}: tensors left unloaded: {left[:5]}")
        self.image_size = int(model.visual.image_size[0])
        self.tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=n)
        self.model = model.eval()
        return self

    def release(self) -> None:
        """Free the model and its device memory."""
        self.model = None
        empty_cuda_cache()

    def score(self, prompts: list[str], images: list[Any]) -> list[float]:
        """One score per (prompt, image) pair; images are ``PIL.Image`` objects or reference strings."""
        import torch

        if len(prompts) != len(images):
            raise ValueError(f"{len(prompts)} prompts for {len(images)} images: give one prompt per image")
        self.load()
        out: list[float] = []
        for start in range(0, len(images), self.batch_size):
            chunk_p = prompts[start : start + self.batch_size]
            pixels = torch.stack(
                [preprocess(im, self.image_size) for im in images[start : start + self.batch_size]]
            )
            with torch.inference_mode():
                img = self.model.encode_image(pixels.to(self.device, self.dtype), normalize=True).float()
                txt = self.model.encode_text(self.tokenizer(chunk_p).to(self.device), normalize=True).float()
            out.extend(float(s) for s in (img * txt).sum(-1).cpu())
        return out


__all__ = ["HPSv2Scorer", "model_config", "preprocess"]
