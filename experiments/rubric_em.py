"""RubricEM stage-structured GRPO on MiniResearch (methods/rubric_em.md).

`python -m rljax.experiments.rubric_em --preset cpu`. Stage scores from the rubric judge are mixed by the
dependence matrix, normalised per stage and given to that stage's tokens; k3 KL 0.001. The `cpu`
and `pod` presets also run the reflection meta-policy and windowed curriculum (REM-10/11,
`train.reflection`); `smoke` leaves it off to stay fast (tests/train/test_reflection.py covers it).
"""

from rljax.experiments import cli, presets

from rljax.train.config import MethodSection, OptimSection, TaskSection

NAME = "rubric_em"
# Lookup and compare questions fit a CPU context of 640 tokens (filter questions need ~900). A
# quarter of the warm start's demonstrations are scripted reflections, so the reflection phase
# starts from valid ones. 96 new tokens per turn: the scripted teacher's final turn (state, review
# and answer) takes up to 78 tokens with the built-in tokenizer (at 64, 91% of its answers were
# cut off, so no policy could score).
TASK = TaskSection(
    family="miniresearch",
    kwargs={"kinds": ("lookup", "compare"), "reflection_demos": 0.25},
    prompts_per_step=8,
    group_size=8,
    max_new_tokens=96,
    max_turns=8,
    max_len=640,
)
METHOD = MethodSection(name="rubric_em")

PRESETS = {
    "smoke": lambda: presets.smoke(NAME, TASK, METHOD),
    "cpu": lambda: presets.cpu(NAME, TASK, METHOD, steps=100, learning_rate=1e-4, reflection={}),
    "pod": lambda: presets.pod(
        NAME,
        TaskSection(
            family="miniresearch",
            prompts_per_step=32,
            group_size=8,
            max_new_tokens=4096,
            max_turns=10,
            max_len=26624,
        ),
        METHOD,
        preset="qwen3_8b",
        steps=1400,
        optim=OptimSection(learning_rate=5e-7),
        reflection={},
    ),
    "real": lambda: presets.real(
        NAME,
        TaskSection(
            family="miniresearch",
            prompts_per_step=8,
            group_size=8,
            max_new_tokens=1024,
            max_turns=10,
            max_len=12288,
        ),
        METHOD,
        reflection={},
    ),
}

if __name__ == "__main__":
    cli.entry(NAME, PRESETS)
