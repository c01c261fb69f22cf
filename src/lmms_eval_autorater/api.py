"""The Python API: an AutoRater judge on your own images, for scripts and training loops.

``AutoRater(judge, **model_args)`` takes the same names and arguments as lmms-eval's ``--model`` and
``--model_args`` and gets its judge from the factory, so the caches, retries, specialists and failure
accounting are the benchmarks' own. Images may be paths, bytes, PIL images or numpy arrays; images that
are not files are written once, by content, under the cache folder so that every cache keys them by
content. Nothing here imports torch until a local judge or a specialist is used.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmms_eval_autorater.errors import InputError
from lmms_eval_autorater.images import image_sha256
from lmms_eval_autorater.judges.types import JudgeRequest, Verdict

#: what an image may be: a path, encoded bytes, a PIL image, or an HxW(x3|x4) uint8 numpy array
ImageLike = Any


@dataclass
class Result:
    """One judged item: ``status`` says whether ``score`` / ``preferred`` is usable (never guessed)."""

    id: str
    status: str  # "ok" | "input_error" | "parse_failure" | "api_error" | "budget_skipped"
    score: int | None = None
    #: pairwise: 1 or 2, 0 for a tie (only with swap=true, when the two orders disagree)
    preferred: int | None = None
    analysis: str = ""
    specialists: list[dict] = field(default_factory=list)
    usage: dict = field(default_factory=dict)
    error: str | None = None
    raw: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def from_verdict(cls, item_id: str, v: Verdict) -> Result:
        meta = dict(v.meta)
        return cls(
            id=item_id,
            status=v.status,
            score=v.score,
            preferred=v.preferred,
            analysis=v.analysis,
            specialists=list(meta.pop("assessments", []) or []),
            usage=dict(meta.get("usage") or {}),
            error=v.error,
            raw=v.raw,
            meta=meta,
        )


class ImageInputError(InputError):
    """An image argument that is none of the accepted forms."""


def image_ref(image: ImageLike, folder: str | os.PathLike, *, where: str = "image") -> str:
    """A file reference for ``image``: a path is used as is; bytes, PIL images and arrays are written
    once, named by their content hash, under ``folder``. Undecodable content is left to the judge's input
    check (an ``input_error`` naming the item), never guessed."""
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
    else:
        data = _encode_png(image, where)
    path = Path(folder) / f"{image_sha256(data)[:32]}.img"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return str(path)


def _encode_png(image: Any, where: str) -> bytes:
    from PIL import Image

    if not isinstance(image, Image.Image):
        try:
            import numpy as np
        except ImportError:  # pragma: no cover - numpy is a dependency
            np = None
        if np is not None and isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim not in (2, 3):
                raise ImageInputError(
                    f"{where}: a numpy image must be uint8 HxW, HxWx3 or HxWx4, got {image.dtype} {image.shape}"
                )
            image = Image.fromarray(image)
        else:
            raise ImageInputError(
                f"{where}: expected a path, bytes, a PIL image or a numpy array, got {type(image).__name__}"
            )
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


class AutoRater:
    """An AutoRater judge for your own images.

    >>> rater = AutoRater("autorater_gpt4o", tools="GD+QS")          # doctest: +SKIP
    >>> rater.score("a red cube on a table", "gen.png").score          # doctest: +SKIP
    7
    """

    def __init__(self, judge: str = "autorater_gpt4o", *, progress: bool = True, **model_args: Any) -> None:
        from lmms_eval_autorater.judges.factory import build_judge, judge_config

        self.config = judge_config(judge, model_args)
        self.judge = build_judge(self.config, progress=progress)
        self.name = judge
        self._inputs = Path(self.config.cache_file("inputs"))
        self._counter = 0

    # -- building requests ----------------------------------------------------------------------
    def _ids(self, ids: Sequence[str] | None, n: int) -> list[str]:
        if ids is not None:
            if len(ids) != n:
                raise ValueError(f"ids has {len(ids)} entries for {n} items")
            return [str(i) for i in ids]
        start, self._counter = self._counter, self._counter + n
        return [str(start + k) for k in range(n)]

    def _request(self, item_id: str, request: str, images: Sequence[ImageLike], source: ImageLike | None):
        refs = tuple(
            image_ref(img, self._inputs, where=f"item {item_id!r} image_{k}")
            for k, img in enumerate(images, 1)
        )
        src = None if source is None else image_ref(source, self._inputs, where=f"item {item_id!r} source")
        return JudgeRequest(
            doc_key=f"api/{item_id}",
            task_kind="editing" if src is not None else "generation",
            paradigm="pointwise" if len(refs) == 1 else "pairwise",
            request=str(request),
            candidates=refs,
            source=src,
        )

    def _run(self, ids: list[str], reqs: list[JudgeRequest]) -> list[Result]:
        from lmms_eval_autorater.judges.judge import AllInputsFailedError, input_error_verdict

        try:
            verdicts = self.judge.judge_all(reqs)
        except AllInputsFailedError:  # a batch of bad images is a result for the caller, not a crash
            verdicts = [input_error_verdict(p) for p in self.judge.check(reqs)]  # memoised: no decode again
        return [Result.from_verdict(i, v) for i, v in zip(ids, verdicts)]

    # -- public ---------------------------------------------------------------------------------
    def score(self, request: str, image: ImageLike, source: ImageLike | None = None) -> Result:
        """A Likert-10 score of one image for its prompt (or, with ``source``, of one edit)."""
        return self.score_many([request], [image], None if source is None else [source])[0]

    def compare(
        self, request: str, image_1: ImageLike, image_2: ImageLike, source: ImageLike | None = None
    ) -> Result:
        """Which of two images (or edits of ``source``) better follows ``request``: ``preferred`` 1 or 2."""
        return self.compare_many([request], [image_1], [image_2], None if source is None else [source])[0]

    def score_many(
        self,
        requests: Sequence[str],
        images: Sequence[ImageLike],
        sources: Sequence[ImageLike | None] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[Result]:
        """``score`` over lists, judged concurrently and through the caches; one ``Result`` per item, in order."""
        if len(requests) != len(images) or (sources is not None and len(sources) != len(images)):
            raise ValueError("requests, images (and sources) must have the same length")
        item_ids = self._ids(ids, len(images))
        srcs = list(sources) if sources is not None else [None] * len(images)
        reqs = [self._request(i, r, [img], s) for i, r, img, s in zip(item_ids, requests, images, srcs)]
        return self._run(item_ids, reqs)

    def compare_many(
        self,
        requests: Sequence[str],
        images_1: Sequence[ImageLike],
        images_2: Sequence[ImageLike],
        sources: Sequence[ImageLike | None] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[Result]:
        """``compare`` over lists, judged concurrently and through the caches."""
        n = len(requests)
        if len(images_1) != n or len(images_2) != n or (sources is not None and len(sources) != n):
            raise ValueError("requests, images_1, images_2 (and sources) must have the same length")
        item_ids = self._ids(ids, n)
        srcs = list(sources) if sources is not None else [None] * n
        reqs = [
            self._request(i, r, [a, b], s)
            for i, r, a, b, s in zip(item_ids, requests, images_1, images_2, srcs)
        ]
        return self._run(item_ids, reqs)

    def reward(
        self,
        requests: Sequence[str],
        images: Sequence[ImageLike],
        sources: Sequence[ImageLike | None] | None = None,
    ) -> list[float]:
        """Rewards for a training loop: the judge's score mapped to [0, 1] ((score - 1) / 9).

        Failure policy: an item with no usable score (input error, parse failure, API failure) gets NaN,
        never a made-up value; mask it out (``math.isnan``) before using the batch.
        """
        return [
            (r.score - 1) / 9.0 if r.ok and r.score is not None else math.nan
            for r in self.score_many(requests, images, sources)
        ]

    def stats(self) -> dict:
        """Calls, cache hits, retries and failures of this rater's backend so far."""
        return self.judge.completer.stats()
