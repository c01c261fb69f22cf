"""Cheap specialists for grid and benchmark runs: real ``Specialist`` subclasses that read the image
(mean brightness) instead of running a network, and count every input they are given."""

from __future__ import annotations

from collections import Counter

from lmms_eval_autorater.images import load_image
from lmms_eval_autorater.specialists.base import Specialist
from lmms_eval_autorater.specialists.registry import SPECS
from lmms_eval_autorater.specialists.types import Assessment

CALLS: Counter = Counter()


class _Brightness(Specialist):
    def _load(self) -> None:
        pass

    def _assess_batch(self, items):
        CALLS[self.spec.code] += len(items)
        out = []
        for it in items:
            img = load_image(it.image)
            value = sum(img.convert("L").getdata()) / (255.0 * img.width * img.height)
            text = f"object x1 ({value:.2f})" if self.spec.score_range is None else None
            out.append(
                Assessment(self.spec.code, value=None if text else value, text=text, version=self.version)
            )
        return out


FAKES = {code: type(f"Brightness{code}", (_Brightness,), {"spec": SPECS[code]}) for code in SPECS}


def fake_factory(code: str, **kwargs) -> Specialist:
    """A ``SpecialistPool`` factory building the brightness fakes."""
    kwargs.pop("model", None)
    return FAKES[code](**kwargs)
