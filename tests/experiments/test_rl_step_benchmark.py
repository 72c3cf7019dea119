"""The RL-step benchmark's pieces: model FLOPs against a hand count, and the optimised workload
training exactly as the unoptimised one (the levers it times must not change the math)."""

import dataclasses

import pytest
from rljax.experiments.benchmarks import flops, rl_workload


def test_token_flops_hand_count():
    # 1 layer, H 32, F 64, N 2, K 1, D 16, V 64, 3 keys:
    # q/k/v 2*32*(32+2*16) = 4096, o 2*32*32 = 2048, MLP 3*2*32*64 = 12288, attention
    # 2*2*2*16*3 = 384, unembedding 2*32*64 = 4096.
    work = rl_workload.Workload(layers=1, hidden=32, mlp=64, heads=2, kv_heads=1, vocab=64)
    assert flops.token_flops(work, 3) == 4096 + 2048 + 12288 + 384 + 4096
    # A 2-token sequence: contexts 1 and 2; the update is 3x its forward over P*G rows.
    pair = flops.token_flops(work, 1) + flops.token_flops(work, 2)
    assert flops.sequence_flops(work, 2) == pair
    assert flops.update_flops(work, width=2) == 3 * 64 * pair


def test_optimised_workload_trains_like_the_unoptimised_one():
    # Vocabulary 20 (4 specials, 16 values): an untrained policy answers right often enough for
    # non-zero advantages; lr 1e-2 moves it far enough from the reference for a live KL.
    work = rl_workload.Workload(
        prompts=4, group=4, max_new_tokens=4, layers=1, hidden=32, mlp=64, heads=2, kv_heads=1,
        vocab=20, lr=1e-2, steps=2,
    )  # fmt: skip
    fast = rl_workload.run(work, rl_workload.Options())
    slow = rl_workload.run(work, rl_workload.BASELINE)
    assert len(fast["steps"]) == 2 and fast["steps"][0]["update"] > 0
    # The same rollouts (same keys, the same parameters to float rounding) packed narrower, and
    # no separate forward: the same two updates.
    assert fast["gen_tokens_per_step"] == slow["gen_tokens_per_step"]
    assert fast["train_width_per_step"][0] < slow["train_width_per_step"][0]
    assert fast["params_moved"] > 1e-3  # two updates moved the policy
    # Adam's first steps move each coordinate by about lr * sign(gradient), so coordinates whose
    # gradient is ~0 amplify the paths' float rounding (~2e-6 in the update tests): 1e-3 here.
    assert fast["params_moved"] == pytest.approx(slow["params_moved"], rel=1e-3)
    assert fast["loss_last"] == pytest.approx(slow["loss_last"], abs=2e-6)
    assert dataclasses.asdict(rl_workload.Options()) != dataclasses.asdict(rl_workload.BASELINE)
