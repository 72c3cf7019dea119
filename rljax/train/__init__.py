"""Training: the pure step layer, rollout collection, evaluation, SFT warm start and the driver.

Layers, each importing only those above it:

    step          TrainState, init_state, the jitted update / prepare / no-grad forward
    batches       Trajectories -> TrainBatch and PrepareInputs
    collect       sampled rollouts, DAPO dynamic sampling, the Anti-SD teacher context
    components    the policy and tokenizer, the prompt stream, the family capability check
    heldout, sft, reflection_phase
    loop          the driver: `Trainer` and `train(config, run_dir) -> RunResult`
"""

from rljax.methods import Method, PrepareInputs, TrainBatch
from rljax.train.batches import prepare_inputs, train_batch
from rljax.train.collect import filter_groups, sample_trajectories
from rljax.train.components import build_policy, check_family, prompt_stream
from rljax.train.config import (
    ExperimentConfig,
    MethodSection,
    ModelSection,
    OptimSection,
    SFTSection,
    TaskSection,
    TrainSection,
)
from rljax.train.heldout import evaluate, score_samples
from rljax.train.loop import RunResult, Trainer, train
from rljax.train.optim import guard_nonfinite, make_optimizer
from rljax.train.step import (
    ForwardOutputs,
    TrainState,
    init_state,
    make_forward_fn,
    make_prepare_fn,
    make_update_fn,
    policy_model,
    split_model,
    update_minibatches,
)

__all__ = [
    "ExperimentConfig",
    "ForwardOutputs",
    "Method",
    "MethodSection",
    "ModelSection",
    "OptimSection",
    "PrepareInputs",
    "RunResult",
    "SFTSection",
    "TaskSection",
    "TrainBatch",
    "TrainSection",
    "TrainState",
    "Trainer",
    "build_policy",
    "check_family",
    "evaluate",
    "filter_groups",
    "guard_nonfinite",
    "init_state",
    "make_forward_fn",
    "make_optimizer",
    "make_prepare_fn",
    "make_update_fn",
    "policy_model",
    "prepare_inputs",
    "prompt_stream",
    "sample_trajectories",
    "score_samples",
    "split_model",
    "train",
    "train_batch",
    "update_minibatches",
]
