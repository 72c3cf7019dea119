"""Shared preset builders: `smoke` (seconds), `cpu` (a real run here) and `pod` (paper scale).

Each experiment module states only what differs from these: its task family, method and the
paper's hyperparameters. The `pod` presets use the published model sizes on a 256-chip mesh and
are checked here with `--dry-run`.
"""

from __future__ import annotations

import dataclasses

from rljax.train.config import (
    ExperimentConfig,
    MethodSection,
    ModelSection,
    OptimSection,
    SFTSection,
    TaskSection,
    TrainSection,
)

# A 2-layer, 64-wide decoder: compiles in seconds, enough to exercise every code path.
SMOKE_MODEL = ModelSection(
    preset="tiny",
    overrides={
        "num_layers": 2,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_heads": 2,
        "num_kv_heads": 1,
        "head_dim": 32,
    },
)
POD_MESH = "data=8,fsdp=16,tensor=2"


def smoke(
    name: str, task: TaskSection, method: MethodSection, *, prompts: int = 4, group_size: int = 2
) -> ExperimentConfig:
    """Two RL steps on 8 rollouts (4 prompts x 2 samples) after a 2-step SFT warm start."""
    return ExperimentConfig(
        name=name,
        model=SMOKE_MODEL,
        method=method,
        task=dataclasses.replace(task, prompts_per_step=prompts, group_size=group_size),
        optim=OptimSection(learning_rate=1e-3),
        train=TrainSection(
            steps=2, checkpoint_every=1, eval_every=1, eval_prompts=2, eval_samples=2, mesh="auto"
        ),
        sft=SFTSection(steps=2, batch_size=4, num_demos=8),
    )


def cpu(
    name: str,
    task: TaskSection,
    method: MethodSection,
    *,
    steps: int = 100,
    learning_rate: float = 1e-4,
    sft_steps: int = 300,
    sft_noise: float = 0.3,
    sft_demos: int = 2048,
    model: ModelSection = ModelSection(preset="tiny"),
    **train_kwargs,
) -> ExperimentConfig:
    """A real run on one CPU: SFT warm start from noisy experts, then RL."""
    return ExperimentConfig(
        name=name,
        model=model,
        task=task,
        method=method,
        optim=OptimSection(learning_rate=learning_rate, grad_clip=1.0),
        train=TrainSection(
            steps=steps,
            mesh="auto",
            **{
                "checkpoint_every": 20,
                "eval_every": 20,
                "eval_prompts": 64,
                "eval_samples": 4,
                **train_kwargs,
            },
        ),
        sft=SFTSection(
            steps=sft_steps, batch_size=32, learning_rate=1e-3, noise=sft_noise, num_demos=sft_demos
        ),
    )


def pod(
    name: str,
    task: TaskSection,
    method: MethodSection,
    *,
    preset: str,
    optim: OptimSection,
    steps: int,
    minibatches: int = 1,
    **train_kwargs,
) -> ExperimentConfig:
    """Paper-scale settings on a 256-chip mesh (run with `--dry-run` to check them here)."""
    return ExperimentConfig(
        name=name,
        method=method,
        task=task,
        optim=optim,
        model=ModelSection(
            preset=preset, dtype="bfloat16", overrides={"scan_layers": True, "remat": True}
        ),
        train=TrainSection(
            steps=steps,
            minibatches=minibatches,
            mesh=POD_MESH,
            # "auto" is xla_chunked on every backend until the Pallas kernel has run on a GPU
            # or TPU (kernels/gpu_check.sh, results committed); kernel_impl="pallas" asks for it.
            kernel_impl="auto",
            checkpoint_every=50,
            keep_checkpoints=3,
            eval_every=50,
            eval_prompts=512,
            eval_samples=8,
            **train_kwargs,
        ),
    )


# One accelerator (a single GPU, or pass --set train.mesh=data=1,fsdp=4,tensor=1 on a 4-chip TPU host).
REAL_MESH = "data=1,fsdp=1,tensor=1"
# Chat-template variables of the real presets (templates ignore the ones they do not use).
REAL_TEMPLATE_KWARGS = {"enable_thinking": False, "date_string": "26 Jul 2024"}


def real(
    name: str,
    task: TaskSection,
    method: MethodSection,
    *,
    preset: str = "qwen3_0_6b",
    learning_rate: float = 1e-6,
    steps: int = 200,
    microbatches: int = 4,
    **train_kwargs,
) -> ExperimentConfig:
    """A published small model (Qwen3-0.6B shapes) in bf16 on one host, as a user starts from.

    Set the checkpoint with `--set model.hf_path=/path/to/Qwen3-0.6B` (weights, tokenizer and
    chat template load from it; the preset's shapes are what `--dry-run` checks, since the dry run
    builds models from presets); a run without it is refused at start-up (`require_hf_path`). No
    SFT warm start: the instruction-tuned model already answers in the task's format
    (`answer_format="boxed"` for math). The chat template renders with thinking off (Qwen3: the
    budgets below leave no room for a long `<think>` block) and a fixed date (Llama 3.1+ prints
    today's otherwise), so a resumed run renders the same prompts. The final policy is exported to
    `<run>/hf/` (`train.export_hf`).
    """
    return ExperimentConfig(
        name=name,
        method=method,
        task=task,
        optim=OptimSection(learning_rate=learning_rate, warmup_steps=10, weight_decay=0.01),
        model=ModelSection(
            preset=preset,
            dtype="bfloat16",
            overrides={"remat": True},
            chat_template_kwargs=dict(REAL_TEMPLATE_KWARGS),
            require_hf_path=True,
        ),
        train=TrainSection(
            steps=steps,
            microbatches=microbatches,
            mesh=REAL_MESH,
            # "auto" is xla_chunked on every backend until the Pallas kernel has run on a GPU
            # or TPU (kernels/gpu_check.sh, results committed); kernel_impl="pallas" asks for it.
            kernel_impl="auto",
            **{
                "checkpoint_every": 50,
                "keep_checkpoints": 2,
                "eval_every": 50,
                "eval_prompts": 128,
                "eval_samples": 4,
                **train_kwargs,
            },
        ),
    )
