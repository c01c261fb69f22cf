"""Verdict probabilities from token log-probabilities (``scoring=expected``), without assuming a tokenizer.

The answer text and the returned tokens are matched by character offsets: each token's bytes (``bytes``
where the server sends them, else its UTF-8 text) are laid end to end, and the concatenation must spell
the answer text exactly, else the doc has no usable probabilities. The verdict value's characters are
found in the text (``locate_value``), and the token that holds its first character is read.

Reading the alternatives at that token (``top_logprobs``). The chosen token's characters before the value
(``"score":`` in ``":7``) are a prefix every alternative must share; what follows the prefix in an
alternative is read for its leading digits:

* digits followed by a non-digit inside the token (``7"``) or a whole number (``10`` as one token):
  that number;
* an alternative that ends in digits (``1``): if it is the chosen token and another token follows, the
  next position's alternatives continue it: one that starts with digits appends them (``1`` then ``0``
  -> 10), one that starts with anything else ends the number (``1`` then ``}`` -> 1); each such
  continuation carries p(token) * p(continuation). An alternative that is not the chosen token has no
  visible continuation (the API returns none). If the answer shows that the tokenizer keeps numbers whole
  (a token of two or more digits anywhere in the answer or among the alternatives at that position, as
  with GPT-4o), its number ends with the token (``1`` is 1). Otherwise (digits are split, as Llama/Qwen
  tokenizers do, or nothing shows it) its number is the valid completion nearest the chosen value:
  ``1`` beside a chosen ``9`` is 10, beside a chosen ``2`` it is 1 (a tie goes to the shorter number);
* anything else (no digits, a value outside the valid set) is not a verdict and is left out.

The probabilities of the valid values are summed per value and renormalised over the valid values found;
no valid value (or a chosen token that is not among its own alternatives' prefix) means no usable
probabilities. Pure functions: no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: OpenAI's maximum number of alternatives per position
TOP_LOGPROBS = 20
#: the valid values of each answer kind
POINTWISE_VALUES: tuple[int, ...] = tuple(range(1, 11))
PAIRWISE_VALUES: tuple[int, ...] = (1, 2)
PAIRWISE4_VALUES: tuple[int, ...] = (1, 2, 3, 4)

#: the keys that introduce the verdict value (JSON or free text), per paradigm
_KEYS = {
    "pointwise": r"score|rating",
    "pairwise": r"preferred|preference|choice|better|winner|answer|verdict",
}


@dataclass(frozen=True)
class Distribution:
    """The verdict's probabilities: ``probs`` (value -> probability, renormalised over the valid values
    found), or ``reason`` why there are none (``probs`` empty)."""

    probs: dict[int, float]
    reason: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.probs)

    def expected(self) -> float:
        """The expected value, sum of k * p(k)."""
        return float(sum(k * p for k, p in self.probs.items()))

    def p_first(self) -> float:
        """p(1) renormalised over the two pairwise choices 1 and 2 (nan when neither has mass)."""
        a, b = self.probs.get(1, 0.0), self.probs.get(2, 0.0)
        return a / (a + b) if a + b > 0 else float("nan")


def _token_bytes(entry: dict) -> bytes:
    raw = entry.get("bytes")
    if isinstance(raw, list) and all(isinstance(b, int) and 0 <= b < 256 for b in raw):
        return bytes(raw)
    return str(entry.get("token") or "").encode("utf-8")


def locate_value(text: str, value: int, paradigm: str) -> tuple[int, int] | None:
    """Character span of the verdict ``value`` in ``text``: the first standalone occurrence of its digits
    after the last verdict key (``score``, ``preferred``, ...) that has one after it, else the last
    standalone occurrence; an occurrence right after ``/`` or ``out of`` (a denominator) never counts."""
    digits = str(int(value))
    spans = []
    for m in re.finditer(rf"(?<![0-9.]){digits}(?![0-9]|\.[0-9])", text):
        before = text[: m.start()].rstrip()
        if before.endswith("/") or before.lower().endswith("out of"):
            continue
        spans.append((m.start(), m.end()))
    if not spans:
        return None
    keys = [k.end() for k in re.finditer(_KEYS.get(paradigm, _KEYS["pointwise"]), text, re.IGNORECASE)]
    for key_end in reversed(keys):
        after = [s for s in spans if s[0] >= key_end]
        if after:
            return after[0]
    return spans[-1]


def _leading_digits(s: str) -> str:
    m = re.match(r"[0-9]+", s)
    return m.group(0) if m else ""


def value_distribution(
    text: str, content: Sequence[dict] | None, value: int, paradigm: str, valid: Iterable[int]
) -> Distribution:
    """The probabilities of the valid verdict values at the position of ``value`` in ``text`` (see the
    module docstring for the rule); ``content`` is OpenAI's ``choices[0].logprobs.content``."""
    valid = set(valid)
    if not content:
        return Distribution({}, "no log-probabilities in the answer")
    blobs = [_token_bytes(e) for e in content]
    whole = b"".join(blobs)
    if whole.decode("utf-8", errors="replace") != text:
        return Distribution({}, "the returned tokens do not spell the answer text")
    span = locate_value(text, value, paradigm)
    if span is None:
        return Distribution({}, f"the verdict value {value} is not found in the answer text")
    start = len(text[: span[0]].encode("utf-8"))
    offsets, pos = [], 0
    for b in blobs:
        offsets.append(pos)
        pos += len(b)
    i = next(k for k, off in enumerate(offsets) if off <= start < off + len(blobs[k]))
    chosen = blobs[i]
    prefix = whole[offsets[i] : start]
    nxt = content[i + 1] if i + 1 < len(content) else None
    whole_numbers = any(len(_leading_digits(b.decode("utf-8", errors="replace"))) >= 2 for b in blobs) or any(
        len(_leading_digits(_token_bytes(a)[len(prefix) :].decode("utf-8", errors="replace"))) >= 2
        for a in content[i].get("top_logprobs") or []
        if _token_bytes(a).startswith(prefix)
    )
    mass: dict[int, float] = {}
    for alt in content[i].get("top_logprobs") or []:
        raw = _token_bytes(alt)
        if not raw.startswith(prefix):
            continue
        rest = raw[len(prefix) :].decode("utf-8", errors="replace")
        digits = _leading_digits(rest)
        if not digits:
            continue
        p = math.exp(float(alt.get("logprob", -math.inf)))
        if rest == digits and raw == chosen and nxt is not None:
            for cont in nxt.get("top_logprobs") or []:
                tail = _token_bytes(cont).decode("utf-8", errors="replace")
                q = math.exp(float(cont.get("logprob", -math.inf)))
                number = digits + _leading_digits(tail)
                if tail and int(number) in valid:
                    mass[int(number)] = mass.get(int(number), 0.0) + p * q
            continue
        number = int(digits)
        if rest == digits and raw != chosen and not whole_numbers:
            options = [v for v in (number, *(int(digits + c) for c in "0123456789")) if v in valid]
            if options:
                number = min(options, key=lambda v: (abs(v - value), v))
        if number in valid:
            mass[number] = mass.get(number, 0.0) + p
    total = sum(mass.values())
    if total <= 0:
        return Distribution({}, "no valid verdict value among the alternatives at the verdict position")
    return Distribution({k: v / total for k, v in sorted(mass.items())})


def valid_values(paradigm: str, classes: int = 2) -> tuple[int, ...]:
    """The verdict values a doc's answer can take."""
    if paradigm == "pointwise":
        return POINTWISE_VALUES
    return PAIRWISE4_VALUES if classes == 4 else PAIRWISE_VALUES
