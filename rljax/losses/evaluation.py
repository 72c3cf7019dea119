"""Evaluation estimators over k samples per problem: pass@k and majority vote (maj@k)."""

import math

import jax
import jax.numpy as jnp

from rljax.losses._checks import check_rank, check_shape


def pass_at_k(num_samples: int, num_correct: int, k: int) -> float:
    """Unbiased pass@k estimate for one problem from n samples of which c are correct.

    Chen et al., arXiv 2107.03374, eq. 1; grpo.md GRPO-11:
        pass@k = 1 - C(n - c, k) / C(n, k) = 1 - prod_{i = n-c+1}^{n} (1 - k / i)
    and 1 when n - c < k. Evaluated on the host in float64 with the product form (no large
    binomials). Report the mean over problems; pass@1 equals the mean accuracy (avg@n).

    Args:
        num_samples: n >= 1.
        num_correct: c, 0 <= c <= n.
        k: 1 <= k <= n.

    Returns:
        The estimate, a Python float in [0, 1].
    """
    n, c, k = int(num_samples), int(num_correct), int(k)
    if n < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples!r}")
    if not 0 <= c <= n:
        raise ValueError(f"num_correct must be in [0, num_samples={n}], got {num_correct!r}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, num_samples={n}], got {k!r}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def maj_at_k(answers: jax.Array, correct: jax.Array, *, invalid: int = -1) -> jax.Array:
    """Majority-vote accuracy (maj@k): is the most frequent answer among k samples correct?

    Self-consistency voting (Wang et al., arXiv 2203.11171). Answers are integer ids of
    equivalence classes (e.g. normalised final answers); samples whose answer equals `invalid`
    (unparseable) do not vote. Ties go to the answer whose first occurrence comes earliest
    (library choice). A problem with no valid answer scores 0.

    Args:
        answers: [..., k] int answer-class ids.
        correct: [..., k] bool, whether each sample's answer is correct (constant within a class).
        invalid: the id of an unparseable answer.

    Returns:
        [...] float32, 1.0 where the majority answer is correct.
    """
    check_rank("answers", answers, {1, 2, 3})
    check_shape("correct", correct, answers.shape)
    answers = jnp.asarray(answers)
    valid = answers != invalid
    same = (answers[..., :, None] == answers[..., None, :]) & valid[..., None, :]
    votes = jnp.where(valid, jnp.sum(same, axis=-1), -1)  # [..., k]
    winner = jnp.argmax(votes, axis=-1)  # first maximum = earliest occurrence
    winner_correct = jnp.take_along_axis(jnp.asarray(correct, bool), winner[..., None], axis=-1)
    return (winner_correct[..., 0] & jnp.any(valid, axis=-1)).astype(jnp.float32)
