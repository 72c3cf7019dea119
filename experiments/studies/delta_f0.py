"""DelTA without filler (F = 0): the no-dilution end of delta.md section 8's F sweep.

`python -m rljax.experiments.reproduce delta_f0` (5 seeds): the `delta` study's baseline and DelTA
arms, its model and RL settings, on responses that are the answer alone. With `delta` (F = 8) and
`delta_f32` it shows whether DelTA's advantage over the c = 1 update grows with F.
"""

from __future__ import annotations

from rljax.experiments.studies import delta

STUDY = delta.make_study(
    "delta_f0",
    filler=0,
    model=delta.QWEN3_MODEL,
    arms=delta.HEADLINE_ARMS,
    title="DelTA vs the c = 1 update on arithmetic without filler",
    question=(
        "Without shared filler (F = 0), does DelTA still beat the same update with every "
        "coefficient 1? The reference point of the F sweep (delta_f0, delta, delta_f32)."
    ),
    outcome=(
        "no difference: final pass@1 0.581 against the baseline's 0.591, -0.010 [-0.087, "
        "+0.067] paired over 5 seeds (warm start 0.271). Without filler the coefficients are "
        "mostly unsaturated (13% on the warm start, 6% on DelTA's final policies), answer "
        "digits of correct responses at 0.82 on the warm start and 1.02 +- 0.03 at the end."
    ),
)
