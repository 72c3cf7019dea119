# %% [markdown]
# # ECHO: the terminal agent also learns what the terminal answers
#
# ECHO (arXiv 2605.24517, `methods/echo.md`) adds to GRPO's loss on the agent's own tokens a
# cross-entropy on the **environment's** tokens (command output in the observations), from the
# same forward pass, with weight lambda = 0.05:
#
# L = L_GRPO(action tokens)
#     + lambda * mean_b [ sum_{env tokens} -log p / (observation tokens + 1e-3) ]
#
# The environment term needs no reward, so it keeps teaching the policy a world model when every
# rollout in a group fails and GRPO's advantages are all zero, which is exactly where a tiny
# model starts. This notebook trains a tiny model with the `smoke` preset of
# `experiments/echo.py` (the MiniShell terminal, "find a value in a file"), longer SFT warm start,
# 4 RL steps, once with ECHO and once with the GRPO baseline, and compares the environment
# cross-entropy the paper tracks. It takes a few minutes on a CPU (mostly compilation).

# %%
import matplotlib.pyplot as plt
import nbhelpers
import numpy as np
from rljax.experiments import echo

from rljax import losses
from rljax.rollout import expert_trajectories
from rljax.train import sft
from rljax.train.batches import train_batch
from rljax.train.config import apply_overrides

# %% [markdown]
# ## 1. Two short runs: ECHO and the GRPO baseline
#
# The smoke preset (2 prompts x 2 samples per step, a 2-layer 64-wide decoder) with more SFT
# steps so the warm-started policy ends its turns and sees observations. The baseline is the same
# config with `method = grpo`. Runs are cached under the temp dir by config and library source,
# so re-running the notebook resumes them.

# %%
config = apply_overrides(
    echo.PRESETS["smoke"](),
    [
        "train.steps=4",
        "train.eval_every=0",
        "sft.steps=150",
        "sft.num_demos=64",
        "sft.batch_size=8",
    ],
)
echo_trainer, echo_run = nbhelpers.train(config)
grpo_trainer, grpo_run = nbhelpers.train(nbhelpers.with_method(config, "grpo"))
print(f"method {echo_trainer.method.name!r} on {config.task.family!r}; run dir {echo_run.run_dir}")

# %%
fig = nbhelpers.plot_curves(
    {"ECHO": echo_run.metrics, "GRPO": grpo_run.metrics},
    ["reward", "ce_env_per_token", "response_tokens"],
    title="training curves (ce_env_per_token is logged by ECHO's loss)",
)

# %% [markdown]
# ## 2. The diagnostic: cross-entropy of the environment's tokens
#
# To compare the policies on equal terms we score one fixed batch: the scripted expert's
# episodes on held-out tasks (real MiniShell observations), under the warm-start policy, the GRPO
# policy and the ECHO policy. `losses.echo_env_loss` reports the per-token cross-entropy of the
# environment output; the action-token NLL shows what happens to the agent's own tokens.

# %%
family, tokenizer = echo_trainer.family, echo_trainer.tokenizer
tasks = [family.generate("heldout", index) for index in range(4)]
demos = train_batch(
    expert_trajectories(
        family, tasks, tokenizer, np.random.default_rng(0), max_tokens=config.task.max_len
    )
)
policies = {
    "warm start": sft.warm_start(
        echo_trainer.graphdef,
        echo_trainer.state.params,
        echo_trainer.rest,
        family,
        tokenizer,
        config,
        directory=echo_trainer.run_dir.parent / "sft" / sft.fingerprint(config),
    ),
    "GRPO": grpo_trainer.state.params,
    "ECHO": echo_trainer.state.params,
}
scores = {}
for label, params in policies.items():
    logprobs = echo_trainer.forward(params, echo_trainer.rest, demos).logprobs
    _, metrics = losses.echo_env_loss(logprobs, demos.env_mask, demos.warning_mask)
    action_nll = -losses.aggregate(logprobs, demos.action_mask)
    scores[label] = (float(metrics["ce_env_per_token"]), float(action_nll))
    print(
        f"{label:10s} env CE {scores[label][0]:.3f}   action NLL {scores[label][1]:.3f} nats/token"
    )
assert scores["ECHO"][0] < scores["warm start"][0]

fig, ax = plt.subplots(figsize=(6, 3))
x = np.arange(len(scores))
ax.bar(x - 0.2, [s[0] for s in scores.values()], width=0.4, label="environment tokens (CE)")
ax.bar(x + 0.2, [s[1] for s in scores.values()], width=0.4, label="action tokens (NLL)")
ax.set_xticks(x, list(scores))
ax.set_ylabel("nats / token")
ax.set_title("held-out expert episodes")
ax.legend()
fig.tight_layout()

# %% [markdown]
# ## 3. Where the credit goes
#
# One rollout batch of the ECHO policy, prepared as the trainer prepares it, and the per-token
# credit each method's loss assigns (`nbhelpers.loss_credit`: -N dL/dlogp at ratio 1, so a
# token-mean loss would show its advantages). Dots mark observation tokens; harness warnings
# inside them (e.g. "Unclosed <think> tag") get no credit, since ECHO's default target is the
# environment's content only. When every reward in a group is equal, GRPO's panel is blank; ECHO
# still pushes up the probability of what the terminal actually printed.

# %%
traj, batch_tasks, group_mask = nbhelpers.rollout_batch(echo_trainer, num_prompts=2)
inputs, arrays = nbhelpers.prepare_inputs(echo_trainer, traj, batch_tasks, group_mask)
credit = {}
for label, trainer in (("GRPO", grpo_trainer), ("ECHO", echo_trainer)):
    batch, _ = nbhelpers.loss_batch(trainer.method, inputs, arrays)
    credit[label] = nbhelpers.loss_credit(trainer.method, batch)
print("rewards [P, G]:", np.asarray(inputs.rewards).tolist())
real = (arrays.action_mask + arrays.env_mask) > 0
first = int(np.argmax(real.any(0)))
last = int(np.nonzero(real.any(0))[0].max()) + 1
fig = nbhelpers.plot_token_credit(
    credit,
    real,
    group_size=config.task.group_size,
    columns=slice(first, last),
    dots=arrays.env_mask,
    title="per-token credit on an ECHO rollout batch",
)
env_credit = credit["ECHO"][arrays.env_mask > 0]
print(
    f"ECHO credit on {env_credit.size} environment tokens: total {env_credit.sum():.3g}, "
    f"min {env_credit.min(initial=0.0) + 0.0:.3g} (never negative)"
)
assert np.all(env_credit >= 0)
