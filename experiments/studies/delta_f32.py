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
)
