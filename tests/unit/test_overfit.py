"""Deflated Sharpe ratio and PBO (CSCV) on hand-checkable cases."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from tierline.sweep.overfit import (
    EULER_GAMMA,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    moments,
    norm_cdf,
    norm_ppf,
    pbo_cscv,
    probabilistic_sharpe_ratio,
)

Z = NormalDist()


@pytest.mark.parametrize(
    "p", [1e-300, 1e-12, 1e-5, 0.001, 0.02425, 0.1, 0.3, 0.5, 0.8, 0.975, 0.999, 1 - 1e-9]
)
def test_norm_ppf_matches_the_standard_library(p: float) -> None:
    assert norm_ppf(p) == pytest.approx(Z.inv_cdf(p), rel=1e-13, abs=1e-13)
    assert norm_cdf(norm_ppf(p)) == pytest.approx(p, rel=1e-12)


def test_norm_known_values() -> None:
    assert norm_ppf(0.975) == pytest.approx(1.959963984540054, abs=1e-14)
    assert norm_ppf(0.5) == 0.0
    assert norm_ppf(0.0) == -math.inf and norm_ppf(1.0) == math.inf
    assert math.isnan(norm_ppf(1.5))
    assert norm_cdf(0.0) == 0.5


def test_dsr_reproduces_the_papers_worked_example() -> None:
    # Bailey & Lopez de Prado (2014), section 6: N=100 trials, V[SR] = 1/2 (annualised),
    # best annualised SR 2.5, T=1250 daily returns, skew -3, kurtosis 10 -> DSR = 0.9004.
    sr0 = expected_max_sharpe(100, 0.5 / 250)
    dsr = probabilistic_sharpe_ratio(2.5 / math.sqrt(250), 1250, -3.0, 10.0, benchmark=sr0)
    assert dsr == pytest.approx(0.9004, abs=5e-5)


def test_dsr_step_by_step() -> None:
    rng = np.random.default_rng(7)
    r = rng.normal(0.002, 0.01, 200) + 0.004 * (rng.random(200) < 0.05)
    trials = np.array([0.05, 0.12, -0.02, 0.08, 0.2, 0.01, np.nan, 0.15])
    got = deflated_sharpe_ratio(r, trials)

    t = len(r)
    sr = r.mean() / r.std(ddof=1)
    d = r - r.mean()
    skew = np.mean(d**3) / np.mean(d**2) ** 1.5
    kurt = np.mean(d**4) / np.mean(d**2) ** 2
    s = trials[~np.isnan(trials)]
    n, v = len(s), s.var(ddof=1)
    sr0 = math.sqrt(v) * (
        (1 - EULER_GAMMA) * Z.inv_cdf(1 - 1 / n) + EULER_GAMMA * Z.inv_cdf(1 - 1 / (n * math.e))
    )
    z = (sr - sr0) * math.sqrt(t - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    want = Z.cdf(z)

    assert got["n_trials"] == 7 and got["n_obs"] == 200
    assert got["sharpe"] == pytest.approx(sr, rel=1e-12)
    assert got["skew"] == pytest.approx(skew, rel=1e-12)
    assert got["kurtosis"] == pytest.approx(kurt, rel=1e-12)
    assert got["var_trials"] == pytest.approx(v, rel=1e-12)
    assert got["sr0"] == pytest.approx(sr0, rel=1e-12)
    assert got["dsr"] == pytest.approx(want, rel=1e-10)
    assert 0.0 < got["dsr"] < 1.0


def test_dsr_with_one_trial_is_the_probabilistic_sharpe_against_zero() -> None:
    r = np.array([0.01, -0.005, 0.02, 0.0, 0.015, -0.01])
    got = deflated_sharpe_ratio(r, np.array([0.3]))
    skew, kurt = moments(r)
    assert got["sr0"] == 0.0
    assert got["dsr"] == pytest.approx(
        probabilistic_sharpe_ratio(got["sharpe"], 6, skew, kurt, 0.0), rel=1e-15
    )


def test_more_trials_deflate_more() -> None:
    r = np.random.default_rng(1).normal(0.001, 0.01, 500)
    few = deflated_sharpe_ratio(r, np.linspace(-0.05, 0.05, 5))["dsr"]
    many = deflated_sharpe_ratio(r, np.linspace(-0.05, 0.05, 500))["dsr"]
    assert many < few


def test_pbo_is_one_when_the_in_sample_best_is_always_out_of_sample_worst() -> None:
    # every trial is a permutation of the same +1/-1 returns: equal totals and equal |r|, so
    # a half with a higher mean (and so a higher Sharpe) leaves a lower mean to the other half
    rng = np.random.default_rng(0)
    base = np.r_[np.ones(32), -np.ones(32)]
    m = np.stack([rng.permutation(base) for _ in range(12)], axis=1)
    res = pbo_cscv(m, n_splits=8)
    assert res.pbo == 1.0
    assert res.n_splits == 8 and res.n_trials == 12 and res.n_obs == 64
    assert len(res.logits) == math.comb(8, 4)
    assert (res.logits <= 0).all()


def test_pbo_is_zero_when_one_trial_dominates_everywhere() -> None:
    rng = np.random.default_rng(3)
    m = rng.normal(0.0, 0.01, (400, 20))
    m[:, 5] += 0.02
    res = pbo_cscv(m, n_splits=10)
    assert res.pbo == 0.0
    # the best trial is the best out of sample too: rank N of N
    assert res.logits == pytest.approx(np.full(len(res.logits), math.log(20 / 1)))


def test_pbo_of_pure_noise_is_about_one_half() -> None:
    values = [pbo_cscv(np.random.default_rng(s).normal(size=(600, 40)), 12).pbo for s in range(12)]
    assert abs(float(np.mean(values)) - 0.5) < 0.12


def test_pbo_drops_partial_blocks_and_non_finite_trials() -> None:
    m = np.random.default_rng(2).normal(size=(103, 6))
    m[5, 2] = np.nan
    res = pbo_cscv(m, n_splits=10)
    assert res.n_trials == 5 and res.n_obs == 100 and res.n_splits == 10
    assert math.isnan(pbo_cscv(m[:, :1]).pbo)
