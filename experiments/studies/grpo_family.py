"""The GRPO family on the README's arithmetic task: GRPO, Dr.GRPO, DAPO and RLOO, paired by seed.

`python -m rljax.experiments.reproduce grpo_family` (3 seeds; designed for 90 minutes on a 2-core
CPU). This is the baseline table the paper studies compare against (methods/grpo.md, section 8).
"""

from __future__ import annotations

import dataclasses

from rljax.experiments import grpo, presets
from rljax.experiments.studies import Study

from rljax.train.config import MethodSection

NAME = "grpo_family"
STEPS = 200


def config():
    """The shared base: GRPO's `cpu` preset (task, SFT, optimiser), sequences cut to 32 tokens,
    two updates per batch.

    Prompt and response of a 1-2 digit sum take at most 24 tokens, so `max_len=32` halves the
    padded work of the preset's 64 without truncating anything. Two mini-batches per rollout batch
    make the second update off-policy, so the clip ranges (GRPO's 0.2 vs DAPO's clip-higher 0.28
    and dual clip) actually act; with one update the importance ratio is exactly 1 and every clip
    is inert.
    """
    return presets.cpu(
        NAME,
        dataclasses.replace(grpo.TASK, max_len=32),
        MethodSection(name="grpo"),
        steps=STEPS,
        learning_rate=3e-4,
        sft_steps=1500,
        sft_noise=0.3,
        sft_demos=8192,
        minibatches=2,
        max_gen_rounds=3,
        eval_every=25,
        eval_prompts=128,
        eval_samples=4,
        checkpoint_every=25,
    )


def smoke_config():
    """Two RL steps of the same pipeline on the 2-layer smoke model (8 prompts x 2 samples)."""
    base = presets.smoke(NAME, grpo.TASK, MethodSection(name="grpo"), prompts=8, group_size=2)
    return dataclasses.replace(
        base, train=dataclasses.replace(base.train, minibatches=2, max_gen_rounds=2)
    )


STUDY = Study(
    name=NAME,
    title="The GRPO family on two-number addition",
    description=(
        "GRPO, Dr.GRPO, DAPO and RLOO fine-tune the same SFT warm start (the GRPO `cpu` preset's: a "
        "4-layer, 128-wide decoder trained for 1,500 steps on 8,192 scripted-expert "
        "demonstrations of 1-2 digit addition, 30% of them wrong) for 200 RL steps of 16 prompts "
        "x 8 samples, two AdamW updates (lr 3e-4) per rollout batch, sequences of 32 tokens. "
        "Held-out metric: pass@1 on the same 128 held-out sums (4 samples each, temperature 1) "
        "for every arm and seed. methods/grpo.md expects all arms to improve over the SFT start "
        "and to reach similar accuracy. Not reproduced in the committed run: the arms "
        "separate, DAPO ahead of GRPO and Dr.GRPO and RLOO behind it, each paired interval "
        "excluding 0 (DAPO drawing about 2.7x the rollouts: see Equal effort)."
    ),
    config=config,
    smoke_config=smoke_config,
    arms={
        "grpo": ("method.name=grpo",),
        # Centred advantages (no std scaling), constant-length normalisation.
        "drgrpo": ("method.name=drgrpo",),
        # Dynamic sampling (all-equal groups refilled, at most train.max_gen_rounds batches per
        # step), clip-higher 0.28, dual clip 3, token-mean aggregation: the library's DAPO preset.
        "dapo": ("method.name=dapo",),
        # Leave-one-out baseline.
        "rloo": ("method.name=rloo",),
    },
    baseline="grpo",
    metric="pass@1",
    # Set after the first full run: the warm start's 0.613 already passed the 0.6 first declared.
    target=0.75,
    diagnostics=("clip_fraction", "adv_abs_mean", "entropy", "response_tokens", "groups_kept"),
    tuning=(
        "No arm's own knobs were tuned: they are the paper defaults of `rljax.methods` (Dr.GRPO: "
        "no std scaling, seq-mean-token-sum-norm; DAPO: clip 0.2/0.28, dual clip 3, token-mean, "
        "dynamic sampling with at most 3 generation rounds; RLOO: leave-one-out). The shared "
        "settings were chosen for GRPO only, so any edge they give is GRPO's: the task, model, "
        "SFT, lr 3e-4, batch 16 x 8 and gradient clip 1.0 are the GRPO `cpu` preset's; a first "
        "attempt (600-step SFT, 64-token padding) was stopped because it ran at 2.5 s/step and "
        "GRPO's held-out pass@1 fell; then two short GRPO runs of the preset (30-60 steps, one vs "
        "two mini-batches) chose two mini-batches (so the clip ranges act), and rollout padding "
        "was cut to 32 tokens for speed. Equal budget means equal RL steps and updates: DAPO's "
        "dynamic sampling drew 2.57-2.77 rollout batches per step (mean over steps, by seed) to "
        "keep 12.2-14.9 of 16 groups, so it generated about 2.7x the samples of the other arms."
    ),
    seeds=3,
    budget_minutes=90.0,
)
