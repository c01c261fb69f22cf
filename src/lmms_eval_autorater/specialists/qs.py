"""Q-SiT quality scoring (Zhang et al., 2025; github Q-Future/Q-SiT), run through transformers.

The recipe follows the authors' own scoring code (README "Do the image quality scoring with
q-sit" and ``eval_scripts/qsit_transformers_test_iqa.py`` in Q-Future/Q-SiT):

* user turn (LLaVA-OneVision chat template, text then image): ``QSIT_PROMPT``;
* after the generation prompt the tokens of ``QSIT_ASSISTANT_PREFIX`` = "The quality of this
  image is " (note the trailing space) are appended, tokenised on their own;
* the next-token logits are read at the ids of ``QSIT_LEVELS`` = "Excellent", "Good", "Fair",
  "Poor", "Bad": capitalised, without a leading space (the space is already the last prefix
  token), each word's first token id (``tokenizer(word)["input_ids"][0]``);
* softmax over those five logits, weighted 1, 0.75, 0.5, 0.25, 0 -> a score in 0..1.

``QSiTScorer`` holds the model and is shared by the ``QSiT`` specialist (code "QS") and the
``qsit`` baseline model. Importing this module does not import torch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any, ClassVar

from lmms_eval_autorater import runtime
from lmms_eval_autorater.catalog.models import QSIT_CHECKPOINT
from lmms_eval_autorater.runtime import default_device, empty_cuda_cache, resolve_dtype
from lmms_eval_autorater.specialists.base import (
    Specialist,
    SpecialistInput,
    SpecialistSpec,
    missing_dependency,
)
from lmms_eval_autorater.specialists.registry import SPECS
from lmms_eval_autorater.specialists.types import Assessment

QSIT_PROMPT = (
    "Assume you are an image quality evaluator. \n"
    "Your rating should be chosen from the following five categories: Excellent, Good, Fair, Poor, and Bad "
    "(from high to low). \n"
    "How would you rate the quality of this image?"
)
QSIT_ASSISTANT_PREFIX = "The quality of this image is "
QSIT_LEVELS: tuple[str, ...] = ("Excellent", "Good", "Fair", "Poor", "Bad")
QSIT_WEIGHTS: tuple[float, ...] = (1.0, 0.75, 0.5, 0.25, 0.0)
DEFAULT_QSIT_MODEL = QSIT_CHECKPOINT

#: Used only when a checkpoint ships no chat template: the LLaVA-OneVision (Qwen2) format.
LLAVA_OV_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + ' ' }}"
    "{% for c in message['content'] if c['type'] == 'image' %}{{ '<image>' }}{% endfor %}"
    "{% for c in message['content'] if c['type'] == 'text' %}{{ '\n' + c['text'] }}{% endfor %}"
    "{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

#: the registry holds the one spec (what the judge reads and what keys the cache)
SPEC = SPECS["QS"]


def quality_from_logits(logits: Sequence[float], weights: Sequence[float] = QSIT_WEIGHTS) -> float:
    """Softmax over the five level logits (Excellent..Bad), weighted 1..0: Q-SiT's score in 0..1."""
    values = [float(x) for x in logits]
    if len(values) != len(weights):
        raise ValueError(f"expected {len(weights)} level logits, got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"level logits must be finite, got {values}")
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return sum(w * e for w, e in zip(weights, exps, strict=True)) / total


def level_token_ids(tokenizer: Any, levels: Sequence[str] = QSIT_LEVELS) -> list[int]:
    """First token id of each level word, tokenised alone without special tokens (the authors' lookup)."""
    ids = tokenizer(list(levels), add_special_tokens=False)["input_ids"]
    out = []
    for word, word_ids in zip(levels, ids, strict=True):
        if not word_ids:
            raise ValueError(f"level word {word!r} tokenises to nothing")
        out.append(int(word_ids[0]))
    if len(set(out)) != len(out):
        raise ValueError(
            f"level words {list(levels)} share first token ids {out}; the tokenizer cannot score them"
        )
    return out


def to_pil(image: Any) -> Any:
    """An RGB ``PIL.Image`` from an image reference (path or ``zip::member``) or a PIL image."""
    if isinstance(image, (str, os.PathLike)):
        from lmms_eval_autorater.images import load_image

        return load_image(str(image))
    if hasattr(image, "convert"):
        return image if getattr(image, "mode", None) == "RGB" else image.convert("RGB")
    raise TypeError(f"expected an image reference or a PIL image, got {type(image).__name__}")


class QSiTScorer:
    """Loads a Q-SiT checkpoint (LLaVA-OneVision format) and scores images in 0..1, batched with left padding."""

    def __init__(
        self,
        pretrained: str = DEFAULT_QSIT_MODEL,
        device: str | None = None,
        dtype: Any = None,
        batch_size: int = 8,
        local_files_only: bool | None = None,
        arg: str = "pretrained",
    ) -> None:
        self.pretrained = str(pretrained)
        #: the argument that named the checkpoint (``pretrained=`` of the qsit baseline, ``qs_model=``)
        self.arg = arg
        self.device = str(device) if device else None
        self._dtype_arg = dtype
        self.batch_size = max(1, int(batch_size))
        self.local_files_only = runtime.local_files_only(self.pretrained, local_files_only)
        self._model: Any = None
        self._processor: Any = None
        self._prompt: str = ""
        self._prefix_ids: list[int] = []
        self._level_ids: list[int] = []

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        """Load model and processor (done on first ``score`` otherwise)."""
        if self._model is not None:
            return
        try:
            import torch
            from transformers import AutoProcessor, LlavaOnevisionForConditionalGeneration
        except ImportError as exc:
            raise missing_dependency("transformers", "specialists") from exc

        self.device = default_device(self.device)
        dtype = resolve_dtype(self._dtype_arg, self.device)
        try:
            processor = AutoProcessor.from_pretrained(self.pretrained, local_files_only=self.local_files_only)
        except OSError as exc:
            if self.local_files_only and not os.path.exists(os.path.expanduser(self.pretrained)):
                raise runtime.checkpoint_unavailable(self.pretrained, self.arg, "Q-SiT") from exc
            raise
        tokenizer = processor.tokenizer
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = LlavaOnevisionForConditionalGeneration.from_pretrained(
            self.pretrained, dtype=dtype, local_files_only=self.local_files_only
        )
        model.to(self.device).eval()
        conversation = [
            {"role": "user", "content": [{"type": "text", "text": QSIT_PROMPT}, {"type": "image"}]}
        ]
        template = None if getattr(processor, "chat_template", None) else LLAVA_OV_CHAT_TEMPLATE
        self._prompt = processor.apply_chat_template(
            conversation, add_generation_prompt=True, chat_template=template
        )
        self._prefix_ids = list(tokenizer(QSIT_ASSISTANT_PREFIX, add_special_tokens=False)["input_ids"])
        self._level_ids = level_token_ids(tokenizer)
        self._torch = torch
        self._dtype = dtype
        self._processor = processor
        self._model = model

    def release(self) -> None:
        """Free the model and its device memory."""
        self._model = None
        self._processor = None
        empty_cuda_cache()

    def level_logits(self, images: Sequence[Any]) -> list[list[float]]:
        """The next-token logits of Excellent, Good, Fair, Poor, Bad for each image, in order."""
        self.load()
        out: list[list[float]] = []
        for i in range(0, len(images), self.batch_size):
            out.extend(self._batch_logits([to_pil(im) for im in images[i : i + self.batch_size]]))
        return out

    def score(self, images: Sequence[Any]) -> list[float]:
        """Q-SiT score in 0..1 for each image (reference string or PIL image), in order."""
        return [quality_from_logits(row) for row in self.level_logits(images)]

    def _batch_logits(self, pil_images: list[Any]) -> list[list[float]]:
        torch = self._torch
        n = len(pil_images)
        inputs = self._processor(
            images=pil_images, text=[self._prompt] * n, padding=True, return_tensors="pt"
        )
        prefix = torch.tensor([self._prefix_ids] * n, dtype=inputs["input_ids"].dtype)
        input_ids = torch.cat([inputs["input_ids"], prefix], dim=-1)
        attention_mask = torch.cat([inputs["attention_mask"], torch.ones_like(prefix)], dim=-1)
        # Left padding: positions count real tokens only, so a padded row equals its unpadded self.
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        kwargs = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
        kwargs["pixel_values"] = kwargs["pixel_values"].to(self._dtype)
        kwargs = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in kwargs.items()}
        with torch.inference_mode():
            out = self._model(
                input_ids=input_ids.to(self.device),
                attention_mask=attention_mask.to(self.device),
                position_ids=position_ids.to(self.device),
                use_cache=False,
                logits_to_keep=1,
                **kwargs,
            )
        last = out.logits[:, -1, :].float()
        return last[:, self._level_ids].cpu().tolist()


class QSiT(Specialist):
    """Q-SiT technical-quality score (code "QS"): value in 0..1, no text."""

    spec: ClassVar[SpecialistSpec] = SPEC

    def __init__(
        self,
        model: str | None = None,
        device: str | None = None,
        local_files_only: bool | None = None,
        batch_size: int = 8,
        dtype: Any = None,
    ) -> None:
        super().__init__(model=model, device=device, local_files_only=local_files_only, batch_size=batch_size)
        self._dtype_arg = dtype
        self._model_scorer: QSiTScorer | None = None

    def _load(self) -> None:
        scorer = QSiTScorer(
            pretrained=self.model_name,
            device=self.device,
            dtype=self._dtype_arg,
            batch_size=self.batch_size,
            local_files_only=self.local_files_only,
            arg=self.spec.model_arg,
        )
        scorer.load()
        self._model_scorer = scorer

    def _release(self) -> None:
        if self._model_scorer is not None:
            self._model_scorer.release()
        super()._release()

    def _assess_batch(self, items: list[SpecialistInput]) -> list[Assessment]:
        assert self._model_scorer is not None
        scores = self._model_scorer.score([item.image for item in items])
        return [
            Assessment(code=self.spec.code, value=float(s), text=None, version=self.version) for s in scores
        ]
