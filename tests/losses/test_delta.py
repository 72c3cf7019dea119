"""Tests for rljax.losses.delta against methods/delta.md section 6 and a NumPy reference."""

import functools

import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljax.losses.delta import delta_coefficients, delta_coefficients_streamed
from rljax.losses.delta_stats import (
    delta_centroid_sums,
    delta_centroids_from_sums,
    delta_margin_sums,
    delta_temperatures_from_sums,
)

# delta.md section 6: H = 2, P = 2, G = 2, T = 2; proxies v given directly (p = 0, so v = h).
V = np.array(
    [[[2, 0], [0, 1]], [[-2, 0], [1, 1]], [[0.5, 0.5], [7, 7]], [[0.3, 0.3], [-7, 7]]], np.float32
)  # the [7, 7] / [-7, 7] rows are padding garbage
ADV = np.array([0.707106, -0.707106, 0.0, 0.0], np.float32)
MASK = np.array([[1, 1], [1, 1], [1, 0], [1, 0]], np.float32)
PROBS = np.zeros((4, 2), np.float32)


def reference_coefficients(
    v,
    adv,
    mask,
    *,
    n_refine=1,
    lmin=0.8,
    lmax=1.2,
    metric="euclidean",
    opposite_weight=1.0,
    zero_coef=None,
    normalize=True,
    eps=1e-8,
):
    """delta.md section 5 pseudo-code in float64 NumPy, with the section 9 options."""
    v, adv, m = (np.asarray(x, np.float64) for x in (v, adv, mask))
    pos = (adv > 0)[:, None] * m
    neg = (adv < 0)[:, None] * m
    zer = m - pos - neg
    wp, wn = np.maximum(adv, 0)[:, None] * m, np.maximum(-adv, 0)[:, None] * m
    if metric == "euclidean":
        d = np.ones(v.shape[-1])
    else:

        def var(sel):
            n = max(sel.sum(), 1.0)
            mean = np.einsum("bt,bth->h", sel, v) / n
            return np.einsum("bt,bth->h", sel, v**2) / n - mean**2

        d = var(pos) + var(neg) + 1e-6

    def cent(w):
        return np.einsum("bt,bth->h", w, v) / max(w.sum(), eps)

    def margins(mu_p, mu_n):
        dp = ((v - mu_p) ** 2 / d).sum(-1)
        dn = ((v - mu_n) ** 2 / d).sum(-1)
        return opposite_weight * dn - dp, opposite_weight * dp - dn

    def side_std(mg, sel):
        n = max(sel.sum(), 1.0)
        mean = (mg * sel).sum() / n
        return np.sqrt(max((mg**2 * sel).sum() / n - mean**2, eps))

    def sigmoid(x):
        return 0.5 * (1 + np.tanh(x / 2))

    mu_p, mu_n = cent(wp), cent(wn)
    mp, mn = margins(mu_p, mu_n)
    gp, gn = side_std(mp, pos), side_std(mn, neg)
    for _ in range(n_refine):
        mu_p, mu_n = cent(sigmoid(mp / gp) * wp), cent(sigmoid(mn / gn) * wn)
        gp, gn = side_std(mp, pos), side_std(mn, neg)
        mp, mn = margins(mu_p, mu_n)
    zero_coef = lmin if zero_coef is None else zero_coef
    c = (
        (lmin + (lmax - lmin) * sigmoid(mp / gp)) * pos
        + (lmin + (lmax - lmin) * sigmoid(mn / gn)) * neg
        + zero_coef * zer
    )
    return c * m.sum() / max(c.sum(), eps) if normalize else c


def test_worked_example(variant):
    raw = variant(functools.partial(delta_coefficients, normalize=False))(V, PROBS, ADV, MASK)
    np.testing.assert_allclose(
        raw, [[1.18004, 0.979859], [1.16203, 0.913975], [0.8, 0], [0.8, 0]], rtol=5e-6
    )
    np.testing.assert_allclose(np.sum(raw), 5.83590, rtol=5e-6)
    coeffs = variant(delta_coefficients)(V, PROBS, ADV, MASK)
    np.testing.assert_allclose(
        coeffs, [[1.21322, 1.00741], [1.19470, 0.939674], [0.822495, 0], [0.822495, 0]], rtol=5e-6
    )
    np.testing.assert_allclose(
        ADV[:, None] * coeffs * MASK,
        [[0.857878, 0.712346], [-0.844781, -0.664449], [0, 0], [0, 0]],
        rtol=5e-6,
    )


def test_worked_example_intermediates():
    sums = delta_centroid_sums(V, PROBS, ADV, MASK)
    centroids = delta_centroids_from_sums(sums)
    np.testing.assert_allclose(centroids.mu_pos, [1, 0.5], rtol=1e-6)
    np.testing.assert_allclose(centroids.mu_neg, [-0.5, 0.5], rtol=1e-6)
    temps = delta_temperatures_from_sums(delta_margin_sums(V, PROBS, ADV, MASK, centroids))
    np.testing.assert_allclose([temps.gamma_pos, temps.gamma_neg], [3.0, 4.5], rtol=1e-6)
    refined = delta_centroids_from_sums(
        delta_centroid_sums(V, PROBS, ADV, MASK, centroids=centroids, temperatures=temps)
    )
    np.testing.assert_allclose(refined.mu_pos, [1.32109, 0.339457], rtol=5e-6)
    np.testing.assert_allclose(refined.mu_neg, [-1.05229, 0.315903], rtol=5e-6)
    soft = delta_centroid_sums(V, PROBS, ADV, MASK, centroids=centroids, temperatures=temps)
    np.testing.assert_allclose(soft.weight_pos, 0.602421 + 0.309588, rtol=5e-6)
    np.testing.assert_allclose(soft.weight_neg, 0.578112 + 0.266961, rtol=5e-6)
    # New margins: Pos [8.84012, -0.606282], Neg [10.1469, -4.14047] (as sums and squares).
    margins = delta_margin_sums(V, PROBS, ADV, MASK, refined)
    np.testing.assert_allclose(margins.margin_sum_pos, 8.84012 - 0.606282, rtol=5e-6)
    np.testing.assert_allclose(margins.margin_sq_sum_pos, 8.84012**2 + 0.606282**2, rtol=5e-6)
    np.testing.assert_allclose(margins.margin_sum_neg, 10.1469 - 4.14047, rtol=5e-6)
    np.testing.assert_allclose(margins.margin_sq_sum_neg, 10.1469**2 + 4.14047**2, rtol=5e-6)


@pytest.mark.parametrize(
    "kwargs,expected",
    [
        (dict(n_refine=0), [[1.14078, 0.975129], [1.12703, 0.951016]]),
        (dict(n_refine=2), [[1.15949, 0.998254], [1.12776, 0.930311]]),
        (dict(c_min=0.5, c_max=1.5), [[1.45011, 0.949648], [1.40507, 0.784937]]),
    ],
)
def test_worked_example_variants(variant, kwargs, expected):
    fn = variant(functools.partial(delta_coefficients, normalize=False, **kwargs))
    np.testing.assert_allclose(fn(V, PROBS, ADV, MASK)[:2], expected, rtol=5e-6)


def test_symmetric_shared_token(variant):
    v = V.copy()
    v[1, 1] = [0, 1]  # identical to the positive side's second token
    raw = variant(functools.partial(delta_coefficients, normalize=False))(v, PROBS, ADV, MASK)
    np.testing.assert_allclose(raw[:2], [[1.17107, 1.0], [1.17107, 1.0]], rtol=5e-6)
    coeffs = variant(delta_coefficients)(v, PROBS, ADV, MASK)
    np.testing.assert_allclose(coeffs[:2], [[1.18247, 1.00974]] * 2, rtol=5e-6)
    np.testing.assert_allclose(coeffs[2:, 0], 0.807789, rtol=5e-6)


def test_shared_tokens_saturate_when_only_the_answer_proxy_differs(variant):
    """experiments/results/delta_direction.md: a correct and a wrong row share a format token
    (0, 0) and a filler token (1, 0); their answer proxies are collinear, the correct one shorter.
    The initial centroids differ by 0.033, so gamma is tiny; the refinement splits the tokens by
    length and the lagged gamma saturates every coefficient, the shared filler at opposite ends."""
    v = np.array([[[0, 0], [1, 0], [0, 0.4]], [[0, 0], [1, 0], [0, 0.5]]], np.float32)
    args = (v, np.zeros((2, 3), np.float32), np.array([1.0, -1.0], np.float32), np.ones((2, 3)))
    fn = functools.partial(delta_coefficients, normalize=False)
    no_refine = variant(functools.partial(fn, n_refine=0))(*args)
    np.testing.assert_allclose(
        no_refine, [[1.075604, 1.075604, 0.883940], [0.938425, 0.938425, 1.126126]], rtol=5e-6
    )
    np.testing.assert_allclose(
        variant(fn)(*args), [[0.802216, 1.2, 0.8], [1.193806, 0.8, 1.2]], atol=5e-6
    )


def test_proxy_uses_one_minus_p(variant):
    # h = v / (1 - p) with p = 0.5 reproduces the example; proxy "h" ignores p.
    probs = np.full((4, 2), 0.5, np.float32)
    default = variant(delta_coefficients)(2 * V, probs, ADV, MASK)
    h_only = variant(functools.partial(delta_coefficients, proxy="h"))(V, probs, ADV, MASK)
    expected = reference_coefficients(V, ADV, MASK)
    np.testing.assert_allclose(default, expected, rtol=1e-5)
    np.testing.assert_allclose(h_only, expected, rtol=1e-5)


@pytest.mark.parametrize(
    "options",
    [
        dict(metric="diag_var"),
        dict(opposite_weight=0.7),
        dict(n_refine=3),
        dict(metric="diag_var", n_refine=2, zero_adv_coef=1.0, c_min=0.5, c_max=2.0),
        dict(normalize=False),
    ],
)
def test_matches_numpy_reference(variant, options):
    rng = np.random.default_rng(3)
    hidden = rng.normal(size=(6, 5, 3)).astype(np.float32)
    probs = rng.uniform(0, 0.9, size=(6, 5)).astype(np.float32)
    adv = np.array([1.2, -0.4, 0.0, -0.9, 0.3, 0.0], np.float32)
    mask = (rng.uniform(size=(6, 5)) < 0.8).astype(np.float32)
    ref_options = dict(options)
    for ours, theirs in (("c_min", "lmin"), ("c_max", "lmax"), ("zero_adv_coef", "zero_coef")):
        if ours in ref_options:
            ref_options[theirs] = ref_options.pop(ours)
    expected = reference_coefficients((1 - probs)[..., None] * hidden, adv, mask, **ref_options)
    fn = variant(functools.partial(delta_coefficients, **options))
    np.testing.assert_allclose(fn(hidden, probs, adv, mask), expected, rtol=2e-5, atol=1e-6)


def _random_batch(seed, batch=8):
    rng = np.random.default_rng(seed)
    hidden = rng.normal(size=(batch, 6, 4)).astype(np.float32)
    probs = rng.uniform(0, 0.9, size=(batch, 6)).astype(np.float32)
    adv = rng.normal(size=batch).astype(np.float32)
    adv[2] = 0.0
    mask = (rng.uniform(size=(batch, 6)) < 0.75).astype(np.float32)
    return hidden, probs, adv, mask


@pytest.mark.parametrize("options", [dict(), dict(n_refine=2, metric="diag_var")])
def test_two_micro_batches_equal_one_shot(options):
    hidden, probs, adv, mask = _random_batch(4)
    one_shot = delta_coefficients(hidden, probs, adv, mask, **options)
    calls = []

    def load(i):
        calls.append(i)
        rows = slice(4 * i, 4 * i + 4)
        return hidden[rows], probs[rows], adv[rows], mask[rows]

    streamed = delta_coefficients_streamed(load, 2, **options)
    np.testing.assert_allclose(np.concatenate(streamed), one_shot, rtol=1e-5, atol=1e-6)
    assert len(calls) == 2 * (3 + options.get("n_refine", 1))


def test_stat_shards_are_independent():
    hidden, probs, adv, mask = _random_batch(5)
    sharded = jax.jit(functools.partial(delta_coefficients, n_stat_shards=2))(
        hidden, probs, adv, mask
    )
    halves = [
        reference_coefficients((1 - probs[s])[..., None] * hidden[s], adv[s], mask[s])
        for s in (slice(0, 4), slice(4, 8))
    ]
    np.testing.assert_allclose(sharded, np.concatenate(halves), rtol=2e-5, atol=1e-6)


def test_all_groups_equal(variant):
    coeffs = variant(delta_coefficients)(V, PROBS, np.zeros(4, np.float32), MASK)
    np.testing.assert_allclose(coeffs, MASK, rtol=1e-6)


def test_side_with_one_token_and_empty_side(variant):
    # One Pos token, no Neg token: the Pos token gets c_max, the empty side's mu = 0 is harmless.
    adv = np.array([0.5, 0.0, 0.0, 0.0], np.float32)
    mask = np.array([[1, 0], [1, 1], [1, 0], [1, 0]], np.float32)
    raw = variant(functools.partial(delta_coefficients, normalize=False))(V, PROBS, adv, mask)
    np.testing.assert_allclose(raw, [[1.2, 0], [0.8, 0.8], [0.8, 0], [0.8, 0]], rtol=1e-6)
    coeffs = variant(delta_coefficients)(V, PROBS, adv, mask)
    assert np.all(np.isfinite(coeffs))
    np.testing.assert_allclose(np.sum(coeffs), np.sum(mask), rtol=1e-6)


def test_zero_length_rows(variant):
    mask = MASK.copy()
    mask[1] = 0  # the only negative response has no tokens
    coeffs = variant(delta_coefficients)(V, PROBS, ADV, mask)
    np.testing.assert_array_equal(coeffs[1], 0.0)
    np.testing.assert_allclose(coeffs, reference_coefficients(V, ADV, mask), rtol=1e-5)


def test_no_gradient_into_inputs():
    def total(hidden, probs, adv):
        return jnp.sum(delta_coefficients(hidden, probs, adv, MASK) * jnp.arange(8.0).reshape(4, 2))

    grads = jax.grad(total, argnums=(0, 1, 2))(jnp.asarray(V), jnp.full((4, 2), 0.3), ADV)
    for grad in grads:
        np.testing.assert_array_equal(grad, 0.0)


_RANGES = [(0.8, 1.2), (0.5, 1.5), (1.0, 1.0)]
_JITTED = {
    (r, norm): jax.jit(
        functools.partial(delta_coefficients, c_min=r[0], c_max=r[1], normalize=norm)
    )
    for r in _RANGES
    for norm in (True, False)
}


@hypothesis.settings(max_examples=20, deadline=None)
@hypothesis.given(
    hidden=hnp.arrays(np.float32, (4, 5, 3), elements=st.floats(-3, 3, width=32)),
    probs=hnp.arrays(np.float32, (4, 5), elements=st.floats(0, 0.75, width=32)),
    adv=hnp.arrays(np.float32, (4,), elements=st.sampled_from([-1.5, -0.5, 0.0, 0.7, 1.0])),
    mask=hnp.arrays(bool, (4, 5)),
    c_range=st.sampled_from(_RANGES),
)
def test_coefficients_mean_one_and_in_range(hidden, probs, adv, mask, c_range):
    c_min, c_max = c_range
    coeffs = np.asarray(_JITTED[c_range, True](hidden, probs, adv, mask))
    raw = np.asarray(_JITTED[c_range, False](hidden, probs, adv, mask))
    assert np.all(np.isfinite(coeffs))
    np.testing.assert_array_equal(coeffs[~mask], 0.0)
    if mask.any():
        np.testing.assert_allclose(coeffs[mask].mean(), 1.0, rtol=1e-5)
        assert np.all(raw[mask] >= c_min - 1e-6) and np.all(raw[mask] <= c_max + 1e-6)
        assert np.all(coeffs[mask] >= c_min / c_max - 1e-5)
        assert np.all(coeffs[mask] <= c_max / c_min + 1e-5)


def test_bad_input():
    with pytest.raises(ValueError, match="c_min"):
        delta_coefficients(V, PROBS, ADV, MASK, c_min=1.3)
    with pytest.raises(ValueError, match="n_refine"):
        delta_coefficients(V, PROBS, ADV, MASK, n_refine=-1)
    with pytest.raises(ValueError, match="metric='cosine'"):
        delta_coefficients(V, PROBS, ADV, MASK, metric="cosine")
    with pytest.raises(ValueError, match="proxy='grad'"):
        delta_coefficients(V, PROBS, ADV, MASK, proxy="grad")
    with pytest.raises(ValueError, match="hidden"):
        delta_coefficients(V[0], PROBS, ADV, MASK)
    with pytest.raises(ValueError, match="token_probs"):
        delta_coefficients(V, PROBS[:, :1], ADV, MASK)
    with pytest.raises(ValueError, match="advantages"):
        delta_coefficients(V, PROBS, ADV[:2], MASK)
    with pytest.raises(ValueError, match="n_stat_shards"):
        delta_coefficients(V, PROBS, ADV, MASK, n_stat_shards=3)
    with pytest.raises(ValueError, match="temperatures"):
        delta_centroid_sums(
            V,
            PROBS,
            ADV,
            MASK,
            centroids=delta_centroids_from_sums(delta_centroid_sums(V, PROBS, ADV, MASK)),
        )
