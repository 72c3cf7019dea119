# %% [markdown]
# # rljax quickstart: seven ways to assign credit to one batch
#
# Every method in `rljax.losses` is a pure function of arrays. This notebook builds one small
# rollout batch **by hand** (rewards, masks, log-probs, hidden states) and runs GRPO and the six
# 2026 methods on it: ECHO, DelTA, GoLongRL (TMN-Reweight), Anti-SD, RubricEM (SS-GRPO) and
# Poly-EPO. Then it plots how each one redistributes credit over the same tokens and responses.
# No model is involved; it runs on a laptop CPU in seconds.
#
# Conventions (DESIGN.md): P prompts with G samples each, B = P*G rows, row b = p*G + g; per-token
# arrays are [B, T] and entry [b, t] describes token t. The specs with the math are in
# `methods/*.md`; the worked examples quoted below come from there.

# %%
import jax
import jax.numpy as jnp
import nbhelpers
import numpy as np

from rljax import losses

# %% [markdown]
# ## 1. A batch, drawn by hand
#
# P = 4 prompts x G = 4 samples. Each row is a string, one character per token:
# `p` prompt, `0`-`3` a token the policy generated in stage k (RubricEM's Plan, Research, Review,
# Answer), `e` environment output (a tool result the policy did not write), `w` a harness warning
# inside an observation, `.` padding. Some responses are cut short (no Review or Answer stage).

# %%
LAYOUT = [
    "ppp0011eew2233",
    "ppp01111eee23.",
    "ppp011eee1ee23",
    "ppp00111ew....",  # prompt 0
    "ppp0011eee2233",
    "ppp011eew12233",
    "ppp0011eee223.",
    "ppp01eeww1ee3.",  # prompt 1
    "ppp0011eee2233",
    "ppp001eee12233",
    "ppp0111ee223..",
    "ppp011eee2333.",  # prompt 2
    "ppp01eew11223.",
    "ppp0011eee23..",
    "ppp011eee1223.",
    "ppp001eeew233.",  # prompt 3
]
P, G = 4, 4
B, T = len(LAYOUT), len(LAYOUT[0])
assert B == P * G and all(len(row) == T for row in LAYOUT)
chars = np.array([list(row) for row in LAYOUT])

action_mask = np.isin(chars, list("0123")).astype(np.float32)  # the loss tokens
env_mask = np.isin(chars, list("ew")).astype(np.float32)  # observations (warnings included)
warning_mask = (chars == "w").astype(np.float32)
stage_ids = np.full((B, T), -1, np.int32)  # -1: not a generated token
for stage in range(4):
    stage_ids[chars == str(stage)] = stage
print("action tokens per response:", action_mask.sum(1).astype(int))

# %% [markdown]
# Rewards are GoLongRL's example E1: prompts 0-1 are a binary task (exact match), prompts 2-3 a
# continuous one (an F1-like score with small spreads). Log-probs of the sampled tokens are drawn
# at random; so are the final hidden states that DelTA reads, except that we plant the structure
# DelTA looks for: Plan and Review tokens look alike in every response (boilerplate), while Answer
# tokens of above-average responses point one way and those of below-average responses the other.

# %%
rewards = np.array(
    [[1, 0, 0, 0], [1, 1, 1, 0], [0.9, 0.8, 0.7, 0.85], [0.2, 0.6, 0.1, 0.3]], np.float32
)  # [P, G]
task_ids = np.array([0, 0, 1, 1], np.int32)  # [P]

rng = np.random.default_rng(0)
real = (action_mask + env_mask) > 0
old_logprobs = np.where(real, np.log(rng.uniform(0.05, 0.95, (B, T))), 0.0).astype(np.float32)

H = 8
direction, boilerplate = rng.normal(size=H), rng.normal(size=H)
above = np.sign(rewards - rewards.mean(1, keepdims=True)).reshape(B)  # [B]
hidden = 0.3 * rng.normal(size=(B, T, H))
hidden[np.isin(chars, list("02"))] += 2.0 * boilerplate
answer = chars == "3"
hidden[answer] += 2.0 * np.broadcast_to(above[:, None], (B, T))[answer][:, None] * direction
hidden = hidden.astype(np.float32)

# %% [markdown]
# ## 2. Credit, method by method
#
# **GRPO** (grpo.md): z-score each reward within its group (unbiased std); every token of a
# response gets its response's advantage. Check against the GRPO column of golongrl.md E1.

# %%
adv_grpo = losses.group_advantages(jnp.asarray(rewards))  # [P, G]
np.testing.assert_allclose(adv_grpo[0], [1.5, -0.5, -0.5, -0.5], atol=1e-5)
np.testing.assert_allclose(adv_grpo[2], [1.02468, -0.146383, -1.31745, 0.439150], atol=1e-5)
credit = {"GRPO": nbhelpers.token_credit(adv_grpo.reshape(B), action_mask)}
print(np.round(adv_grpo, 3))

# %% [markdown]
# **ECHO** (echo.md) keeps GRPO's advantages on the action tokens and adds a cross-entropy on the
# environment's tokens: the agent also learns to predict what the terminal answers. That term has
# no advantage, so its credit shows up in the gradient. On-policy (ratio 1) the loss gradient is
# the credit itself: `-dL/dlogp` is the weight each token's log-prob gets. We scale it by the number
# of action tokens, so a token-mean loss would show exactly its advantages.


# %%
def echo_total(logprobs):
    loss, _ = losses.echo_loss(
        logprobs, old_logprobs, adv_grpo.reshape(B), action_mask, env_mask, warning_mask, coef=0.05
    )
    return loss


echo_grad = jax.jit(jax.grad(echo_total))(jnp.asarray(old_logprobs))
credit["ECHO (-N dL/dlogp)"] = -np.asarray(echo_grad) * action_mask.sum()
env_loss, env_metrics = losses.echo_env_loss(jnp.asarray(old_logprobs), env_mask, warning_mask)
print(
    f"env-token cross-entropy {float(env_metrics['ce_env_per_token']):.3f} nats/token, "
    f"env loss {float(env_loss):.3f}"
)

# %% [markdown]
# **DelTA** (delta.md) multiplies the advantage by a coefficient in [0.8, 1.2] per token: how
# clearly the token's gradient proxy (1 - p) h sits on its own side of the positive/negative
# centroids. Boilerplate that both sides share gets about 1; distinctive tokens get more.

# %%
coeffs = losses.delta_coefficients(
    jnp.asarray(hidden), jnp.exp(old_logprobs), adv_grpo.reshape(B), jnp.asarray(action_mask)
)
credit["DelTA"] = nbhelpers.token_credit(adv_grpo.reshape(B)[:, None] * coeffs, action_mask)
signed = (action_mask > 0) & (above[:, None] != 0)
for name, kinds in (
    ("Plan+Review (shared)", "02"),
    ("Research", "1"),
    ("Answer (distinctive)", "3"),
):
    mean = float(coeffs[signed & np.isin(chars, list(kinds))].mean())
    print(f"mean coefficient on {name:22s} {mean:.3f}")

# %% [markdown]
# **GoLongRL TMN-Reweight** (golongrl.md) centres each reward on its prompt's mean but divides by
# a *task-level* scale (shared by all prompts of the same reward type), then up-weights rare
# successes on hard prompts and rare failures on easy ones. This reproduces the E1 table.

# %%
adv_tmn = losses.tmn_reweight_advantages(
    jnp.asarray(rewards), jnp.asarray(task_ids), num_tasks=2, alpha=0.8
)
np.testing.assert_allclose(
    adv_tmn,
    [
        [1.92603, -0.389400, -0.389400, -0.389400],
        [0.389400, 0.389400, 0.389400, -1.92603],
        [0.414875, -0.0977162, -0.879446, 0.177804],
        [-0.474143, 2.34519, -0.948286, 0.0],
    ],
    atol=1e-4,
)
credit["GoLongRL"] = nbhelpers.token_credit(adv_tmn.reshape(B), action_mask)

# %% [markdown]
# **Anti-SD** (anti_sd.md) compares each token's log-prob under the student with the same
# network reading a privileged context (the solution): u = teacher - student. Tokens the solution
# makes much more likely ("shortcuts") are penalised through phi(u) = (softplus(u) - log 2) / 2,
# tokens it makes less likely ("deliberation") are encouraged. Here the teacher is made confident
# on Answer tokens and doubtful on Research tokens.

# %%
shift = np.select([chars == "3", chars == "1"], [1.5, -1.0], 0.0) + 0.2 * rng.normal(size=(B, T))
teacher_logprobs = np.minimum(old_logprobs + shift * action_mask, -1e-3).astype(np.float32)
phi = losses.jsd_token_penalty(jnp.asarray(old_logprobs), jnp.asarray(teacher_logprobs))
np.testing.assert_allclose(
    losses.jsd_token_penalty(jnp.array([[-1.2, -0.7, -2.5]]), jnp.array([[-3.2, -0.7, -0.5]])),
    [[-0.283110, 0.0, 0.716890]],
    atol=1e-5,
)  # anti_sd.md E2
adv_anti_sd = losses.anti_sd_advantages(
    adv_grpo.reshape(B),
    jnp.asarray(old_logprobs),
    jnp.asarray(teacher_logprobs),
    jnp.asarray(action_mask),
    coef=0.5,
)
credit["Anti-SD"] = nbhelpers.token_credit(adv_anti_sd, action_mask)

# %% [markdown]
# **RubricEM SS-GRPO** (rubric_em.md) gets one judge score per stage, mixes each stage's score
# with the downstream ones through an upper-triangular Lambda, normalises per stage within the
# group and gives every stage's tokens their own stage advantage. Prompt 0 uses the spec's
# example E3; the other prompts get random stage scores.

# %%
stage_rewards = rng.uniform(0, 1, (P, G, 4)).astype(np.float32)
stage_rewards[0] = [
    [0.8, 0.5, 0.6, 0.7],
    [0.4, 0.9, 0.9, 0.3],
    [0.6, 0.6, 0.2, 0.5],
    [1.0, 0.0, 0.0, 0.0],
]
stage_adv = losses.stagewise_advantages(
    jnp.asarray(stage_rewards), jnp.asarray(losses.PAPER_STAGE_DEPENDENCE)
)  # [P, G, K]
np.testing.assert_allclose(stage_adv[0, :, 0], [1.40282, 0.256430, -0.286599, -1.37266], atol=1e-4)
np.testing.assert_allclose(stage_adv[0, :, 1], [0.569558, 0.914745, 0.189853, -1.67416], atol=1e-4)
credit["RubricEM"] = nbhelpers.token_credit(
    losses.stage_token_advantages(stage_adv.reshape(B, 4), jnp.asarray(stage_ids)), action_mask
)

# %% [markdown]
# **Poly-EPO** (poly_epo.md) scores *sets* of n responses by mean reward x the fraction of
# distinct strategy clusters, and credits each response with the mean set advantage of the sets
# that contain it. A wrong response that brings a new strategy can earn credit. Cluster -1 marks a
# degenerate response. With G = 4 we use sets of n = 2, as in the spec's examples E1 and E2.

# %%
cluster_ids = np.array([[0, -1, 1, 1], [0, 0, 1, 2], [0, 1, 2, 3], [0, 0, 0, 1]], np.int32)
adv_poly = losses.poly_epo_advantages(jnp.asarray(rewards), jnp.asarray(cluster_ids), set_size=2)
np.testing.assert_allclose(adv_poly[0], [0.208333, -0.125, -0.0416667, -0.0416667], atol=1e-5)
np.testing.assert_allclose(adv_poly[1], [0.0, 0.0, 0.166667, -0.166667], atol=1e-5)
credit["Poly-EPO"] = nbhelpers.token_credit(adv_poly.reshape(B), action_mask)

# %% [markdown]
# ## 3. How the methods redistribute credit
#
# Each panel is the batch: rows are responses (groups of G separated by lines), columns tokens
# after the prompt; dots mark environment tokens. Red pushes a token's probability up, blue down;
# grey cells are padding. Each panel has its own scale: Poly-EPO's advantages are about ten times
# smaller than the std-normalised ones. Note ECHO's small but always positive credit on the
# environment tokens (it remains when a group's rewards are all equal), DelTA's stronger colour on
# Answer tokens, Anti-SD's token term (non-zero even for response 3.3, whose group advantage is 0),
# RubricEM's stage bands and Poly-EPO's set-level view.

# %%
shown = real.astype(np.float32)
fig = nbhelpers.plot_token_credit(
    credit,
    shown,
    group_size=G,
    columns=slice(3, None),
    dots=env_mask,
    title="per-token credit on the same batch",
)

# %% [markdown]
# Per response: the mean credit over its action tokens. GoLongRL rescales the continuous task
# (prompts 2-3) relative to the binary one; Poly-EPO rewards the rare-but-correct strategy of
# prompt 1 (response 1.2) and punishes the degenerate response 0.1 most among the failures.

# %%
fig = nbhelpers.plot_response_credit(
    {
        label: nbhelpers.response_credit(c, action_mask)
        for label, c in credit.items()
        if not label.startswith("ECHO")
    },
    group_size=G,
    title="per-response credit",
)

# %% [markdown]
# ## 4. From credit to a loss
#
# Each method ends in the same clipped surrogate (`losses.policy_loss`), with its own clip,
# dual clip and aggregation. On-policy the ratio is 1 and the gradient with respect to the
# log-probs is `-credit / N` for token-mean aggregation: that is what the optimiser sees.


# %%
def surrogate(logprobs, advantages, **kwargs):
    return losses.policy_loss(logprobs, old_logprobs, advantages, action_mask, **kwargs)[0]


checks = {
    "GRPO": (adv_grpo.reshape(B), {}),
    "DelTA": (credit["DelTA"], {"clip_high": 0.28, "dual_clip": 10.0}),
    "Anti-SD": (adv_anti_sd, {}),
}
for label, (advantages, kwargs) in checks.items():
    loss, grad = jax.value_and_grad(surrogate)(
        jnp.asarray(old_logprobs), jnp.asarray(advantages), **kwargs
    )
    np.testing.assert_allclose(-np.asarray(grad) * action_mask.sum(), credit[label], atol=1e-5)
    print(f"{label:8s} loss {float(loss):+.4f}  gradient = -credit / N  (checked)")

# %% [markdown]
# Poly-EPO uses Dr.GRPO's aggregation (`seq-mean-token-sum-norm`): every token's gradient is
# divided by B * L_norm instead of the number of tokens, so long and short responses weigh the
# same per token.

# %%
grad = jax.grad(surrogate)(
    jnp.asarray(old_logprobs),
    adv_poly.reshape(B),
    clip_high=0.28,
    dual_clip=3.0,
    mode="seq-mean-token-sum-norm",
    max_len=T,
)
np.testing.assert_allclose(-np.asarray(grad) * B * T, credit["Poly-EPO"], atol=1e-6)
