"""GoLongRL TMN-Reweight on the nine long-context capabilities (methods/golongrl.md).

`python -m rljax.experiments.golong --preset cpu`. Task-level advantage normalisation with difficulty
reweighting (alpha 0.8), dual clip 3, dynamic sampling, mixed-capability batches.
"""

from rljax.experiments import cli, presets

from rljax.train.config import MethodSection, OptimSection, TaskSection

NAME = "golong"
# Contexts of 150-300 tokens (of the policy's tokenizer, which the trainer gives the family) keep
# CPU runs fast; the pod preset uses tens of thousands.
TASK = TaskSection(
    family="longcontext",
    kwargs={"context_tokens": (150, 300)},
    prompts_per_step=16,
    group_size=8,
    max_new_tokens=48,
    max_len=640,
)
METHOD = MethodSection(name="golong", kwargs={"alpha": 0.8})

PRESETS = {
    # A 2-step warm start earns no reward on these tasks, so DAPO's dynamic sampling would keep no
    # group and skip every update: the smoke run keeps all groups to exercise prepare and update.
    "smoke": lambda: presets.smoke(
        NAME, TASK, MethodSection(name="golong", kwargs={**METHOD.kwargs, "filter_groups": False})
    ),
    "cpu": lambda: presets.cpu(NAME, TASK, METHOD, steps=100, learning_rate=3e-5),
    "pod": lambda: presets.pod(
        NAME,
        TaskSection(
            family="longcontext",
            kwargs={"context_tokens": (8000, 48000)},
            prompts_per_step=128,
            group_size=16,
            max_new_tokens=16384,
            max_len=65536,
        ),
        METHOD,
        preset="qwen3_8b",
        steps=300,
        optim=OptimSection(learning_rate=2e-6, warmup_steps=5, weight_decay=0.1),
    ),
    "real": lambda: presets.real(
        NAME,
        TaskSection(
            family="longcontext",
            kwargs={"context_tokens": (4000, 12000)},
            prompts_per_step=16,
            group_size=8,
            max_new_tokens=2048,
            max_len=16384,
        ),
        METHOD,
    ),
}

if __name__ == "__main__":
    cli.entry(NAME, PRESETS)
