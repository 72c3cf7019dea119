"""ECHO on the MiniShell terminal (methods/echo.md): `python -m rljax.experiments.echo --preset cpu`.

GRPO on action tokens plus lambda = 0.05 times the cross-entropy of the terminal's observation
tokens, from the same forward pass; train temperature 0.8.
"""

from rljax.experiments import cli, presets

from rljax.train.config import MethodSection, OptimSection, TaskSection

NAME = "echo"
# The MiniShell world is drawn once from the family seed and shared by every episode (echo.md 8.1);
# compact rendering keeps the harness wrapper from dominating a small model's CE. values="task"
# (issue 16): each task redraws the values over the shared layout, so a value must be read from the
# terminal and held-out tasks (training keys, unseen values) measure reading it; with the world's
# values the policy memorised training answers and held-out keys' files were never a lookup target.
TASK = TaskSection(
    family="terminal_find_value",
    kwargs={"seed": 0, "render": "compact", "values": "task"},
    prompts_per_step=8,
    group_size=8,
    max_new_tokens=48,
    max_turns=3,
    max_len=512,
    temperature=0.8,
)
METHOD = MethodSection(name="echo", kwargs={"coef": 0.05})

PRESETS = {
    "smoke": lambda: presets.smoke(NAME, TASK, METHOD),
    "cpu": lambda: presets.cpu(NAME, TASK, METHOD, steps=100, learning_rate=1e-4),
    "pod": lambda: presets.pod(
        NAME,
        TaskSection(
            family="terminal_find_value",
            kwargs={"seed": 0, "max_turns": 16},
            prompts_per_step=16,
            group_size=16,
            max_new_tokens=2048,
            max_turns=16,
            max_len=16384,
            temperature=0.8,
        ),
        METHOD,
        preset="qwen3_8b",
        steps=1100,
        optim=OptimSection(learning_rate=1e-6, warmup_steps=20, weight_decay=0.01, grad_clip=0.2),
    ),
    "real": lambda: presets.real(
        NAME,
        TaskSection(
            family="terminal_find_value",
            kwargs={"seed": 0, "max_turns": 8},
            prompts_per_step=8,
            group_size=8,
            max_new_tokens=512,
            max_turns=8,
            max_len=8192,
            temperature=0.8,
        ),
        METHOD,
    ),
}

if __name__ == "__main__":
    cli.entry(NAME, PRESETS)
