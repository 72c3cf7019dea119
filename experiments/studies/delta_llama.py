"""DelTA on a Llama-style decoder: the architecture claim (issue 17), at the `delta` study's F = 8.

`python -m rljax.experiments.reproduce delta_llama` (5 seeds): the `delta` study's baseline and
DelTA arms and settings on a decoder of the same shapes without QK-norm and with untied embeddings
(the `delta` study's model is the library's Qwen3-style tiny preset). A study of its own because
the harness requires every arm of a study to share the model.
"""

from __future__ import annotations

from rljax.experiments.studies import delta

STUDY = delta.make_study(
    "delta_llama",
    filler=delta.FILLER,
    model=delta.LLAMA_MODEL,
    arms=delta.HEADLINE_ARMS,
    title="DelTA vs the c = 1 update on a Llama-style decoder (8 filler tokens)",
    question=(
        "Does DelTA's gain over the same update with every coefficient 1 hold on a second "
        "architecture (Llama-style: no QK-norm, untied embeddings)?"
    ),
    outcome=(
        "within seed noise: final pass@1 0.352 against the baseline's 0.332, +0.019 [-0.061, "
        "+0.099] paired over 5 seeds (warm start 0.184); the architecture changes the level, "
        "not the comparison. DelTA's final policies give answer digits of correct responses "
        "0.89 +- 0.09 and their filler 1.09 +- 0.11 (the reverse of the expected pattern; 24% "
        "saturated against 99.6% on the warm start)."
    ),
)
