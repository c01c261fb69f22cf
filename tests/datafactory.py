"""Small local datasets in the layouts ``$AUTORATER_DATA_DIR`` expects, made with real image files."""

from __future__ import annotations

import json
import zipfile
from io import BytesIO
from pathlib import Path

from PIL import Image

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"


def image_bytes(seed: int, fmt: str = "PNG", size: int = 32) -> bytes:
    """A small deterministic image whose colour encodes ``seed``."""
    img = Image.new("RGB", (size, size), ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256))
    buf = BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def make_psr(root: Path, sets: list[dict]) -> Path:
    """``root/psr/annotations.jsonl`` plus the images; each set: {"id", "request", "votes"}."""
    folder = root / "psr"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for k, s in enumerate(sets):
        names = []
        for j, role in enumerate(("src", "e1", "e2")):
            rel = f"images/{s['id']}_{role}.png"
            (folder / rel).write_bytes(image_bytes(3 * k + j))
            names.append(rel)
        lines.append(
            json.dumps(
                {
                    "id": s["id"],
                    "request": s.get("request", f"edit {k}"),
                    "source": names[0],
                    "edits": names[1:],
                    "votes": s["votes"],
                }
            )
        )
    (folder / "annotations.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def make_imagereward(root: Path, prompts: list[dict], zipped: bool = True) -> Path:
    """``root/ImageRewardDB`` with metadata-test.parquet and images/test/test_1.zip (or extracted files).

    Each prompt: {"id", "prompt", "ranks": [...], "ratings": [...]}.
    """
    import pandas as pd

    folder = root / "ImageRewardDB"
    (folder / "images" / "test").mkdir(parents=True, exist_ok=True)
    rows, files = [], {}
    n = 0
    for p in prompts:
        for rank, rating in zip(p["ranks"], p["ratings"]):
            name = f"{p['id']}-{n:04d}.webp"
            files[name] = image_bytes(n, "WEBP")
            rows.append(
                {
                    "image_path": f"images/test/test_1/{name}",
                    "prompt_id": p["id"],
                    "prompt": p["prompt"],
                    "classification": "x",
                    "image_amount_in_total": len(p["ranks"]),
                    "rank": rank,
                    "overall_rating": rating,
                    "image_text_alignment_rating": rating,
                    "fidelity_rating": rating,
                }
            )
            n += 1
    pd.DataFrame(rows).to_parquet(folder / "metadata-test.parquet")
    if zipped:
        with zipfile.ZipFile(folder / "images" / "test" / "test_1.zip", "w") as zf:
            for name, data in files.items():
                zf.writestr(f"test_1/{name}", data)
    else:
        for name, data in files.items():
            (folder / "images" / "test" / name).write_bytes(data)
    return folder


def make_aigiqa(
    root: Path, items: list[tuple[str, str, float]], test_names: list[str], header: bool = True
) -> Path:
    """``root/aigiqa`` with data.csv (name, prompt, mos), info_test.csv and images/."""
    import csv

    folder = root / "aigiqa"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    with open(folder / "data.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        if header:
            w.writerow(["name", "prompt", "mos"])
        for name, prompt, mos in items:
            w.writerow([name, prompt, mos])
    with open(folder / "info_test.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        if header:
            w.writerow(["name", "prompt"])
        prompts = {name: prompt for name, prompt, _ in items}
        for name in test_names:
            w.writerow([name, prompts.get(name, "")])
    for k, (name, _, _) in enumerate(items):
        (folder / "images" / name).write_bytes(image_bytes(100 + k))
    return folder


def standard_data(root: Path) -> Path:
    """All four datasets, small, under one AUTORATER_DATA_DIR; returns root."""
    make_psr(
        root,
        [
            {"id": "s1", "votes": ["1", "1", "1", "2"]},  # 3-1: kept, label 1
            {"id": "s2", "votes": ["2", "2", "2", "1", "tie"]},  # 3-1-1: kept, label 2
            {"id": "s3", "votes": ["1", "1", "1", "2", "2"]},  # 3-2: dropped
            {"id": "s4", "votes": ["tie", "tie", "tie", "1"]},  # tie mode: dropped
            {"id": "s5", "votes": ["2", "2", "2", "2", "1"]},  # 4-1: kept, label 2
        ],
    )
    make_imagereward(
        root,
        [
            {"id": "p1", "prompt": "a red cube", "ranks": [1, 2, 2, 3], "ratings": [6, 4, 5, 2]},
            {"id": "p2", "prompt": "a blue ball", "ranks": [2, 1, 3], "ratings": [3, 7, 1]},
        ],
    )
    names = [f"SDXL_{i:04d}.png" for i in range(6)]
    make_aigiqa(root, [(n, f"prompt {i % 3}", 1.0 + 0.5 * i) for i, n in enumerate(names)], names[:4])
    return root
