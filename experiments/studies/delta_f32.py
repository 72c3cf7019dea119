"""DelTA with 32 filler tokens: the most diluted end of delta.md section 8's F sweep.

`python -m rljax.experiments.reproduce delta_f32` (5 seeds): the `delta` study's baseline and DelTA
arms, its model and RL settings, on responses of 32 shared filler words before the answer. With
`delta_f0` and `delta` (F = 8) it shows whether DelTA's advantage over the c = 1 update grows
with F.
"""

from __future__ import annotations

from rljax.experiments.studies import delta

STUDY = delta.make_study(
    "delta_f32",
    filler=32,
    model=delta.QWEN3_MODEL,
    arms=delta.HEADLINE_ARMS,
    title="DelTA vs the c = 1 update on arithmetic with 32 filler tokens",
    question=(
        "With 32 shared filler tokens per response (four times the `delta` study's), does "
        "DelTA's advantage over the same update with every coefficient 1 grow?"
    ),
    outcome=(
        "no gain: final pass@1 0.221 against the baseline's 0.241, -0.020 [-0.041, +0.001] "
        "paired over 5 seeds (warm start 0.116), so DelTA's advantage does not grow with F "
        "(F = 0: -0.010, F = 8: +0.014). Seed 4 of both arms raised the training reward to "
        "0.65 while held-out pass@1 fell to 0.012 / 0.004 (the 79 training sums memorised); "
        "its probe found no group with both outcomes, so the coefficient scalars are over "
        "seeds 0-3. Every warm-start coefficient is saturated (100%)."
    ),
)
