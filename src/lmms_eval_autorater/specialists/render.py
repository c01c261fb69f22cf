"""The prompt section the judge reads: each specialist labeled, explained, and its outputs per candidate.

Deterministic (it is part of the cached prompt): SPECS order, numbers to 3 decimals.
"""

from __future__ import annotations

from lmms_eval_autorater.specialists.registry import SPECS
from lmms_eval_autorater.specialists.types import Assessment

HEADER = (
    "Specialist assessments (outputs of automatic image-assessment models; use them as evidence, "
    "they can be wrong):"
)


def _num(x: float) -> str:
    return f"{x:g}"


def _reading(code: str) -> str:
    spec = SPECS[code]
    if spec.score_range is None:
        return "text output"
    lo, hi = spec.score_range
    direction = (
        ""
        if spec.higher_better is None
        else (", higher is better" if spec.higher_better else ", lower is better")
    )
    return f"range {_num(lo)}..{_num(hi)}{direction}"


#: what the judge reads for an input the specialist failed on (its reason follows in brackets)
MISSING = "missing (the specialist failed on this image: {reason})"


def _cell(a: Assessment | None, numeric: bool) -> str:
    if a is None:
        return "n/a"
    if a.failed:
        return MISSING.format(reason=str(a.error).split(":", 1)[0].replace("_", " "))
    if numeric and a.value is not None:
        return f"{a.value:.3f}"
    if a.text:
        return " ".join(a.text.split())
    if a.value is not None:
        return f"{a.value:.3f}"
    return "n/a"


def render_assessments(assessments: list[Assessment], n_candidates: int) -> str:
    """Labeled text of ``assessments`` for ``n_candidates`` images (candidate None counts as image 1)."""
    if not assessments:
        return ""
    unknown = sorted({a.code for a in assessments} - set(SPECS))
    if unknown:
        raise ValueError(f"assessments from unknown specialist code(s): {', '.join(unknown)}")
    by_code: dict[str, dict[int, Assessment]] = {}
    for a in assessments:
        cand = a.candidate or 1
        if not 1 <= cand <= n_candidates:
            raise ValueError(f"{a.code}: candidate {cand} outside 1..{n_candidates}")
        by_code.setdefault(a.code, {})[cand] = a
    lines = [HEADER]
    for code, spec in SPECS.items():
        if code not in by_code:
            continue
        numeric = spec.score_range is not None
        lines.append(
            f"- {spec.name} ({code}), {spec.measures}. How to read it: {spec.meaning}; {_reading(code)}."
        )
        cells = [_cell(by_code[code].get(i), numeric) for i in range(1, n_candidates + 1)]
        if n_candidates == 1:
            lines.append(f"  Image: {cells[0]}")
        elif numeric and all(c.replace(".", "").replace("-", "").isdigit() for c in cells):
            lines.append("  " + "; ".join(f"Image {i}: {c}" for i, c in enumerate(cells, 1)))
        else:
            lines.extend(f"  Image {i}: {c}" for i, c in enumerate(cells, 1))
    return "\n".join(lines)
