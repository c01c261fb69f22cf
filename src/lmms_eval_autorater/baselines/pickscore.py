"""PickScore (Kirstain et al., 2023): a CLIP-H fine-tuned on Pick-a-Pic preferences, on transformers' CLIPModel.

The authors' scoring (the PickScore_v1 model card), kept: the prompt is tokenised alone with truncation at 77
tokens, image and prompt embeddings are L2-normalised, and the score is ``logit_scale.exp() * cosine``
(about 0..30 on the released checkpoint, whose logit scale is 100). The processor is LAION's CLIP-H one
(``catalog.models.PICKSCORE_PROCESSOR``), as in the authors' code.
"""

from __future__ import annotations

from typing import Any

from lmms_eval_autorater.baselines.clip import CLIPEmbedder
from lmms_eval_autorater.catalog.models import PICKSCORE_CHECKPOINT, PICKSCORE_PROCESSOR


class PickScoreScorer(CLIPEmbedder):
    """PickScore per (prompt, image) pair: ``logit_scale.exp() * cos(image, prompt)``, higher is better."""

    WHAT = "PickScore"

    def __init__(
        self,
        checkpoint: str = PICKSCORE_CHECKPOINT,
        processor: str | None = PICKSCORE_PROCESSOR,
        device: str | None = None,
        batch_size: int = 16,
        local_files_only: bool | None = None,
        dtype: str | None = None,
    ) -> None:
        super().__init__(checkpoint, processor, device, batch_size, local_files_only, dtype)

    def score(self, prompts: list[str], images: list[Any]) -> list[float]:
        """One score per (prompt, image) pair; images are ``PIL.Image`` objects or reference strings."""
        cos = self.cosines(prompts, images, truncate="tokenizer")
        scale = float(self.model.logit_scale.detach().float().exp()) if self.model is not None else 1.0
        return [scale * float(c) for c in cos]


__all__ = ["PickScoreScorer"]
