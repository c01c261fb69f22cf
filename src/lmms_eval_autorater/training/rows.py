"""The training-row format: what ``synthesize`` writes and ``train`` reads, and the functions both use.

One row = one judged sample with a kept teacher rationale (a ``datasets`` dataset, ``FEATURES``):

* ``id`` (the source's doc id, unique within the source), ``source`` (``imagereward_pair``,
  ``imagereward_point``, ``aigiqa``, ``editreward``), ``group`` (prompt id or set: the stratum),
  ``paradigm`` (pairwise / pointwise), ``task_kind`` (generation / editing), ``request`` (prompt or
  edit request);
* ``images``: the image bytes, embedded (the dataset is self-contained), in the judge's order: the
  source image when editing, then the candidates; ``image_fields`` names each (``source_image``,
  ``image_1``, ``image_2``). ``row_request`` writes each once as a content-addressed file
  (``<sha256>.<ext>`` under ``$AUTORATER_CACHE_DIR/training_images/``, or ``image_dir``) and points the
  request at those stable paths, so every image reference stays a plain path (``images.py``) and caches
  keyed by content match. Loaded datasets decode images to PIL; read with ``load_rows(DIR)`` (bytes kept
  undecoded) or cast the column with ``RAW_IMAGES`` to get the teacher's exact bytes. A PIL image is
  accepted too, re-encoded as PNG (same pixels, other bytes);
* ``specialists``: JSON list of the structured assessments (``Assessment`` fields, per candidate);
  ``evidence``: the exact specialist section the judge renders from them at inference
  (``specialists.render.render_assessments``), "" when ``tools`` is empty; ``tools``: the codes shown;
* ``label``: the human label (pairwise: the preferred image's index 1/2; pointwise: the raw score
  on the source's scale), ``label_scale`` (``rank``, ``vote``, ``overall_rating_1_7``, ``mos_0_5``);
* ``verdict``: the training target in the contract's form (pairwise: 1/2 = the label; pointwise: the
  label mapped onto Likert-10 by ``likert10``), ``rationale``: the teacher's analysis, ``completion``:
  the exact assistant text to train on (``completion_text``: the contract's JSON, analysis first;
  it parses back with ``judges.contract`` to ``verdict``);
* provenance: ``teacher`` (judge name and model), ``teacher_snapshot`` (the model the server
  reported), ``prompt_version`` (``judges.prompts.TEMPLATE_VERSION``), ``parser_version``
  (``judges.contract.PARSER_VERSION``), ``specialist_versions`` (JSON: code -> version).

The training prompt is ``training_prompt(row, with_tools)``: ``build_verdict_prompt`` on the row's
request with the stored evidence (or none), exactly what ``Judge`` sends at inference.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import datasets

from lmms_eval_autorater.judges.types import ChatPrompt, JudgeRequest

#: the columns of a training dataset (see the module docstring)
FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "source": datasets.Value("string"),
        "group": datasets.Value("string"),
        "paradigm": datasets.Value("string"),
        "task_kind": datasets.Value("string"),
        "request": datasets.Value("string"),
        "images": datasets.Sequence(datasets.Image()),
        "image_fields": datasets.Sequence(datasets.Value("string")),
        "specialists": datasets.Value("string"),
        "evidence": datasets.Value("string"),
        "tools": datasets.Sequence(datasets.Value("string")),
        "label": datasets.Value("float64"),
        "label_scale": datasets.Value("string"),
        "verdict": datasets.Value("int32"),
        "rationale": datasets.Value("string"),
        "completion": datasets.Value("string"),
        "teacher": datasets.Value("string"),
        "teacher_snapshot": datasets.Value("string"),
        "prompt_version": datasets.Value("string"),
        "parser_version": datasets.Value("string"),
        "specialist_versions": datasets.Value("string"),
    }
)
#: the ``images`` column with the bytes kept (``ds.cast_column("images", RAW_IMAGES)``)
RAW_IMAGES = datasets.Sequence(datasets.Image(decode=False))

#: pointwise label scales: (low, high) of the source's nominal scale, mapped linearly onto 1..10
SCALES: dict[str, tuple[float, float]] = {"overall_rating_1_7": (1.0, 7.0), "mos_0_5": (0.0, 5.0)}


def likert10(label: float, scale: str) -> int:
    """A pointwise label on its nominal scale mapped linearly onto 1..10, rounded half up.

    ImageReward ``overall_rating`` 1..7: 1 + 9(r-1)/6; AIGIQA MOS 0..5: 1 + 9*mos/5.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown pointwise label scale {scale!r}; known: {', '.join(SCALES)}")
    lo, hi = SCALES[scale]
    x = 1.0 + 9.0 * (float(label) - lo) / (hi - lo)
    return int(min(10, max(1, math.floor(x + 0.5))))


def target_verdict(paradigm: str, label: float, scale: str) -> int:
    """The training target in the contract's form: the preferred index, or the Likert-10 score."""
    if paradigm == "pairwise":
        if label not in (1, 2):
            raise ValueError(f"pairwise label must be 1 or 2, got {label!r}")
        return int(label)
    return likert10(label, scale)


def label_text(paradigm: str, verdict: int) -> str:
    """The human judgement as the teacher's hint states it."""
    if paradigm == "pairwise":
        return f"human raters preferred Image {verdict}"
    return f"human raters rated it {verdict} on the 1-10 scale"


def contract_answer(paradigm: str, rationale: str, verdict: int) -> str:
    """The judge's output contract as text: one JSON object, analysis first, then the verdict."""
    key = "preferred" if paradigm == "pairwise" else "score"
    return json.dumps({"analysis": rationale, key: int(verdict)}, ensure_ascii=False)


def completion_text(row: Mapping[str, Any]) -> str:
    """The exact assistant text to train on: the row's rationale and verdict in the judge's contract."""
    return contract_answer(row["paradigm"], row["rationale"], int(row["verdict"]))


# ---------------------------------------------------------------------------------------------
# images


def image_store() -> Path:
    """Where row images are written as content-addressed files (``default_cache_dir()/training_images``)."""
    from lmms_eval_autorater.kvstore import default_cache_dir

    return default_cache_dir() / "training_images"


def _suffix(data: bytes) -> str:
    from lmms_eval_autorater.images import guess_mime

    mime = guess_mime(data)
    return "." + mime.split("/", 1)[1] if mime.startswith("image/") else ".bin"


def store_image(data: bytes, folder: str | Path | None = None) -> str:
    """Write ``data`` once as ``<folder>/<sha256><ext>`` (atomic) and return that stable path."""
    from lmms_eval_autorater.images import image_sha256

    folder = Path(folder) if folder is not None else image_store()
    path = folder / (image_sha256(data) + _suffix(data))
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return str(path)


def image_bytes(image: Any) -> bytes:
    """Bytes of one ``images`` entry: raw bytes, an image reference (``images.py``), a ``{"bytes", "path"}``
    struct, or a PIL image (re-encoded as PNG)."""
    if isinstance(image, (bytes, bytearray)):
        return bytes(image)
    if isinstance(image, str):
        from lmms_eval_autorater.images import read_image_bytes

        return read_image_bytes(image)
    if isinstance(image, Mapping):
        if image.get("bytes"):
            return bytes(image["bytes"])
        if image.get("path"):
            return Path(image["path"]).read_bytes()
        raise ValueError("image struct has neither bytes nor path")
    if hasattr(image, "save"):
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return buf.getvalue()
    raise TypeError(f"unsupported image entry {type(image).__name__}")


def row_request(row: Mapping[str, Any], image_dir: str | Path | None = None) -> JudgeRequest:
    """The ``JudgeRequest`` of a row: its images written as content-addressed files (``store_image``)."""
    fields = list(row["image_fields"])
    images = list(row["images"])
    if len(fields) != len(images):
        raise ValueError(f"row {row['id']!r}: {len(images)} images but {len(fields)} image_fields")
    from lmms_eval_autorater.tasks.common import doc_to_request

    refs = {f: store_image(image_bytes(img), image_dir) for f, img in zip(fields, images)}
    doc = {k: row[k] for k in ("task_kind", "paradigm", "request")} | refs
    return doc_to_request(doc, row["source"], row["id"])  # the same mapping the tasks and the judge use


def training_prompt(
    row: Mapping[str, Any], with_tools: bool, image_dir: str | Path | None = None
) -> ChatPrompt:
    """The prompt to train on: the judge's verdict prompt for the row, with its evidence or none."""
    from lmms_eval_autorater.judges.prompts import build_verdict_prompt

    return build_verdict_prompt(row_request(row, image_dir), row["evidence"] if with_tools else "")


def load_rows(path: str | Path) -> datasets.Dataset:
    """A synthesized dataset with the image bytes kept (``row_request`` then sees the teacher's bytes)."""
    ds = datasets.load_from_disk(str(path))
    return ds.cast_column("images", RAW_IMAGES)


def assessments_of(row: Mapping[str, Any]) -> list:
    """The row's specialist outputs as ``Assessment`` objects (``render_assessments`` gives ``evidence``)."""
    from lmms_eval_autorater.specialists.types import Assessment

    return [Assessment(**a) for a in json.loads(row["specialists"] or "[]")]


def check_row(row: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` when the completion does not parse back to the verdict with the judge's parser."""
    from lmms_eval_autorater.judges import contract

    parse = contract.parse_pairwise if row["paradigm"] == "pairwise" else contract.parse_pointwise
    parsed = parse(row["completion"])
    if not parsed.ok or int(parsed.value) != int(row["verdict"]):
        raise ValueError(
            f"row {row['id']!r}: completion parses to {parsed.value!r} ({parsed.reason or 'ok'}), "
            f"verdict is {row['verdict']!r}"
        )
