"""kernels.tile_math against float64 numpy: merged tile statistics, the JSD halves, and the logit
cotangent against central finite differences and the anti_sd.md E6 gradient identity."""

import math

import numpy as np
import pytest
from rljax.kernels import tile_math

RNG = np.random.default_rng(0)


def _np_log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _np_stats(z_s, z_t, y):
    """(logprob, entropy, teacher logprob, teacher entropy, jsd) per row, float64."""
    lp, lq = _np_log_softmax(z_s), _np_log_softmax(z_t)
    p, q = np.exp(lp), np.exp(lq)
    m = 0.5 * (p + q)
    jsd = 0.5 * (p * np.log(p / m)).sum(-1) + 0.5 * (q * np.log(q / m)).sum(-1)
    rows = np.arange(len(y))
    return lp[rows, y], -(p * lp).sum(-1), lq[rows, y], -(q * lq).sum(-1), jsd


def test_merged_tile_stats_equal_whole_row_stats():
    z = RNG.normal(size=(4, 37)).astype(np.float32) * 3.0
    valid_width = 33  # the last 4 columns are padding
    z[:, valid_width:] = np.nan  # garbage in padded columns must not leak
    parts = []
    for start in range(0, 37, 8):
        columns = np.arange(start, min(start + 8, 37))[None, :]
        parts.append(tile_math.softmax_stats(z[:, columns[0]], columns < valid_width))
    m, s, u = (np.stack([p[i] for p in parts]) for i in range(3))
    lse, entropy = tile_math.lse_and_entropy(*tile_math.merge_softmax_stats(m, s, u))
    lp = _np_log_softmax(z[:, :valid_width].astype(np.float64))
    np.testing.assert_allclose(
        lse[:, 0], np.log(np.exp(z[:, :valid_width].astype(np.float64)).sum(-1)), rtol=1e-6
    )
    np.testing.assert_allclose(entropy[:, 0], -(np.exp(lp) * lp).sum(-1), rtol=1e-5, atol=1e-6)


def test_entropy_of_worked_example():
    """anti_sd.md E4: entropy of [0.7, 0.2, 0.1] is 0.801819 nats."""
    z = np.log(np.array([[0.7, 0.2, 0.1]], np.float32))
    _, entropy = tile_math.lse_and_entropy(*tile_math.softmax_stats(z, None))
    assert float(entropy[0, 0]) == pytest.approx(0.801819, abs=1e-6)


def test_kl_to_mixture_halves_sum_to_jsd():
    z_s, z_t = RNG.normal(size=(2, 3, 11)) * 2.0
    lse_s = np.log(np.exp(z_s).sum(-1, keepdims=True))
    lse_t = np.log(np.exp(z_t).sum(-1, keepdims=True))
    kl_s, kl_t = tile_math.kl_to_mixture(
        z_s.astype(np.float32),
        z_t.astype(np.float32),
        lse_s.astype(np.float32),
        lse_t.astype(np.float32),
        None,
    )
    jsd = _np_stats(z_s, z_t, np.zeros(3, int))[4]
    np.testing.assert_allclose(0.5 * (kl_s + kl_t)[:, 0], jsd, rtol=1e-5, atol=1e-7)
    assert np.all(jsd <= math.log(2.0))


def _row(z_s, z_t, g, side):
    lse = np.log(np.exp(z_s if side == 0 else z_t).sum(-1, keepdims=True))
    lp, lq = _np_log_softmax(z_s), _np_log_softmax(z_t)
    lm = np.log(0.5 * (np.exp(lp) + np.exp(lq)))
    own = lp if side == 0 else lq
    entropy = -(np.exp(own) * own).sum(-1, keepdims=True)
    kl = (np.exp(own) * (own - lm)).sum(-1, keepdims=True)
    g_lp, g_ent = (g[0], g[1]) if side == 0 else (g[2], g[3])
    row = tile_math.RowCotangent(
        entropy.astype(np.float32),
        g_lp[:, None].astype(np.float32),
        g_ent[:, None].astype(np.float32),
        (0.5 * g[4])[:, None].astype(np.float32),
        kl.astype(np.float32),
    )
    return lse.astype(np.float32), row, lm.astype(np.float32)


def test_logit_cotangent_matches_finite_differences():
    rows, vocab = 3, 9
    z_s, z_t = RNG.normal(size=(2, rows, vocab)) * 1.5
    y = RNG.integers(0, vocab, rows)
    g = RNG.uniform(-1, 1, size=(5, rows))

    def objective(z_s, z_t):
        return sum((gk * sk).sum() for gk, sk in zip(g, _np_stats(z_s, z_t, y)))

    is_target = np.arange(vocab)[None, :] == y[:, None]
    for side in (0, 1):
        lse, row, lm = _row(z_s, z_t, g, side)
        z = (z_s if side == 0 else z_t).astype(np.float32)
        analytic = tile_math.logit_cotangent(z, lse, row, is_target, None, lm)
        numeric = np.zeros((rows, vocab))
        eps = 1e-5
        for r in range(rows):
            for v in range(vocab):
                bump = np.zeros((rows, vocab))
                bump[r, v] = eps
                if side == 0:
                    numeric[r, v] = objective(z_s + bump, z_t) - objective(z_s - bump, z_t)
                else:
                    numeric[r, v] = objective(z_s, z_t + bump) - objective(z_s, z_t - bump)
        np.testing.assert_allclose(analytic, numeric / (2 * eps), atol=2e-5)


def test_jsd_cotangent_is_the_anti_sd_e6_identity():
    """anti_sd.md E6: d JSD / d z_S = sum_v p_v (-phi(u_v)) (e_v - p), u = log q - log p,
    phi(u) = 0.5 (softplus(u) - log 2); V = 7."""
    z_s, z_t = RNG.normal(size=(2, 1, 7))
    lp, lq = _np_log_softmax(z_s), _np_log_softmax(z_t)
    p = np.exp(lp)[0]
    phi = 0.5 * (np.log1p(np.exp((lq - lp)[0])) - math.log(2.0))
    expected = (p * -phi) - p * np.sum(p * -phi)
    zeros = np.zeros(1)
    lse, row, lm = _row(z_s, z_t, (zeros, zeros, zeros, zeros, np.ones(1)), 0)
    row = row._replace(g_logprob=None, g_entropy=None)
    analytic = tile_math.logit_cotangent(
        z_s.astype(np.float32), lse, row, np.zeros((1, 7), bool), None, lm
    )
    np.testing.assert_allclose(analytic[0], expected, atol=1e-6)
