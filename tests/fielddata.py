"""Small local copies of the field's benchmarks in their authors' layouts (MMRB2, GenAI-Bench), invented pairs."""

from __future__ import annotations

import json
from pathlib import Path

from tests.datafactory import image_bytes


def make_mmrb2(root: Path, subset: str, pairs: list[dict], seed: int = 0) -> Path:
    """``root/mmrb2/<subset>.json`` as MMRB2's build_from_hf.py writes it, with its images.

    Each pair: {"id", "chosen", "n_a" (images of response A, default 1), "prompt"}."""
    folder = root / "mmrb2"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "input_images").mkdir(parents=True, exist_ok=True)
    out = []
    for k, p in enumerate(pairs):
        pid = p["id"]
        prompt = [["text", p.get("prompt", f"a prompt {k}")]]
        if subset == "edit":
            rel = f"input_images/{pid}_prompt_0.jpg"
            (folder / rel).write_bytes(image_bytes(seed + 100 * k + 99, "JPEG"))
            prompt = [["image", rel], *prompt]
        responses = {}
        for side, n in (("a", p.get("n_a", 1)), ("b", 1)):
            content = []
            for i in range(n):
                rel = f"images/{pid}_{side}_{i}.jpg"
                (folder / rel).write_bytes(
                    image_bytes(seed + 100 * k + (0 if side == "a" else 50) + i, "JPEG")
                )
                content.append(["image", rel])
            responses[side] = {"model_name": f"model-{side}", "response_content": content}
        out.append(
            {
                "id": pid,
                "prompt_content": prompt,
                "prompt_source": "invented",
                "prompt_metadata": {},
                "response_a": responses["a"],
                "response_b": responses["b"],
                "chosen": p["chosen"],
            }
        )
    (folder / f"{subset}.json").write_text(json.dumps({"pairs": out}, indent=1))
    return folder


def make_genaibench(root: Path, config: str, votes: list[str], seed: int = 500) -> Path:
    """``root/genaibench/<config>.jsonl`` (line k = idx k) with the hub dataset's columns, and its images."""
    folder = root / "genaibench"
    (folder / config).mkdir(parents=True, exist_ok=True)
    lines = []
    for k, vote in enumerate(votes):
        row: dict = {"vote_type": vote}
        cols = (
            ("left_image", "right_image")
            if config == "image_generation"
            else ("source_image", "left_output_image", "right_output_image")
        )
        for j, col in enumerate(cols):
            rel = f"{config}/{k}_{col}.png"
            (folder / rel).write_bytes(image_bytes(seed + 10 * k + j))
            row[col] = rel
        if config == "image_generation":
            row["prompt"] = f"prompt {k}"
        else:
            row.update(
                source_prompt=f"a scene {k}",
                target_prompt=f"the scene {k} edited",
                instruct_prompt=f"edit {k}",
            )
        lines.append(json.dumps(row))
    (folder / f"{config}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def make_editreward(root: Path, n: int, groups: list[tuple[str, str]], seed: int = 700) -> Path:
    """``root/editreward_bench/<n>pair/test.parquet`` as the hub dataset TIGER-Lab/EditReward-Bench holds it: one
    row per comparison with embedded images (``{"bytes", "path"}``).

    Each group: (id, ranking). n = 2: ranking "A>B", "B>A" or "A=B", row id = the group id, no comparison_type;
    n = 3, 4: a full ranking ("C>A>B"), one row per pair of letters X < Y with id ``<group>_<X>vs<Y>``,
    comparison_type ``XvsY``, candidate_1 = X's image, candidate_2 = Y's, ranking ``X>Y`` or ``Y>X``."""
    from itertools import combinations

    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = root / "editreward_bench" / f"{n}pair"
    folder.mkdir(parents=True, exist_ok=True)

    def img(s: int, name: str) -> dict:
        return {"bytes": image_bytes(s), "path": name}

    rows = []
    for k, (gid, ranking) in enumerate(groups):
        base = seed + 10 * k
        letters = "ABCD"[:n]
        source = img(base + 9, f"{gid}_source.png")
        if n == 2:
            pairs = [("A", "B", ranking, gid, None)]
        else:
            order = ranking.split(">")
            pairs = [
                (
                    x,
                    y,
                    f"{x}>{y}" if order.index(x) < order.index(y) else f"{y}>{x}",
                    f"{gid}_{x}vs{y}",
                    f"{x}vs{y}",
                )
                for x, y in combinations(letters, 2)
            ]
        for x, y, rank, rid, ctype in pairs:
            rows.append(
                {
                    "dataset": f"{n}pair",
                    "id": rid,
                    "instruction": f"edit {gid}",
                    "source_image": source,
                    "candidate_1": img(base + letters.index(x), f"{rid}_1.png"),
                    "candidate_2": img(base + letters.index(y), f"{rid}_2.png"),
                    "ranking": rank,
                    "comparison_type": ctype,
                    "score_1": 5.0,
                    "score_2": 4.0,
                    "model_1": f"model-{x}",
                    "model_2": f"model-{y}",
                }
            )
    pq.write_table(pa.Table.from_pylist(rows), folder / "test.parquet")
    return folder
