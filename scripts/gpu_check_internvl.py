"""GPU check of the InternVL judge backend on a tiny random model (run on a CUDA machine).

Builds the tiny InternVL of the tests, loads it through ``InternVLBackend`` with default settings
(device cuda:{LOCAL_RANK}, bf16), generates a mixed batch (two- and three-image turns) and reports
whether batched and one-by-one greedy outputs agree, and the time per prompt.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from lmms_eval_autorater.judges.backends.internvl import InternVLBackend  # noqa: E402
from tests.test_internvl_backend import _build_tiny_internvl, _prompts  # noqa: E402


def main() -> None:
    print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "tiny"
        _build_tiny_internvl(folder)
        backend = InternVLBackend(pretrained=str(folder), batch_size=8, max_new_tokens=8)
        prompts = _prompts()
        start = time.perf_counter()
        batched = backend.generate(prompts)
        torch.cuda.synchronize()
        wall = time.perf_counter() - start
        single = [backend.generate([p])[0] for p in prompts]
        print(
            f"device {backend.device}, dtype {backend.dtype}, {len(prompts)} prompts in {wall:.3f} s (first call)"
        )
        same = [a.text == b.text for a, b in zip(batched, single)]
        print("batched == one-by-one:", same)
        print("usage:", [c.usage for c in batched])
        backend.release()
        print("memory after release (MiB):", torch.cuda.memory_allocated() // 2**20)


if __name__ == "__main__":
    main()
