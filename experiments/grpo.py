"""GRPO baseline on single-turn arithmetic (methods/grpo.md): `python -m rljax.experiments.grpo --preset cpu`.

The `cpu` preset is the README's main job: a 4-layer, 128-wide decoder learns two-number addition
(1-2 digit operands) from noisy scripted experts (30% of demonstrations wrong), then GRPO raises its
held-out pass@1. Operands share digit facts across the content-hash split, so what RL teaches on
training sums transfers to unseen ones.
"""

from rljax.experiments import cli, presets

from rljax.train.config import MethodSection, OptimSection, TaskSection

NAME = "grpo"
TASK = TaskSection(
    family="arithmetic",
    kwargs={"digits": (1, 2), "num_operands": 2, "operators": "+"},
    prompts_per_step=16,
    group_size=8,
    max_new_tokens=12,
    max_len=64,
)
METHOD = MethodSection(name="grpo")

PRESETS = {
    "smoke": lambda: presets.smoke(NAME, TASK, METHOD),
    "cpu": lambda: presets.cpu(
        NAME,
        TASK,
        METHOD,
        steps=200,
        learning_rate=3e-4,
        sft_steps=1500,
        sft_noise=0.3,
        sft_demos=8192,
        eval_every=50,
        eval_prompts=128,
        checkpoint_every=50,
    ),
    "pod": lambda: presets.pod(
        NAME,
        TaskSection(
            family="arithmetic",
            kwargs={"digits": 6, "num_operands": 3},
            prompts_per_step=64,
            group_size=16,
            max_new_tokens=4096,
            max_len=4608,
        ),
        METHOD,
        preset="llama3_1_8b",
        steps=500,
        optim=OptimSection(learning_rate=1e-6, warmup_steps=10, weight_decay=0.01),
    ),
    "real": lambda: presets.real(
        NAME,
        TaskSection(
            family="arithmetic",
            kwargs={"digits": (2, 4), "num_operands": 3, "answer_format": "boxed"},
            prompts_per_step=32,
            group_size=8,
            max_new_tokens=1024,
            max_len=1280,
        ),
        METHOD,
    ),
}

if __name__ == "__main__":
    cli.entry(NAME, PRESETS)
