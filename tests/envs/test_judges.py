"""Poly-EPO host-side string judges (poly_epo.md PEPO-7, PEPO-9), moved from rljax.losses.

`tag_cluster` is the former `rljax.losses.poly_epo.rule_cluster` (renamed: `rljax.envs.strategy`
already has the task-aware `rule_cluster`); the assertions are the ones of the former
tests/losses/test_poly_epo.py::test_rule_cluster_and_judge_fallbacks.
"""

import numpy as np

from rljax.envs.strategy import cluster_group
from rljax.envs.strategy import tag_cluster as rule_cluster

X = 100  # the paper judge's degenerate id


def test_rule_cluster_and_judge_fallbacks():
    responses = ["[S_3] 4 1 9 <eos>", "  [S_12] 0 0 0", "gibberish [S_2]", ""]
    assert [rule_cluster(r) for r in responses] == [3, 12, -1, -1]
    assert rule_cluster("oops", degenerate=X) == X
    ids, ok = cluster_group("x", responses)
    assert ok and ids.tolist() == [3, 12, -1, -1] and ids.dtype == np.int32

    def broken_judge(prompt, responses):
        raise RuntimeError("judge timed out")

    ids, ok = cluster_group("x", responses, cluster_fn=broken_judge, degenerate=1)
    assert not ok and ids.tolist() == [0, 2, 3, 4]  # distinct and never the degenerate id
    ids, ok = cluster_group("x", responses, cluster_fn=lambda p, r: [0, 1])
    assert not ok and ids.tolist() == [0, 1, 2, 3]
    ids, ok = cluster_group("x", responses, cluster_fn=lambda p, r: [7, 7, 8, 100])
    assert ok and ids.tolist() == [7, 7, 8, 100]
