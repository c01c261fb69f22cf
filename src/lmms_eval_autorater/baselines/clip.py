"""What PickScore and CLIPScore share: a transformers ``CLIPModel`` and its processor, embeddings in batches.

Both load a hub id or a local folder saved by transformers (``config.json`` + weights), with the processor
from the same place or from another (PickScore keeps its processor in the LAION CLIP-H repo). The image
processor is transformers' PIL backend (``CLIPImageProcessorPil``): the one the authors' code ran, whereas
the torchvision backend resizes differently by about 1e-2 in pixel values. Images are converted to RGB
with PIL (alpha dropped) before the processor, as transformers 4.x did in the authors' code.
"""

from __future__ import annotations

from typing import Any

from lmms_eval_autorater import runtime
from lmms_eval_autorater.baselines import (
    CheckpointError,
    empty_cuda_cache,
    open_image,
    pick_device,
    pick_dtype,
)


def _load(fn, ref: str, arg: str, what: str, local_files_only: bool | None):
    """Call ``fn(ref, local_files_only=...)``; a missing or broken checkpoint becomes ``CheckpointError``."""
    from pathlib import Path

    lfo = runtime.local_files_only(ref, local_files_only)
    try:
        return fn(ref, local_files_only=lfo)
    except (OSError, ValueError) as exc:
        if lfo and not Path(ref).expanduser().exists():
            raise runtime.checkpoint_unavailable(ref, arg, what) from exc
        raise CheckpointError(f"{what}: cannot load {ref!r} ({type(exc).__name__}: {exc})") from exc


class CLIPEmbedder:
    """Image and text embeddings (projected, L2-normalised) of a transformers CLIP model, in batches."""

    #: the name in error messages
    WHAT = "CLIP model"

    def __init__(
        self,
        checkpoint: str,
        processor: str | None = None,
        device: str | None = None,
        batch_size: int = 16,
        local_files_only: bool | None = None,
        dtype: str | None = None,
    ) -> None:
        self.checkpoint = str(checkpoint)
        self.processor_ref = str(processor) if processor else self.checkpoint
        self.device_arg = device
        self.batch_size = max(1, int(batch_size))
        self.local_files_only = local_files_only
        self.dtype_arg = dtype
        self.model = None

    def load(self) -> CLIPEmbedder:
        """Load model, tokenizer and image processor now (otherwise done on first use)."""
        if self.model is not None:
            return self
        from transformers import AutoTokenizer, CLIPModel
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

        self.device = pick_device(self.device_arg)
        self.dtype = pick_dtype(self.device, self.dtype_arg)
        what = f"{self.WHAT} checkpoint"
        model = _load(
            lambda r, **kw: CLIPModel.from_pretrained(r, dtype=self.dtype, **kw),
            self.checkpoint,
            "checkpoint",
            what,
            self.local_files_only,
        )
        arg = "processor" if self.processor_ref != self.checkpoint else "checkpoint"
        self.tokenizer = _load(
            AutoTokenizer.from_pretrained,
            self.processor_ref,
            arg,
            f"{self.WHAT} tokenizer",
            self.local_files_only,
        )
        self.image_processor = _load(
            CLIPImageProcessorPil.from_pretrained,
            self.processor_ref,
            arg,
            f"{self.WHAT} image processor",
            self.local_files_only,
        )
        self.model = model.to(self.device).eval()
        return self

    def release(self) -> None:
        """Free the model and its device memory."""
        self.model = None
        empty_cuda_cache()

    def image_embeddings(self, images: list[Any]):
        """Normalised projected image embeddings (float32, on CPU), one row per image, in batches."""
        import torch

        self.load()
        rows = []
        for start in range(0, len(images), self.batch_size):
            # PIL's convert drops alpha, as transformers 4.x did in the authors' code (5.x composites on white)
            pil = [open_image(im).convert("RGB") for im in images[start : start + self.batch_size]]
            pixels = self.image_processor(images=pil, return_tensors="pt")["pixel_values"]
            with torch.inference_mode():
                pooled = self.model.vision_model(
                    pixel_values=pixels.to(self.device, self.dtype)
                ).pooler_output
                emb = self.model.visual_projection(pooled).float()
            rows.append(emb / emb.norm(p=2, dim=-1, keepdim=True))
        return torch.cat(rows).cpu()

    def text_embeddings(self, texts: list[str], *, truncate: str = "tokenizer"):
        """Normalised projected text embeddings (float32, on CPU), one row per text, in batches.

        ``truncate="tokenizer"``: the tokenizer truncates to 77 tokens, keeping the end token (PickScore's
        code); ``"positions"``: tokenise in full, then cut ids and mask at the model's position count
        (torchmetrics' CLIPScore, where a long prompt loses its end token)."""
        import torch

        self.load()
        max_pos = self.model.config.text_config.max_position_embeddings
        rows = []
        for start in range(0, len(texts), self.batch_size):
            chunk = list(texts[start : start + self.batch_size])
            if truncate == "tokenizer":
                enc = self.tokenizer(chunk, padding=True, truncation=True, max_length=77, return_tensors="pt")
            else:
                enc = self.tokenizer(chunk, padding=True, return_tensors="pt")
                enc = {k: v[..., :max_pos] for k, v in enc.items()}
            with torch.inference_mode():
                pooled = self.model.text_model(
                    input_ids=enc["input_ids"].to(self.device),
                    attention_mask=enc["attention_mask"].to(self.device),
                ).pooler_output
                emb = self.model.text_projection(pooled).float()
            rows.append(emb / emb.norm(p=2, dim=-1, keepdim=True))
        return torch.cat(rows).cpu()

    def cosines(self, prompts: list[str], images: list[Any], *, truncate: str = "tokenizer"):
        """Cosine of each (prompt, image) pair; each distinct prompt is embedded once."""
        if len(prompts) != len(images):
            raise ValueError(f"{len(prompts)} prompts for {len(images)} images: give one prompt per image")
        if not images:
            import torch

            return torch.zeros(0)
        distinct = list(dict.fromkeys(prompts))
        text = self.text_embeddings(distinct, truncate=truncate)
        index = {p: i for i, p in enumerate(distinct)}
        img = self.image_embeddings(images)
        return (img * text[[index[p] for p in prompts]]).sum(-1)


__all__ = ["CLIPEmbedder"]
