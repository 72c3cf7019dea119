"""kernels/bench.py on one point, memory only (compiling allocates nothing): the blockwise
implementation's temporaries stay far below the [N, V] float32 logits the reference holds."""

import jax.numpy as jnp
from rljax.kernels import bench


def test_blockwise_temporaries_are_a_fraction_of_the_logits():
    num_rows, vocab = 2048, 65536
    logits_bytes = num_rows * vocab * 4
    result = bench.run(
        ((num_rows,), (vocab,)),
        ["reference", "xla_chunked"],
        jnp.float32,
        repeats=1,
        max_time_tflop=0.0,
        teacher=True,
    )
    rows = {(r["impl"], r["mode"]): r for r in result["rows"]}
    assert len(rows) == 4 and not any("error" in r or "seconds" in r for r in rows.values())
    for mode in ("forward", "forward_backward"):
        assert rows["reference", mode]["temp_bytes"] >= logits_bytes
        assert rows["xla_chunked", mode]["temp_bytes"] < 0.3 * logits_bytes
    ratios = {e["mode"]: e["memory_ratio"] for e in result["summary"]}
    assert set(ratios) == {"forward", "forward_backward"} and max(ratios.values()) < 0.3
