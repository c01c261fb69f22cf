"""Wall time of the metrics at the benchmarks' sizes (Kendall on 4,000 points; 1,000 bootstrap resamples).

Run: ``.venv/bin/python benchmarks/metrics_speed.py``. Prints seconds per call; a figure, not a test.
"""

from __future__ import annotations

import time

import numpy as np

from lmms_eval_autorater.metrics import bootstrap_ci, kendall, pairwise_accuracy, pearson


def timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(1, 11, 4000).astype(float)
    y = x + rng.normal(0, 2, 4000)
    print(f"kendall, n=4000:                           {timed(kendall, x, y):.3f} s")
    print(f"pearson bootstrap, n=4000, 1000 resamples: {timed(bootstrap_ci, pearson, x, y):.3f} s")
    labels, preds, groups = rng.integers(1, 3, 6399), rng.integers(0, 3, 6399), rng.integers(0, 466, 6399)
    t = timed(bootstrap_ci, pairwise_accuracy, labels, preds, groups=groups)
    print(f"accuracy cluster bootstrap, 6399 pairs / 466 prompts: {t:.3f} s")


if __name__ == "__main__":
    main()
