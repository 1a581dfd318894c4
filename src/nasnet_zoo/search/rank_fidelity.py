"""How well one reward ranks cells as another does: the one implementation of the rank statistics that the
benchmarks report (bench/search_rank.py in the NASNet space, bench/nasbench201_supernet.py against the table).

Kendall's tau-b and Spearman's rho come from ``scipy.stats``; their 95% intervals from one paired percentile
bootstrap over the cells (``scipy.stats.bootstrap``), so both intervals see the same resamples. scipy is imported
inside the function: it comes with the ``dev`` extra, not with the base install.
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np


def _finite(value: float) -> float | None:
    """A statistic of constant data (e.g. every cell at chance) is undefined: None, not NaN, in JSON and tables."""
    return float(value) if np.isfinite(value) else None


def rank_agreement(scores: Sequence[float] | np.ndarray, truth: Sequence[float] | np.ndarray, *,
                   bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Kendall tau-b (with its p-value) and Spearman rho of ``scores`` against ``truth``, each with a 95%
    percentile bootstrap interval over the cells (``bootstrap`` paired resamples, seeded by ``seed``).

    Returns ``n``, ``kendall``, ``kendall_p``, ``kendall_lo``, ``kendall_hi``, ``spearman``, ``spearman_lo``,
    ``spearman_hi`` and ``degenerate_resamples``. A figure that is not defined is None: a statistic of constant
    data, or an interval when some resample drew constant data (counted in ``degenerate_resamples``), since a
    percentile over the defined resamples alone would be biased towards the non-constant draws.
    """
    from scipy import stats  # the dev extra

    s, t = np.asarray(scores, dtype=float), np.asarray(truth, dtype=float)
    if s.shape != t.shape or s.ndim != 1 or len(s) < 3:
        raise ValueError(f"need two equal-length 1-D score arrays of >= 3 cells, got {s.shape} and {t.shape}")
    if bootstrap < 1:
        raise ValueError(f"bootstrap must be >= 1 resample, got {bootstrap}")

    def both(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.array([stats.kendalltau(a, b).statistic, stats.spearmanr(a, b).statistic])

    with warnings.catch_warnings():  # constant data warns; it is reported as None instead
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        tau = stats.kendalltau(s, t)
        rho = stats.spearmanr(s, t).statistic
        result = stats.bootstrap((s, t), both, paired=True, vectorized=False, n_resamples=bootstrap,
                                 method="percentile", rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    degenerate = int(np.isnan(result.bootstrap_distribution).any(axis=0).sum())
    return {"n": int(len(s)), "kendall": _finite(tau.statistic), "kendall_p": _finite(tau.pvalue),
            "kendall_lo": _finite(low[0]), "kendall_hi": _finite(high[0]),
            "spearman": _finite(rho), "spearman_lo": _finite(low[1]), "spearman_hi": _finite(high[1]),
            "degenerate_resamples": degenerate}
