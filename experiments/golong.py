"""GoLongRL TMN-Reweight on the nine long-context capabilities (methods/golongrl.md).

`python -m rljax.experiments.golong --preset cpu`. Task-level advantage normalisation with difficulty
reweighting (alpha 0.8), dual clip 3, dynamic sampling, mixed-capability batches.
"""

from rljax.experiments import cli, presets

from rljax.train.config import MethodSection, OptimSection, TaskSection

NAME = "golong"


def task_section(context_tokens: tuple[int, int], *, max_new_tokens: int, **fields) -> TaskSection:
    """The nine capabilities with contexts in `context_tokens` (tokens of the policy's tokenizer,
    which the trainer gives the family) and expert responses the policy can generate whole: the
    family's `response_tokens` is `max_new_tokens` less the end token."""
    return TaskSection(
        family="longcontext",
        kwargs={"context_tokens": context_tokens, "response_tokens": max_new_tokens - 1},
        max_new_tokens=max_new_tokens,
        **fields,
    )


# Contexts of 150-300 tokens keep CPU runs fast; the pod preset uses tens of thousands. 48 new
# tokens hold every capability's answer at this scale (the generators draw smaller lists where a
# longer one would not fit, e.g. up to 8 of sequence ordering's 5-10 events).
TASK = task_section((150, 300), max_new_tokens=48, prompts_per_step=16, group_size=8, max_len=640)
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
        task_section(
            (8000, 48000),
            max_new_tokens=16384,
            prompts_per_step=128,
            group_size=16,
            max_len=65536,
        ),
        METHOD,
        preset="qwen3_8b",
        steps=300,
        optim=OptimSection(learning_rate=2e-6, warmup_steps=5, weight_decay=0.1),
    ),
    "real": lambda: presets.real(
        NAME,
        task_section(
            (4000, 12000), max_new_tokens=2048, prompts_per_step=16, group_size=8, max_len=16384
        ),
        METHOD,
    ),
}

if __name__ == "__main__":
    cli.entry(NAME, PRESETS)
