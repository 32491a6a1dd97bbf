"""Label-free agreement between two models on production inputs: pure functions, no I/O.

On ``n`` unlabeled samples the two models predict the same class ``k`` times. The
agreement rate gets the exact one-sided Clopper-Pearson lower confidence bound: the smallest
rate ``p`` at which seeing ``k`` or more agreements still has probability ``1 - confidence``
or more. ``P(bound > true rate) <= 1 - confidence`` holds exactly for every ``n`` and rate,
so a ``minAgreement`` check fails a candidate that agrees enough at most that often.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["agreement_lower_bound", "binomial_upper_tail"]


def binomial_upper_tail(k: int, n: int, p: float) -> float:
    """``P(X >= k)`` for ``X ~ Binomial(n, p)`` (exact, summed in log space)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    i = np.arange(k, n + 1, dtype=np.float64)
    lf = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)))])
    idx = i.astype(np.int64)
    log_pmf = lf[n] - lf[idx] - lf[n - idx] + i * math.log(p) + (n - i) * math.log1p(-p)
    top = float(log_pmf.max())
    return float(min(1.0, math.exp(top) * np.exp(log_pmf - top).sum()))


def agreement_lower_bound(agreed: int, n: int, confidence: float) -> float:
    """One-sided exact (Clopper-Pearson) lower bound of the agreement rate ``agreed / n``."""
    if n <= 0 or not 0 <= agreed <= n:
        raise ValueError(f"need 0 <= agreed <= n and n > 0 (got agreed={agreed}, n={n})")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1) (got {confidence})")
    if agreed == 0:
        return 0.0
    alpha = 1.0 - confidence
    if agreed == n:
        return float(alpha ** (1.0 / n))
    lo, hi = 0.0, agreed / n  # the tail is increasing in p
    for _ in range(100):
        mid = (lo + hi) / 2.0
        if binomial_upper_tail(agreed, n, mid) > alpha:
            hi = mid
        else:
            lo = mid
        if hi - lo < 1e-12:
            break
    return lo
