"""Result type and tiling parameters of the fused token-statistics kernels."""

import dataclasses
from typing import NamedTuple

import jax


class TokenStats(NamedTuple):
    """Per-token statistics over the vocabulary, all float32 [N].

    Attributes:
        logprob: log pi(target | context) under softmax(hidden @ w / temperature).
        entropy: full-vocabulary entropy -sum_v pi(v) log pi(v), nats.
        teacher_logprob: the same log-prob under the teacher rows (None without a teacher).
        teacher_entropy: the teacher's full-vocabulary entropy (None without a teacher).
        jsd: full-vocabulary Jensen-Shannon divergence JSD(pi_student || pi_teacher)
            = 0.5 KL(pi_S || M) + 0.5 KL(pi_T || M), M = (pi_S + pi_T) / 2 (None without a teacher).
    """

    logprob: jax.Array
    entropy: jax.Array
    teacher_logprob: jax.Array | None = None
    teacher_entropy: jax.Array | None = None
    jsd: jax.Array | None = None


@dataclasses.dataclass(frozen=True)
class BlockSizes:
    """Tile sizes of the Pallas kernels and the step width of the XLA vocabulary loops.

    Attributes:
        block_n: rows (tokens) per Pallas tile.
        block_v: vocabulary columns per Pallas tile.
        block_h: largest hidden-size chunk of each tile's matmul (the reduction dimension): the
            kernels use the largest power of two <= min(block_h, H), at least 16, that divides H
            (so any H that is a multiple of 16 gets power-of-two chunks, as Triton needs), or the
            whole H in one dot when there is none or block_h is None.
        chunk_v: vocabulary columns per step of the XLA loops (the `xla_chunked` sweeps and the
            Pallas backward, which holds one [N, chunk_v] cotangent block). None derives it from
            `chunk_elements`.
        chunk_elements: upper bound on N * chunk_v used when chunk_v is None.
    """

    block_n: int = 64
    block_v: int = 128
    block_h: int | None = 64
    chunk_v: int | None = None
    chunk_elements: int = 1 << 24

    def __post_init__(self):
        for name in ("block_n", "block_v", "chunk_elements"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value > 0):
                raise ValueError(f"BlockSizes.{name} must be a positive int, got {value!r}")
        for name in ("block_h", "chunk_v"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and value > 0):
                raise ValueError(f"BlockSizes.{name} must be None or a positive int, got {value!r}")

    @classmethod
    def get_default(cls, backend: str) -> "BlockSizes":
        """Defaults per JAX backend ("cpu", "gpu"/"cuda"/"rocm", "tpu").

        GPU tiles are sized for Triton (64 x 128 tiles, 64-wide hidden chunks, power-of-two
        shapes); TPU tiles follow the (8, 128) vreg layout with the whole hidden size per dot;
        on CPU the XLA loop takes wide steps (N * chunk_v <= 16M elements, 64 MiB in fp32).
        """
        if backend == "tpu":
            return cls(block_n=256, block_v=512, block_h=None, chunk_elements=1 << 26)
        if backend in ("gpu", "cuda", "rocm"):
            return cls(block_n=64, block_v=128, block_h=64, chunk_elements=1 << 27)
        return cls(block_n=64, block_v=128, block_h=None, chunk_elements=1 << 24)

    def hidden_chunk(self, hidden: int) -> int:
        """The hidden-dimension chunk used for a hidden size H (see block_h)."""
        if self.block_h is None:
            return hidden
        chunk = 16
        while chunk * 2 <= min(self.block_h, hidden):
            chunk *= 2
        while chunk >= 16:
            if hidden % chunk == 0:
                return chunk
            chunk //= 2
        return hidden

    def chunk_width(self, num_rows: int, vocab: int, multiple: int = 1) -> int:
        """Vocabulary columns per XLA loop step: chunk_v, or the widest power of two with
        num_rows * width <= chunk_elements (at least 128), rounded up to `multiple`, capped at
        the vocabulary size."""
        width = self.chunk_v
        if width is None:
            width = 128
            while 2 * width * num_rows <= self.chunk_elements and width < vocab:
                width *= 2
        width = -(-width // multiple) * multiple
        return min(width, vocab)
