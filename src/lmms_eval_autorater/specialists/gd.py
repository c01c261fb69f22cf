"""GD: GroundingDINO open-set detection of the objects named in the request (text-image alignment).

The request, lower-cased and ending with '.', is the caption; boxes above ``box_threshold`` are
kept and each is labeled with the caption tokens above ``text_threshold`` (0.35 / 0.25, the
GroundingDINO defaults). The judge reads the detected phrases with their counts and top scores.
"""

from __future__ import annotations

from lmms_eval_autorater.images import load_image
from lmms_eval_autorater.runtime import default_device, resolve_dtype
from lmms_eval_autorater.specialists.base import Specialist, SpecialistInput, missing_dependency
from lmms_eval_autorater.specialists.registry import SPECS
from lmms_eval_autorater.specialists.types import Assessment

BOX_THRESHOLD = 0.35
TEXT_THRESHOLD = 0.25


def caption_from_request(request: str) -> str:
    """GroundingDINO's caption form: lower-cased, single-spaced, ending with '.'."""
    text = " ".join(request.lower().split())
    return text if text.endswith(".") else text + "."


def summarize_detections(labels: list[str], scores: list[float], box_threshold: float = BOX_THRESHOLD) -> str:
    """``"cat x2 (max 0.81); red hat x1 (0.44)"``; most frequent first, then by top score, then name."""
    if not labels:
        return f"no objects detected above threshold {box_threshold:g}"
    groups: dict[str, list[float]] = {}
    for label, score in zip(labels, scores, strict=True):
        groups.setdefault(label or "(unnamed)", []).append(float(score))
    order = sorted(groups.items(), key=lambda kv: (-len(kv[1]), -max(kv[1]), kv[0]))
    parts = []
    for label, ss in order:
        top = f"max {max(ss):.2f}" if len(ss) > 1 else f"{ss[0]:.2f}"
        parts.append(f"{label} x{len(ss)} ({top})")
    return "; ".join(parts)


def _clean_label(label: str, special: list[str]) -> str:
    for tok in special:
        label = label.replace(tok, " ")
    return " ".join(label.replace(" .", " ").split()).strip(" .")


class GroundingDino(Specialist):
    """GroundingDINO through transformers (hub id or local folder in HF format); float32 by default.

    float32 also on CUDA: the model is small (~230M) and its deformable attention is
    sensitive in half precision; pass ``dtype="bfloat16"`` to override.
    """

    spec = SPECS["GD"]

    def __init__(
        self,
        model: str | None = None,
        device: str | None = None,
        local_files_only: bool | None = None,
        batch_size: int = 4,
        box_threshold: float = BOX_THRESHOLD,
        text_threshold: float = TEXT_THRESHOLD,
        dtype: str | None = None,
        max_text_len: int = 256,
    ) -> None:
        super().__init__(model=model, device=device, local_files_only=local_files_only, batch_size=batch_size)
        self.box_threshold = float(box_threshold)
        self.text_threshold = float(text_threshold)
        self.dtype = dtype
        self.max_text_len = int(max_text_len)
        self._model = None
        self._processor = None

    @property
    def version(self) -> str:
        return f"{super().version}:box={self.box_threshold:g}:text={self.text_threshold:g}"

    def _load(self) -> None:
        try:
            import torch
            from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor
        except ImportError as exc:
            raise missing_dependency("transformers", self.spec.extra) from exc
        # float32 unless dtype= names one: the box scores are sensitive in half precision (see above)
        self._device = default_device(self.device)
        dtype = resolve_dtype(self.dtype, self._device) if self.dtype else torch.float32
        lfo = bool(self.local_files_only)
        self._processor = AutoProcessor.from_pretrained(self.model_name, local_files_only=lfo)
        self._model = (
            AutoModelForZeroShotObjectDetection.from_pretrained(
                self.model_name, local_files_only=lfo, dtype=dtype
            )
            .to(self._device)
            .eval()
        )
        self._dtype = dtype

    def _assess_batch(self, items: list[SpecialistInput]) -> list[Assessment]:
        import torch

        images = [load_image(it.image, field="image") for it in items]
        captions = [caption_from_request(it.request) for it in items]
        max_len = min(self.max_text_len, getattr(self._model.config, "max_text_len", self.max_text_len))
        inputs = self._processor(
            images=images,
            text=captions,
            return_tensors="pt",
            padding="longest",
            truncation=True,
            max_length=max_len,
        )
        inputs = {
            k: (v.to(self._device, self._dtype) if v.is_floating_point() else v.to(self._device))
            for k, v in inputs.items()
        }
        with torch.inference_mode():
            outputs = self._model(**inputs)
        results = self._processor.post_process_grounded_object_detection(
            outputs,
            inputs["input_ids"],
            threshold=self.box_threshold,
            text_threshold=self.text_threshold,
            target_sizes=[img.size[::-1] for img in images],
        )
        special = list(self._processor.tokenizer.all_special_tokens)
        out = []
        for res in results:
            labels = [_clean_label(lbl, special) for lbl in res["text_labels"]]
            scores = [float(s) for s in res["scores"].float().cpu()]
            out.append(
                Assessment(
                    code="GD",
                    value=float(len(labels)),
                    text=summarize_detections(labels, scores, self.box_threshold),
                    version=self.version,
                )
            )
        return out
