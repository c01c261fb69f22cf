"""The judge's output contract: JSON schemas, format instructions, and a strict parser for its answers.

The judge answers with one JSON object, ``analysis`` first:

* pointwise: ``{"analysis": str, "score": int 1..10}`` (Likert-10);
* pairwise: ``{"analysis": str, "preferred": 1 | 2}`` (no tie in the contract);
* tool selection (first pass of Auto): ``{"analysis": str, "tools": [codes]}``, codes from the
  applicable list, the empty list being a valid choice.

Backends that support structured output get the schemas below (OpenAI strict mode: every object has
``additionalProperties: false`` and lists all its properties as required; ``analysis`` is the first
property so the model reasons before it commits). Everything else is parsed from text by rules that
refuse to guess; a refusal is a ``ParseResult`` with ``ok=False`` and a ``reason``.

Parsing rules (in order; the first rule that finds an answer decides):

1. JSON. The whole text is one JSON object (``form="json"``); else the JSON objects inside ```` ``` ````
   code fences (``"json_fenced"``); else JSON objects embedded in prose (``"json_embedded"``). Only
   objects that carry the expected key count (keys are case-insensitive; spaces/hyphens read as ``_``):
   ``score``/``rating`` (also ``final_score``, ``overall_score``, ...); ``preferred``/``choice``/``better``/
   ``winner`` (also ``preference``, ``preferred_image``, ``answer``, ``verdict``, ...); ``tools``
   (also ``selected_tools``, ``specialists``). Of several such objects the last decides, but if two of
   them hold different valid answers the parse fails as conflicting (a JSON echo of an instruction
   such as ``{"preferred": "1 or 2"}`` is not a valid answer, so it never conflicts). An object that
   is the whole text but lacks the key is a failure (the model answered in JSON, just not ours). A JSON
   object cut off by the end of the text (truncation) that mentions the key is a failure, never a
   cue to read its analysis. Single-quoted Python-style dicts (InternVL) are accepted like JSON.
   Nested objects and JSON inside the ``analysis`` string are never read as the answer. A JSON answer
   that contradicts a *final*-marked free-text answer outside it (``Final answer: Image 1``) fails.
2. Values. Score: ``7``, ``7.0`` (integral), ``"7"``, ``"7/10"``, ``"7 out of 10"``; ``7.5`` fails (not a
   point of the Likert scale), so do ``0``, ``11``, booleans and any other denominator (``"85/100"``
   is refused, never rescaled). Preferred: ``1``, ``2``, ``1.0``, ``"2"``, ``"Image 2"``, ``"image_2"``,
   ``"Image #2"``; ordinals (``"second"``) and letters (``"B"``) are refused (the contract names images
   by number, and an ordinal can mean reading order); ``both``/``tie``/``neither``/``cannot decide``/
   ``null`` fail with reason ``"no single preference"``.
3. Free text, when no JSON object carries the key. Markdown (``**``, ``#``, backticks, ``_``) and
   full-width characters are normalised first. Candidate answers:

   * labelled, at the start of a line or sentence: ``Final answer: Image 2``, ``Answer: 2``,
     ``Preferred: Image 1``, ``The better image is Image 2``, ``Score: 7/10``, ``Rating: 8 out of 10``,
     ``The final score is 8``, ``Rating: [[5]]`` (MT-bench style brackets); a qualified label such as
     ``Aesthetics score: 5`` is a sub-score and does not count;
   * verdict phrases: ``I would rate it 6/10``, ``I prefer Image 2``, ``Image 2 is better.``,
     ``Image 2 is my final answer`` (a phrase followed by a qualifier, ``Image 1 is better at colour``,
     or preceded by a negation, ``neither ... nor Image 2 is better``, does not count);
   * pointwise only, lowest rank: a bare ``N/10`` or ``N out of 10`` anywhere;
   * the whole answer being just ``7``, ``7/10``, ``2`` or ``Image 2`` (``form="bare"``).

   A label containing the word *final* marks a final answer: the last final answer wins, unless an
   explicit answer after it says something different (then ambiguous). Without a final answer all
   explicit answers (labelled and phrases) must agree, else the parse fails as ambiguous; the bare
   ``N/10`` rank is used only when there is no explicit answer, and must agree too. Mentions with no
   verdict (``Image 1 shows a cat while Image 2 shows a dog``, ``Image 1 is worse, so Image 2``) fail.
4. Analysis: the JSON ``analysis`` field (or ``reasoning``/``rationale``/``explanation``) when present,
   else the text before the answer (the sentence that holds it excluded), else the text after it.
5. Tools: codes are matched case-insensitively as whole tokens, deduplicated and returned in the
   order of ``applicable``. Tool names map to codes (``TOOL_NAMES``: GroundingDINO -> GD, AesExpert ->
   AE, PAL4VST -> PA, Q-SiT -> QS, DeepFace -> DF, DreamSim -> DS; spacing/hyphens/case free). A token
   that is neither an applicable code, a tool name, ``none``/``[]`` nor a glue word (``and``, ``use``,
   ``tools``...) fails the parse naming it; a known code that is not applicable fails naming it.
   Parenthesised commentary is ignored except for codes inside it. ``none``/``[]`` is the empty
   selection; ``none`` together with codes fails. Free text: ``Tools: GD, QS`` (or ``Selected tools:``,
   ``Final answer:``, with a bullet list under the label), or the whole answer being just the list.
"""

from __future__ import annotations

import ast
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lmms_eval_autorater.specialists.registry import SPECS

#: bump when a change to the rules could change a parsed value (cache keys, leaderboard notes)
PARSER_VERSION = "1"

TOOL_CODES: tuple[str, ...] = tuple(SPECS)
TOOL_NAMES: dict[str, str] = {code: spec.name for code, spec in SPECS.items()}
_FORMAT_POINTWISE = (
    "Output only a JSON object, with no text before or after it, in this form: "
    '{"analysis": "<your reasoning, written first>", "score": <one whole number from 1 to 10>}. '
    "The score is on a 1-10 scale (1 = worst, 10 = best): a whole number, no fraction, no other scale."
)
_FORMAT_PAIRWISE = (
    "Output only a JSON object, with no text before or after it, in this form: "
    '{"analysis": "<your comparison of the two images, written first>", "preferred": <1 or 2>}. '
    '"preferred" is the number of the better image: 1 for Image 1, 2 for Image 2. '
    "Choose exactly one; a tie is not allowed."
)
_FORMAT_TOOLS = (
    "Output only a JSON object, with no text before or after it, in this form: "
    '{"analysis": "<why each specialist would or would not help, written first>", '
    '"tools": [<zero or more codes of the available specialists>]}. '
    'Use the codes exactly as listed (for example "GD"); an empty list [] means you need none.'
)
#: what a prompt appends, per kind; they hold no valid JSON, so an echo of them never parses as an answer
FORMAT_INSTRUCTIONS: dict[str, str] = {
    "pointwise": _FORMAT_POINTWISE,
    "pairwise": _FORMAT_PAIRWISE,
    "tools": _FORMAT_TOOLS,
    "tool_selection": _FORMAT_TOOLS,
}


# ---------------------------------------------------------------------------------------------
# schemas


def _object_schema(properties: dict[str, dict]) -> dict:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def pointwise_schema() -> dict:
    """JSON schema of a pointwise verdict (OpenAI strict mode), ``analysis`` before ``score``."""
    return _object_schema(
        {
            "analysis": {"type": "string", "description": "Your reasoning, written before the score."},
            "score": {
                "type": "integer",
                "enum": list(range(1, 11)),
                "description": "Likert score from 1 (worst) to 10 (best).",
            },
        }
    )


def pairwise_schema() -> dict:
    """JSON schema of a pairwise verdict (OpenAI strict mode): ``preferred`` is 1 or 2, no tie."""
    return _object_schema(
        {
            "analysis": {"type": "string", "description": "Your comparison, written before the choice."},
            "preferred": {
                "type": "integer",
                "enum": [1, 2],
                "description": "The better image: 1 for Image 1, 2 for Image 2.",
            },
        }
    )


def tool_selection_schema(applicable: Sequence[str]) -> dict:
    """JSON schema of the Auto first pass: ``tools`` is a list drawn from the ``applicable`` codes.

    Raises ``ValueError`` for an empty or duplicated list (with nothing to choose, skip the pass).
    """
    codes = [str(c).strip().upper() for c in applicable]
    if not codes:
        raise ValueError("tool_selection_schema: no applicable tools (skip the selection pass)")
    if len(set(codes)) != len(codes) or not all(codes):
        raise ValueError(f"tool_selection_schema: bad applicable codes {list(applicable)!r}")
    names = ", ".join(f"{c} = {TOOL_NAMES[c]}" if c in TOOL_NAMES else c for c in codes)
    return _object_schema(
        {
            "analysis": {"type": "string", "description": "Why each specialist would or would not help."},
            "tools": {
                "type": "array",
                "items": {"type": "string", "enum": codes},
                "description": f"Codes of the specialists to run ({names}); [] for none.",
            },
        }
    )


# ---------------------------------------------------------------------------------------------
# result


@dataclass
class ParseResult:
    """One parsed judge answer. ``value`` is set only when ``ok``; ``reason`` says why not otherwise.

    ``form`` names the rule that found the answer ("json", "json_fenced", "json_embedded", "free_text",
    "bare"), or the rule whose answer was refused; it is "" when nothing answer-like was found.
    """

    ok: bool
    value: int | list[str] | None = None
    analysis: str = ""
    reason: str = ""
    form: str = ""


@dataclass(frozen=True)
class _Val:
    """One read value: ``value`` when ok, else ``reason``; ``show`` is how it reads in a message."""

    ok: bool
    value: Any = None
    reason: str = ""
    show: str = ""

    @property
    def key(self) -> tuple:
        return ("ok", self.value) if self.ok else ("bad", self.reason)


def _bad(reason: str, show: str = "") -> _Val:
    return _Val(False, None, reason, show or reason)


@dataclass
class _Cand:
    start: int
    end: int
    val: _Val
    tier: int  # 1 explicit (label or verdict phrase), 2 bare N/10
    final: bool = False


@dataclass
class _Span:
    start: int
    end: int
    obj: dict | None  # decoded object; None when malformed or cut off
    closed: bool
    fenced: bool = False


@dataclass(frozen=True)
class _Kind:
    what: str  # "score" / "preference" / "tool selection"
    key_label: str
    keys: frozenset[str]
    from_json: Callable[[Any], _Val]
    free_text: Callable[[str], list[_Cand]]
    bare: Callable[[str], _Val | None]
    to_value: Callable[[Any], Any] = field(default=lambda v: v)


# ---------------------------------------------------------------------------------------------
# JSON discovery

_FENCE_RE = re.compile(r"```[ \t]*[A-Za-z0-9_+-]*[ \t]*\n?(.*?)```", re.S)
_ANALYSIS_KEYS = ("analysis", "reasoning", "rationale", "explanation")


def _match_brace(text: str, start: int) -> int | None:
    """End (exclusive) of the object opened at ``start``, string-aware; None when it never closes."""
    depth, quote, escaped = 0, "", False
    for k in range(start, len(text)):
        c = text[k]
        if quote:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return k + 1
    return None


def _decode(s: str) -> dict | None:
    try:
        obj = json.loads(s)
    except (ValueError, RecursionError):
        if len(s) > 50_000:
            return None
        try:
            obj = ast.literal_eval(s)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return None
    if isinstance(obj, dict) and all(isinstance(k, str) for k in obj):
        return obj
    return None


def _scan_spans(text: str) -> list[_Span]:
    """Top-level ``{...}`` objects that look like JSON (``{`` then a quote or ``}``), in order."""
    fences = [(m.start(1), m.end(1)) for m in _FENCE_RE.finditer(text)]
    spans: list[_Span] = []
    i, n = 0, len(text)
    while True:
        i = text.find("{", i)
        if i < 0:
            break
        j = i + 1
        while j < n and text[j] in " \t\r\n":
            j += 1
        if j >= n or text[j] not in "\"'}":
            i += 1
            continue
        end = _match_brace(text, i)
        if end is None:
            spans.append(_Span(i, n, None, closed=False))
            break
        span = _Span(i, end, _decode(text[i:end]), closed=True)
        span.fenced = any(a <= i and end <= b for a, b in fences)
        spans.append(span)
        i = end
    return spans


def _norm_key(k: str) -> str:
    return re.sub(r"[\s\-]+", "_", k.strip().lower())


def _hits(obj: dict, keys: frozenset[str]) -> list[Any]:
    return [v for k, v in obj.items() if _norm_key(k) in keys]


def _mentions_key(s: str, keys: Iterable[str]) -> bool:
    alt = "|".join(re.escape(k).replace("_", r"[_\s-]") for k in keys)
    return re.search(rf"[\"']\s*(?:{alt})\s*[\"']\s*:", s, re.I) is not None


def _json_analysis(obj: dict) -> str | None:
    for want in _ANALYSIS_KEYS:
        for k, v in obj.items():
            if _norm_key(k) == want:
                return v.strip() if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
    return None


# ---------------------------------------------------------------------------------------------
# text helpers

_CHAR_MAP = str.maketrans(
    {
        "*": " ",
        "`": " ",
        "#": " ",
        "_": " ",
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u00a0": " ",
    }
)


def _normalize(text: str) -> str:
    """Same-length copy for free-text matching: markdown to spaces, full-width forms folded (NFKC)."""
    if not text.isascii():
        chars = []
        for c in text:
            if ord(c) < 128:
                chars.append(c)
            else:
                folded = unicodedata.normalize("NFKC", c)
                chars.append(folded if len(folded) == 1 else c)
        text = "".join(chars)
    return text.translate(_CHAR_MAP)


def _mask(text: str, spans: Iterable[_Span]) -> str:
    chars = list(text)
    for s in spans:
        chars[s.start : s.end] = " " * (s.end - s.start)
    return "".join(chars)


_TRIM = " \t\r\n*#_->:`"


def _clean(s: str) -> str:
    s = re.sub(r"```[A-Za-z0-9_+-]*\s*$", "", s.rstrip())
    s = re.sub(r"^\s*```", "", s)
    return s.strip(_TRIM)


def _sentence_start(text: str, pos: int) -> int:
    k = pos
    while k > 0:
        c = text[k - 1]
        if c == "\n" or (c in ".!?" and (k >= len(text) or text[k].isspace())):
            break
        k -= 1
    return k


_HEADER = re.compile(r"^(?:analysis|reasoning|rationale|explanation)[\s*_#]*:[\s*_#]*", re.I)


def _analysis_around(text: str, start: int, end: int) -> str:
    before = _clean(text[: _sentence_start(text, start)])
    return _HEADER.sub("", before or _clean(text[end:].lstrip(" \t.,;:!?)]")))


_NEGATIONS = frozenset({"not", "no", "never", "neither", "nor", "hardly", "cannot", "nothing"})


def _negated(text: str, start: int) -> bool:
    seg = max(text.rfind(c, 0, start) for c in ".;!?\n,:") + 1
    words = re.findall(r"[a-z']+", text[seg:start].lower())[-4:]
    return any(w in _NEGATIONS or w.endswith("n't") for w in words)


# start of a line or sentence, an optional bullet/number, connective and article: where a label may stand
_START = (
    r"(?:^[ \t]*(?:[-\u2022>]+[ \t]*|\d+[.)][ \t]+)?|(?<=[.;!?:])[ \t]*)"
    r"(?:(?:so|thus|therefore|hence|overall|in\s+conclusion|in\s+summary|to\s+conclude|in\s+short|"
    r"all\s+in\s+all|finally)\s*,?\s+)?"
    r"(?:(?:my|the|our)\s+)?"
)
_SEP = r"\s*(?:\([^)\n]{0,20}\)\s*)?(?:[:=]|\bis\b|\bwould\s+be\b|[-\u2013](?=\s))\s*(?:[:=]\s*)?"
_FLAGS = re.I | re.M


# ---------------------------------------------------------------------------------------------
# pointwise


_SCORE_KEYS = frozenset(
    {"score", "rating", "final_score", "final_rating", "overall_score", "overall_rating", "likert_score"}
)
_NUM = r"(?P<num>-?\d+(?:\.\d+)?)(?:\s*(?:/|out\s+of)\s*(?P<den>\d+(?:\.\d+)?))?"
_NO_RANGE = r"(?!\s*(?:[-\u2013]|to|or)\s*-?\d)"
_PW_END = (
    r"(?=\s*(?:$|[.,;:!?)\]\"'(\n\u2014\u2013]|-(?:\s|$))"
    r"|\s+(?:for|because|since|as|overall|given|due|on|and|but|which|here)\b)"
)
_PW_LABEL = re.compile(
    _START
    + r"(?P<label>(?:(?P<q>final|overall)\s+)?(?:answer|score|rating|verdict|grade)|(?P<q2>final)|overall)"
    + _SEP
    + r"(?:\[\[?\s*|\(\s*)?(?:an?\s+)?"
    + _NUM
    + _NO_RANGE
    + _PW_END,
    _FLAGS,
)
_PW_OBJECT = (
    r"(?:it|this|that|(?:this|that|the)\s+(?:\w+\s+)?(?:image|edit|result|output|generation|picture|one))"
)
_PW_PHRASE = re.compile(
    r"(?<![\w'])(?:rate|rated|rating|give|gave|giving|assign|assigned|grade|graded|deserves?|earns?|scores?|"
    r"scored)\s+(?:" + _PW_OBJECT + r"\s+)?(?:of\s+|at\s+)?(?:an?\s+)?(?:(?:score|rating|grade)\s+of\s+)?"
    r"(?:an?\s+)?" + _NUM + _NO_RANGE + _PW_END,
    _FLAGS,
)
_PW_BARE = re.compile(
    r"(?<![\w./])(?P<num>-?\d+(?:\.\d+)?)\s*(?:/|out\s+of)\s*(?P<den>10|100)(?![\d.]*\d)" + _PW_END, _FLAGS
)
_PW_WHOLE = re.compile(r"\s*" + _NUM + r"\s*\.?\s*", re.I)


def _score_from(num: str, den: str | None) -> _Val:
    show = f"{num}/{den}" if den else num
    if den is not None and float(den) != 10:
        return _bad(f"score {show} is not on the 1..10 scale (not rescaled)", show)
    x = float(num)
    if not x.is_integer():
        return _bad(f"score {num} is not a whole number on the 1..10 scale", show)
    n = int(x)
    if not 1 <= n <= 10:
        return _bad(f"score {n} outside 1..10", show)
    return _Val(True, n, "", str(n))


def _score_json(v: Any) -> _Val:
    if isinstance(v, bool) or v is None:
        return _bad(f"score {json.dumps(v)} is not a number")
    if isinstance(v, int):
        return _score_from(str(v), None)
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return _bad(f"score {v} is not a number")
        return _score_from(repr(v), None)
    if isinstance(v, str):
        m = _PW_WHOLE.fullmatch(v)
        return _score_from(m["num"], m["den"]) if m else _bad(f"score {v!r} is not a number")
    return _bad(f"score has type {type(v).__name__}")


def _score_free(text: str) -> list[_Cand]:
    cands = []
    for m in _PW_LABEL.finditer(text):
        final = (m["q"] or m["q2"] or "").lower() == "final"
        cands.append(_Cand(m.start(), m.end(), _score_from(m["num"], m["den"]), 1, final))
    for m in _PW_PHRASE.finditer(text):
        if not _negated(text, m.start()):
            cands.append(_Cand(m.start(), m.end(), _score_from(m["num"], m["den"]), 1))
    for m in _PW_BARE.finditer(text):
        cands.append(_Cand(m.start(), m.end(), _score_from(m["num"], m["den"]), 2))
    return sorted(cands, key=lambda c: c.start)


def _score_bare(text: str) -> _Val | None:
    m = _PW_WHOLE.fullmatch(text)
    return _score_from(m["num"], m["den"]) if m else None


# ---------------------------------------------------------------------------------------------
# pairwise


_PREF_KEYS = frozenset(
    {
        "preferred",
        "preference",
        "preferred_image",
        "choice",
        "better",
        "better_image",
        "winner",
        "final_answer",
        "answer",
        "verdict",
        "final_choice",
        "chosen_image",
    }
)
_IMG_WORD = r"(?:image|img|picture|pic|candidate|option|output)"
_IMG = r"(?:image|img|picture|pic)[\s#-]*(?:no\.?\s*|number\s*)?(?P<img>[12])(?![.,]?\d)"
_TIE = (
    r"both(?:\s+(?:images?|are\s+equal(?:ly\s+good)?))?|neither(?:\s+(?:image|one))?|none|(?:a\s+)?tie|draw|"
    r"equal|equally\s+good|no\s+(?:clear\s+)?preference|cannot\s+decide|can'?t\s+decide|undecided|"
    r"n/?a|unsure|same"
)
_PR_END = (
    r"(?=\s*(?:$|[.,;:!?)\]\"'(\n\u2014\u2013]|-(?:\s|$))"
    r"|\s+(?:over|because|since|as|due|given|overall|here|for|wins)\b"
    r"|\s+(?:is|was)\s+(?:the\s+)?(?:better|preferred|superior|winner|stronger)\b)"
)
_PR_LABEL = re.compile(
    _START
    + r"(?P<label>(?:(?P<q>final|overall)\s+)?(?:answer|verdict|choice|decision|preference|winner|selection|"
    r"judge?ment|pick|(?:preferred|better)(?:\s+(?:image|one|output|option|candidate))?)|(?P<q2>final))"
    + r"(?:\s*\([^)\n]{0,20}\))?\s*"
    r"(?:[:=]|\bis\b|\bwould\s+be\b|\bgoes\s+to\b|[-\u2013](?=\s))\s*(?:[:=]\s*)?"
    r"(?:\[\[?\s*|\(\s*)?(?:(?P<tie>" + _TIE + r")|(?:the\s+)?"
    r"(?:" + _IMG_WORD + r"[\s#-]*(?:no\.?\s*|number\s*)?)?(?P<img>[12])(?![.,]?\d))" + _PR_END,
    _FLAGS,
)
_PR_PHRASES = (
    re.compile(
        r"\bi(?:\s+(?:would|will|should)|'d)?\s+(?:(?:definitely|clearly|slightly)\s+)?"
        r"(?:prefer|choose|pick|select|favou?r|go\s+with)\s+(?:the\s+)?" + _IMG + _PR_END,
        _FLAGS,
    ),
    re.compile(
        r"\b" + _IMG + r"\s+(?:is|was)\s+(?:(?:clearly|slightly|much|significantly|definitely|overall)\s+)?"
        r"(?:the\s+)?(?:better|preferred|superior|winner|stronger)"
        r"(?:\s+(?:one|image|choice|option|result|output|edit|generation))?" + _PR_END,
        _FLAGS,
    ),
    re.compile(
        r"\b"
        + _IMG
        + r"\s+(?:is|was)\s+(?:my\s+)?(?:(?P<q>final)\s+)?(?:answer|choice|pick|preference|verdict)"
        + _PR_END,
        _FLAGS,
    ),
    re.compile(r"\b" + _IMG + r"\s+wins\b", _FLAGS),
    re.compile(
        r"\bthe\s+(?:better|preferred|superior|stronger|winning)\s+(?:image|one|option|output|candidate)\s+"
        r"(?:is|was|would\s+be)\s+" + _IMG + _PR_END,
        _FLAGS,
    ),
)
_PR_TIE_PHRASE = re.compile(
    r"\b(?:it'?s|is|are|it\s+is)\s+a\s+tie\b|\b(?:cannot|can'?t|unable\s+to)\s+decide\b"
    r"|\b(?:cannot|can'?t|unable\s+to)\s+(?:choose|determine)\s+(?:between|which)\b"
    r"|\bno\s+(?:clear\s+)?preference\b|\b(?:both|they)\s+(?:images\s+)?are\s+equally\s+(?:good|bad|strong|"
    r"weak|preferred|matched|valid)\b|\bneither\b[^.;\n]{0,40}?\b(?:is|are)\s+(?:clearly\s+)?"
    r"(?:better|preferred|superior)\b",
    _FLAGS,
)
_PR_WHOLE = re.compile(r"\s*(?:" + _IMG_WORD + r"[\s#-]*(?:no\.?\s*)?)?([12])\s*\.?\s*", re.I)
_TIE_WHOLE = re.compile(
    r"\s*(?:" + _TIE + r"|cannot\s+(?:choose|determine)|it'?s\s+a\s+tie)\s*[.!]?\s*", re.I
)
_ORDINAL = re.compile(r"\s*(?:the\s+)?(?:first|second|former|latter|left|right)(?:\s+\w+)?\s*\.?\s*", re.I)
_NO_SINGLE = "no single preference"


def _pref(n: int) -> _Val:
    return _Val(True, n, "", f"Image {n}")


def _pref_json(v: Any) -> _Val:
    if v is None:
        return _bad(_NO_SINGLE, "null")
    if isinstance(v, bool):
        return _bad(f"preferred {json.dumps(v)} is not 1 or 2")
    if isinstance(v, (int, float)):
        if v in (1, 2):
            return _pref(int(v))
        return _bad(f"preferred must be 1 or 2, got {v!r}")
    if isinstance(v, str):
        s = _normalize(v).strip().strip("\"'")
        m = _PR_WHOLE.fullmatch(s)
        if m:
            return _pref(int(m[1]))
        if not s or _TIE_WHOLE.fullmatch(s):
            return _bad(_NO_SINGLE, s or "''")
        if _ORDINAL.fullmatch(s):
            return _bad(f"preferred {v!r} is an ordinal, not an image number (1 or 2)")
        return _bad(f"preferred {v!r} is not 1 or 2")
    return _bad(f"preferred has type {type(v).__name__}")


def _pref_free(text: str) -> list[_Cand]:
    cands = []
    for m in _PR_LABEL.finditer(text):
        final = (m["q"] or m["q2"] or "").lower() == "final"
        val = _bad(_NO_SINGLE, m["tie"]) if m["tie"] else _pref(int(m["img"]))
        cands.append(_Cand(m.start(), m.end(), val, 1, final))
    for rx in _PR_PHRASES:
        for m in rx.finditer(text):
            if not _negated(text, m.start()):
                final = bool(rx.groupindex.get("q")) and (m["q"] or "").lower() == "final"
                cands.append(_Cand(m.start(), m.end(), _pref(int(m["img"])), 1, final))
    for m in _PR_TIE_PHRASE.finditer(text):
        cands.append(_Cand(m.start(), m.end(), _bad(_NO_SINGLE, m[0]), 1))
    return sorted(cands, key=lambda c: c.start)


def _pref_bare(text: str) -> _Val | None:
    m = _PR_WHOLE.fullmatch(text)
    if m:
        return _pref(int(m[1]))
    if _TIE_WHOLE.fullmatch(text):
        return _bad(_NO_SINGLE, text.strip())
    return None


# ---------------------------------------------------------------------------------------------
# tools


_TOOL_KEYS = frozenset(
    {"tools", "selected_tools", "tool_selection", "specialists", "selected_specialists", "tool_codes"}
)
_NONE_WORDS = frozenset({"none", "nothing", "no", "null", "empty"})
_GLUE_WORDS = frozenset(
    {
        "and",
        "or",
        "plus",
        "also",
        "the",
        "a",
        "an",
        "tool",
        "tools",
        "use",
        "using",
        "run",
        "i",
        "we",
        "will",
        "would",
        "need",
        "needed",
        "is",
        "are",
        "be",
        "select",
        "selected",
        "choose",
        "chosen",
        "specialist",
        "specialists",
        "required",
        "necessary",
        "only",
        "both",
        "with",
        "all",
        "these",
        "code",
        "codes",
    }
)
_TOOL_NAME_RE: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"(?<![A-Za-z0-9])" + r"[\s_-]*".join(map(re.escape, parts)) + r"(?![A-Za-z0-9])", re.I),
        code,
    )
    for code, spec in SPECS.items()  # each name's spellings: the spec's name_parts
    for parts in spec.name_parts
]
_TOOL_LABEL = re.compile(
    _START
    + r"(?P<label>(?:(?P<q>final|overall)\s+)?(?:answer|tools?|selected\s+tools?|tool\s+selection|selection|"
    r"chosen\s+tools?|specialists?|selected\s+specialists?|tools?\s+(?:needed|required|to\s+(?:use|run|call)))"
    r"|(?P<q2>final))\s*(?:[:=]|[-\u2013](?=\s))[ \t]*(?P<v>[^\n]*)",
    _FLAGS,
)
_BULLET = re.compile(r"[ \t]*(?:[-\u2022]|\d+[.)])[ \t]*([^\n]*)")


def _applicable_codes(applicable: Sequence[str]) -> list[str]:
    return [str(c).strip().upper() for c in applicable]


def _resolve_tools(s: str, applicable: list[str]) -> _Val:
    """Codes named in ``s`` (codes, tool names, ``none``, ``[]``), strictly; order of ``applicable``."""
    for rx, code in _TOOL_NAME_RE:
        s = rx.sub(f" {code} ", s)
    found: set[str] = set()
    saw_none = "[]" in s
    depth = 0
    for m in re.finditer(r"[A-Za-z0-9]+|[()\[\]]", s):
        tok = m[0]
        if tok == "(":
            depth += 1
            continue
        if tok == ")":
            depth = max(0, depth - 1)
            continue
        if tok in "[]":
            continue
        up, low = tok.upper(), tok.lower()
        if up in applicable:
            found.add(up)
        elif up in TOOL_CODES:
            return _bad(f"tool {up} is not applicable here (applicable: {', '.join(applicable) or 'none'})")
        elif depth:
            continue  # commentary in parentheses
        elif low in _NONE_WORDS:
            saw_none = True
        elif low not in _GLUE_WORDS:
            return _bad(f"unknown tool {tok!r} (applicable: {', '.join(applicable) or 'none'})")
    if saw_none and found:
        return _bad("tool selection names both 'none' and tools")
    if not found and not saw_none:
        return _bad("empty tool selection (write [] or none for no tools)")
    codes = tuple(c for c in applicable if c in found)
    return _Val(True, codes, "", ", ".join(codes) or "none")


def _tools_json(v: Any, applicable: list[str]) -> _Val:
    if isinstance(v, str):
        return _resolve_tools(v, applicable)
    if not isinstance(v, list):
        return _bad(f"tools has type {type(v).__name__}, not a list")
    if not v:
        return _Val(True, (), "", "none")
    if not all(isinstance(x, str) for x in v):
        return _bad("tools list holds a non-string")
    return _resolve_tools(" , ".join(v), applicable)


def _tools_free(text: str, applicable: list[str]) -> list[_Cand]:
    cands = []
    for m in _TOOL_LABEL.finditer(text):
        value, end = m["v"].strip(), m.end()
        if not value:  # a bullet list under the label
            items = []
            for b in _BULLET.finditer(text, end + 1):
                if b.start() != end + 1:
                    break
                items.append(re.split(r":|\s[-\u2013\u2014]\s", b[1], maxsplit=1)[0])
                end = b.end()
            value = ", ".join(items)
        else:
            value = re.split(r"\.(?:\s|$)", value, maxsplit=1)[0]
        if not value.strip():
            continue
        final = (m["q"] or m["q2"] or "").lower() == "final"
        cands.append(_Cand(m.start(), end, _resolve_tools(value, applicable), 1, final))
    return cands


def _tools_bare(text: str, applicable: list[str]) -> _Val | None:
    s = text.strip().strip(".").strip()
    if not s or len(re.findall(r"\w+", s)) > 12 or _TOOL_LABEL.search(s):
        return None
    words = {t.upper() for t in re.findall(r"[A-Za-z0-9]+", s)}
    named = any(rx.search(s) for rx, _ in _TOOL_NAME_RE)
    if "[]" in s or named or words & ({*TOOL_CODES, *applicable} | {w.upper() for w in _NONE_WORDS}):
        return _resolve_tools(s, applicable)
    return None


# ---------------------------------------------------------------------------------------------
# the driver


def _choose(cands: list[_Cand], what: str) -> tuple[_Cand | None, str]:
    """The answer among free-text candidates, or the reason there is none (see the module rules)."""
    explicit = [c for c in cands if c.tier == 1]
    finals = [c for c in explicit if c.final]
    if finals:
        chosen = finals[-1]
        later = [c for c in explicit if c.start > chosen.start and c.val.key != chosen.val.key]
        if later:
            return None, (f"ambiguous: '{later[0].val.show}' follows the final answer '{chosen.val.show}'")
        return chosen, ""
    for tier in (1, 2):
        group = [c for c in cands if c.tier == tier]
        if not group:
            continue
        shows: dict[tuple, str] = {}
        for c in group:
            shows.setdefault(c.val.key, c.val.show)
        if len(shows) > 1:
            return None, f"ambiguous: different answers ({', '.join(shows.values())}) and none marked final"
        return group[-1], ""
    return None, f"no {what} found"


def _result(val: _Val, analysis: str, form: str, to_value: Callable[[Any], Any]) -> ParseResult:
    if val.ok:
        return ParseResult(True, to_value(val.value), analysis, "", form)
    return ParseResult(False, None, analysis, val.reason, form)


def _parse(text: str | None, kind: _Kind) -> ParseResult:
    if text is None or not str(text).strip():
        return ParseResult(False, reason="empty answer")
    text = str(text)
    spans = _scan_spans(text)
    lo, hi = len(text) - len(text.lstrip()), len(text.rstrip())
    whole = len(spans) == 1 and spans[0].closed and spans[0].start == lo and spans[0].end == hi
    norm = _normalize(text)
    masked = _mask(norm, spans)
    mention_keys = set(kind.keys) | set(_ANALYSIS_KEYS)

    # rule 1: JSON
    if whole and spans[0].obj is not None and not _hits(spans[0].obj, kind.keys):
        return ParseResult(
            False,
            None,
            _json_analysis(spans[0].obj) or "",
            f"JSON object has no {kind.key_label} key",
            "json",
        )
    keyed = [s for s in spans if s.obj is not None and _hits(s.obj, kind.keys)]
    if keyed:
        if whole:
            tier, form = keyed, "json"
        elif any(s.fenced for s in keyed):
            tier, form = [s for s in keyed if s.fenced], "json_fenced"
        else:
            tier, form = keyed, "json_embedded"
        vals = [kind.from_json(s.obj) for s in tier]
        chosen, val = tier[-1], vals[-1]
        analysis = _json_analysis(chosen.obj)
        if analysis is None:
            analysis = _clean(text[: chosen.start]) or _clean(_mask(text, spans)[chosen.end :])
        oks: dict[tuple, str] = {}
        for v in vals:
            if v.ok:
                oks.setdefault(v.key, v.show)
        if len(oks) > 1:
            return ParseResult(
                False, None, analysis, f"conflicting answers in JSON objects: {', '.join(oks.values())}", form
            )
        if not val.ok:
            return _result(val, analysis, form, kind.to_value)
        for s in spans:
            if not s.closed and s.start >= chosen.end and _mentions_key(text[s.start :], mention_keys):
                return ParseResult(False, None, analysis, "truncated JSON object after the answer", form)
        for c in kind.free_text(masked):
            if c.final and c.val.key != val.key:
                return ParseResult(
                    False,
                    None,
                    analysis,
                    f"JSON answer '{val.show}' conflicts with final answer '{c.val.show}'",
                    form,
                )
        return _result(val, analysis, form, kind.to_value)

    # JSON-looking text that is cut off or broken never falls back to reading its insides
    tail = spans[-1] if spans else None
    if tail is not None and not tail.closed and _mentions_key(text[tail.start :], mention_keys):
        before = _clean(text[: tail.start])
        return ParseResult(False, None, before, "truncated JSON object (answer cut off)", "json")

    # rule 3: free text
    bare = kind.bare(masked)
    if bare is not None:
        return _result(bare, "", "bare", kind.to_value)
    chosen_c, reason = _choose(kind.free_text(masked), kind.what)
    if chosen_c is None:
        malformed = any(
            s.closed and s.obj is None and _mentions_key(text[s.start : s.end], kind.keys) for s in spans
        )
        if reason.startswith("no ") and malformed:
            reason = f"malformed JSON object and no {kind.what} in the text"
        return ParseResult(False, None, _clean(text), reason, "free_text" if "ambig" in reason else "")
    analysis = _analysis_around(text, chosen_c.start, chosen_c.end)
    return _result(chosen_c.val, analysis, "free_text", kind.to_value)


_POINTWISE = _Kind(
    "score", "score", _SCORE_KEYS, lambda v: _first(v, _score_json, "score"), _score_free, _score_bare
)
_PAIRWISE = _Kind(
    "preference",
    "preferred",
    _PREF_KEYS,
    lambda v: _first(v, _pref_json, "preferred"),
    _pref_free,
    _pref_bare,
)


def _first(obj: dict, read: Callable[[Any], _Val], label: str) -> _Val:
    """The value of the object's answer key(s); synonyms that disagree make it a conflict."""
    vals = [read(v) for v in _hits(obj, _SCORE_KEYS if label == "score" else _PREF_KEYS)]
    keys = {v.key for v in vals}
    if len(keys) > 1:
        return _bad(f"conflicting {label} keys in one JSON object: {', '.join(v.show for v in vals)}")
    return vals[0]


def parse_pointwise(text: str | None) -> ParseResult:
    """Read a Likert-10 score (int 1..10) from a judge answer; refuses anything it would have to guess."""
    return _parse(text, _POINTWISE)


def parse_pairwise(text: str | None) -> ParseResult:
    """Read the preferred image (1 or 2) from a judge answer; ties, hedges and mere mentions fail."""
    return _parse(text, _PAIRWISE)


def parse_tool_selection(text: str | None, applicable: Sequence[str]) -> ParseResult:
    """Read the Auto first pass: the chosen tool codes (a list, maybe empty) in the order of ``applicable``.

    An unknown or non-applicable code fails the parse, naming it; tool names map to their codes.
    """
    codes = _applicable_codes(applicable)

    def from_json(obj: dict) -> _Val:
        vals = [_tools_json(v, codes) for v in _hits(obj, _TOOL_KEYS)]
        if len({v.key for v in vals}) > 1:
            return _bad("conflicting tools keys in one JSON object")
        return vals[0]

    kind = _Kind(
        "tool selection",
        "tools",
        _TOOL_KEYS,
        from_json,
        lambda t: _tools_free(t, codes),
        lambda t: _tools_bare(t, codes),
        to_value=list,
    )
    return _parse(text, kind)


# ---------------------------------------------------------------------------------------------
# four classes (GenAI-Bench): 1 = Image 1 better, 2 = Image 2 better, 3 = both good, 4 = both bad

_FORMAT_PAIRWISE4 = (
    "Output only a JSON object, with no text before or after it, in this form: "
    '{"analysis": "<your comparison of the two images, written first>", '
    '"verdict": <"1", "2", "both_good" or "both_bad">}. '
    '"verdict" is "1" if Image 1 is better, "2" if Image 2 is better, "both_good" if they are equally '
    'good, "both_bad" if they are equally bad. Choose exactly one.'
)
FORMAT_INSTRUCTIONS["pairwise4"] = _FORMAT_PAIRWISE4
#: the four verdict words of the JSON contract -> class codes
VERDICT4 = {"1": 1, "2": 2, "both_good": 3, "both_bad": 4}
_VERDICT4_KEYS = frozenset({"verdict", "judgement", "judgment", "preferred", "answer"})
#: GenAI-Bench's own vote strings (A = Image 1); ``[[A=B]]`` names no quality and is refused here
_VOTE4 = {"A>B": 1, "A>>B": 1, "B>A": 2, "B>>A": 2, "A=B=Good": 3, "A=B=Bad": 4}
_VOTE4_RE = re.compile(r"\[\[\s*(A\s*>>?\s*B|B\s*>>?\s*A|A\s*=\s*B\s*=\s*(?:Good|Bad))\s*\]\]", re.I)


def pairwise4_schema() -> dict:
    """JSON schema of a four-class verdict (OpenAI strict mode): ``verdict`` is 1, 2 or one of the two ties."""
    return _object_schema(
        {
            "analysis": {"type": "string", "description": "Your comparison, written before the verdict."},
            "verdict": {
                "type": "string",
                "enum": list(VERDICT4),
                "description": "1 or 2: the better image; both_good / both_bad: equally good / equally bad.",
            },
        }
    )


def _vote4(s: str) -> _Val:
    key = re.sub(r"\s+", "", s).lower()
    for vote, code in _VOTE4.items():
        if key == vote.lower():
            return _Val(True, code, show=f"[[{vote}]]")
    return _bad(f"unknown vote {s!r}")


def _verdict4_json(v: Any) -> _Val:
    if isinstance(v, bool):
        return _bad(f"not a verdict: {v!r}")
    if isinstance(v, (int, float)) and v in (1, 2):
        return _Val(True, int(v), show=str(int(v)))
    if isinstance(v, str):
        s = v.strip().strip("[]").strip()
        word = _norm_key(s)
        if word in VERDICT4:
            return _Val(True, VERDICT4[word], show=word)
        m = re.fullmatch(r"(?:image[\s_#-]*)?([12])", word)
        if m:
            return _Val(True, int(m.group(1)), show=m.group(1))
        if any(op in s for op in (">", "=")):
            return _vote4(s)
    return _bad(f"not one of the four verdicts: {v!r}", show=repr(v))


def _verdict4_free(text: str) -> list[_Cand]:
    return [_Cand(m.start(), m.end(), _vote4(m.group(1)), 1) for m in _VOTE4_RE.finditer(text)]


def _verdict4_bare(text: str) -> _Val | None:
    s = text.strip().strip(".").strip()
    m = _VOTE4_RE.fullmatch(s) or re.fullmatch(
        r"(A\s*>>?\s*B|B\s*>>?\s*A|A\s*=\s*B\s*=\s*(?:Good|Bad))", s, re.I
    )
    return _vote4(m.group(1)) if m else None


def _verdict4_first(obj: dict) -> _Val:
    vals = [_verdict4_json(v) for v in _hits(obj, _VERDICT4_KEYS)]
    if len({v.key for v in vals}) > 1:
        return _bad(f"conflicting verdict keys in one JSON object: {', '.join(v.show for v in vals)}")
    return vals[0]


_PAIRWISE4 = _Kind(
    "four-class verdict", "verdict", _VERDICT4_KEYS, _verdict4_first, _verdict4_free, _verdict4_bare
)


def parse_pairwise4(text: str | None) -> ParseResult:
    """Read a four-class verdict (1, 2, 3 = both good, 4 = both bad) from a judge answer: the JSON contract's
    ``verdict``, or GenAI-Bench's ``[[A>B]]`` / ``[[B>A]]`` / ``[[A=B=Good]]`` / ``[[A=B=Bad]]`` (A = Image 1);
    different votes without a final one fail as ambiguous, as for the other kinds."""
    return _parse(text, _PAIRWISE4)
