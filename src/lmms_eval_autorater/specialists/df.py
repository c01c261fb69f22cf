"""DF: DeepFace identity similarity of the largest face in the source and in the edit.

Uses the ``deepface`` package (pip extra ``faces`` = ``deepface[pytorch]``); deepface >= 0.0.100 runs
its recognition models on PyTorch, so no tensorflow. The engine is forced to PyTorch through
``DEEPFACE_BACKEND_ENGINE`` unless the user set it. Defaults: ``df_model=ArcFace`` (512-d, the
strongest identity model deepface ships; deepface's own default VGG-Face is older and weaker) and
``detector="retinaface"`` (robust on generated faces; ``opencv`` is lighter but misses many faces).
The value is the raw cosine similarity of the two embeddings, in -1..1 (higher = identity better
preserved). When either image has no detectable face the result says so (value None and a text),
instead of deepface's ``enforce_detection=False`` fallback of embedding the whole image.
Weights are downloaded by deepface into ``$DEEPFACE_HOME/.deepface/weights`` (``home=`` sets it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lmms_eval_autorater.images import load_image
from lmms_eval_autorater.specialists.base import Specialist, SpecialistInput, missing_dependency
from lmms_eval_autorater.specialists.registry import SPECS
from lmms_eval_autorater.specialists.types import Assessment

DEFAULT_DETECTOR = "retinaface"
NO_FACE = {
    (True, False): "no face detected in the source",
    (False, True): "no face detected in the edit",
    (True, True): "no face detected in the source or the edit",
}


def cosine(a, b) -> float:
    """Cosine similarity of two vectors."""
    import numpy as np

    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / denom) if denom > 0 else 0.0


@contextmanager
def _no_downloads(active: bool | None) -> Iterator[None]:
    """With ``local_files_only``: make deepface's weight download fail unless the file is already there."""
    if not active:
        yield
        return
    from deepface.commons import folder_utils, weight_utils

    original = weight_utils.download_weights_if_necessary

    def local_only(file_name: str, source_url, compress_type=None) -> str:
        target = os.path.join(folder_utils.get_deepface_home(), ".deepface/weights", file_name)
        if not os.path.isfile(target):
            raise FileNotFoundError(f"deepface weights {target} missing and local_files_only is set")
        return original(file_name, source_url, compress_type)

    weight_utils.download_weights_if_necessary = local_only
    try:
        yield
    finally:
        weight_utils.download_weights_if_necessary = original


class DeepFaceSimilarity(Specialist):
    """Cosine similarity of deepface embeddings of the largest detected face, source vs edit."""

    spec = SPECS["DF"]

    def __init__(
        self,
        model: str | None = None,
        device: str | None = None,
        local_files_only: bool | None = None,
        batch_size: int = 8,
        detector: str = DEFAULT_DETECTOR,
        align: bool = True,
        home: str | None = None,
    ) -> None:
        super().__init__(model=model, device=device, local_files_only=local_files_only, batch_size=batch_size)
        self.detector = detector
        self.align = bool(align)
        self.home = home
        self._model = None

    @property
    def version(self) -> str:
        return f"{super().version}:det={self.detector}:align={int(self.align)}"

    def _load(self) -> None:
        os.environ.setdefault("DEEPFACE_BACKEND_ENGINE", "pytorch")
        if self.home:
            os.environ["DEEPFACE_HOME"] = str(self.home)
        try:
            from deepface import DeepFace
            from deepface.modules import modeling
            from deepface.modules.exceptions import FaceNotDetected
        except ImportError as exc:
            raise missing_dependency("deepface", self.spec.extra) from exc
        self._deepface = DeepFace
        self._face_not_detected = FaceNotDetected
        with _no_downloads(self.local_files_only):
            client = modeling.build_model(task="facial_recognition", model_name=self.model_name)
            if self.detector != "skip":
                modeling.build_model(task="face_detector", model_name=self.detector)
        if self.device and hasattr(client, "model") and hasattr(client, "device"):
            import torch

            client.device = torch.device(self.device)
            client.model.to(client.device)
        self._model = client

    def _release(self) -> None:
        try:
            from deepface.modules import modeling
        except ImportError:
            modeling = None
        cached = getattr(modeling, "cached_models", None) if modeling else None
        if isinstance(cached, dict):
            cached.get("facial_recognition", {}).pop(self.model_name, None)
            cached.get("face_detector", {}).pop(self.detector, None)
        super()._release()

    def embed(self, ref: str) -> Any:
        """Embedding of the largest face in the image ``ref``, or None when no face is detected."""
        import numpy as np

        bgr = np.ascontiguousarray(np.asarray(load_image(ref, field="image"))[:, :, ::-1])
        try:
            reps = self._deepface.represent(
                img_path=bgr,
                model_name=self.model_name,
                detector_backend=self.detector,
                enforce_detection=True,
                align=self.align,
                max_faces=1,
            )
        except self._face_not_detected:
            return None
        return np.asarray(reps[0]["embedding"], dtype=np.float64)

    def _assess_batch(self, items: list[SpecialistInput]) -> list[Assessment]:
        embeddings: dict[str, Any] = {}

        def emb(ref: str):
            if ref not in embeddings:
                embeddings[ref] = self.embed(ref)
            return embeddings[ref]

        out = []
        for it in items:
            if not it.source:
                raise ValueError(f"DF needs the source image of an edit; got none for {it.image}")
            src, edit = emb(it.source), emb(it.image)
            if src is None or edit is None:
                out.append(
                    Assessment(
                        code="DF", value=None, text=NO_FACE[(src is None, edit is None)], version=self.version
                    )
                )
            else:
                out.append(Assessment(code="DF", value=cosine(src, edit), version=self.version))
        return out
