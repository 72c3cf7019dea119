"""The RL-step benchmark's workload through rljax's public API (one process, one JSON record).

The workload (the same as `shared/peers/tunix_grpo_cpu.py` runs on Tunix): a tiny Qwen3 (4 layers,
hidden 128, MLP 512, 4 query / 2 KV heads, head_dim 32, vocab 512, untied, fp32); prompts
`[BOS, a, b, SEP]` with a, b in [0, 16); reward 1 when the first generated token is the token of
(a + b) mod 16; P = 8 prompts x G = 8 samples of up to 32 new tokens at temperature 1 (EOS stops a
row); GRPO with k3 KL to a frozen reference (beta 0.04), clip 0.2, seq-mean-token-mean,
`optax.adamw(1e-4)`, one update per step.

Each step is what `rljax.train.Trainer.step` does, composed from the same public pieces:
`DecodeSession` (prefill + decode), `rollout.pack_rows` (right-padded rows), `train.train_batch`,
`train.make_forward_fn` (old and reference log-probs, or `make_scoring_fn` for both in one pass),
`train.prepare_inputs` + `train.make_prepare_fn` (group advantages), `train.make_update_fn`.
`Options` switches each lever so the benchmark can measure it against the unoptimised path.
"""

from __future__ import annotations

import dataclasses
import os
import resource
import time

import jax
import numpy as np
import optax
from flax import nnx
from rljax.experiments.benchmarks.machine import machine_busy_s

from rljax import methods
from rljax.data.chat import Role
from rljax.models import Decoder, ModelConfig
from rljax.rollout.batch import RowRecord, pack_rows
from rljax.sampling import DecodeSession, Temperature
from rljax.train import (
    ForwardOutputs,
    init_state,
    make_forward_fn,
    make_prepare_fn,
    make_update_fn,
    policy_model,
    prepare_inputs,
    split_model,
    train_batch,
)

PAD, BOS, EOS, SEP = 0, 1, 2, 3
VALUE_BASE = 4  # token id of value 0
NUM_VALUES = 16


@dataclasses.dataclass(frozen=True)
class Workload:
    """Sizes of the workload (defaults: the reference workload)."""

    prompts: int = 8
    group: int = 8
    max_new_tokens: int = 32
    prompt_len_padded: int = (
        8  # the peer's left-padded prompt width (rljax packs rows to the right)
    )
    layers: int = 4
    hidden: int = 128
    mlp: int = 512
    heads: int = 4
    kv_heads: int = 2
    vocab: int = 512
    beta: float = 0.04
    lr: float = 1e-4
    temperature: float = 1.0
    steps: int = 10
    seed: int = 0

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def model_config(self) -> ModelConfig:
        return ModelConfig.tiny(
            vocab_size=self.vocab,
            hidden_size=self.hidden,
            intermediate_size=self.mlp,
            num_layers=self.layers,
            num_heads=self.heads,
            num_kv_heads=self.kv_heads,
            head_dim=self.head_dim,
            tie_embeddings=False,
        )


@dataclasses.dataclass(frozen=True)
class Options:
    """The levers the benchmark can turn back; `Options()` is the optimised path, `BASELINE` the
    trainer's earlier path (64-column multiple, separate forward). The library-level changes (2-D
    projections, 4-token chunk bucket, compilation cache) are on in both.

    Attributes:
        pad_multiple: `pack_rows`'s width multiple: the update batch is as wide as the longest
            row rounded up to it (64: a 36-token batch takes 64 columns; 4: 36).
        old_logprobs: "forward" computes them with a no-grad forward pass before the update (and
            gives it to `prepare`); "current" lets the update use its own log-probs under
            `stop_gradient` (`make_update_fn(old_logprobs="current")`, exact with one update per
            batch) and gives `prepare` the sampler's log-probs (GRPO's prepare reads only rewards).
        impl: `kernels.token_stats` implementation.
    """

    pad_multiple: int = 4
    old_logprobs: str = "current"
    impl: str = "auto"


BASELINE = Options(pad_multiple=64, old_logprobs="forward")


def make_batches(work: Workload) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded (a, b) operand pairs [P] for every step."""
    rng = np.random.default_rng(work.seed)
    return [
        (rng.integers(0, NUM_VALUES, work.prompts), rng.integers(0, NUM_VALUES, work.prompts))
        for _ in range(work.steps)
    ]


def _records(prompts, gens, rewards, group):
    records = []
    for b, (prompt, gen) in enumerate(zip(prompts, gens)):
        tokens = np.asarray(list(prompt) + gen.tokens, np.int32)
        roles = np.asarray([Role.TEMPLATE] * len(prompt) + [Role.ACTION] * len(gen.tokens), np.int8)
        logprobs = np.asarray([0.0] * len(prompt) + gen.logprobs, np.float32)
        records.append(
            RowRecord(
                tokens,
                roles,
                logprobs,
                float(rewards[b]),
                b // group,
                0,
                1,
                not gen.stopped,
                None,
                {},
            )
        )
    return records


class Timer:
    """Phases of one step: wall seconds and this process's CPU seconds (`cpu_<phase>`; robust to
    other processes' load, for comparing levers on a busy machine)."""

    def __init__(self):
        self.phases: dict[str, float] = {}
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        self.start = (self.wall, self.cpu)

    def lap(self, name: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.phases[name] = self.phases.get(name, 0.0) + wall - self.wall
        self.phases["cpu_" + name] = self.phases.get("cpu_" + name, 0.0) + cpu - self.cpu
        self.wall, self.cpu = wall, cpu

    def total(self) -> dict[str, float]:
        return {
            "total": self.wall - self.start[0],
            "cpu_total": self.cpu - self.start[1],
            **self.phases,
        }


def cpu_snapshot() -> tuple[float, float]:
    """(machine busy CPU-seconds from /proc/stat, this process's CPU-seconds)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return machine_busy_s(), usage.ru_utime + usage.ru_stime


def run(work: Workload, opts: Options) -> dict:
    """Runs `work.steps` GRPO steps; returns per-step phase timings and the run's figures."""
    model = Decoder(work.model_config(), rngs=nnx.Rngs(work.seed))
    graphdef, params, rest = split_model(model)
    initial = [np.asarray(x) for x in jax.tree.leaves(params)]  # the update donates its input
    method = methods.grpo(mode="seq-mean-token-mean", kl_beta=work.beta, kl_kind="k3")
    optimizer = optax.adamw(work.lr)
    state, _ = init_state(params, optimizer, method, seed=work.seed)
    passes = dict(temperature=work.temperature, impl=opts.impl)
    forward = make_forward_fn(graphdef, with_hidden=False, with_teacher=False, **passes)
    prepare = make_prepare_fn(method)
    reuse = opts.old_logprobs == "current"
    update = make_update_fn(
        graphdef, method, optimizer, old_logprobs="current" if reuse else "batch", **passes
    )
    strategy = Temperature(work.temperature)
    rows = work.prompts * work.group
    steps, gen_tokens, widths, rewards_mean = [], [], [], []
    cpu0, t0 = cpu_snapshot(), time.perf_counter()
    for step, (a, b) in enumerate(make_batches(work)):
        timer = Timer()
        key = jax.random.fold_in(jax.random.key(work.seed), step)
        prompts = [[BOS, VALUE_BASE + int(x), VALUE_BASE + int(y), SEP] for x, y in zip(a, b)]
        prompts = [p for p in prompts for _ in range(work.group)]
        session = DecodeSession(
            policy_model(graphdef, state.params, rest),
            batch_size=rows,
            max_len=len(prompts[0]) + work.max_new_tokens,
            strategy=strategy,
            key=key,
        )
        session.prefill(prompts)
        gens = session.generate(max_new_tokens=work.max_new_tokens, stop_tokens=(EOS,))
        answers = [VALUE_BASE + (int(x) + int(y)) % NUM_VALUES for x, y in zip(a, b)]
        rewards = np.asarray(
            [
                float(bool(g.tokens) and g.tokens[0] == answers[i // work.group])
                for i, g in enumerate(gens)
            ],
            np.float32,
        )
        traj = pack_rows(
            _records(prompts, gens, rewards, work.group),
            None,
            pad_id=PAD,
            pad_multiple=opts.pad_multiple,
        )
        timer.lap("rollout")
        batch = train_batch(traj)
        if reuse:
            sampled = np.asarray(traj.sampler_logprobs, np.float32)
            fwd = ForwardOutputs(logprobs=sampled, entropy=np.zeros_like(sampled))
        else:
            fwd = forward(state.params, rest, batch)
        inputs = prepare_inputs(traj, fwd, group_size=work.group)
        advantages, method_state, _ = prepare(inputs, state.method_state)
        state = state.replace(method_state=method_state)
        jax.block_until_ready(advantages)
        timer.lap("old_logprobs_prepare")
        ref = forward(state.ref_params, rest, batch).logprobs
        jax.block_until_ready(ref)
        timer.lap("ref_logprobs")
        batch = batch.replace(
            old_logprobs=None if reuse else fwd.logprobs, advantages=advantages, ref_logprobs=ref
        )
        state, metrics = update(state, rest, batch)
        jax.block_until_ready((state.params, metrics))
        timer.lap("update")
        steps.append(timer.total())
        gen_tokens.append(int(sum(len(g.tokens) for g in gens)))
        widths.append(int(traj.seq_len))
        rewards_mean.append(float(rewards.mean()))
    wall = time.perf_counter() - t0
    cpu1 = cpu_snapshot()
    other = ((cpu1[0] - cpu0[0]) - (cpu1[1] - cpu0[1])) / (wall * (os.cpu_count() or 1))
    return {
        "steps": steps,
        "gen_tokens_per_step": gen_tokens,
        "train_width_per_step": widths,
        "reward_mean_per_step": rewards_mean,
        "loss_last": float(metrics["loss"]),
        # How far training moved the parameters (L2): equal across exact levers, 0 if none ran.
        "params_moved": float(
            np.sqrt(
                sum(
                    np.sum((np.asarray(x) - y) ** 2)
                    for x, y in zip(jax.tree.leaves(state.params), initial)
                )
            )
        ),
        "params": int(sum(x.size for x in initial)),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "total_train_wall_s": wall,
        "self_cpu_s": cpu1[1] - cpu0[1],
        "other_procs_cpu_frac": max(0.0, other),
    }
