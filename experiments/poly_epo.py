"""Poly-EPO on the multi-strategy task (methods/poly_epo.md).

`python -m rljax.experiments.poly_epo --preset cpu`. Set-level advantages from mean reward x strategy
diversity over all 70 subsets of 4 of the 8 samples, Dr.GRPO normalisation
(seq-mean-token-sum-norm, L_norm = the response budget: 4096 on the pod), clip 0.2/0.28, dual
clip 3, no KL.
"""

from rljax.experiments import cli, presets

from rljax.train.config import MethodSection, OptimSection, TaskSection

NAME = "poly_epo"
# The warm start demonstrates uniformly random strategies (poly_epo.md section 8), not a working
# strategy chosen with the hidden Works(x): that mixture (S_1 30% of the demonstrations, S_6 7%)
# taught the tiny policy to execute S_1 only, so 73% of its samples were degenerate and groups
# held 0.89 distinct valid clusters: no diversity for Poly-EPO to reward (issue 21).
TASK = TaskSection(
    family="strategy",
    kwargs={"expert_mix": "uniform"},
    prompts_per_step=16,
    group_size=8,
    max_new_tokens=16,
    max_len=64,
)
METHOD = MethodSection(name="poly_epo", kwargs={"set_size": 4})

PRESETS = {
    # Subsets of 2 of the 4 samples: with set size = group size every set is the whole group and
    # every advantage is 0, so the smoke run would train nothing.
    "smoke": lambda: presets.smoke(
        NAME, TASK, MethodSection(name="poly_epo", kwargs={"set_size": 2}), prompts=2, group_size=4
    ),
    # ~95% valid work tokens and a warm start long enough to execute all six strategies (spec 8).
    "cpu": lambda: presets.cpu(
        NAME,
        TASK,
        METHOD,
        steps=100,
        learning_rate=1e-4,
        sft_steps=600,
        sft_noise=0.05,
        sft_demos=4096,
    ),
    "pod": lambda: presets.pod(
        NAME,
        TaskSection(
            family="strategy", prompts_per_step=128, group_size=8, max_new_tokens=4096, max_len=5120
        ),
        # L_norm = 4096, the paper's response budget (poly_epo.md section 9).
        MethodSection(name="poly_epo", kwargs={"set_size": 4, "max_len": 4096}),
        preset="qwen3_8b",
        steps=850,
        minibatches=2,
        optim=OptimSection(learning_rate=1e-6, grad_clip=0.3),
    ),
    "real": lambda: presets.real(
        NAME,
        TaskSection(
            family="strategy", prompts_per_step=32, group_size=8, max_new_tokens=1024, max_len=1536
        ),
        MethodSection(name="poly_epo", kwargs={"set_size": 4, "max_len": 1024}),
    ),
}

if __name__ == "__main__":
    cli.entry(NAME, PRESETS)
