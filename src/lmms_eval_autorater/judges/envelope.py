"""The text our models hand back to lmms-eval, and its decoding in the tasks' ``process_results``.

lmms-eval passes one string per doc from the model to the task. Our judges and baselines
return a JSON envelope carrying the status (ok / parse failure / API failure), the value,
and the facts to log (analysis, raw answer, model snapshot, usage). Any other model's
free text is parsed by the same robust rules (``contract``); nothing is ever guessed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from lmms_eval_autorater.judges.types import Verdict

MARKER = "autorater_verdict"
VERSION = 1


@dataclass
class Decoded:
    """What a task needs from one model output."""

    status: str
    value: float | int | None
    analysis: str = ""
    meta: dict = field(default_factory=dict)


def encode_verdict(verdict: Verdict, paradigm: str) -> str:
    """Serialise a verdict for lmms-eval (it also lands in the logged samples)."""
    value = verdict.preferred if paradigm == "pairwise" else verdict.score
    payload = {
        MARKER: VERSION,
        "status": verdict.status,
        "paradigm": paradigm,
        "value": value,
        "analysis": verdict.analysis,
        "error": verdict.error,
        "raw": verdict.raw,
        "meta": verdict.meta,
    }
    return json.dumps(payload, ensure_ascii=False, default=str)


def decode_output(text: str, paradigm: str) -> Decoded:
    """Decode an envelope, or parse a foreign model's free text; failures stay failures."""
    stripped = (text or "").strip()
    if stripped.startswith("{") and MARKER in stripped[:64]:
        try:
            payload = json.loads(stripped)
        except json.JSONDecodeError:
            payload = None
        if isinstance(payload, dict) and payload.get(MARKER) == VERSION:
            if payload.get("paradigm") not in (None, paradigm):
                return Decoded(
                    "parse_failure", None, meta={"error": f"verdict for {payload.get('paradigm')}"}
                )
            status = payload.get("status", "parse_failure")
            value = payload.get("value")
            if status == "ok" and value is None:
                status = "parse_failure"
            return Decoded(
                status,
                value if status == "ok" else None,
                payload.get("analysis", ""),
                payload.get("meta") or {},
            )
    from lmms_eval_autorater.judges import contract

    parsed = (
        contract.parse_pairwise(stripped) if paradigm == "pairwise" else contract.parse_pointwise(stripped)
    )
    if parsed.ok:
        return Decoded("ok", parsed.value, parsed.analysis, {"form": parsed.form})
    return Decoded("parse_failure", None, parsed.analysis, {"reason": parsed.reason})
