"""A tiny Qwen2.5-VL base folder from the tiny Qwen2 one of the HPSv3 parity fixture (tokenizer, chat
template, image processor), for EditReward's test and EditScore's fixture builder. Stdlib only: the builder
imports it inside the authors' virtual environment."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

QWEN2_BASE = Path(__file__).resolve().parent / "fixtures" / "parity" / "hpsv3" / "base"
#: a two-block vision tower whose merger feeds the Qwen2 text side (``out_hidden_size`` set from it)
VISION = {
    "depth": 2,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_heads": 2,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [1],
    "in_chans": 3,
}


def write_qwen25vl_base(folder: Path) -> dict:
    """Copy the tiny Qwen2 base into ``folder`` and make it a Qwen2.5-VL one; returns its config dict."""
    shutil.copytree(QWEN2_BASE, folder)
    cfg = json.loads((folder / "config.json").read_text())
    pre = json.loads((folder / "preprocessor_config.json").read_text())
    pre.update({"image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor"})
    (folder / "preprocessor_config.json").write_text(json.dumps(pre, indent=1))
    cfg.update(
        {
            "architectures": ["Qwen2_5_VLForConditionalGeneration"],
            "model_type": "qwen2_5_vl",
            "vision_config": {**VISION, "out_hidden_size": cfg["hidden_size"]},
        }
    )
    (folder / "config.json").write_text(json.dumps(cfg))
    return cfg
