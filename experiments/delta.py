"""DelTA on Countdown (methods/delta.md): `python -m rljax.experiments.delta --preset cpu`.

DAPO-style update (clip 0.2/0.28, dual clip 10, token-mean, overlong shaping, no dynamic sampling)
whose token advantages are the GRPO advantage times centroid-discriminator coefficients in
[0.8, 1.2] over (1 - p) h. Overlong shaping: the paper's L_max 20480 / L_buf 4096 on the pod; the
CPU presets scale it to the response budget (L_buf = L_max / 4, grpo.md section 4).
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
# Overlong shaping over the 24-token response budget of TASK (L_buf = 24 / 4).
METHOD = MethodSection(name="delta", kwargs={"overlong_max_len": 24, "overlong_buffer": 6})

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
        MethodSection(name="delta", kwargs={"overlong_max_len": 20480, "overlong_buffer": 4096}),
        preset="qwen3_8b",
        steps=600,
        minibatches=4,
        optim=OptimSection(learning_rate=1e-6, weight_decay=0.1),
    ),
    "real": lambda: presets.real(
        NAME,
        TaskSection(
            family="countdown",
            kwargs={"num_numbers": 4, "answer_format": "boxed"},
            prompts_per_step=32,
            group_size=8,
            max_new_tokens=2048,
            max_len=2304,
        ),
        MethodSection(name="delta", kwargs={"overlong_max_len": 2048, "overlong_buffer": 512}),
    ),
}

if __name__ == "__main__":
    cli.entry(NAME, PRESETS)
