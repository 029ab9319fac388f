"""Overfitting statistics: the deflated Sharpe ratio and the probability of backtest overfitting.

Pure NumPy and `math` (no SciPy): the normal CDF comes from ``math.erfc`` and its inverse from
Acklam's rational approximation refined by one Halley step (absolute error < 1e-15).

Deflated Sharpe ratio (Bailey and López de Prado, 2014, "The Deflated Sharpe Ratio: Correcting
for Selection Bias, Backtest Overfitting and Non-Normality", J. Portfolio Management 40(5)):

- ``SR0 = sqrt(V) * ((1 - g) * Z^-1(1 - 1/N) + g * Z^-1(1 - 1/(N e)))``: the Sharpe ratio the
  best of ``N`` unskilled trials is expected to reach, with ``V`` the variance of the trials'
  Sharpe ratios and ``g`` the Euler-Mascheroni constant;
- ``DSR = Z((SR - SR0) * sqrt(T - 1) / sqrt(1 - skew * SR + (kurt - 1) / 4 * SR^2))``: the
  probability that the chosen strategy's true Sharpe ratio exceeds ``SR0``, from its ``T``
  returns' Sharpe ratio ``SR``, skewness and (non-excess) kurtosis.

All Sharpe ratios here are per period (daily returns in tierline, not annualised).

Probability of backtest overfitting by combinatorially symmetric cross-validation (Bailey,
Borwein, López de Prado and Zhu, 2015, "The Probability of Backtest Overfitting", J.
Computational Finance 20(4)): the ``T x N`` matrix of returns (rows = periods, columns =
trials) is cut into ``S`` (even) blocks of consecutive rows; for each of the ``C(S, S/2)`` ways
of choosing half the blocks as in-sample, the trial with the best in-sample performance is
ranked out-of-sample; PBO is the fraction of splits where that rank is at or below the median
(logit ``<= 0``).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "EULER_GAMMA",
    "PBOResult",
    "deflated_sharpe_ratio",
    "expected_max_sharpe",
    "moments",
    "norm_cdf",
    "norm_ppf",
    "pbo_cscv",
    "probabilistic_sharpe_ratio",
    "sharpe_per_period",
]

#: The Euler-Mascheroni constant.
EULER_GAMMA = 0.5772156649015329

_A = (
    -3.969683028665376e01,
    2.209460984245205e02,
    -2.759285104469687e02,
    1.383577518672690e02,
    -3.066479806614716e01,
    2.506628277459239e00,
)
_B = (
    -5.447609879822406e01,
    1.615858368580409e02,
    -1.556989798598866e02,
    6.680131188771972e01,
    -1.328068155288572e01,
)
_C = (
    -7.784894002430293e-03,
    -3.223964580411365e-01,
    -2.400758277161838e00,
    -2.549732539343734e00,
    4.374664141464968e00,
    2.938163982698783e00,
)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)


def norm_cdf(x: float) -> float:
    """Return the standard normal cumulative distribution function at ``x``."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def norm_ppf(p: float) -> float:
    """Return the standard normal quantile of ``p`` (``-inf`` at 0, ``inf`` at 1, NaN outside)."""
    if math.isnan(p) or p < 0.0 or p > 1.0:
        return math.nan
    if p == 0.0:
        return -math.inf
    if p == 1.0:
        return math.inf
    if p > 0.5:
        return -norm_ppf(1.0 - p)  # 1 - p is exact here; the lower tail keeps full precision
    lo = 0.02425
    if p < lo:
        q = math.sqrt(-2.0 * math.log(p))
        x = (((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q + _C[5]) / (
            (((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1.0
        )
    else:
        q = p - 0.5
        r = q * q
        x = (
            (((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5])
            * q
            / (((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1.0)
        )
    # one Halley step on the exact CDF
    e = norm_cdf(x) - p
    u = e * math.sqrt(2.0 * math.pi) * math.exp(x * x / 2.0)
    return x - u / (1.0 + x * u / 2.0)


def sharpe_per_period(returns: np.ndarray) -> float:
    """Return ``mean / std (ddof=1)`` of a return series (NaN with < 2 values or zero std)."""
    r = np.asarray(returns, dtype=np.float64)
    if len(r) < 2:
        return math.nan
    sd = float(r.std(ddof=1))
    return float(r.mean()) / sd if sd > 0 else math.nan


def moments(returns: np.ndarray) -> tuple[float, float]:
    """Return the skewness and the (non-excess, Pearson) kurtosis of ``returns``.

    Population moments: ``m3 / m2**1.5`` and ``m4 / m2**2`` (a normal sample gives about 0
    and 3). NaN when the variance is zero.
    """
    r = np.asarray(returns, dtype=np.float64)
    d = r - r.mean()
    m2 = float(np.mean(d**2))
    if m2 <= 0:
        return math.nan, math.nan
    return float(np.mean(d**3)) / m2**1.5, float(np.mean(d**4)) / m2**2


def expected_max_sharpe(n_trials: int, var_sharpe: float) -> float:
    """Return ``SR0``, the expected maximum Sharpe ratio of ``n_trials`` unskilled trials.

    ``sqrt(var) * ((1 - g) Z^-1(1 - 1/N) + g Z^-1(1 - 1/(N e)))``; 0 for a single trial or
    zero variance (nothing to deflate for).
    """
    if n_trials < 2 or not var_sharpe > 0:
        return 0.0
    g = EULER_GAMMA
    z1 = norm_ppf(1.0 - 1.0 / n_trials)
    z2 = norm_ppf(1.0 - 1.0 / (n_trials * math.e))
    return math.sqrt(var_sharpe) * ((1.0 - g) * z1 + g * z2)


def probabilistic_sharpe_ratio(
    sharpe: float, n_obs: int, skew: float, kurt: float, benchmark: float = 0.0
) -> float:
    """Return the probability that the true per-period Sharpe ratio exceeds ``benchmark``.

    ``Z((SR - SR*) sqrt(T - 1) / sqrt(1 - skew SR + (kurt - 1) / 4 SR^2))``; NaN when an input
    is NaN, ``T < 2`` or the variance term is not positive.
    """
    if n_obs < 2 or any(math.isnan(v) for v in (sharpe, skew, kurt, benchmark)):
        return math.nan
    var = 1.0 - skew * sharpe + (kurt - 1.0) / 4.0 * sharpe**2
    if not var > 0:
        return math.nan
    return norm_cdf((sharpe - benchmark) * math.sqrt(n_obs - 1) / math.sqrt(var))


def deflated_sharpe_ratio(returns: np.ndarray, trial_sharpes: np.ndarray) -> dict[str, float]:
    """Return the deflated Sharpe ratio of a selected strategy.

    Parameters
    ----------
    returns
        Per-period returns of the selected trial (daily in tierline).
    trial_sharpes
        Per-period Sharpe ratios of every trial tried (the selected one included); NaN
        entries (failed or degenerate trials) are dropped; their count is ``N`` and their
        sample variance (ddof=1) ``V``.

    Returns
    -------
    dict
        ``dsr`` (the probability, in [0, 1]), ``sharpe`` (per period), ``sr0`` (expected
        maximum under the null), ``n_trials``, ``var_trials``, ``skew``, ``kurtosis``,
        ``n_obs``.
    """
    r = np.asarray(returns, dtype=np.float64)
    r = r[np.isfinite(r)]
    s = np.asarray(trial_sharpes, dtype=np.float64)
    s = s[np.isfinite(s)]
    n_trials = len(s)
    var = float(s.var(ddof=1)) if n_trials >= 2 else 0.0
    sr = sharpe_per_period(r)
    skew, kurt = moments(r) if len(r) else (math.nan, math.nan)
    sr0 = expected_max_sharpe(n_trials, var)
    dsr = probabilistic_sharpe_ratio(sr, len(r), skew, kurt, benchmark=sr0)
    return {
        "dsr": dsr,
        "sharpe": sr,
        "sr0": sr0,
        "n_trials": float(n_trials),
        "var_trials": var,
        "skew": skew,
        "kurtosis": kurt,
        "n_obs": float(len(r)),
    }


@dataclass(frozen=True)
class PBOResult:
    """Outcome of CSCV.

    Attributes
    ----------
    pbo
        Probability of backtest overfitting: share of splits whose logit is <= 0.
    logits
        ``log(w / (1 - w))`` per split, ``w`` = out-of-sample relative rank of the in-sample
        best trial (rank / (N + 1), rank 1 = worst).
    n_splits
        ``S``, the number of row blocks.
    n_trials, n_obs
        Columns and rows used (rows not filling a whole block are dropped from the start).
    """

    pbo: float
    logits: np.ndarray
    n_splits: int
    n_trials: int
    n_obs: int


def _block_score(total: np.ndarray, total_sq: np.ndarray, count: int) -> np.ndarray:
    """Return a score in the same order as the Sharpe ratio of halves of ``count`` rows.

    ``mean / std`` equals ``sum / sqrt(count * sum_sq - sum^2)`` times the positive constant
    ``sqrt(count - 1)``, so comparing scores compares Sharpe ratios; zero variance gives
    ``+inf`` / ``-inf`` by the sign of the mean (0 when the mean is 0 too).
    """
    var = count * total_sq
    var -= total * total
    np.maximum(var, 0.0, out=var)
    np.sqrt(var, out=var)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.divide(total, var, out=var)
    out[np.isnan(out)] = 0.0
    return out


def pbo_cscv(returns: np.ndarray, n_splits: int = 16) -> PBOResult:
    """Return the probability of backtest overfitting of a ``T x N`` returns matrix by CSCV.

    Parameters
    ----------
    returns
        Rows are periods (in time order), columns are trials. Columns with a non-finite
        value are dropped.
    n_splits
        ``S``, an even number of blocks of consecutive rows (lowered to the largest even
        number leaving at least two rows per block).

    Returns
    -------
    PBOResult
        PBO (NaN with fewer than two trials or four rows) and the logit of every split.

    Notes
    -----
    Performance is the per-period Sharpe ratio (mean / std, ddof=1) over the rows of a half.
    Ties in the out-of-sample ranking share the average rank.
    """
    m = np.asarray(returns, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError("returns must be a 2-D array (periods x trials)")
    m = m[:, np.isfinite(m).all(axis=0)]
    t, n = m.shape
    s = int(n_splits) - int(n_splits) % 2
    s = min(s, (t // 2) - (t // 2) % 2)
    if n < 2 or s < 2:
        return PBOResult(math.nan, np.empty(0), max(s, 0), n, t)
    size = t // s
    m = m[t - size * s :]
    blocks = m.reshape(s, size, n)
    sums = blocks.sum(axis=1)  # (S, N)
    sq = (blocks**2).sum(axis=1)
    all_sum, all_sq = sums.sum(axis=0), sq.sum(axis=0)
    half = s // 2
    count = half * size
    combos = np.array(list(itertools.combinations(range(s), half)), dtype=np.int64)
    member = np.zeros((len(combos), s))
    np.put_along_axis(member, combos, 1.0, axis=1)
    logits = np.empty(len(combos))
    step = max(1, 2**22 // max(n, 1))  # splits per batch: a few MB per intermediate array
    for lo in range(0, len(combos), step):
        mb = member[lo : lo + step]
        is_sum, is_sq = mb @ sums, mb @ sq  # (splits, N)
        best = np.argmax(_block_score(is_sum, is_sq, count), axis=1)
        r_oos = _block_score(all_sum - is_sum, all_sq - is_sq, count)
        v = np.take_along_axis(r_oos, best[:, None], axis=1)
        rank = (r_oos < v).sum(axis=1) + ((r_oos == v).sum(axis=1) + 1.0) / 2.0
        w = rank / (n + 1)
        logits[lo : lo + step] = np.log(w / (1.0 - w))
    return PBOResult(float((logits <= 0).mean()), logits, s, n, size * s)
