"""CLIPScore (Hessel et al., 2021) as torchmetrics' ``CLIPScore`` defines it: ``max(100 * cos(E_I, E_C), 0)``.

Written here rather than imported: torchmetrics' class and function return the mean over a batch, and the
per-sample score sits in a private helper, whereas a baseline needs one score per image. What torchmetrics
does is kept: the prompt is tokenised in full and its ids and mask are then cut at the model's position
count (a long prompt loses its end token), embeddings are L2-normalised, and the model defaults to
torchmetrics' default ``openai/clip-vit-large-patch14`` (``catalog.models.CLIPSCORE_CHECKPOINT``).
``tests/test_reward_parity.py`` checks this against torchmetrics 1.9 itself on a tiny CLIP.
"""

from __future__ import annotations

from typing import Any

from lmms_eval_autorater.baselines.clip import CLIPEmbedder
from lmms_eval_autorater.catalog.models import CLIPSCORE_CHECKPOINT


class CLIPScoreScorer(CLIPEmbedder):
    """CLIPScore per (prompt, image) pair, 0..100, higher is better."""

    WHAT = "CLIPScore"

    def __init__(
        self,
        checkpoint: str = CLIPSCORE_CHECKPOINT,
        processor: str | None = None,
        device: str | None = None,
        batch_size: int = 16,
        local_files_only: bool | None = None,
        dtype: str | None = None,
    ) -> None:
        super().__init__(checkpoint, processor, device, batch_size, local_files_only, dtype)

    def score(self, prompts: list[str], images: list[Any]) -> list[float]:
        """One score per (prompt, image) pair; images are ``PIL.Image`` objects or reference strings."""
        cos = self.cosines(prompts, images, truncate="positions")
        return [max(100.0 * float(c), 0.0) for c in cos]


__all__ = ["CLIPScoreScorer"]
