# %% [markdown]
# # RubricEM SS-GRPO: a separate advantage for every stage of a research trajectory
#
# A research agent's trajectory has four tagged stages: Plan, Research (tool calls), Review and
# Answer. RubricEM (arXiv 2605.10899, `methods/rubric_em.md`) has a judge score each stage
# against stage-specific rubrics, mixes each stage's score with the downstream ones through an
# upper-triangular matrix Lambda (a good plan is also credited for the answer it led to),
# normalises the resulting returns per stage within the group, and gives every stage's tokens
# their own stage advantage. The baseline broadcasts one terminal score to every token.
#
# Part 1 runs the `smoke` preset of `experiments/rubric_em.py` (MiniResearch: a seeded corpus
# with `search`/`open` tools and a rule-based stage judge) and its GRPO baseline. Part 2 looks at
# the stage credit where the judge's scores vary: groups of scripted-expert trajectories with
# mistakes, judged stage by stage.

# %%
import matplotlib.pyplot as plt
import nbhelpers
import numpy as np
from matplotlib.colors import ListedColormap
from rljax.experiments import rubric_em

from rljax import losses
from rljax.rollout import expert_trajectories
from rljax.train.config import apply_overrides

# %% [markdown]
# ## 1. Two short runs: SS-GRPO and the GRPO baseline
#
# A tiny model after two SFT steps rarely completes the scaffold, so its stage scores are mostly
# zero and both runs stay near their start; the curves show what the trainer logs
# (`stage_adv_abs_k`: the mean |advantage| of stage k).

# %%
config = apply_overrides(rubric_em.PRESETS["smoke"](), ["train.steps=2", "train.eval_every=0"])
rem_trainer, rem_run = nbhelpers.train(config)
grpo_trainer, grpo_run = nbhelpers.train(nbhelpers.with_method(config, "grpo"))
fig = nbhelpers.plot_curves(
    {"RubricEM": rem_run.metrics, "GRPO": grpo_run.metrics},
    ["reward", "stage_adv_abs_0", "stage_adv_abs_1", "stage_adv_abs_3"],
    title="training curves (stage_adv_abs_k: RubricEM's per-stage advantage size)",
)

# %% [markdown]
# ## 2. Stage credit on expert groups
#
# G = 4 trajectories per question by the scripted researcher with a 50% mistake rate, played
# through the real episodes and judged stage by stage (`Trajectories.stage_rewards`, [B, K]);
# the family's `stage_scheme` tags every generated token with its stage (`stage_ids`).

# %%
family, tokenizer = rem_trainer.family, rem_trainer.tokenizer
P, G, NOISE = 3, 4, 0.5
tasks = [family.generate("train", index) for index in range(P)]
traj = expert_trajectories(
    family,
    [task for task in tasks for _ in range(G)],
    tokenizer,
    np.random.default_rng(0),
    NOISE,
    max_tokens=config.task.max_len,
    stage_scheme=family.stage_scheme,
)
stage_rewards = np.asarray(traj.stage_rewards, np.float32).reshape(P, G, -1)  # [P, G, K]
print("stage scores R [P, G, K] (Plan, Research, Review, Answer):\n", np.round(stage_rewards, 2))
print("terminal rewards [P, G]:\n", traj.rewards_by_group(G))

# %% [markdown]
# Stage returns Ret = R Lambda^T, normalised per stage within each group (population std), next
# to the answer-only baseline (`terminal_broadcast_advantages`, REM-7). Where a trajectory
# planned or researched better than its answer shows, its early stages get credit the terminal
# score would have withheld (and the other way round).

# %%
lam = losses.PAPER_STAGE_DEPENDENCE
print("Lambda:\n", lam)
stage_adv = np.asarray(losses.stagewise_advantages(stage_rewards, lam))  # [P, G, K]
terminal = np.asarray(losses.terminal_broadcast_advantages(stage_rewards))
np.testing.assert_allclose(stage_adv[..., -1], terminal[..., -1], atol=1e-5)  # Answer: same
for p in range(P):
    print(
        f"question {p}: stage advantages (rows: samples; columns: stages)\n",
        np.round(stage_adv[p], 2),
        "\n terminal broadcast:",
        np.round(terminal[p, :, 0], 2),
    )

# %% [markdown]
# The same trajectories through the trainer's path: `prepare_inputs` scores them with the
# RubricEM policy (its KL term needs reference log-probs, taken equal to them), and each
# method's `prepare` produces the token credit its loss uses. RubricEM's tokens carry their
# stage's advantage; GRPO broadcasts the terminal reward's z-score. Observation (tool output)
# tokens, marked with dots, carry none.

# %%
inputs, arrays = nbhelpers.prepare_inputs(rem_trainer, traj, tasks, np.ones(P, bool), group_size=G)
mask = arrays.action_mask > 0
credit = {}
for label, trainer in (
    ("GRPO (terminal reward)", grpo_trainer),
    ("RubricEM (stage credit)", rem_trainer),
):
    batch, _ = nbhelpers.loss_batch(trainer.method, inputs, arrays)
    credit[label] = nbhelpers.token_credit(batch.advantages, mask)
np.testing.assert_allclose(
    credit["RubricEM (stage credit)"],
    np.where(
        mask,
        np.take_along_axis(stage_adv.reshape(P * G, -1), np.maximum(arrays.stage_ids, 0), 1),
        0.0,
    ),
    atol=1e-5,
)
real = mask | (arrays.env_mask > 0)
columns = slice(int(np.argmax(real.any(0))), int(np.nonzero(real.any(0))[0].max()) + 1)
fig = nbhelpers.plot_token_credit(
    credit,
    real,
    group_size=G,
    columns=columns,
    dots=arrays.env_mask,
    title="token credit on the expert groups",
)

fig, ax = plt.subplots(figsize=(9.2, 2.4), layout="constrained")
stages = ListedColormap(["tab:blue", "tab:orange", "tab:green", "tab:red"]).with_extremes(bad="0.7")
image = ax.imshow(
    np.ma.masked_where(~mask[:, columns], arrays.stage_ids[:, columns]),
    cmap=stages,
    vmin=-0.5,
    vmax=3.5,
    aspect="auto",
    interpolation="nearest",
)
bar = fig.colorbar(image, ax=ax, ticks=range(4))
bar.ax.set_yticklabels(["Plan", "Research", "Review", "Answer"])
ax.set_title("stage_ids of the same tokens")
ax.set_xlabel("token position")
ax.set_ylabel("response b")
