"""The specialist interface and its registry, kept as data (as pyiqa keeps its assessors).

A specialist measures one thing about a candidate image (optionally against the request
text or the source image) and returns an ``Assessment``. Models load lazily on the
device the user names and can be released, so that all six and an 8B judge fit one GPU
in turn. Nothing here imports torch.
"""

from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

from lmms_eval_autorater import runtime
from lmms_eval_autorater.runtime import empty_cuda_cache
from lmms_eval_autorater.specialists.types import Assessment


@dataclass(frozen=True)
class SpecialistInput:
    """One thing to assess: the request text, a candidate image reference, and the source for editing."""

    request: str
    image: str
    source: str | None = None


@dataclass(frozen=True)
class SpecialistSpec:
    """What a specialist is, as data: shown to users and to the judge (Auto selection and prompt labels)."""

    code: str
    name: str
    measures: str
    #: task kinds it applies to: "generation" and/or "editing"
    applies_to: tuple[str, ...]
    #: how the number is to be read, e.g. "0..1, higher is better"; None for text-only output
    score_range: tuple[float, float] | None
    higher_better: bool | None
    #: what the judge is told the output means (one line)
    meaning: str
    default_model: str
    #: the pip extra that installs what it needs
    extra: str
    class_path: str
    uses_request: bool = False
    uses_source: bool = False
    model_arg: str = field(default="")
    #: other spellings of ``name`` a judge may answer with, as parts joined by optional space/hyphen/underscore
    #: when matched ("Grounding DINO", "q-sit", "QSiT"); read by the Auto answer parser
    name_parts: tuple[tuple[str, ...], ...] = ()
    #: a typical output (value, text), standing for an uncached one in the cost estimate
    typical_value: float | None = None
    typical_text: str | None = None
    #: ``module:Class`` of the same specialist behind an OpenAI-compatible server (``<code>_base_url=``);
    #: None when it cannot be served
    served_class_path: str | None = None

    def __post_init__(self) -> None:
        if not self.model_arg:
            object.__setattr__(self, "model_arg", f"{self.code.lower()}_model")


class Specialist(ABC):
    """Base class: subclasses set ``spec`` and implement ``_load`` and ``_assess_batch``."""

    spec: ClassVar[SpecialistSpec]

    def __init__(
        self,
        model: str | None = None,
        device: str | None = None,
        local_files_only: bool | None = None,
        batch_size: int = 8,
    ) -> None:
        self.model_name = model or self.spec.default_model
        self.device = device
        self.local_files_only = local_files_only
        self.batch_size = batch_size
        self._loaded = False

    @property
    def version(self) -> str:
        """Identity of the specialist's implementation and checkpoint; part of every cache key."""
        return f"{self.spec.code}:{type(self).__name__}:v1:{self.model_name}"

    def load(self) -> None:
        """Load the model now (otherwise done on first use)."""
        if not self._loaded:
            check_checkpoint(self.model_name, self.spec.model_arg)
            name = str(self.model_name)
            hub_id = name.count("/") == 1 and not os.path.exists(os.path.expanduser(name))
            inferred = self.local_files_only is None and hub_id
            if inferred:  # a hub id, offline or without network: no download is tried (cached files load)
                self.local_files_only = runtime.local_files_only(name)
            try:
                self._load()
            except OSError as exc:  # what transformers, huggingface_hub and deepface raise for a missing file
                if inferred and self.local_files_only:
                    what = f"specialist {self.spec.code} ({self.spec.name})"
                    raise runtime.checkpoint_unavailable(name, self.spec.model_arg, what) from exc
                raise
            self._loaded = True

    def release(self) -> None:
        """Free the model and its device memory."""
        self._release()
        self._loaded = False

    def assess(self, request: str, image: str, source: str | None = None) -> Assessment:
        """Assess one candidate image."""
        return self.assess_many([SpecialistInput(request, image, source)])[0]

    def assess_many(self, items: list[SpecialistInput]) -> list[Assessment]:
        """Assess many inputs in batches of ``batch_size``, in order."""
        self.load()
        out: list[Assessment] = []
        for i in range(0, len(items), self.batch_size):
            out.extend(self._assess_batch(items[i : i + self.batch_size]))
        if len(out) != len(items):
            raise RuntimeError(f"{self.spec.code}: returned {len(out)} assessments for {len(items)} inputs")
        return out

    @abstractmethod
    def _load(self) -> None: ...

    def _release(self) -> None:
        """Default release: drop attributes holding models, empty the CUDA cache if torch is loaded."""
        for name in list(vars(self)):
            if name.startswith("_model") or name.startswith("_processor"):
                setattr(self, name, None)
        empty_cuda_cache()

    @abstractmethod
    def _assess_batch(self, items: list[SpecialistInput]) -> list[Assessment]: ...


def check_checkpoint(model: str, arg: str) -> None:
    """A checkpoint given as a path that does not exist is an error naming the model argument.

    Without this, a mistyped folder reaches the hub client and fails as a malformed repo id.
    Hub ids have the form ``org/name``; names such as ``ArcFace`` or ``ensemble`` are not paths.
    """
    text = str(model)
    path_like = (
        text.startswith(("/", "./", "../", "~")) or text.count("/") > 1 or text.endswith((".pt", ".pth"))
    )
    if path_like and not os.path.exists(os.path.expanduser(text)):
        raise FileNotFoundError(f"{arg}={text!r}: no such file or folder")


def missing_dependency(package: str, extra: str) -> ImportError:
    """The error a specialist raises when its package is absent: with the exact install command."""
    return ImportError(
        f"{package} is not installed; install it with: pip install 'lmms-eval-autorater[{extra}]'"
    )


def load_class(class_path: str) -> type:
    """Import ``module:Class`` lazily."""
    module, cls = class_path.split(":")
    return getattr(importlib.import_module(module), cls)
