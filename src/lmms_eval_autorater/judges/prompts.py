"""Prompts of the AutoRater judge: task framing, images in order, specialist evidence, output contract.

The rendered prompt is part of the response-cache key together with ``TEMPLATE_VERSION``:
change the wording, bump the version, and cached answers are no longer reused.
"""

from __future__ import annotations

from lmms_eval_autorater.images import fit_for_request, read_image_bytes
from lmms_eval_autorater.judges.types import ChatImage, ChatPrompt, JudgeRequest

TEMPLATE_VERSION = "autorater-prompt-v1"

SYSTEM = (
    "You are an expert evaluator of AI-generated and AI-edited images. You judge images the way careful "
    "human raters do: faithfulness to the request, visual quality and artifacts, aesthetics, and, for edits, "
    "preservation of what the request did not ask to change. Always write your analysis first, then decide."
)

_TASK_TEXT = {
    ("generation", "pointwise"): (
        "A text-to-image model generated the image below from the request. Rate the image as a human rater "
        "would, considering how well it matches the request, its visual quality (artifacts, distortions) and "
        "its aesthetics, on a Likert scale from 1 (very poor) to 10 (excellent)."
    ),
    ("generation", "pairwise"): (
        "Two text-to-image generations from the same request are shown as Image 1 and Image 2. Decide which "
        "one a human rater would prefer overall, considering how well each matches the request, its visual "
        "quality (artifacts, distortions) and its aesthetics."
    ),
    ("editing", "pairwise"): (
        "A source image was edited according to the edit request; two edited results are shown as Image 1 "
        "and Image 2 after the source. Decide which edit a human rater would prefer overall: does it do what "
        "was asked, does it preserve what should not change (identity, details, background), and is it "
        "free of artifacts."
    ),
    ("editing", "pointwise"): (
        "A source image was edited according to the edit request; the edited result follows the source. Rate "
        "the edit as a human rater would, on a Likert scale from 1 (very poor) to 10 (excellent)."
    ),
}

_EVIDENCE_NOTE = (
    "The following measurements come from specialist models run on these images. They are evidence, not "
    "ground truth: they can be wrong. Weigh them against what you see."
)


def task_text(task_kind: str, paradigm: str) -> str:
    """The instruction that frames one (task kind, paradigm)."""
    try:
        return _TASK_TEXT[(task_kind, paradigm)]
    except KeyError:
        raise ValueError(f"unknown task kind/paradigm: {task_kind!r}/{paradigm!r}") from None


def _image_parts(req: JudgeRequest) -> list[str | ChatImage]:
    parts: list[str | ChatImage] = []
    labelled = []
    if req.source is not None:
        labelled.append(("Source image:", req.source, "source_image"))
    if len(req.candidates) == 1:
        labelled.append(("Image:", req.candidates[0], "image_1"))
    else:
        for i, ref in enumerate(req.candidates, start=1):
            labelled.append((f"Image {i}:", ref, f"image_{i}"))
    for label, ref, field in labelled:
        # an image larger than a provider takes is resized here, once: the request, the cache key and the
        # token estimate all see these bytes (``images.fit_for_request``)
        data, mime = fit_for_request(read_image_bytes(ref, sample=req.doc_key, field=field))
        parts.append(label)
        parts.append(ChatImage(data=data, mime=mime))
    return parts


def request_label(task_kind: str) -> str:
    """The label written before the request in every prompt: ``Edit request`` for edits, else ``Request``."""
    return "Edit request" if task_kind == "editing" else "Request"


def build_verdict_prompt(req: JudgeRequest, evidence: str = "") -> ChatPrompt:
    """The verdict prompt: framing, request, images (source, 1, 2), optional evidence, JSON contract."""
    from lmms_eval_autorater.judges import contract

    kind = "pairwise" if req.paradigm == "pairwise" else "pointwise"
    parts: list[str | ChatImage] = [task_text(req.task_kind, req.paradigm)]
    parts.append(f"{request_label(req.task_kind)}: {req.request}")
    parts.extend(_image_parts(req))
    if evidence:
        parts.append(f"{_EVIDENCE_NOTE}\n{evidence}")
    if kind == "pairwise" and req.classes == 4:
        parts.append(FOUR_CLASS_NOTE)
        parts.append(contract.FORMAT_INSTRUCTIONS["pairwise4"])
        return ChatPrompt(
            system=SYSTEM,
            parts=tuple(parts),
            json_schema=contract.pairwise4_schema(),
            schema_name="pairwise4_verdict",
        )
    parts.append(contract.FORMAT_INSTRUCTIONS[kind])
    schema = contract.pairwise_schema() if kind == "pairwise" else contract.pointwise_schema()
    return ChatPrompt(system=SYSTEM, parts=tuple(parts), json_schema=schema, schema_name=f"{kind}_verdict")


#: the four-class variant (GenAI-Bench): the two tie classes are allowed answers
FOUR_CLASS_NOTE = "Here a tie is allowed: if neither image is better, say whether both are equally good or both equally bad."


#: the teacher's hint (rationale synthesis, ``training/synthesize.py``); recorded in each manifest
TEACHER_VERSION = "autorater-teacher-v1"
_TEACHER_HINT = (
    "For this sample the human judgement is known: {label}. Write the analysis a careful expert would "
    "write from the request, the images{evidence} that leads to this judgement, then give exactly this "
    "judgement as your answer. Write as if you reached it yourself: do not mention that you were told "
    "it, and do not refer to labels, annotators or a ground truth."
)


def build_teacher_prompt(req: JudgeRequest, evidence: str, label_text: str) -> ChatPrompt:
    """The verdict prompt plus a hint stating the human label, asking for the analysis that leads to it."""
    verdict = build_verdict_prompt(req, evidence)
    hint = _TEACHER_HINT.format(
        label=label_text, evidence=" and the specialist measurements" if evidence else ""
    )
    parts = (*verdict.parts[:-1], hint, verdict.parts[-1])
    return ChatPrompt(
        system=verdict.system, parts=parts, json_schema=verdict.json_schema, schema_name=verdict.schema_name
    )


def build_selection_prompt(req: JudgeRequest, tool_menu: str, applicable: list[str]) -> ChatPrompt:
    """First pass of Auto: the judge sees the sample and the menu of specialists and picks what it needs."""
    from lmms_eval_autorater.judges import contract

    parts: list[str | ChatImage] = [task_text(req.task_kind, req.paradigm)]
    parts.append(f"{request_label(req.task_kind)}: {req.request}")
    parts.extend(_image_parts(req))
    parts.append(
        "Before you judge, you may consult specialist models. Choose the ones whose measurements would help "
        "you judge this sample (an empty list is allowed). Available specialists:\n" + tool_menu
    )
    parts.append(contract.FORMAT_INSTRUCTIONS["tools"])
    return ChatPrompt(
        system=SYSTEM,
        parts=tuple(parts),
        json_schema=contract.tool_selection_schema(applicable),
        schema_name="tool_selection",
    )


def generic_prompt_text(doc: dict) -> str:
    """A text prompt for any lmms-eval VLM run on our tasks (images come through doc_to_visual)."""
    from lmms_eval_autorater.judges import contract

    kind = "pairwise" if doc["paradigm"] == "pairwise" else "pointwise"
    order = (
        "the source image, then Image 1 and Image 2"
        if doc.get("source_image")
        else ("Image 1 and Image 2" if kind == "pairwise" else "the image")
    )
    return (
        f"{task_text(doc['task_kind'], doc['paradigm'])}\nThe images are given in this order: {order}.\n"
        f"{request_label(doc['task_kind'])}: {doc['request']}\n{contract.FORMAT_INSTRUCTIONS[kind]}"
    )


def request_from_generic_prompt(text: str, task_kind: str, paradigm: str) -> str | None:
    """The request cut back out of a prompt that ``generic_prompt_text`` wrote (the reports read it from a
    run's logged inputs); None when ``text`` is not such a prompt."""
    from lmms_eval_autorater.judges import contract

    label = f"{request_label(task_kind)}: "
    start = text.find("\n" + label)
    if start < 0:
        return None
    start += 1 + len(label)
    end = text.rfind("\n" + contract.FORMAT_INSTRUCTIONS[paradigm])
    return text[start:end] if end >= start else None


def tool_menu(codes: list[str]) -> str:
    """The Auto pass's menu: one line per applicable specialist (code, name, what it measures)."""
    from lmms_eval_autorater.specialists.registry import SPECS

    return "\n".join(f"- {c} ({SPECS[c].name}): {SPECS[c].measures}" for c in codes)
