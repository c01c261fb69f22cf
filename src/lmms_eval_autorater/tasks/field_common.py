"""Plumbing of the field's benchmarks (MMRB2, GenAI-Bench): their data in the authors' layouts, the
four-label results and metrics, and the GenAI-Bench prompt for any lmms-eval VLM.

MMRB2 pairs become two docs each, ``<id>:fwd`` (A as Image 1) and ``<id>:rev`` (B as Image 1), sharing the
pair id as their bootstrap group: every pair is judged in both orders by any model (swap not needed), and
the pairwise accuracy over docs with a verdict is MMRB2's correct judgments / judgments present, each
failure counted once per judgment. GenAI-Bench items are one doc each (``doc_id`` = the dataset row index,
GenAI-Bench's ``idx``) with labels 1..4 (``metrics.field``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loguru import logger

from lmms_eval_autorater.errors import DataError
from lmms_eval_autorater.metrics.field import GENAIBENCH_HUMAN
from lmms_eval_autorater.tasks.common import data_dir, log_construction, make_doc, make_record
from lmms_eval_autorater.vocabulary import EDITREWARD_METRICS, FOUR_LABEL_METRICS, PAIRWISE_METRICS

# ---------------------------------------------------------------------------------------------
# MMRB2

MMRB2_HUB = "rl-research/multimodal-rewardbench-2"
MMRB2_LAYOUT = """$AUTORATER_DATA_DIR/mmrb2/    (exactly what MMRB2's benchmark/build_from_hf.py --output-dir writes)
  t2i.json, edit.json     {"pairs": [{"id", "prompt_content": [["text"|"image", ...]],
                                      "response_a": {"model_name", "response_content": [["image", path], ...]},
                                      "response_b": {...}, "chosen": "A" | "B", ...}]}
  images/                 {id}_{a|b}_{i}.jpg
  input_images/           {id}_prompt_{i}.jpg"""


def _cache_root() -> Path:
    from lmms_eval_autorater.kvstore import default_cache_dir

    return Path(default_cache_dir())


def _content(value: Any, where: str, field: str) -> list[tuple[str, str]]:
    """A ``[["text"|"image", str], ...]`` list, checked; anything else is a ``DataError`` naming the field."""
    if not isinstance(value, list):
        raise DataError(
            f"{where}: field {field!r} must be a list of [type, content] items, got {value!r:.80}"
        )
    out = []
    for k, item in enumerate(value):
        if (
            not isinstance(item, (list, tuple))
            or len(item) != 2
            or item[0] not in ("text", "image")
            or not isinstance(item[1], str)
        ):
            raise DataError(
                f'{where}: field \'{field}[{k}]\' must be ["text"|"image", str], got {item!r:.80}'
            )
        out.append((item[0], item[1]))
    return out


def _montage(paths: Sequence[Path], key: str) -> str:
    """One image of several side by side (a response or an input of several images), cached by ``key``."""
    from PIL import Image

    out = _cache_root() / "field_montage" / f"{key}.png"
    if out.is_file():
        return str(out)
    imgs = [Image.open(p).convert("RGB") for p in paths]
    height = max(i.height for i in imgs)
    canvas = Image.new("RGB", (sum(i.width for i in imgs), height), "white")
    x = 0
    for i in imgs:
        canvas.paste(i, (x, 0))
        x += i.width
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    canvas.save(tmp, format="PNG")
    os.replace(tmp, out)
    return str(out)


def _images(
    content: list[tuple[str, str]], root: Path, where: str, field: str, check_files: bool
) -> list[Path]:
    paths = [root / c for t, c in content if t == "image"]
    if check_files:
        for p in paths:
            if not p.is_file():
                raise DataError(f"{where}: field {field!r}: image file not found: {p}")
    return paths


def mmrb2_docs_from_pairs(
    pairs: Any, root: Path, *, subset: str, source_name: str, check_files: bool = True
) -> tuple[list[dict], dict[str, int]]:
    """Docs of one MMRB2 subset (``t2i`` or ``edit``) from its ``pairs`` list: two docs per pair (both orders).

    A missing field, an unknown ``chosen`` or a response without an image stops the build naming the file,
    the row and the field. Responses or inputs of several images are shown as one side-by-side image
    (counted in the returned stats)."""
    if not isinstance(pairs, list):
        raise DataError(f"{source_name}: field 'pairs' must be a list")
    kind = "editing" if subset == "edit" else "generation"
    stats = {
        "pairs": 0,
        "docs": 0,
        "multi_image_responses": 0,
        "multi_image_inputs": 0,
        "text_in_responses": 0,
    }
    docs: list[dict] = []
    seen: set[str] = set()
    for row, pair in enumerate(pairs):
        where = f"{source_name} pairs[{row}]"
        if not isinstance(pair, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(pair).__name__}")
        for name in ("id", "prompt_content", "response_a", "response_b", "chosen"):
            if pair.get(name) is None:
                raise DataError(f"{where}: missing field {name!r}")
        pid = str(pair["id"])
        where = f"{where} (id {pid!r})"
        if pid in seen:
            raise DataError(f"{where}: field 'id' is not unique")
        seen.add(pid)
        chosen = str(pair["chosen"]).strip().upper()
        if chosen not in ("A", "B"):
            raise DataError(
                f"{where}: field 'chosen' has unknown label {pair['chosen']!r} (expected 'A' or 'B')"
            )
        prompt = _content(pair["prompt_content"], where, "prompt_content")
        request = "\n".join(c for t, c in prompt if t == "text").strip()
        inputs = _images(prompt, root, where, "prompt_content", check_files)
        source = None
        if kind == "editing":
            if not inputs:
                raise DataError(f"{where}: field 'prompt_content' has no input image (an edit needs one)")
            if len(inputs) > 1:
                stats["multi_image_inputs"] += 1
            source = str(inputs[0]) if len(inputs) == 1 else _montage(inputs, f"mmrb2_{subset}_{pid}_prompt")
        sides, counts = [], []
        for side in ("a", "b"):
            resp = pair[f"response_{side}"]
            if not isinstance(resp, dict) or resp.get("response_content") is None:
                raise DataError(f"{where}: missing field 'response_{side}.response_content'")
            content = _content(resp["response_content"], where, f"response_{side}.response_content")
            imgs = _images(content, root, where, f"response_{side}.response_content", check_files)
            if not imgs:
                raise DataError(f"{where}: field 'response_{side}.response_content' holds no image")
            if any(t == "text" for t, _ in content):
                stats["text_in_responses"] += 1
            counts.append(len(imgs))
            if len(imgs) > 1:
                stats["multi_image_responses"] += 1
                sides.append(_montage(imgs, f"mmrb2_{subset}_{pid}_{side}"))
            else:
                sides.append(str(imgs[0]))
        label = 1 if chosen == "A" else 2
        common = dict(task_kind=kind, paradigm="pairwise", request=request, source_image=source, group=pid)
        docs.append(
            make_doc(
                doc_id=f"{pid}:fwd",
                image_1=sides[0],
                image_2=sides[1],
                label=label,
                response_images=f"{counts[0]},{counts[1]}",
                **common,
            )
        )
        docs.append(
            make_doc(
                doc_id=f"{pid}:rev",
                image_1=sides[1],
                image_2=sides[0],
                label=3 - label,
                response_images=f"{counts[1]},{counts[0]}",
                **common,
            )
        )
        stats["pairs"] += 1
        stats["docs"] += 2
    return docs, stats


def _materialise_mmrb2(subset: str) -> Path:
    """The hub dataset's ``subset`` written once into the cache in build_from_hf.py's layout; returns the folder."""
    out = _cache_root() / "field_data" / "mmrb2"
    if (out / f"{subset}.json").is_file():
        return out
    try:
        import datasets

        ds = datasets.load_dataset(MMRB2_HUB, subset, split="test")
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise DataError(
            f"cannot load {MMRB2_HUB} ({subset}) from the Hugging Face hub ({first}): set "
            f"AUTORATER_DATA_DIR to a local copy laid out as below\n{MMRB2_LAYOUT}"
        ) from exc
    import re

    pairs = []
    for row in ds:
        pid = row["pair_id"]

        def content(
            text: str | None, images: list | None, prefix: str, suffix: str, pid: str = pid
        ) -> list[list[str]]:
            items: list[list[str]] = []
            images = list(images or [])
            names = []
            for i, img in enumerate(images):
                name = f"{prefix}/{pid}_{suffix}_{i}.jpg"
                (out / prefix).mkdir(parents=True, exist_ok=True)
                img.convert("RGB").save(out / name, "JPEG", quality=95)
                names.append(name)
            parts = re.split(r"<image_(\d+)>", text or "")
            used = 0
            for k, part in enumerate(parts):
                if k % 2 == 0 and part.strip():
                    items.append(["text", part.strip()])
                elif k % 2 == 1 and used < len(names):
                    items.append(["image", names[used]])
                    used += 1
            items.extend(["image", n] for n in names[used:])
            return items

        pairs.append(
            {
                "id": pid,
                "prompt_content": content(row["prompt_text"], row["prompt_images"], "input_images", "prompt"),
                "response_a": {
                    "model_name": row.get("response_a_model", ""),
                    "response_content": content(
                        row["response_a_text"], row["response_a_images"], "images", "a"
                    ),
                },
                "response_b": {
                    "model_name": row.get("response_b_model", ""),
                    "response_content": content(
                        row["response_b_text"], row["response_b_images"], "images", "b"
                    ),
                },
                "chosen": (row["chosen"] or "").upper(),
            }
        )
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{subset}.json.tmp"
    tmp.write_text(json.dumps({"pairs": pairs}), encoding="utf-8")
    os.replace(tmp, out / f"{subset}.json")
    return out


def mmrb2_root(subset: str) -> Path:
    """``$AUTORATER_DATA_DIR/mmrb2`` when it holds ``<subset>.json``, else the hub copy in the cache."""
    base = data_dir()
    if base is not None:
        root = base / "mmrb2"
        if not (root / f"{subset}.json").is_file():
            raise DataError(f"{root / (subset + '.json')} not found; expected layout:\n{MMRB2_LAYOUT}")
        return root
    return _materialise_mmrb2(subset)


def build_mmrb2(subset: str, task: str) -> list[dict]:
    """The docs of MMRB2 ``subset`` (both orders of every pair)."""
    root = mmrb2_root(subset)
    path = root / f"{subset}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read MMRB2 pairs ({exc})") from exc
    if not isinstance(data, dict) or "pairs" not in data:
        raise DataError(f"{path}: missing field 'pairs' (expected {{\"pairs\": [...]}})")
    docs, stats = mmrb2_docs_from_pairs(data["pairs"], root, subset=subset, source_name=str(path))
    log_construction(task, ", ".join(f"{k} {v}" for k, v in stats.items()))
    return docs


def _scalar_scores(status: str, meta: dict) -> list[float] | None:
    """A scalar scorer's two scores of a pairwise doc (the baselines' envelope ``meta.scores``), else None."""
    scores = meta.get("scores") if status == "ok" else None
    if (
        isinstance(scores, list)
        and len(scores) == 2
        and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in scores)
    ):
        return [float(x) for x in scores]
    return None


def margin_of(status: str, meta: dict) -> float | None:
    """Score of Image 1 minus score of Image 2 for a scalar scorer's doc (EditReward's tie-calibrated rules
    read it); None for a judge's answer or a failure."""
    scores = _scalar_scores(status, meta)
    return None if scores is None else scores[0] - scores[1]


#: the MMRB2 tasks that already logged their multi-image line (one line per task, not one per doc)
_MULTI_IMAGE_LOGGED: set[str] = set()


def mmrb2_record(doc: dict, results: Sequence[str]) -> dict:
    """One MMRB2 judgment. A scalar scorer (one score per image) on a pair whose response holds several images
    (MMRB2 editing: one response of 3 images) cannot apply: MMRB2 scores reward models on its single-image
    subset, so the judgment is excluded and counted in ``input_errors`` (never the montage's score)."""
    from lmms_eval_autorater.judges.envelope import decode_output

    out = decode_output(results[0] if results else "", "pairwise")
    counts = [int(x) for x in str(doc.get("response_images") or "1,1").split(",")]
    if _scalar_scores(out.status, out.meta) is not None and max(counts) > 1:
        task = "mmrb2_edit" if doc["task_kind"] == "editing" else "mmrb2_t2i"
        if task not in _MULTI_IMAGE_LOGGED:
            _MULTI_IMAGE_LOGGED.add(task)
            logger.warning(
                f"{task}: {out.meta.get('model', 'a scalar scorer')} scores one image per response; pairs with a "
                "multi-image response are left out and counted in input_errors (MMRB2 scores reward models on "
                "its single-image subset)"
            )
        error = (
            f"doc {doc['doc_id']!r}: response images {doc['response_images']} (Image 1, Image 2): a scalar "
            "scorer scores one image per response (MMRB2's single-image subset)"
        )
        return make_record(doc, "pairwise", "input_error", None, {**out.meta, "error": error})
    return make_record(doc, "pairwise", out.status, out.value, out.meta)


def process_mmrb2(doc: dict, results: Sequence[str]) -> dict:
    """lmms-eval ``process_results`` for MMRB2: the pairwise record (``mmrb2_record``) under every metric key."""
    record = mmrb2_record(doc, results)
    return {name: record for name in PAIRWISE_METRICS}


def mmrb2_chosen(docs: Sequence[dict]) -> dict[str, str]:
    """pair id -> "A"/"B" from the forward docs (the truth MMRB2's script compares with)."""
    return {
        str(d["group"]): "A" if int(d["label"]) == 1 else "B"
        for d in docs
        if str(d["doc_id"]).endswith(":fwd")
    }


# ---------------------------------------------------------------------------------------------
# GenAI-Bench

GENAIBENCH_HUB = "TIGER-Lab/GenAI-Bench"
#: our task -> (the dataset config / results folder of GenAI-Bench, its image and text columns)
GENAIBENCH_CONFIGS = {
    "genaibench_gen": {
        "config": "image_generation",
        "kind": "generation",
        "text": ("prompt",),
        "images": ("left_image", "right_image"),
        "source": None,
        "request": "prompt",
    },
    "genaibench_edit": {
        "config": "image_edition",
        "kind": "editing",
        "text": ("source_prompt", "target_prompt", "instruct_prompt"),
        "images": ("left_output_image", "right_output_image"),
        "source": "source_image",
        "request": "instruct_prompt",
    },
}
GENAIBENCH_LAYOUT = """$AUTORATER_DATA_DIR/genaibench/
  image_generation.jsonl  one line per item in the hub dataset's order (line k = GenAI-Bench idx k):
                          {"prompt", "left_image", "right_image", "vote_type", ...}
  image_edition.jsonl     {"source_prompt", "target_prompt", "instruct_prompt", "source_image",
                           "left_output_image", "right_output_image", "vote_type", ...}
  <image files>           the image columns hold paths relative to this folder
vote_type: leftvote | rightvote | tievote | bothbad_vote"""


def genaibench_docs_from_rows(
    rows: Sequence[dict], root: Path, task: str, *, source_name: str, check_files: bool = True
) -> list[dict]:
    """One doc per GenAI-Bench item (doc id = row index = GenAI-Bench's ``idx``); labels 1..4 from ``vote_type``."""
    cfg = GENAIBENCH_CONFIGS[task]
    docs = []
    for idx, row in enumerate(rows):
        where = f"{source_name} line {idx + 1} (idx {idx})"
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object")
        for name in (*cfg["text"], *cfg["images"], *([cfg["source"]] if cfg["source"] else []), "vote_type"):
            if row.get(name) is None:
                raise DataError(f"{where}: missing field {name!r}")
        vote = row["vote_type"]
        if vote not in GENAIBENCH_HUMAN:
            raise DataError(
                f"{where}: field 'vote_type' has unknown label {vote!r} (expected {', '.join(GENAIBENCH_HUMAN)})"
            )
        refs = {}
        for name in (*cfg["images"], *([cfg["source"]] if cfg["source"] else [])):
            path = root / str(row[name])
            if check_files and not path.is_file():
                raise DataError(f"{where}: field {name!r}: image file not found: {path}")
            refs[name] = str(path)
        docs.append(
            make_doc(
                doc_id=str(idx),
                task_kind=cfg["kind"],
                paradigm="pairwise",
                request=str(row[cfg["request"]]),
                source_image=refs.get(cfg["source"]) if cfg["source"] else None,
                image_1=refs[cfg["images"][0]],
                image_2=refs[cfg["images"][1]],
                group=str(idx),
                label=GENAIBENCH_HUMAN[vote],
            )
        )
    return docs


def _materialise_genaibench(task: str) -> Path:
    """The hub dataset's config written once into the cache in the local layout; returns the folder."""
    cfg = GENAIBENCH_CONFIGS[task]
    out = _cache_root() / "field_data" / "genaibench"
    target = out / f"{cfg['config']}.jsonl"
    if target.is_file():
        return out
    try:
        import datasets

        try:
            ds = datasets.load_dataset(GENAIBENCH_HUB, cfg["config"], split="test")
        except ValueError:  # older copies name the test split "train" (GenAI-Bench's inference.py says so)
            ds = datasets.load_dataset(GENAIBENCH_HUB, cfg["config"], split="train")
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise DataError(
            f"cannot load {GENAIBENCH_HUB} ({cfg['config']}) from the Hugging Face hub ({first}): set "
            f"AUTORATER_DATA_DIR to a local copy laid out as below\n{GENAIBENCH_LAYOUT}"
        ) from exc
    image_cols = [*cfg["images"], *([cfg["source"]] if cfg["source"] else [])]
    folder = out / cfg["config"]
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for idx, row in enumerate(ds):
        rec = {
            k: v
            for k, v in row.items()
            if k not in image_cols and isinstance(v, (str, int, float, type(None)))
        }
        for col in image_cols:
            name = f"{cfg['config']}/{idx}_{col}.png"
            if row.get(col) is not None:
                row[col].convert("RGB").save(out / name, format="PNG")
                rec[col] = name
            else:
                rec[col] = None
        lines.append(json.dumps(rec, ensure_ascii=False))
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(tmp, target)
    return out


def build_genaibench(task: str) -> list[dict]:
    """The docs of GenAI-Bench ``task`` from ``$AUTORATER_DATA_DIR/genaibench`` or the hub."""
    cfg = GENAIBENCH_CONFIGS[task]
    base = data_dir()
    if base is not None:
        root = base / "genaibench"
        if not (root / f"{cfg['config']}.jsonl").is_file():
            raise DataError(
                f"{root / (cfg['config'] + '.jsonl')} not found; expected layout:\n{GENAIBENCH_LAYOUT}"
            )
    else:
        root = _materialise_genaibench(task)
    path = root / f"{cfg['config']}.jsonl"
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                raise DataError(
                    f"{path} line {lineno}: empty line (line k is GenAI-Bench idx k-1: keep every row)"
                )
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path} line {lineno}: not valid JSON: {exc}") from exc
    docs = genaibench_docs_from_rows(rows, root, task, source_name=str(path))
    counts = {v: sum(d["label"] == c for d in docs) for v, c in GENAIBENCH_HUMAN.items()}
    log_construction(task, f"{len(docs)} items; " + ", ".join(f"{k} {n}" for k, n in counts.items()))
    return docs


# ---------------------------------------------------------------------------------------------
# four-label results (GenAI-Bench)

GENAIBENCH_PROMPT = {
    "generation": (
        "Two images were generated by AI models from the same prompt: Image A and Image B, shown in this "
        "order. Prompt: {request}\nWhich image is better overall (faithfulness to the prompt, visual quality, "
        "aesthetics)? Think it through, then end with exactly one verdict: [[A>B]] if Image A is better, "
        "[[B>A]] if Image B is better, [[A=B=Good]] if both are equally good, [[A=B=Bad]] if both are equally bad."
    ),
    "editing": (
        "A source image was edited by two AI models following the same instruction; the images are shown in "
        "this order: the source image, Image A, Image B. Instruction: {request}\nWhich edit is better overall "
        "(does what was asked, keeps what should not change, no artifacts)? Think it through, then end with "
        "exactly one verdict: [[A>B]] if Image A is better, [[B>A]] if Image B is better, [[A=B=Good]] if both "
        "are equally good, [[A=B=Bad]] if both are equally bad."
    ),
}


def genaibench_doc_to_text(doc: dict) -> str:
    """GenAI-Bench-style prompt for any lmms-eval VLM (its answer is read by GenAI-Bench's ``[[...]]`` rule)."""
    return GENAIBENCH_PROMPT[doc["task_kind"]].format(request=doc["request"])


def decode_four_label(text: str) -> tuple[str, int | None, dict]:
    """(status, class code, meta) of one model output on a four-label task.

    Our judges' envelope is decoded as is; any other text is read by GenAI-Bench's rule (the first greedy
    ``[[...]]``: a vote that is not one of its credited strings is a parse failure, never a guess), and, when
    it holds no ``[[...]]``, by the four-class JSON contract."""
    from lmms_eval_autorater.judges import contract
    from lmms_eval_autorater.judges.envelope import MARKER, decode_output
    from lmms_eval_autorater.metrics.field import genaibench_extract_vote, genaibench_vote_code

    stripped = (text or "").strip()
    if stripped.startswith("{") and MARKER in stripped[:64]:
        out = decode_output(stripped, "pairwise")
        value = out.value if out.value in (0, 1, 2, 3, 4) else None
        status = out.status if (out.status != "ok" or value is not None) else "parse_failure"
        return status, value, out.meta
    vote = genaibench_extract_vote(stripped)
    if vote is not None:
        code = genaibench_vote_code(vote)
        meta = {"model_vote": vote, "form": "genaibench_vote"}
        return ("ok", code, meta) if code is not None else ("parse_failure", None, meta)
    parsed = contract.parse_pairwise4(stripped)
    if parsed.ok:
        return "ok", int(parsed.value), {"form": parsed.form}
    return "parse_failure", None, {"reason": parsed.reason}


def four_label_record(doc: dict, results: Sequence[str]) -> dict:
    """One doc's outcome on a four-label task (the same fields as the pairwise records)."""
    status, value, meta = decode_four_label(results[0] if results else "")
    return {**make_record(doc, "pairwise", status, value, meta), "margin": margin_of(status, meta)}


def process_four_label(doc: dict, results: Sequence[str]) -> dict:
    """lmms-eval ``process_results`` for GenAI-Bench: the same record under every metric key."""
    record = four_label_record(doc, results)
    return {name: record for name in FOUR_LABEL_METRICS}


# ---------------------------------------------------------------------------------------------
# EditReward-Bench

EDITREWARD_HUB = "TIGER-Lab/EditReward-Bench"
#: our task -> the number of candidates per group (the hub folder and ``dataset`` value ``<n>pair``)
EDITREWARD_TASKS = {"editreward_bench_2": 2, "editreward_bench_3": 3, "editreward_bench_4": 4}
EDITREWARD_COLUMNS = ("dataset", "id", "instruction", "source_image", "candidate_1", "candidate_2", "ranking")
EDITREWARD_LAYOUT = """$AUTORATER_DATA_DIR/editreward_bench/   (the hub dataset TIGER-Lab/EditReward-Bench as downloaded)
  2pair/*.parquet, 3pair/*.parquet, 4pair/*.parquet
      one row per comparison: dataset ("2pair" | "3pair" | "4pair"), id ("<group>_<...>"), instruction,
      source_image, candidate_1, candidate_2 (images: {"bytes", "path"}), ranking ("A>C"; 2pair also
      "A=B"), comparison_type ("AvsC"; 2pair may omit it: "AvsB"), score_1, score_2, model_1, model_2"""


def editreward_group_id(row_id: str, n: int) -> str:
    """The group of a comparison row, as EditReward's ``inference_{3,4}pair_hf.py`` group them (the id before
    its first ``_``, else its first 10 characters); a 2-candidate row is its own group."""
    if n == 2:
        return row_id
    return row_id.split("_")[0] if "_" in row_id else row_id[:10]


def _image_file(value: Any, where: str, field: str) -> Path:
    """An embedded image (``{"bytes", "path"}`` as the hub's parquet files hold it) written once into the cache
    under its content hash; a missing or empty image is a ``DataError`` naming the field."""
    import hashlib

    data = value.get("bytes") if isinstance(value, dict) else value if isinstance(value, bytes) else None
    if not data:
        raise DataError(f"{where}: field {field!r} holds no image bytes")
    suffix = ".png" if data[:8] == b"\x89PNG\r\n\x1a\n" else ".jpg"
    out = (
        _cache_root() / "field_data" / "editreward_bench" / f"{hashlib.sha256(data).hexdigest()[:32]}{suffix}"
    )
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, out)
    return out


def editreward_docs_from_rows(rows: Sequence[dict], n: int, *, source_name: str) -> list[dict]:
    """One doc per comparison row of the ``<n>pair`` subset (rows of another ``dataset`` value are skipped, as
    EditReward's scripts filter them): candidate_1 is Image 1, candidate_2 Image 2; label 1, 2 or 0 (a tie,
    2-candidate sets only). A missing column, an unknown ranking or a repeated id stops the build naming the
    file, the row and the field."""
    from lmms_eval_autorater.metrics.field import editreward_label

    docs, seen = [], set()
    for k, row in enumerate(rows):
        where = f"{source_name} row {k}"
        for name in EDITREWARD_COLUMNS:
            if row.get(name) is None:
                raise DataError(f"{where}: missing field {name!r}")
        if row["dataset"] != f"{n}pair":
            continue
        rid = str(row["id"])
        where = f"{where} (id {rid!r})"
        if rid in seen:
            raise DataError(f"{where}: field 'id' is not unique")
        seen.add(rid)
        ctype = row.get("comparison_type") or ("AvsB" if n == 2 else None)
        if ctype is None:
            raise DataError(f"{where}: missing field 'comparison_type'")
        label = editreward_label(row["ranking"], ctype, n)
        if label is None:
            raise DataError(
                f"{where}: field 'ranking' has unknown label {row['ranking']!r} for comparison_type {ctype!r}"
            )
        images = {
            f: str(_image_file(row[f], where, f)) for f in ("source_image", "candidate_1", "candidate_2")
        }
        docs.append(
            make_doc(
                doc_id=rid,
                task_kind="editing",
                paradigm="pairwise",
                request=str(row["instruction"]),
                source_image=images["source_image"],
                image_1=images["candidate_1"],
                image_2=images["candidate_2"],
                group=editreward_group_id(rid, n),
                label=label,
            )
        )
    return docs


def editreward_root(n: int) -> Path:
    """``$AUTORATER_DATA_DIR/editreward_bench`` when set (it must hold ``<n>pair/*.parquet``), else the hub copy."""
    base = data_dir()
    if base is not None:
        root = base / "editreward_bench"
        if not list((root / f"{n}pair").glob("*.parquet")):
            raise DataError(
                f"{root / f'{n}pair'}: no *.parquet file found; expected layout:\n{EDITREWARD_LAYOUT}"
            )
        return root
    from lmms_eval_autorater.tasks.common import hub_snapshot

    return hub_snapshot(EDITREWARD_HUB, allow_patterns=[f"{n}pair/*"], layout=EDITREWARD_LAYOUT)


def build_editreward(task: str) -> list[dict]:
    """The docs of EditReward-Bench ``task`` (one per comparison) from the parquet files of its subset."""
    import pyarrow.parquet as pq

    n = EDITREWARD_TASKS[task]
    root = editreward_root(n)
    docs: list[dict] = []
    for path in sorted((root / f"{n}pair").glob("*.parquet")):
        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as exc:
            raise DataError(f"{path}: cannot read parquet ({type(exc).__name__}: {exc})") from exc
        docs.extend(editreward_docs_from_rows(rows, n, source_name=str(path)))
    ids = [d["doc_id"] for d in docs]
    if len(set(ids)) != len(ids):
        raise DataError(f"{root / f'{n}pair'}: field 'id' repeats across files")
    if not docs:
        raise DataError(
            f"{root / f'{n}pair'}: no row with dataset {n}pair; expected layout:\n{EDITREWARD_LAYOUT}"
        )
    counts = {c: sum(d["label"] == c for d in docs) for c in (1, 2, 0)}
    log_construction(
        task,
        f"{len(docs)} comparisons in {len({d['group'] for d in docs})} groups; "
        f"Image 1 preferred {counts[1]}, Image 2 preferred {counts[2]}, ties {counts[0]}",
    )
    return docs


EDITREWARD_PROMPT = (
    "A source image was edited by two AI models following the same instruction; the images are shown in this "
    "order: the source image, Image A, Image B. Instruction: {request}\nWhich edit is better overall (does "
    "what was asked, keeps what should not change, no artifacts)? Think it through, then end with exactly one "
    "verdict: [[A>B]] if Image A is better, [[B>A]] if Image B is better{tie}."
)


def editreward_doc_to_text(doc: dict) -> str:
    """EditReward-style prompt for any lmms-eval VLM (A=B offered on the 2-candidate task, where ties exist)."""
    two = str(doc["group"]) == str(doc["doc_id"])
    return EDITREWARD_PROMPT.format(request=doc["request"], tie=", [[A=B]] if both are equal" if two else "")


def editreward_record(doc: dict, results: Sequence[str]) -> dict:
    """One comparison's outcome: the four-class reading (``decode_four_label``) with both ties (both good, both
    bad, an unspecified ``[[A=B]]``) read as EditReward's A=B (0)."""
    status, value, meta = decode_four_label(results[0] if results else "")
    if value in (3, 4):
        value = 0
    return {**make_record(doc, "pairwise", status, value, meta), "margin": margin_of(status, meta)}


def process_editreward(doc: dict, results: Sequence[str]) -> dict:
    """lmms-eval ``process_results`` for EditReward-Bench: the same record under every metric key."""
    record = editreward_record(doc, results)
    return {name: record for name in EDITREWARD_METRICS}
