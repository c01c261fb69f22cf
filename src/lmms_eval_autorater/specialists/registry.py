"""The six specialists as data: what each measures, how to read it, and where its code lives.

Order matters: ``SPECS`` is the order the judge reads them in (GD, AE, PA, QS, DF, DS).
Nothing here imports torch; ``create_specialist`` imports a specialist's module only when asked.
"""

from __future__ import annotations

from lmms_eval_autorater.catalog.models import SPECIALIST_CHECKPOINTS
from lmms_eval_autorater.specialists.base import Specialist, SpecialistSpec, load_class

TASK_KINDS: tuple[str, ...] = ("generation", "editing")
_BOTH = ("generation", "editing")
_EDITING = ("editing",)

SPECS: dict[str, SpecialistSpec] = {
    spec.code: spec
    for spec in (
        SpecialistSpec(
            code="GD",
            name="GroundingDINO",
            measures="text-image alignment: which objects named in the request are found in the image",
            applies_to=_BOTH,
            score_range=None,
            higher_better=None,
            meaning=(
                "objects from the request that an open-set detector found, with how many and its highest "
                "confidence (0..1); a requested object that is missing suggests the image does not follow "
                "the request"
            ),
            default_model=SPECIALIST_CHECKPOINTS["GD"],
            extra="specialists",
            class_path="lmms_eval_autorater.specialists.gd:GroundingDino",
            uses_request=True,
            name_parts=(("grounding", "dino"), ("g", "dino")),
            # two detected objects
            typical_value=3.0,
            typical_text="main object x1 (0.62); second object x2 (max 0.48)",
        ),
        SpecialistSpec(
            code="AE",
            name="AesExpert",
            measures="aesthetics: lighting, composition, color and fidelity, as a written critique",
            applies_to=_BOTH,
            score_range=None,
            higher_better=None,
            meaning="an aesthetic critique of the image (lighting, composition, color, fidelity) by AesExpert",
            default_model=SPECIALIST_CHECKPOINTS["AE"],
            extra="specialists",
            class_path="lmms_eval_autorater.specialists.ae:AesExpert",
            served_class_path="lmms_eval_autorater.specialists.served:ServedAesExpert",
            name_parts=(("aes", "expert"),),
            # a critique of ~110 words (AesExpert answers in at most 200 tokens)
            typical_text=(
                "The image has soft, even lighting that gives the scene a calm mood, although the highlights "
                "on the main subject are slightly overexposed. The composition places the subject near the "
                "centre with enough negative space around it, which keeps the eye on the subject, but the "
                "background feels a little empty. The colors are harmonious, dominated by warm tones with a "
                "few cooler accents that add contrast. Fidelity is good overall: edges are sharp and textures "
                "look natural, with minor smoothing in the darker areas and a few small distortions in fine "
                "details. Overall the image is aesthetically pleasing, with good lighting and color but room "
                "for improvement in composition."
            ),
        ),
        SpecialistSpec(
            code="PA",
            name="PAL4VST",
            measures="perceptual artifacts: share of the image covered by visible synthesis artifacts",
            applies_to=_BOTH,
            score_range=(0.0, 1.0),
            higher_better=False,
            meaning=(
                "fraction of the image's pixels that PAL4VST marks as perceptual artifacts "
                "(0 = none found, 1 = everywhere)"
            ),
            default_model="pal4vst-unified",
            extra="specialists",
            class_path="lmms_eval_autorater.specialists.pa:PAL4VST",
            name_parts=(("pal", "4", "vst"),),
            typical_value=0.052,
        ),
        SpecialistSpec(
            code="QS",
            name="Q-SiT",
            measures="technical image quality (clarity, noise, exposure, artifacts)",
            applies_to=_BOTH,
            score_range=(0.0, 1.0),
            higher_better=True,
            meaning="Q-SiT quality score: 0 = bad, 0.25 = poor, 0.5 = fair, 0.75 = good, 1 = excellent",
            default_model=SPECIALIST_CHECKPOINTS["QS"],
            extra="specialists",
            class_path="lmms_eval_autorater.specialists.qs:QSiT",
            served_class_path="lmms_eval_autorater.specialists.served:ServedQSiT",
            name_parts=(("q", "sit"),),
            typical_value=0.618,
        ),
        SpecialistSpec(
            code="DF",
            name="DeepFace",
            measures="identity preservation: similarity of the largest face in the source and in the edit",
            applies_to=_EDITING,
            score_range=(-1.0, 1.0),
            higher_better=True,
            meaning=(
                "cosine similarity of face-recognition embeddings (ArcFace by default) of the largest face in "
                "the source and in the edit (1 = same face; deepface reads ArcFace similarity below 0.32 as a "
                "different person); 'no face detected' when a face is missing"
            ),
            default_model="ArcFace",
            extra="faces",
            class_path="lmms_eval_autorater.specialists.df:DeepFaceSimilarity",
            uses_source=True,
            name_parts=(("deep", "face"),),
            typical_value=0.547,
        ),
        SpecialistSpec(
            code="DS",
            name="DreamSim",
            measures="perceptual similarity of the edit to the source image",
            applies_to=_EDITING,
            score_range=(-1.0, 1.0),
            higher_better=True,
            meaning=(
                "similarity = 1 - DreamSim distance between source and edit (1 = perceptually identical); "
                "higher means more of the source is kept, which is wanted outside the region the "
                "instruction asks to change"
            ),
            default_model="ensemble",
            extra="specialists",
            class_path="lmms_eval_autorater.specialists.ds:DreamSim",
            uses_source=True,
            name_parts=(("dream", "sim"),),
            typical_value=0.803,
        ),
    )
}


def _check_kind(task_kind: str) -> None:
    if task_kind not in TASK_KINDS:
        raise ValueError(f"unknown task kind {task_kind!r}; expected one of {', '.join(TASK_KINDS)}")


def applicable(task_kind: str) -> list[str]:
    """Codes of the specialists that apply to ``task_kind`` ("generation" or "editing"), in SPECS order."""
    _check_kind(task_kind)
    return [code for code, spec in SPECS.items() if task_kind in spec.applies_to]


def servable() -> list[str]:
    """Codes of the specialists that can run behind an OpenAI-compatible server (``<code>_base_url=``)."""
    return [code for code, spec in SPECS.items() if spec.served_class_path]


def create_specialist(code: str, **kwargs) -> Specialist:
    """Build the specialist for ``code`` (model not loaded yet); kwargs go to its constructor. With
    ``base_url`` (and a ``transport``), the served variant (``SpecialistSpec.served_class_path``)."""
    key = code.strip().upper()
    if key not in SPECS:
        raise ValueError(f"unknown specialist code {code!r}; known codes: {', '.join(SPECS)}")
    spec = SPECS[key]
    if kwargs.get("base_url"):
        if not spec.served_class_path:
            raise ValueError(f"specialist {key} cannot be served; servable: {', '.join(servable())}")
        return load_class(spec.served_class_path)(**kwargs)
    kwargs.pop("base_url", None)
    kwargs.pop("transport", None)
    return load_class(spec.class_path)(**kwargs)
