"""Pure functional metrics for judge evaluation: pairwise accuracy, correlations, bootstrap CIs, summaries."""

from __future__ import annotations

from .bootstrap import bootstrap_ci
from .correlation import kendall, pearson, spearman
from .pairwise import TiePolicy, pairwise_accuracy
from .summary import summarize_pairwise, summarize_pointwise

__all__ = [
    "TiePolicy",
    "bootstrap_ci",
    "kendall",
    "pairwise_accuracy",
    "pearson",
    "spearman",
    "summarize_pairwise",
    "summarize_pointwise",
]
