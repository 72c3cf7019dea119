"""Poly-EPO: polychromic set scores, marginal set advantages, and the GRPO+DIV baseline.

Paper: Hasan Orney, Ibn Hamid, Ramanujam, Wu, Hu, Goodman, Sadigh and Finn, "Poly-EPO: Training
Exploratory Reasoning Models", arXiv 2604.17654 (https://arxiv.org/abs/2604.17654). Official code:
ifdita-hasan/polyepo (verl). Predecessor: Hamid et al., arXiv 2509.25424. Specification:
`methods/poly_epo.md`.

The objective is the expected score of a set of n responses, f(S) = mean reward x (distinct valid
strategy clusters / n). From the G = N responses of a prompt, all size-n subsets (or a random
sample of them) are scored, the mean subset score is subtracted, and each response receives the
mean set advantage of the subsets that contain it. The functions here take integer cluster ids;
the host-side string judges that produce them (`rule_cluster`, `tag_cluster`, `cluster_group`)
live in `rljax.envs.strategy`.
"""

from __future__ import annotations

import itertools
import math
from typing import Protocol

import chex
import jax
import jax.numpy as jnp
import numpy as np

from rljax.losses._checks import check_choice, check_rank, check_shape

__all__ = [
    "MAX_ENUMERATED_SUBSETS",
    "ScoreFn",
    "diversity_bonus",
    "grpo_div_advantages",
    "poly_epo_advantages",
    "polychromic_score",
]

MAX_ENUMERATED_SUBSETS = 100_000
"""Largest C(N, n) that is enumerated (all subsets, or sampling without replacement)."""

_FORMS = ("mean", "sum")


class ScoreFn(Protocol):
    """Set score f: rewards [..., n] and cluster ids [..., n] -> [...] (PEPO-3 signature)."""

    def __call__(
        self, rewards: jax.Array, cluster_ids: jax.Array, *, degenerate: int
    ) -> jax.Array: ...


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_cluster_ids(cluster_ids: chex.Array, shape: tuple[int, ...]) -> None:
    check_shape("cluster_ids", cluster_ids, shape)
    dtype = jnp.asarray(cluster_ids).dtype
    if not jnp.issubdtype(dtype, jnp.integer):
        raise ValueError(f"cluster_ids must be an integer array, got dtype {dtype}")


def polychromic_score(
    rewards: chex.Array, cluster_ids: chex.Array, *, degenerate: int = -1, min_clusters: int = 1
) -> jax.Array:
    """Polychromic set score f(S) = mean reward x distinct valid clusters / n.

    Poly-EPO eqs. PEPO-2 and PEPO-3 (arXiv 2604.17654):
        d(S) = |{c_g : g in S, c_g != degenerate}| / n,    f(S) = ((1/n) sum_{g in S} r_g) d(S)
    The denominator is always n; an all-degenerate set has d = 0, n members of one valid cluster
    have d = 1/n. `min_clusters=2` gives the paper's indicator variant (d := 0 with fewer than two
    valid clusters), which the official code omits (default 1: the code's behaviour).

    Args:
        rewards: [..., n] rewards of the set members.
        cluster_ids: [..., n] integer strategy cluster ids.
        degenerate: cluster id of malformed responses (the paper's judge uses 100).
        min_clusters: d is 0 below this many distinct valid clusters (1 or 2).

    Returns:
        [...] float32 set scores.
    """
    check_rank("rewards", rewards, set(range(1, 8)))
    _check_cluster_ids(cluster_ids, jnp.shape(rewards))
    if min_clusters not in (1, 2):
        raise ValueError(
            f"min_clusters must be 1 (default) or 2 (indicator variant), got {min_clusters!r}"
        )
    set_size = jnp.shape(rewards)[-1]
    ids = jnp.asarray(cluster_ids)
    same = ids[..., :, None] == ids[..., None, :]
    earlier = jnp.tril(jnp.ones((set_size, set_size), bool), k=-1)  # earlier[a, b] = b < a
    earlier = earlier.reshape((1,) * (ids.ndim - 1) + earlier.shape)
    first = (ids != degenerate) & ~jnp.any(same & earlier, axis=-1)
    distinct = jnp.sum(first, axis=-1)
    diversity = jnp.where(distinct >= min_clusters, distinct / set_size, 0.0)
    return jnp.mean(jnp.asarray(rewards, jnp.float32), axis=-1) * diversity


def _all_subsets(num_items: int, set_size: int) -> np.ndarray:
    return np.array(list(itertools.combinations(range(num_items), set_size)), np.int32)


def _sample_subsets(
    key: chex.PRNGKey,
    num_prompts: int,
    num_items: int,
    set_size: int,
    num_subsets: int,
    max_enumerated: int,
) -> jax.Array:
    """[P, M, n] subset indices drawn per prompt (distinct if C(N, n) <= max_enumerated)."""
    keys = jax.random.split(key, num_prompts)
    if math.comb(num_items, set_size) <= max_enumerated:
        table = jnp.asarray(_all_subsets(num_items, set_size))

        def draw(k: jax.Array) -> jax.Array:
            rows = jax.random.choice(k, table.shape[0], (num_subsets,), replace=False)
            return table[rows]
    else:

        def draw(k: jax.Array) -> jax.Array:
            noise = jax.random.uniform(k, (num_subsets, num_items))
            return jax.lax.top_k(noise, set_size)[1].astype(jnp.int32)

    return jax.vmap(draw)(keys)


def poly_epo_advantages(
    rewards: chex.Array,
    cluster_ids: chex.Array,
    *,
    set_size: int = 4,
    degenerate: int = -1,
    form: str = "mean",
    score_fn: ScoreFn = polychromic_score,
    num_subsets: int | None = None,
    key: chex.PRNGKey | None = None,
    max_enumerated: int = MAX_ENUMERATED_SUBSETS,
) -> jax.Array:
    """Poly-EPO marginal set advantages: mean (or sum) of f(S) - f_hat over the sets containing g.

    Poly-EPO eqs. PEPO-1, PEPO-4 and PEPO-5 (arXiv 2604.17654), per prompt p:
        A_set[j] = f(S_j) - (1/M) sum_j' f(S_j')
        A[p, g] = sum_j MEM[g, j] A_set[j] / sum_j MEM[g, j]       (form="mean", official code)
        A[p, g] = sum_j MEM[g, j] A_set[j]                         (form="sum", paper's estimator)
    Subsets: all C(N, n) (default), or with `num_subsets=M` and `key`, M per prompt drawn
    uniformly: distinct (without replacement) when C(N, n) <= max_enumerated, otherwise M
    independent uniform n-subsets (repeats possible but rare at that size). A response in no
    drawn subset gets A = 0. With full enumeration the mean-form advantages of a prompt sum to 0,
    and n = 1 with a reward-only score gives Dr.GRPO (r - mean r). No std normalisation.
    Differs from the official code: it divides by (count + 1e-6); here the division is exact.

    Args:
        rewards: [P, N] rewards (binary in the paper).
        cluster_ids: [P, N] integer strategy cluster ids (`cluster_group`).
        set_size: n with 1 <= n <= N (paper 4).
        degenerate: cluster id of malformed responses (the paper's judge uses 100).
        form: "mean" (default) or "sum" (C(N-1, n-1) times the mean under full enumeration).
        score_fn: set score f(rewards [..., n], cluster_ids [..., n], *, degenerate) -> [...];
            e.g. `functools.partial(polychromic_score, min_clusters=2)` for the indicator variant.
        num_subsets: M >= 1 subsets per prompt to sample (None: enumerate all).
        key: PRNG key, required with `num_subsets` and only then.
        max_enumerated: the largest C(N, n) that is enumerated.

    Returns:
        [P, N] float32 advantages, under stop_gradient.
    """
    check_rank("rewards", rewards, 2)
    _check_cluster_ids(cluster_ids, jnp.shape(rewards))
    num_prompts, num_items = jnp.shape(rewards)
    if not _is_int(set_size) or not 1 <= set_size <= num_items:
        raise ValueError(f"set_size must be an integer in [1, N = {num_items}], got {set_size!r}")
    check_choice("form", form, _FORMS)
    total = math.comb(num_items, set_size)
    if (num_subsets is None) != (key is None):
        raise ValueError(
            "num_subsets and key go together: pass both to sample subsets or "
            f"neither to enumerate; got num_subsets={num_subsets!r}, key={key!r}"
        )
    r = jax.lax.stop_gradient(jnp.asarray(rewards, jnp.float32))
    ids = jnp.asarray(cluster_ids)

    if num_subsets is None:
        if total > max_enumerated:
            raise ValueError(
                f"enumerating C(N={num_items}, n={set_size}) = {total} subsets "
                f"exceeds max_enumerated={max_enumerated}; pass num_subsets and key "
                "to sample"
            )
        subsets = jnp.broadcast_to(
            jnp.asarray(_all_subsets(num_items, set_size)), (num_prompts, total, set_size)
        )
    else:
        if not _is_int(num_subsets) or num_subsets < 1:
            raise ValueError(f"num_subsets must be an integer >= 1, got {num_subsets!r}")
        if num_subsets > total and total <= max_enumerated:
            raise ValueError(
                f"num_subsets={num_subsets} exceeds the C(N={num_items}, "
                f"n={set_size}) = {total} distinct subsets"
            )
        subsets = _sample_subsets(
            key, num_prompts, num_items, set_size, num_subsets, max_enumerated
        )

    set_rewards = jnp.take_along_axis(r[:, None, :], subsets, axis=2)  # [P, M, n]
    set_ids = jnp.take_along_axis(ids[:, None, :], subsets, axis=2)  # [P, M, n]
    scores = score_fn(set_rewards, set_ids, degenerate=degenerate)  # [P, M]
    set_adv = scores - jnp.mean(scores, axis=1, keepdims=True)
    scatter = jax.vmap(
        lambda values, idx: (
            jnp.zeros(num_items, jnp.float32)
            .at[idx]
            .add(jnp.broadcast_to(values[:, None], idx.shape))
        )
    )
    adv_sum = scatter(set_adv, subsets)  # [P, N]
    if form == "sum":
        return jax.lax.stop_gradient(adv_sum)
    count = scatter(jnp.ones_like(set_adv), subsets)  # [P, N]
    return jax.lax.stop_gradient(jnp.where(count > 0, adv_sum / jnp.maximum(count, 1.0), 0.0))


def diversity_bonus(cluster_ids: chex.Array, *, degenerate: int = -1) -> jax.Array:
    """Per-response diversity div = (G / |{g' : c_g' = c_g}| - 1) / (G - 1), 0 if degenerate.

    Poly-EPO eq. PEPO-10, GRPO+DIV baseline (arXiv 2604.17654): 1 for a singleton cluster, 0 when
    the whole group shares one cluster. Differs from the paper: its handling of degenerate
    responses is unspecified; div = 0 for them is the library's choice.

    Args:
        cluster_ids: [P, G] integer cluster ids, G >= 2.
        degenerate: cluster id of malformed responses.

    Returns:
        [P, G] float32 diversity in [0, 1].
    """
    check_rank("cluster_ids", cluster_ids, 2)
    _check_cluster_ids(cluster_ids, jnp.shape(cluster_ids))
    group_size = jnp.shape(cluster_ids)[1]
    if group_size < 2:
        raise ValueError(
            f"cluster_ids must have G >= 2 responses per prompt, got shape {jnp.shape(cluster_ids)}"
        )
    ids = jnp.asarray(cluster_ids)
    share = jnp.sum(ids[:, :, None] == ids[:, None, :], axis=-1).astype(jnp.float32)
    div = (group_size / share - 1.0) / (group_size - 1)
    return jnp.where(ids != degenerate, div, 0.0)


def grpo_div_advantages(
    rewards: chex.Array, cluster_ids: chex.Array, *, coef: float = 0.5, degenerate: int = -1
) -> jax.Array:
    """GRPO+DIV baseline: Dr.GRPO advantage of the shaped reward r + coef * div.

    Poly-EPO eq. PEPO-10 (arXiv 2604.17654):
        A[p, g] = (r + coef div)[p, g] - mean_g' (r + coef div)[p, g']
    Differs from the paper: coef is unspecified there; 0.5 is the library's choice.

    Args:
        rewards: [P, G] rewards.
        cluster_ids: [P, G] integer cluster ids.
        coef: weight lambda of the diversity bonus.
        degenerate: cluster id of malformed responses (div = 0).

    Returns:
        [P, G] float32 advantages, under stop_gradient.
    """
    check_rank("rewards", rewards, 2)
    _check_cluster_ids(cluster_ids, jnp.shape(rewards))
    shaped = jnp.asarray(rewards, jnp.float32) + coef * diversity_bonus(
        cluster_ids, degenerate=degenerate
    )
    return jax.lax.stop_gradient(shaped - jnp.mean(shaped, axis=1, keepdims=True))
