"""`kernels.token_stats`: per-token log-prob, entropy and teacher JSD without [N, V] logits."""

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero
from rljax.kernels import pallas_kernels, xla_chunked
from rljax.kernels._validation import check_rank, check_unembedding_inputs
from rljax.kernels.reference import token_stats_reference
from rljax.kernels.tile_math import RowCotangent
from rljax.kernels.types import BlockSizes, TokenStats
from rljax.kernels.vocab_sweep import Engine, GradSide, vocab_gradients

IMPLS = ("auto", "pallas", "xla_chunked", "reference")


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """Static configuration of a blockwise implementation (hashable: it keys the VJP cache).

    Attributes:
        impl: "pallas" or "xla_chunked".
        temperature: tau > 0.
        block_sizes: tile sizes.
        platform: "cpu" (Pallas in interpret mode), "gpu" (Pallas Triton), "tpu" (Mosaic), or
            "interpret-gpu" (the Triton flavour in interpret mode, for tests); see
            pallas_kernels.PLATFORMS.
        stop_teacher_gradient: the teacher distribution is a constant in the backward.
    """

    impl: str
    temperature: float
    block_sizes: BlockSizes
    platform: str
    stop_teacher_gradient: bool = False

    def engine(self, num_rows: int, vocab: int) -> Engine:
        """The tile passes for a problem with `num_rows` rows swept together and `vocab` columns
        (the XLA chunk width keeps num_rows * chunk_v within block_sizes.chunk_elements)."""
        inv_temperature = 1.0 / self.temperature
        if self.impl == "pallas":
            chunk_v = self.block_sizes.chunk_width(num_rows, vocab, self.block_sizes.block_v)
            return pallas_kernels.make_engine(
                inv_temperature=inv_temperature,
                chunk_v=chunk_v,
                block_sizes=self.block_sizes,
                platform=self.platform,
            )
        chunk_v = self.block_sizes.chunk_width(num_rows, vocab)
        return xla_chunked.make_engine(inv_temperature=inv_temperature, chunk_v=chunk_v)


class Residuals(NamedTuple):
    """What the backward sweep needs from the forward (no [N, V] array among them)."""

    hidden: jax.Array
    teacher_hidden: jax.Array | None
    w_unembed: jax.Array
    targets: jax.Array
    lse: jax.Array
    entropy: jax.Array
    teacher_lse: jax.Array | None
    teacher_entropy: jax.Array | None
    kl_student: jax.Array | None
    kl_teacher: jax.Array | None


def resolve_impl(impl: str) -> tuple[str, str]:
    """The implementation and Pallas platform for `impl` on the default JAX backend.

    Args:
        impl: one of IMPLS; "auto" picks xla_chunked on every backend: the Pallas kernel has not
            yet run on a GPU or TPU (`kernels/gpu_check.sh` has no committed device results), so
            it is used only when asked for by name ("pallas").

    Returns:
        (implementation, platform), platform in {"cpu", "gpu", "tpu"}.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl={impl!r} is not one of {list(IMPLS)}")
    backend = jax.default_backend()
    platform = "tpu" if backend == "tpu" else "gpu" if backend in ("gpu", "cuda", "rocm") else "cpu"
    if impl == "auto":
        impl = "xla_chunked"
    return impl, platform


def _pad_rows(x: jax.Array | None, multiple: int) -> jax.Array | None:
    if x is None or x.shape[0] % multiple == 0:
        return x
    padding = [(0, -x.shape[0] % multiple)] + [(0, 0)] * (x.ndim - 1)
    return jnp.pad(x, padding)


def target_logits(
    rows: jax.Array, w_unembed: jax.Array, targets: jax.Array, inv_temperature: float
) -> jax.Array:
    """The target logit of each row, gathered without the other V - 1 columns.

    Args:
        rows: [N, H] hidden states.
        w_unembed: [H, V].
        targets: [N] int token ids.
        inv_temperature: 1 / tau.

    Returns:
        [N] float32 z[n, targets[n]] = rows[n] . w[:, targets[n]] / tau; NaN for a target
        outside [0, V) (never a clamped lookup).
    """
    vocab = w_unembed.shape[1]
    in_range = (targets >= 0) & (targets < vocab)
    columns = jnp.take(w_unembed, jnp.clip(targets, 0, vocab - 1), axis=1)  # [H, N]
    z = jnp.einsum("nh,hn->n", rows, columns, preferred_element_type=jnp.float32)
    return jnp.where(in_range, z * inv_temperature, jnp.nan)


def forward(
    config: SweepConfig,
    hidden: jax.Array,
    w_unembed: jax.Array,
    targets: jax.Array,
    teacher_hidden: jax.Array | None,
) -> tuple[TokenStats, Residuals]:
    """Token statistics and the residuals of their VJP.

    One sweep gives lse and entropy (student and teacher rows stacked); with a teacher a second
    sweep gives the JSD, which needs both normalisers first. logprob = z_target - lse.

    Args:
        config: the static configuration.
        hidden: [N, H]; w_unembed: [H, V]; targets: [N] int32; teacher_hidden: [N, H] or None.

    Returns:
        (TokenStats of [N] float32 arrays, Residuals).
    """
    num_rows, vocab = hidden.shape[0], w_unembed.shape[1]
    rows = hidden if teacher_hidden is None else jnp.concatenate([hidden, teacher_hidden])
    engine = config.engine(rows.shape[0], vocab)
    lse, entropy = engine.softmax_stats(_pad_rows(rows, engine.row_multiple), w_unembed)
    lse, entropy = lse[: rows.shape[0]], entropy[: rows.shape[0]]
    inv_temperature = 1.0 / config.temperature
    logprob = target_logits(hidden, w_unembed, targets, inv_temperature) - lse[:num_rows]
    if teacher_hidden is None:
        stats = TokenStats(logprob, entropy)
        return stats, Residuals(
            hidden, None, w_unembed, targets, lse, entropy, None, None, None, None
        )
    lse, teacher_lse = lse[:num_rows], lse[num_rows:]
    entropy, teacher_entropy = entropy[:num_rows], entropy[num_rows:]
    teacher_logprob = target_logits(teacher_hidden, w_unembed, targets, inv_temperature)
    teacher_logprob = teacher_logprob - teacher_lse
    pad = functools.partial(_pad_rows, multiple=engine.row_multiple)
    kl_student, kl_teacher = engine.kl_to_mixture(
        pad(hidden), pad(teacher_hidden), w_unembed, pad(lse), pad(teacher_lse)
    )
    kl_student, kl_teacher = kl_student[:num_rows], kl_teacher[:num_rows]
    stats = TokenStats(
        logprob, entropy, teacher_logprob, teacher_entropy, 0.5 * (kl_student + kl_teacher)
    )
    residuals = Residuals(
        hidden,
        teacher_hidden,
        w_unembed,
        targets,
        lse,
        entropy,
        teacher_lse,
        teacher_entropy,
        kl_student,
        kl_teacher,
    )
    return stats, residuals


def backward(
    config: SweepConfig, res: Residuals, cotangents: TokenStats
) -> tuple[jax.Array | None, jax.Array | None, jax.Array | None]:
    """(d hidden, d w_unembed, d teacher_hidden) for the statistics' cotangents.

    A cotangent that is None (a SymbolicZero or an absent teacher field) drops its term; a side
    (student or teacher rows) none of whose statistics reaches the objective is not swept at all,
    so teacher statistics used as stop-gradient targets cost no backward work. With
    config.stop_teacher_gradient the teacher rows are swept only to form the JSD mixture.

    Args:
        config: the static configuration.
        res: residuals from `forward`.
        cotangents: TokenStats of [N] cotangents, None where a statistic has none.

    Returns:
        (d hidden, d w_unembed, d teacher_hidden) in the inputs' dtypes; None for a zero gradient.
    """
    g_lp, g_ent, g_tlp, g_tent, g_jsd = cotangents
    half_g_jsd = None if g_jsd is None else 0.5 * g_jsd
    student = RowCotangent(res.entropy, g_lp, g_ent, half_g_jsd, res.kl_student)
    teacher = RowCotangent(res.teacher_entropy, g_tlp, g_tent, half_g_jsd, res.kl_teacher)
    active = [
        any(g is not None for g in (c.g_logprob, c.g_entropy, c.half_g_jsd))
        for c in (student, teacher)
    ]
    active[1] = active[1] and not config.stop_teacher_gradient
    if not any(active):
        return None, None, None
    candidates = [GradSide(res.hidden, res.targets, res.lse, student)]
    if res.teacher_hidden is not None:
        candidates.append(GradSide(res.teacher_hidden, res.targets, res.teacher_lse, teacher))
    swept = [i for i, side in enumerate(candidates) if active[i] or half_g_jsd is not None]
    num_rows, vocab = res.hidden.shape[0], res.w_unembed.shape[1]
    engine = config.engine(num_rows * len(swept), vocab)
    pad = functools.partial(_pad_rows, multiple=engine.row_multiple)
    sides = [
        GradSide(
            pad(candidates[i].rows),
            pad(candidates[i].targets),
            pad(candidates[i].lse),
            jax.tree.map(pad, candidates[i].cotangent) if active[i] else None,
        )
        for i in swept
    ]
    d_rows, d_w = vocab_gradients(sides, res.w_unembed, engine)
    grads = [None, None]
    for i, d in zip(swept, d_rows):
        if d is not None:
            grads[i] = d[:num_rows].astype(candidates[i].rows.dtype)
    return grads[0], d_w, grads[1]


def _dense(cotangent) -> jax.Array | None:
    return None if cotangent is None or isinstance(cotangent, SymbolicZero) else cotangent


@functools.lru_cache(maxsize=None)
def _token_stats_vjp(config: SweepConfig):
    """The custom_vjp function for one static configuration (statics bound, never positional)."""

    @jax.custom_vjp
    def stats_fn(hidden, w_unembed, targets, teacher_hidden):
        return forward(config, hidden, w_unembed, targets, teacher_hidden)[0]

    def fwd(hidden, w_unembed, targets, teacher_hidden):
        teacher = None if teacher_hidden is None else teacher_hidden.value
        return forward(config, hidden.value, w_unembed.value, targets.value, teacher)

    def bwd(res, cotangents):
        d_hidden, d_w, d_teacher = backward(config, res, TokenStats(*map(_dense, cotangents)))
        return d_hidden, d_w, None, d_teacher

    stats_fn.defvjp(fwd, bwd, symbolic_zeros=True)
    return stats_fn


def token_stats(
    hidden: jax.Array,
    w_unembed: jax.Array,
    targets: jax.Array,
    *,
    temperature: float = 1.0,
    teacher_hidden: jax.Array | None = None,
    impl: str = "auto",
    block_sizes: BlockSizes | None = None,
    stop_teacher_gradient: bool = False,
) -> TokenStats:
    """Per-token log-prob and entropy (and teacher statistics and JSD) without [N, V] logits.

    logits = hidden @ w_unembed / temperature (grpo.md GRPO-1); logprob = log_softmax(logits)[y],
    entropy = -sum_v p_v log p_v, and with a teacher (anti_sd.md ASD-2, ASD-5) the teacher's
    log-prob and entropy under the same weights, plus the full-vocabulary
    JSD(p || q) = 0.5 KL(p || M) + 0.5 KL(q || M), M = (p + q) / 2 (ASD-3). All in float32
    whatever the input dtype.

    The blockwise implementations sweep vocabulary tiles with an online log-sum-exp that also
    carries sum_v p_v z_v for the entropy; the JSD needs both normalisers, so with a teacher it
    takes a second sweep. A custom VJP recomputes logit tiles in the backward (flash-attention
    style) and skips statistics whose cotangent is symbolically zero.
    Implementations: "pallas" (one kernel source: Triton on GPU, Mosaic on TPU, interpret mode on
    CPU), "xla_chunked" (lax loops, any backend), "reference" (materialises [N, V]; the oracle);
    "auto" = xla_chunked on every backend until the Pallas kernel has run on a device.

    Args:
        hidden: [N, H] student hidden states (float32, bfloat16 or float16).
        w_unembed: [H, V] unembedding, same dtype.
        targets: [N] int token ids in [0, V).
        temperature: tau > 0 (static).
        teacher_hidden: optional [N, H] teacher hidden states.
        impl: "auto", "pallas", "xla_chunked" or "reference".
        block_sizes: tile sizes; None uses BlockSizes.get_default(backend).
        stop_teacher_gradient: treat the teacher distribution as a constant: no gradient reaches
            teacher_hidden or w_unembed through the teacher, the JSD differentiates through the
            student only (anti_sd.md ASD-3).

    Returns:
        TokenStats of float32 [N] arrays; teacher fields None without teacher_hidden.
        Differentiable w.r.t. hidden, w_unembed and teacher_hidden.
    """
    check_rank("hidden", hidden, 2)
    check_unembedding_inputs(hidden, w_unembed, targets, teacher_hidden, temperature)
    impl, platform = resolve_impl(impl)
    if impl == "reference":
        return token_stats_reference(
            hidden,
            w_unembed,
            targets,
            temperature=temperature,
            teacher_hidden=teacher_hidden,
            stop_teacher_gradient=stop_teacher_gradient,
        )
    if block_sizes is None:
        block_sizes = BlockSizes.get_default(platform)
    config = SweepConfig(
        impl, float(temperature), block_sizes, platform, bool(stop_teacher_gradient)
    )
    return _token_stats_vjp(config)(hidden, w_unembed, targets.astype(jnp.int32), teacher_hidden)
