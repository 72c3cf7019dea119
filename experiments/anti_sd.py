"""Anti-SD on hidden-key search with checker feedback (methods/anti_sd.md).

`python -m rljax.experiments.anti_sd --preset cpu`. GRPO advantage minus a gated JSD penalty against the
same network reading a privileged context (a correct peer's answer or the solution).
"""

from rljax.experiments import cli, presets

from rljax.train.config import MethodSection, OptimSection, TaskSection

NAME = "anti_sd"
TASK = TaskSection(
    family="keysearch",
    prompts_per_step=8,
    group_size=8,
    max_new_tokens=16,
    max_turns=8,
    max_len=256,
)
METHOD = MethodSection(name="anti_sd", kwargs={"coef_max": 0.5})

PRESETS = {
    "smoke": lambda: presets.smoke(NAME, TASK, METHOD),
    "cpu": lambda: presets.cpu(NAME, TASK, METHOD, steps=100, learning_rate=5e-5),
    "pod": lambda: presets.pod(
        NAME,
        TaskSection(
            family="keysearch",
            prompts_per_step=32,
            group_size=8,
            max_new_tokens=1024,
            max_turns=32,
            max_len=32768,
        ),
        METHOD,
        preset="qwen3_8b",
        steps=200,
        optim=OptimSection(learning_rate=1e-6),
    ),
    "real": lambda: presets.real(
        NAME,
        TaskSection(
            family="keysearch",
            prompts_per_step=16,
            group_size=8,
            max_new_tokens=512,
            max_turns=16,
            max_len=8192,
        ),
        METHOD,
    ),
}

if __name__ == "__main__":
    cli.entry(NAME, PRESETS)
