"""DS: DreamSim perceptual similarity of the edit to its source, reported as 1 - DreamSim distance.

Uses the ``dreamsim`` package (pip extra ``specialists``). DreamSim's distance is 1 - cosine similarity
of its embeddings, so the similarity the judge sees is that cosine: 1 = perceptually identical,
-1..1 in theory. The package downloads its weights (a zip from its GitHub release) into
``cache_dir`` on first use; with ``local_files_only`` the weights must already be there.
Variants (``ds_model=``): ensemble (default, DINO+CLIP+OpenCLIP ViT-B/16), dino_vitb16,
open_clip_vitb32, clip_vitb32, dinov2_vitb14, synclr_vitb16. Runs in float32.
"""

from __future__ import annotations

from pathlib import Path

from lmms_eval_autorater.images import load_image
from lmms_eval_autorater.kvstore import default_cache_dir
from lmms_eval_autorater.specialists.base import Specialist, SpecialistInput, missing_dependency
from lmms_eval_autorater.specialists.registry import SPECS
from lmms_eval_autorater.specialists.types import Assessment

VARIANTS = ("ensemble", "dino_vitb16", "open_clip_vitb32", "clip_vitb32", "dinov2_vitb14", "synclr_vitb16")


class DreamSim(Specialist):
    """1 - DreamSim(source, edit), batched; ``cache_dir`` holds (or receives) the weights."""

    spec = SPECS["DS"]

    def __init__(
        self,
        model: str | None = None,
        device: str | None = None,
        local_files_only: bool | None = None,
        batch_size: int = 8,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(model=model, device=device, local_files_only=local_files_only, batch_size=batch_size)
        if self.model_name not in VARIANTS:
            raise ValueError(
                f"unknown DreamSim variant {self.model_name!r}; choose one of {', '.join(VARIANTS)}"
            )
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir() / "dreamsim"
        self._model = None
        self._preprocess = None

    def _lora_dir(self) -> Path:
        tag = "ensemble_" if self.model_name == "ensemble" else f"{self.model_name}_single_"
        return self.cache_dir / f"{tag}lora"

    def _load(self) -> None:
        try:
            import dreamsim
        except ImportError as exc:
            raise missing_dependency("dreamsim", self.spec.extra) from exc
        from lmms_eval_autorater.runtime import default_device

        if self.local_files_only and not self._lora_dir().is_dir():
            raise FileNotFoundError(
                f"DreamSim {self.model_name} weights not found in {self.cache_dir} (local_files_only is set); "
                f"run once online or unzip the release checkpoint there"
            )
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._device = default_device(self.device)
        self._model, self._preprocess = dreamsim.dreamsim(
            pretrained=True, device=self._device, cache_dir=str(self.cache_dir), dreamsim_type=self.model_name
        )
        self._model.eval()

    def _assess_batch(self, items: list[SpecialistInput]) -> list[Assessment]:
        import torch

        for it in items:
            if not it.source:
                raise ValueError(f"DS needs the source image of an edit; got none for {it.image}")
        tensors: dict[str, torch.Tensor] = {}

        def tensor(ref: str) -> torch.Tensor:
            if ref not in tensors:
                tensors[ref] = self._preprocess(load_image(ref, field="image"))
            return tensors[ref]

        src = torch.cat([tensor(it.source) for it in items]).to(self._device)
        edit = torch.cat([tensor(it.image) for it in items]).to(self._device)
        with torch.inference_mode():
            distance = self._model(src, edit).reshape(-1).float().cpu()
        return [Assessment(code="DS", value=float(1.0 - d), version=self.version) for d in distance.tolist()]
