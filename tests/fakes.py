"""Cheap specialists for grid and benchmark runs: real ``Specialist`` subclasses that read the image
(mean brightness) instead of running a network, and count every input they are given."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable

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


# -- a judge whose correctness depends on which specialists it is shown (grid tests, benchmarks) --------

_SHOWN = re.compile(r"^- .+? \(([A-Z]{2})\), ", re.M)


def shown_codes(text: str) -> frozenset[str]:
    """The specialist codes whose evidence a verdict prompt shows (the renderer's ``- Name (CODE), ...`` lines)."""
    return frozenset(_SHOWN.findall(text))


def doc_uniform(key: str) -> float:
    """A deterministic number in [0, 1) for a doc key (its difficulty for ``subset_rule_responder``)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:13], 16) / 16**13


def subset_rule_responder(
    label_of: Callable[[str], tuple[str, int]], quality: Callable[[frozenset[str]], float]
) -> Callable[[dict], str]:
    """A pairwise judge rule for ``OpenAIServer``: right on a doc iff its difficulty ``doc_uniform(key)``
    is below ``quality(shown codes)``, else it prefers the other image. ``label_of(prompt text)`` gives the
    doc's (key, human label). Docs are ordered the same way for every subset, so a subset of higher quality
    is right on a superset of docs: the exhaustive ranking follows ``quality`` exactly."""
    from tests.openai_server import prompt_text

    def respond(request_json: dict) -> str:
        text = prompt_text(request_json)
        key, label = label_of(text)
        right = doc_uniform(key) < quality(shown_codes(text))
        return json.dumps({"analysis": "rule", "preferred": label if right else 3 - label})

    return respond
