"""DelTA on formatted arithmetic with filler: does discriminative token credit beat the c = 1 update?

`python -m rljax.experiments.reproduce delta` (5 seeds). delta.md section 8: every response is F
filler words from a shared six-word set, then the answer (`ArithmeticFamily(filler=F)`); the filler
is shared by correct and wrong responses, dilutes the side centroids, and is what DelTA should learn
to give c ~ 1 while the answer digits of correct responses get c > 1.

The harness requires every arm of a study to share the model and the task, so the settings that
change them are studies of their own, built by `make_study` from this module:

* `delta` (this one): F = 8 on the library's tiny Qwen3-style decoder, every arm of section 8;
* `delta_f0`, `delta_f32`: F = 0 and F = 32, baseline vs DelTA (does the gain grow with F?);
* `delta_llama`: F = 8 on a Llama-style decoder of the same size, baseline vs DelTA (the
  architecture claim).

The baseline is `methods.delta` with c_min = c_max = 1 (every coefficient exactly 1), not
`methods.dapo`: it keeps everything else of DelTA's update equal (clip 0.2 / 0.28, dual clip 10,
token-mean, no dynamic sampling, the same no-grad forward), where the library's DAPO preset differs
in dual clip (3) and dynamic sampling (which drew ~2.7x the rollouts in the grpo_family study).
Overlong shaping is off in every arm: the scaled-down budget would penalise the F = 32 responses
themselves, and a response that runs out of budget already scores 0 (no closing answer tag).

The probe measures what the report needs beyond held-out accuracy, on 32 held-out prompts x 8
samples drawn with one key for every arm and seed: DelTA's raw coefficient (paper settings) by token
type (answer digits, filler, format) and side (A > 0: correct responses of mixed groups; A < 0:
wrong ones), the share of saturated coefficients, the side centroids' distance before and after
the refinement and the refined contrast with and without the filler tokens, and how far one update
moves the log-probs of filler and digit tokens, with c = 1 and with DelTA's coefficients from the
same parameters and optimiser state. On this task DelTA's coefficients saturate at the range ends,
in a direction that flips between batches of one policy (experiments/results/delta_direction.md:
the proxy sees a correct and a wrong answer digit as collinear, and the lagged temperature turns a
tiny initial contrast into a split by proxy length).

Task and warm start: single-digit sums (79 distinct training sums, 21 held out), because the
2-layer model's 400-step SFT on 1-2 digit sums reached only 1.8% held-out pass@1 (F = 8, seed 0);
with single digits and 50% wrong demonstrations the 300-step warm start is at 31.6% (delta.md
section 8 asks for 20-40%), and 20 steps of the baseline raised the training reward from 0.44 to
0.67 and held-out pass@1 to 35.4%.

Budget, in CPU-seconds (user + sys of the process, `resource.getrusage`), measured on seed 0 under
`nice -n 19` beside another study on this 2-core CPU. Wall time there is set by the load (the
earlier ~3.5 h extrapolation was 3.0 s of wall per 0.9 CPU-s step at load ~4.4); CPU-seconds are
not, and on idle cores a run's wall time is at most its CPU-seconds (it waits on no I/O to speak
of), whatever the second core adds. At F = 8:

* warm start: 300 SFT steps with compilation, plus its probe and the process start: 107 per seed;
* RL step (16 x 8 rollouts, the no-grad forward with hidden states, DelTA's coefficients, two
  updates): 0.92 (c = 1, mean of steps 2-20, max 1.09) and 0.87 (DelTA, steps 2-10); a run's first
  step 9-21 (compilation, partly read from the study's persistent cache);
* held-out evaluation (128 prompts x 4): 1.1, a run's first 6-7; probe of a final policy 11-12;
  the rest of a run (trainer, checkpoints, logs) 4.

One 100-step run with its 5 evaluations and probe: 20 + 100 x 0.92 + 6 + 5 x 1.13 + 12 + 4 = 140
at most. This study: 25 runs x 140 + 5 warm starts x 107 = 4,035 CPU-s = 67 min of one core, so
the whole study (every arm, 5 seeds, 100 steps) fits the 90-minute budget on 2 idle cores with
23 minutes to spare; nothing was cut. `--smoke` (5 arms x 2 seeds x 2 steps, empty compilation
cache) took 93 CPU-s. The variants, from 6 steps of an untrained policy whose responses run to the
budget (an upper bound): F = 32 steps 1.85 and evaluations 2.3 CPU-s, so runs of ~246 and (SFT on
sequences 1.7x longer, not measured) ~170 per warm start: 10 x 246 + 5 x 170 = 3,310 CPU-s, 55 min;
F = 0 steps 0.8, evaluations 0.75: ~1,700 CPU-s, 28 min; `delta_llama` has this study's shapes:
10 x 140 + 5 x 107 = 1,935 CPU-s, 32 min. Each fits 90 minutes alone; all four take ~3 h of one
core, so run them as three sessions: `delta` (67 min), `delta_f0` + `delta_llama` (60 min),
`delta_f32` (55 min). Measured when they ran (2026-12-03, one after another, beside a helper's
low-priority work): `delta` 23.8 min of wall time, `delta_f0` 10.2, `delta_llama` 10.1,
`delta_f32` 22.0; the CPU-second bounds above overestimate the wall time about threefold, since
XLA keeps both cores busy.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from rljax.experiments import presets
from rljax.experiments.studies import Study

from rljax import losses
from rljax.envs.arithmetic import FILLER_WORDS
from rljax.train.collect import sample_trajectories
from rljax.train.config import MethodSection, ModelSection, TaskSection

NAME = "delta"
FILLER = 8
STEPS = 100
SFT_STEPS = 300
SFT_NOISE = 0.5
SFT_DEMOS = 4096
SEEDS = 5
PROBE_KEY = 20261  # the probe's sampling key: the same draws for every arm and seed
# Response budget beyond the filler: "<answer>" (3 tokens), up to 2 digits, "</answer>" (3
# tokens) and EOS take at most 9 tokens; 3 spare.
ANSWER_BUDGET = 12
# The chat-rendered prompt "Compute 7+5." takes at most 16 tokens.
PROMPT_BUDGET = 16

# A 2-layer, 128-wide decoder (delta.md section 8: "2-layer decoder, d 64-128"): the library's
# tiny preset (Qwen3-style: QK-norm, tied embeddings) with two of its four layers.
QWEN3_MODEL = ModelSection(preset="tiny", overrides={"num_layers": 2})
# The same shapes as a Llama-style decoder: no QK-norm, untied embeddings.
LLAMA_MODEL = ModelSection(
    preset="tiny",
    overrides={"num_layers": 2, "family": "llama", "qk_norm": False, "tie_embeddings": False},
)

BASELINE = "dapo_c1"
# method.kwargs of every arm; `delta` is the paper's setting (n_refine 1, [0.8, 1.2], (1 - p) h).
ARMS = {
    # c_min = c_max = 1: every coefficient is exactly 1, the plain DAPO-style update.
    BASELINE: {"c_min": 1.0, "c_max": 1.0},
    "delta": {},
    "delta_nrefine0": {"n_refine": 0},
    "delta_range_0.5_1.5": {"c_min": 0.5, "c_max": 1.5},
    "delta_proxy_h": {"proxy": "h"},
}
HEADLINE_ARMS = (BASELINE, "delta")


def task(filler: int) -> TaskSection:
    """Single-digit sums ("Compute 7+5.", delta.md section 8's "a + b") answered after `filler`
    filler words; budgets sized to the filler so no arm is cut short."""
    return TaskSection(
        family="arithmetic",
        kwargs={"digits": 1, "num_operands": 2, "operators": "+", "filler": filler},
        prompts_per_step=16,
        group_size=8,
        max_new_tokens=filler + ANSWER_BUDGET,
        max_len=PROMPT_BUDGET + filler + ANSWER_BUDGET,
    )


def config(filler: int = FILLER, model: ModelSection = QWEN3_MODEL, name: str = NAME):
    """The shared base: the grpo_family study's RL settings (16 prompts x 8 samples, AdamW lr 3e-4,
    gradient clip 1.0, two mini-batches so the clip ranges act) with a shorter SFT on the filler
    task and the baseline's method section (arms change only `method.kwargs`)."""
    return presets.cpu(
        name,
        task(filler),
        MethodSection(name="delta", kwargs=dict(ARMS[BASELINE])),
        steps=STEPS,
        learning_rate=3e-4,
        sft_steps=SFT_STEPS,
        sft_noise=SFT_NOISE,
        sft_demos=SFT_DEMOS,
        model=model,
        minibatches=2,
        eval_every=25,
        eval_prompts=128,
        eval_samples=4,
        checkpoint_every=25,
    )


def smoke_config(filler: int = FILLER, model: ModelSection = QWEN3_MODEL, name: str = NAME):
    """Two RL steps of the same pipeline (4 prompts x 2 samples) on the 2-layer, 64-wide smoke
    decoder, with the study model's architecture switches."""
    switches = {k: v for k, v in model.overrides.items() if k != "num_layers"}
    smoke_model = dataclasses.replace(
        presets.SMOKE_MODEL, overrides={**presets.SMOKE_MODEL.overrides, **switches}
    )
    base = presets.smoke(
        name, task(filler), MethodSection(name="delta", kwargs=dict(ARMS[BASELINE]))
    )
    return dataclasses.replace(base, model=smoke_model)


def token_types(tokens: np.ndarray, tokenizer) -> dict[str, np.ndarray]:
    """[B, T] bool masks of the answer-digit and filler tokens (everything else is "format":
    the answer tags, EOS). Raises ValueError when a filler word is not one token of `tokenizer`."""
    filler_ids = []
    for word in FILLER_WORDS:
        ids = tokenizer.encode(word, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(
                f"filler word {word!r} is {len(ids)} tokens {ids} of this tokenizer, expected 1 "
                "(the probe classifies tokens by id)"
            )
        filler_ids.append(ids[0])
    digit_ids = [tokenizer.encode(str(d), add_special_tokens=False)[0] for d in range(10)]
    return {"digits": np.isin(tokens, digit_ids), "filler": np.isin(tokens, filler_ids)}


def coefficient_stats(
    hidden: jax.Array,
    logprobs: jax.Array,
    advantages: jax.Array,
    mask: np.ndarray,
    types: dict[str, np.ndarray],
) -> dict[str, float]:
    """DelTA's raw coefficients (paper settings) by token type and side, and centroid contrast.

    `coef_<type>_<side>`: mean raw c (c_min + (c_max - c_min) sigmoid(margin / gamma), in
    [0.8, 1.2], 1.0 for a token equidistant from both centroids) over the valid tokens of that
    type in rows with A > 0 ("pos") or A < 0 ("neg"); `coef_scale`: the self-normalisation factor
    that turns them into the c~ multiplying the advantage; `coef_saturated`: the share of Pos and
    Neg tokens whose raw c lies within 1% of the range width of an end. `centroid_cos`,
    `centroid_dist`: cosine and Euclidean distance of the refined side centroids (n_refine 1);
    `centroid_dist_initial`: the distance before the refinement (experiments/results/
    delta_direction.md: on this task the refinement multiplies it 12-28x and the lagged
    temperature then saturates c); `centroid_cos_no_filler`: the refined cosine with the filler
    tokens left out of the statistics. A quantity whose token set is empty (no wrong response, no
    filler at F = 0) is left out.

    Args:
        hidden: [B, T, H] LM-head inputs of the probed policy.
        logprobs: [B, T] the sampled tokens' log-probs under it.
        advantages: [B] GRPO advantages of the rows.
        mask: [B, T] valid response tokens.
        types: `token_types` of the rows.

    Returns:
        {name: float}.
    """
    mask = np.asarray(mask, bool)
    probs = jnp.exp(logprobs)
    raw = np.asarray(losses.delta_coefficients(hidden, probs, advantages, mask, normalize=False))
    out = {"coef_scale": float(mask.sum() / max(raw[mask].sum(), 1e-8))}
    sides = {"pos": np.asarray(advantages) > 0, "neg": np.asarray(advantages) < 0}
    signed = mask & (sides["pos"] | sides["neg"])[:, None]
    if signed.any():
        c_min, c_max = 0.8, 1.2  # losses.delta_coefficients' defaults, used above
        near_end = np.minimum(raw - c_min, c_max - raw) <= 0.01 * (c_max - c_min)
        out["coef_saturated"] = float(near_end[signed].mean())
    types = {**types, "format": ~(types["digits"] | types["filler"])}
    for kind, is_kind in types.items():
        for side, rows in sides.items():
            sel = mask & is_kind & rows[:, None]
            if sel.any():
                out[f"coef_{kind}_{side}"] = float(raw[sel].mean())
    if not (sides["pos"].any() and sides["neg"].any()):
        return out
    cos, dist, initial = _contrast(hidden, probs, advantages, mask)
    out.update(centroid_cos=cos, centroid_dist=dist, centroid_dist_initial=initial)
    no_filler = mask & ~types["filler"]
    if (mask & types["filler"]).any() and all(
        (no_filler & r[:, None]).any() for r in sides.values()
    ):
        out["centroid_cos_no_filler"] = _contrast(hidden, probs, advantages, no_filler)[0]
    return out


def _contrast(hidden, probs, advantages, mask) -> tuple[float, float, float]:
    """Cosine and distance of the side centroids after one refinement (delta.md DELTA-3..6), and
    their distance before it."""
    first = losses.delta_centroids_from_sums(
        losses.delta_centroid_sums(hidden, probs, advantages, mask)
    )
    temperatures = losses.delta_temperatures_from_sums(
        losses.delta_margin_sums(hidden, probs, advantages, mask, first)
    )
    refined = losses.delta_centroids_from_sums(
        losses.delta_centroid_sums(
            hidden, probs, advantages, mask, centroids=first, temperatures=temperatures
        ),
        metric_weights=first.metric_weights,
    )
    mu_pos, mu_neg = np.asarray(refined.mu_pos), np.asarray(refined.mu_neg)
    norm = np.linalg.norm(mu_pos) * np.linalg.norm(mu_neg)
    initial = float(np.linalg.norm(np.asarray(first.mu_pos) - np.asarray(first.mu_neg)))
    return (
        float(mu_pos @ mu_neg / max(norm, 1e-12)),
        float(np.linalg.norm(mu_pos - mu_neg)),
        initial,
    )


def update_moves(trainer, batch, old_logprobs, credit: dict, types, mask) -> dict[str, float]:
    """Mean |log pi_new - log pi_old| of the filler and digit tokens after one update (the run's
    `train.minibatches` optimiser steps) with each token-advantage array of `credit`, every
    update from the trainer's current parameters and optimiser state, which are restored."""
    mask = np.asarray(mask, bool)
    saved = jax.tree.map(jnp.copy, trainer.state)  # each update donates the state
    out = {}
    for name, advantages in credit.items():
        trainer.state = jax.tree.map(jnp.copy, saved)
        trainer.update_batch(batch.replace(old_logprobs=old_logprobs, advantages=advantages))
        new = trainer.forward(trainer.state.params, trainer.rest, batch).logprobs
        moved = np.abs(np.asarray(new) - np.asarray(old_logprobs))
        for kind in ("filler", "digits"):
            sel = mask & types[kind]
            if sel.any():
                out[f"dlogp_{kind}_{name}"] = float(moved[sel].mean())
    trainer.state = saved
    if "dlogp_filler_c1" in out and out["dlogp_filler_c1"] > 0:
        out["filler_move_ratio"] = out["dlogp_filler_delta"] / out["dlogp_filler_c1"]
    return out


def probe(trainer, *, smoke: bool) -> dict:
    """`measure` on the first held-out prompts (32 x 8 samples; smoke 4 x 2, the smoke batch's
    shape, so no program is compiled for the probe alone) sampled from the policy in `trainer` at
    the training temperature with one fixed key for every arm and seed."""
    prompts, samples = (4, 2) if smoke else (32, 8)
    tasks = [trainer.family.generate("heldout", i) for i in range(prompts)]
    traj = sample_trajectories(
        trainer.policy,
        trainer.family,
        tasks,
        trainer.tokenizer,
        trainer.config.task,
        jax.random.key(PROBE_KEY),
        group_size=samples,
    )
    return {"scalars": measure(trainer, traj, tasks, group_size=samples)}


def measure(trainer, traj, tasks, *, group_size: int) -> dict[str, float]:
    """DelTA's coefficients by token type and side, centroid contrast (`coefficient_stats`) and
    per-update log-prob moves (`update_moves`: c = 1 vs DelTA's c~, paper settings) of the policy
    in `trainer` on a batch of P = len(tasks) groups of `group_size` rows; `probe_accuracy` is
    the batch's share of reward-1 rows."""
    inputs, batch, fwd = trainer.prepare_inputs(
        traj, tasks, np.ones(len(tasks), bool), group_size=group_size
    )
    if fwd.hidden is None:
        raise ValueError(
            f"the probe needs the LM-head inputs: method {trainer.method.name!r} does not ask "
            "for them ('hidden' not in its needs); every arm of the delta studies is methods.delta"
        )
    mask = np.asarray(inputs.action_mask) > 0
    types = token_types(np.asarray(traj.tokens), trainer.tokenizer)
    advantages = losses.group_advantages(inputs.rewards).reshape(-1)
    stats = coefficient_stats(fwd.hidden, fwd.logprobs, advantages, mask, types)
    coeffs = losses.delta_coefficients(
        fwd.hidden, jnp.exp(fwd.logprobs), advantages, inputs.action_mask
    )
    credit = {
        "c1": advantages[:, None] * inputs.action_mask,
        "delta": advantages[:, None] * coeffs * inputs.action_mask,
    }
    moves = update_moves(trainer, batch, fwd.logprobs, credit, types, mask)
    accuracy = float(np.mean(np.asarray(traj.rewards) >= 1.0))
    return {"probe_accuracy": accuracy, **stats, **moves}


def make_study(
    name: str,
    *,
    filler: int,
    model: ModelSection,
    arms: tuple[str, ...],
    title: str,
    question: str,
    outcome: str,
) -> Study:
    """One DelTA study: `arms` (names of `ARMS`) on F = `filler` with `model`, 5 seeds;
    `outcome` states what the committed run found."""
    model_words = (
        "Llama-style (no QK-norm, untied embeddings)"
        if model.overrides.get("family") == "llama"
        else "Qwen3-style (QK-norm, tied embeddings)"
    )
    description = (
        f"{question} Every arm fine-tunes the same SFT warm start (a 2-layer, 128-wide "
        f"{model_words} decoder trained for {SFT_STEPS} steps on {SFT_DEMOS:,} scripted-expert "
        "demonstrations "
        f"of single-digit addition, each answer after F = {filler} filler words, "
        f"{SFT_NOISE:.0%} of the answers "
        f"wrong) for {STEPS} RL steps of 16 prompts x 8 samples, two AdamW updates (lr 3e-4) per "
        "rollout batch. The baseline is DelTA's own update with every coefficient 1 (clip "
        "0.2/0.28, dual clip 10, token-mean, no dynamic sampling, no overlong shaping in any "
        "arm). Held-out metric: pass@1 on the same 128 held-out prompts (the 21 single-digit "
        "sums kept out of training, 4 samples each, temperature 1) for every arm and seed. The probe draws 32 held-out prompts x 8 samples "
        "from every final policy and warm start and reports DelTA's raw coefficient (paper "
        "settings) by token type and side, the refined centroids' contrast with and without the "
        "filler, and how far one update moves filler and digit log-probs with c = 1 and with "
        "DelTA's coefficients from the same state. delta.md section 8 expects answer-digit tokens of "
        "correct responses to get c > 1 and filler c ~ 1, DelTA to move filler log-probs less, "
        "and its advantage over the baseline to grow with F; the paper's gain is about 3 points. "
        "Probes before the study found the coefficients saturated at 0.8 / 1.2 by token type, in "
        "a direction that flips between batches of one policy "
        "(experiments/results/delta_direction.md). "
        f"Outcome of the committed run: {outcome}"
    )
    return Study(
        name=name,
        title=title,
        description=description,
        config=lambda: config(filler, model, name),
        smoke_config=lambda: smoke_config(filler, model, name),
        arms={arm: (f"method.kwargs={ARMS[arm]!r}",) for arm in arms},
        baseline=BASELINE,
        metric="pass@1",
        target=0.5,
        diagnostics=(
            "delta_coef_std",
            "delta_coef_max",
            "delta_coef_min",
            "clip_fraction",
            "adv_abs_mean",
            "entropy",
            "response_tokens",
        ),
        tuning=(
            "No arm was tuned, and none was tuned more than another: the RL settings (16 prompts "
            "x 8 samples, lr 3e-4, gradient clip 1.0, two mini-batches) are the grpo_family "
            "study's, where the DAPO-style update won; DelTA's knobs are the paper's (n_refine 1, "
            "[0.8, 1.2], (1 - p) h) and the ablations section 8's (n_refine 0, [0.5, 1.5], h). "
            f"The model (2 of the tiny preset's 4 layers), the {SFT_STEPS}-step SFT and the "
            f"{STEPS} RL steps were sized to fit {SEEDS} seeds in the budget, not tuned for any arm."
        ),
        seeds=SEEDS,
        budget_minutes=90.0,
        probe=probe,
    )


STUDY = make_study(
    NAME,
    filler=FILLER,
    model=QWEN3_MODEL,
    arms=tuple(ARMS),
    title="DelTA vs the c = 1 update on arithmetic with 8 filler tokens",
    question=(
        "Does DelTA's discriminative token credit beat the same update with every coefficient 1, "
        "and which of its parts matter (one refinement, the [0.8, 1.2] range, the (1 - p) h proxy)?"
    ),
    outcome=(
        "DelTA's gain is within seed noise: final pass@1 0.486 against the baseline's 0.472, "
        "+0.014 [-0.048, +0.076] paired over 5 seeds (the paper's +3 points lies inside the "
        "interval, and so does 0). Without the refinement (n_refine 0) DelTA is worse, -0.050 "
        "[-0.087, -0.012]; the [0.5, 1.5] range (-0.001 [-0.033, +0.032]) and the h proxy "
        "(-0.021 [-0.091, +0.049]) change nothing measurable. The expected coefficient pattern "
        "does not hold: on the warm start every coefficient is saturated (99.7%) with answer "
        "digits of correct responses at 1.20 but their filler at 0.80, not ~1; on DelTA's final "
        "policies the means are 0.98 +- 0.19 (digits, correct) and 1.04 +- 0.21 (filler, "
        "correct), 70% saturated, the direction depending on the seed. One update with DelTA's "
        "coefficients moves filler log-probs as far as with c = 1 from the same state (0.015 "
        "and 0.015 nats on DelTA's final policies). Across F (delta_f0, delta_f32) the "
        "difference stays within noise and does not grow: F = 0 -0.010 [-0.087, +0.067], F = 8 "
        "+0.014, F = 32 -0.020 [-0.041, +0.001]; on the Llama-style model (delta_llama) +0.019 "
        "[-0.061, +0.099]. Why, as far as measured: the (1 - p) h proxy makes a correct and a "
        "wrong answer digit nearly collinear, so the side centroids barely differ (cosine "
        "0.996 on the warm start) and the lagged temperature saturates the coefficients by "
        "proxy length rather than by token role (delta_direction.md)."
    ),
)
