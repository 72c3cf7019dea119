# %% [markdown]
# # Anti-SD: push away from the shortcuts a solution would suggest
#
# Anti-SD (arXiv 2605.11609, `methods/anti_sd.md`) runs the policy a second time on each
# response with a privileged context c in front of it (a verified solution and whether this
# attempt was correct): the self-teacher. Per token,
# u = log pi(y_t | x, c, y<t) - log pi(y_t | x, y<t)
# is large for "shortcut" tokens the solution makes obvious and negative for "deliberation"
# tokens. Anti-SD adds -lambda * phi(u), phi(u) = (softplus(u) - log 2) / 2, to the GRPO advantage
# of every token, and an entropy-triggered gate switches the term off (lambda = 0) while the
# teacher's entropy collapses.
#
# The task is hidden-key search: `WAIT` (deliberate) before `TRY a` (the environment answers
# YES/NO) and `ANSWER a`. We train a tiny model with the `smoke` preset of
# `experiments/anti_sd.py` (groups of 4, a longer SFT warm start, a 2-step gate warm-up instead of
# 5 so the gate opens within 4 steps), once with Anti-SD and once with GRPO.

# %%
import re

import matplotlib.pyplot as plt
import nbhelpers
import numpy as np
from rljax.experiments import anti_sd

from rljax import losses
from rljax.train.config import apply_overrides

# %% [markdown]
# ## 1. Two short runs: Anti-SD and the GRPO baseline

# %%
config = apply_overrides(
    anti_sd.PRESETS["smoke"](),
    [
        "task.group_size=4",
        "method.kwargs.warmup_steps=2",
        "sft.steps=200",
        "sft.num_demos=256",
        "sft.batch_size=16",
        "train.steps=4",
        "train.eval_every=0",
    ],
)
asd_trainer, asd_run = nbhelpers.train(config)
grpo_trainer, grpo_run = nbhelpers.train(nbhelpers.with_method(config, "grpo"))
fig = nbhelpers.plot_curves(
    {"Anti-SD": asd_run.metrics, "GRPO": grpo_run.metrics},
    ["reward", "teacher_entropy_median", "anti_sd_gate", "anti_sd_penalty_mean"],
    title="training curves (the last three are Anti-SD's diagnostics)",
)

# %% [markdown]
# ## 2. The gate, replayed
#
# The gate is an `init`/`update` pair over a `GateState`. During the W warm-up steps it stays
# closed and records the median teacher entropy H_k of each batch; then H_warm is the median of
# those, the gate opens, and it closes when H_k drops below 0.93 H_warm (re-opening at H_warm).
# Feeding the medians the run logged through `losses.entropy_gate_update` reproduces the gate the
# trainer applied at every step.

# %%
state = losses.entropy_gate_init(warmup_steps=2)
replayed = []
for record in asd_run.metrics:
    state, gate = losses.entropy_gate_update(state, np.float32(record["teacher_entropy_median"]))
    replayed.append(float(gate))
logged = [record["anti_sd_gate"] for record in asd_run.metrics]
print(
    "gate per step:",
    logged,
    f"| H_warm = {float(state.h_warm):.3f}, tau_down = {float(state.tau_down):.3f}",
)
assert replayed == logged

# %% [markdown]
# ## 3. Token penalties on one rollout batch
#
# A batch of the Anti-SD policy, prepared as the trainer prepares it: the trainer's forward pass
# also scores every response under the teacher context (`policy.teacher_batch` builds it; the
# method `needs` "teacher"). `losses.jsd_token_penalty` gives phi(u) per token; Anti-SD's
# `prepare`, with the trained (open) gate, turns it into token advantages.

# %%
traj, tasks, group_mask = nbhelpers.rollout_batch(asd_trainer, num_prompts=2, split="train")
inputs, arrays = nbhelpers.prepare_inputs(asd_trainer, traj, tasks, group_mask)
mask = arrays.action_mask > 0
u = np.where(mask, np.asarray(inputs.teacher_logprobs - inputs.old_logprobs), 0.0)
phi = np.where(
    mask, np.asarray(losses.jsd_token_penalty(inputs.old_logprobs, inputs.teacher_logprobs)), 0.0
)
batch, metrics = nbhelpers.loss_batch(
    asd_trainer.method, inputs, arrays, state=asd_trainer.state.method_state
)
grpo_batch, _ = nbhelpers.loss_batch(grpo_trainer.method, inputs, arrays)
print("rewards [P, G]:", np.asarray(inputs.rewards).tolist(), "| prepare metrics:", metrics)
credit = {
    "GRPO": nbhelpers.token_credit(grpo_batch.advantages, mask),
    "Anti-SD": nbhelpers.token_credit(batch.advantages, mask),
    "u = teacher - student log-prob": u,
    "phi(u), the JSD token penalty": phi,
}
real = mask | (arrays.env_mask > 0)
columns = slice(int(np.argmax(real.any(0))), int(np.nonzero(real.any(0))[0].max()) + 1)
fig = nbhelpers.plot_token_credit(
    credit,
    real,
    group_size=config.task.group_size,
    columns=columns,
    dots=arrays.env_mask,
    title="GRPO vs Anti-SD credit, and the teacher signal behind it",
)

# %% [markdown]
# Where does the teacher disagree with the student? The built-in tokenizer splits `WAIT`,
# `TRY 3` and `ANSWER 3` into several tokens, so we label each response token by the action word
# it belongs to. With the solution in view the teacher should be surer of `TRY`/`ANSWER` (u > 0,
# penalised) and see no point in `WAIT` (u < 0, encouraged), the mechanism the paper describes;
# after a 4-step run the picture is only indicative.


# %%
def action_words(row: int) -> np.ndarray:
    """The action word ("WAIT", "TRY", "ANSWER" or "other") of each response token of a row."""
    ids = np.asarray(arrays.tokens)[row][mask[row]]
    pieces = [asd_trainer.tokenizer.decode([int(i)]) for i in ids]
    ends = np.cumsum([len(piece) for piece in pieces])
    starts = ends - np.array([len(piece) for piece in pieces])
    words = np.full(len(ids), "other", dtype=object)
    for match in re.finditer(r"WAIT|TRY \d+|ANSWER \d+", "".join(pieces)):
        words[(starts < match.end()) & (ends > match.start())] = match.group().split()[0]
    return words


words = np.concatenate([action_words(row) for row in range(mask.shape[0])])
values = u[mask]
kinds = [kind for kind in ("WAIT", "TRY", "ANSWER", "other") if (words == kind).any()]
fig, ax = plt.subplots(figsize=(6, 3))
ax.boxplot(
    [values[words == kind] for kind in kinds],
    tick_labels=[f"{kind}\n({(words == kind).sum()} tokens)" for kind in kinds],
)
ax.axhline(0.0, color="k", linewidth=0.6)
ax.set_ylabel("u = log pi_teacher - log pi_student")
ax.set_title("teacher-student log-ratio by action word")
fig.tight_layout()
for kind in kinds:
    print(f"{kind:7s} mean u {values[words == kind].mean():+.3f}")
