"""DelTA on Countdown (methods/delta.md): `python -m rljax.experiments.delta --preset cpu`.

DAPO-style update (clip 0.2/0.28, dual clip 10, token-mean) whose token advantages are the GRPO
advantage times centroid-discriminator coefficients in [0.8, 1.2] over (1 - p) h.
"""

from rljax.experiments import cli, presets

from rljax.train.config import MethodSection, OptimSection, TaskSection

NAME = "delta"
TASK = TaskSection(
    family="countdown",
    kwargs={"num_numbers": 3},
    prompts_per_step=16,
    group_size=8,
    max_new_tokens=24,
    max_len=96,
)
METHOD = MethodSection(name="delta")

PRESETS = {
    "smoke": lambda: presets.smoke(NAME, TASK, METHOD),
    "cpu": lambda: presets.cpu(NAME, TASK, METHOD, steps=100, learning_rate=1e-4),
    "pod": lambda: presets.pod(
        NAME,
        TaskSection(
            family="countdown",
            kwargs={"num_numbers": 4},
            prompts_per_step=128,
            group_size=16,
            max_new_tokens=20480,
            max_len=22528,
        ),
        METHOD,
        preset="qwen3_8b",
        steps=600,
        minibatches=4,
        optim=OptimSection(learning_rate=1e-6, weight_decay=0.1),
    ),
}

if __name__ == "__main__":
    cli.entry(NAME, PRESETS)
