# %% [markdown]
# # DelTA: more credit for the tokens that tell good and bad responses apart
#
# GRPO gives every token of a response its response's advantage. DelTA (arXiv 2605.21467,
# `methods/delta.md`) scores each token by how clearly its gradient proxy v = (1 - p) h (h: the
# final hidden state that predicts it) sits on its own side of the positive and negative
# centroids, maps the score to a coefficient in [0.8, 1.2], normalises the coefficients to mean 1
# and multiplies them into the advantages of an otherwise unchanged DAPO loss. Boilerplate that
# both sides share gets about 1; distinctive tokens get more.
#
# This notebook trains a tiny model with the `smoke` preset of `experiments/delta.py` on an easy
# Countdown (two numbers from 1-9) so that groups mix right and wrong answers, once with DelTA and
# once with GRPO, then looks at DelTA's coefficients on one rollout batch.

# %%
import jax.numpy as jnp
import matplotlib.pyplot as plt
import nbhelpers
import numpy as np
from rljax.experiments import delta

from rljax import losses
from rljax.train.config import apply_overrides

# %% [markdown]
# ## 1. Two short runs: DelTA and the GRPO baseline

# %%
config = apply_overrides(
    delta.PRESETS["smoke"](),
    [
        "task.kwargs.num_numbers=2",
        "task.kwargs.number_range=(1, 9)",
        "task.kwargs.target_range=(1, 20)",
        "task.prompts_per_step=4",
        "task.group_size=4",
        "sft.steps=300",
        "sft.num_demos=512",
        "sft.batch_size=16",
        "train.steps=4",
        "train.eval_every=0",
    ],
)
delta_trainer, delta_run = nbhelpers.train(config)
grpo_trainer, grpo_run = nbhelpers.train(nbhelpers.with_method(config, "grpo"))
fig = nbhelpers.plot_curves(
    {"DelTA": delta_run.metrics, "GRPO": grpo_run.metrics},
    ["reward", "delta_coef_std", "delta_coef_max", "delta_coef_min"],
    title="training curves (delta_coef_*: DelTA's batch diagnostics)",
)

# %% [markdown]
# ## 2. DelTA's coefficients on one rollout batch
#
# A batch of the DelTA policy on training tasks, prepared as the trainer prepares it: the
# trainer's no-grad forward pass gives the log-probs and the hidden states DelTA needs
# (`method.needs == {"hidden"}`). `losses.delta_coefficients` turns them into the coefficients
# c~ (mean 1 over the response tokens), and DelTA's `prepare` multiplies them into the GRPO
# advantages. Zero-advantage tokens (groups whose rewards are all equal) get c = 0.8 and count in
# the normalisation, which lifts the coefficients of the tokens that do carry a signal.

# %%
traj, tasks, group_mask = nbhelpers.rollout_batch(delta_trainer, num_prompts=8, split="train")
inputs, arrays = nbhelpers.prepare_inputs(delta_trainer, traj, tasks, group_mask)
mask = arrays.action_mask > 0
print("rewards [P, G]:\n", np.asarray(inputs.rewards))

# The preset adds DAPO's overlong shaping (delta.md section 9) to the rewards before normalising.
shaping = delta_trainer.config.method.kwargs
rewards = inputs.rewards + losses.overlong_penalty(
    inputs.lengths,
    max_len=shaping["overlong_max_len"],
    buffer_len=shaping["overlong_buffer"],
    factor=shaping.get("overlong_factor", 1.0),
).reshape(inputs.rewards.shape)
adv = np.asarray(losses.group_advantages(rewards)).reshape(-1)  # [B]
coeffs = np.asarray(
    losses.delta_coefficients(
        inputs.hidden, jnp.exp(inputs.old_logprobs), jnp.asarray(adv), inputs.action_mask
    )
)
print(
    f"coefficients over {mask.sum()} response tokens: mean {coeffs[mask].mean():.3f}, "
    f"range [{coeffs[mask].min():.3f}, {coeffs[mask].max():.3f}]"
)
for name, sign in (("positive", 1), ("negative", -1), ("zero-advantage", 0)):
    where = mask & (np.sign(adv)[:, None] == sign)
    print(f"  {name:15s} responses: {where.sum():4d} tokens, mean c~ {coeffs[where].mean():.3f}")

batch, metrics = nbhelpers.loss_batch(delta_trainer.method, inputs, arrays)
np.testing.assert_allclose(batch.advantages, adv[:, None] * coeffs * mask, atol=1e-5)
grpo_batch, _ = nbhelpers.loss_batch(grpo_trainer.method, inputs, arrays)
credit = {
    "GRPO": nbhelpers.token_credit(grpo_batch.advantages, mask),
    "DelTA": nbhelpers.token_credit(batch.advantages, mask),
}
columns = slice(int(np.argmax(mask.any(0))), int(np.nonzero(mask.any(0))[0].max()) + 1)
fig = nbhelpers.plot_token_credit(
    credit,
    mask,
    group_size=config.task.group_size,
    columns=columns,
    title="per-token credit on the same batch",
)

# %% [markdown]
# ## 3. Shared vs distinctive tokens
#
# Within a group that mixes right and wrong answers, call a response token **shared** when a
# response on the other side of the group has the same token at the same position (the answer
# tags, the format), and **distinctive** otherwise (where the answers differ). DelTA never sees
# these labels: it works in gradient-proxy space, where a token equidistant from both centroids
# gets exactly 1.0 before the mean-1 normalisation. The paper expects distinctive tokens above
# shared ones; a 4-step tiny model is only an illustration, so the notebook shows, not asserts.

# %%
tokens = np.asarray(arrays.tokens)
group = config.task.group_size
side = np.sign(adv).reshape(-1, group)  # [P, G]
rows = tokens.reshape(side.shape[0], group, -1)  # [P, G, T]
same_token = rows[:, :, None, :] == rows[:, None, :, :]  # [P, G, G, T]
opposite = (side[:, :, None] * side[:, None, :]) < 0  # [P, G, G]
shared = (same_token & opposite[..., None]).any(2).reshape(tokens.shape) & mask
distinctive = ~shared & mask & (np.sign(adv)[:, None] != 0)
fig, ax = plt.subplots(figsize=(6, 3))
bins = np.linspace(coeffs[mask].min(), coeffs[mask].max(), 25)
for label, where in (("shared", shared), ("distinctive", distinctive)):
    if where.any():
        ax.hist(
            coeffs[where],
            bins=bins,
            alpha=0.6,
            label=f"{label}: {where.sum()} tokens, mean c~ {coeffs[where].mean():.3f}",
        )
ax.axvline(1.0, color="k", linewidth=0.6)
ax.set_xlabel("DelTA coefficient c~")
ax.set_ylabel("tokens")
ax.legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# Token by token, the best and the worst response of the batch: the coefficient of each token,
# grey where the other side of its group has the same token, red where it differs.

# %%
best, worst = int(np.argmax(adv)), int(np.argmin(adv))
fig, axes = plt.subplots(1, 2, figsize=(12, 3), layout="constrained")
for ax, row in zip(axes, (best, worst)):
    where = np.nonzero(mask[row])[0]
    labels = delta_trainer.tokenizer.convert_ids_to_tokens(tokens[row, where].tolist())
    ax.bar(
        np.arange(len(where)),
        coeffs[row, where],
        color=np.where(shared[row, where], "tab:gray", "tab:red"),
    )
    ax.axhline(1.0, color="k", linewidth=0.6)
    ax.set_xticks(np.arange(len(where)), labels, rotation=90, fontsize=7)
    ax.set_title(
        f"response {row}: reward {float(traj.rewards[row]):.0f}, advantage {adv[row]:+.2f}",
        fontsize=9,
    )
axes[0].set_ylabel("c~ (grey: shared, red: distinctive)")
