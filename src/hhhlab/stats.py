"""Statistics shared by every eval and experiment: bootstrap CIs, paired differences, pass@k.

One implementation, so an eval's CI and a sweep's CI mean the same thing. Bootstraps are
seeded: the same inputs give the same interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

N_BOOT = 2000
BOOTSTRAP = "bootstrap-percentile"  # `Estimate.method` of `bootstrap`
PAIRED = "paired-bootstrap-percentile"  # of `paired_difference`: both samples resampled together
INDEPENDENT = "independent-normal-approximation"  # a difference of two CIs' half-widths in quadrature


@dataclass(frozen=True)
class Estimate:
    """A metric with its sample size and a 95% confidence interval, and how the interval was
    made (``method``): the one estimate record of the result schema (`hhhlab.results`)."""

    value: float
    lo: float
    hi: float
    n: int
    method: str = BOOTSTRAP

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.lo:.3f}, {self.hi:.3f}] (n={self.n})"


def _percentile_ci(samples: np.ndarray, level: float) -> tuple[float, float]:
    alpha = (1 - level) / 2
    return float(np.quantile(samples, alpha)), float(np.quantile(samples, 1 - alpha))


BLOCK_ELEMENTS = 4_000_000  # indices per resampling block (32 MB)


def bootstrap(
    values: Sequence[float] | np.ndarray,
    stat: Callable[[np.ndarray], float] = np.mean,
    *,
    n_boot: int = N_BOOT,
    level: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """Percentile bootstrap of ``stat`` over items (rows of ``values``)."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    rng = np.random.default_rng(seed)
    # Resample indices a block of rows at a time: one (n_boot, n) int64 matrix is 0.9 GB for the
    # 58k items of full BBQ. The generator yields the same stream in blocks as in one call, so
    # the CI does not depend on the block size.
    rows = max(1, min(n_boot, BLOCK_ELEMENTS // n))
    boots = np.empty(n_boot)
    for start in range(0, n_boot, rows):
        idx = rng.integers(0, n, size=(min(rows, n_boot - start), n))
        if stat is np.mean and x.ndim == 1:
            boots[start : start + len(idx)] = x[idx].mean(axis=1)
        else:
            boots[start : start + len(idx)] = [stat(x[i]) for i in idx]
    lo, hi = _percentile_ci(boots, level)
    return Estimate(float(stat(x)), lo, hi, n)


def paired_difference(
    a: Sequence[float], b: Sequence[float], *, n_boot: int = N_BOOT, level: float = 0.95, seed: int = 0
) -> Estimate:
    """CI of mean(a) - mean(b) over the same items (resampled together): e.g. prompt - plain."""
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if xa.shape != xb.shape:
        raise ValueError(f"paired difference needs the same items: {xa.shape} vs {xb.shape}")
    return replace(bootstrap(xa - xb, n_boot=n_boot, level=level, seed=seed), method=PAIRED)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k), computed stably."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))
