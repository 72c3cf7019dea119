"""Anti-SD on hidden-key search: does ascending the JSD to an answer-aware self-teacher beat GRPO?

`python -m rljax.experiments.reproduce anti_sd` (3 seeds; designed for 90 minutes on a 2-core
CPU). anti_sd.md section 8: a lock hides a key in 0..N-1; `WAIT* TRY a` gets YES/NO, `ANSWER a`
ends the episode. The SFT warm start mixes student-mode traces (systematic search with WAIT, 40%
answering early) with teacher-mode traces that read the solution and go straight to `TRY k*`,
`ANSWER k*`, so that on student rollouts u = log pi(y|x,c) - log pi(y|x) is negative on WAIT and
positive on the key. Expected: self-distillation (SD) raises premature answering and lowers
accuracy; Anti-SD reaches GRPO's final accuracy in a fraction of its steps; reverse-KL ascent
blows up; the no-teacher variant collapses; without the gate Anti-SD may work, then degrade.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from rljax.experiments import presets
from rljax.experiments.studies import Study

from rljax import losses
from rljax.train import collect
from rljax.train.batches import train_batch
from rljax.train.config import MethodSection, ModelSection, TaskSection
from rljax.train.step import make_forward_fn

NAME = "anti_sd"
NUM_KEYS = 12
MAX_TRIES = 8
STEPS = 30
SAMPLES = 8  # held-out samples per prompt: pass@1 is avg@8
PROBE_KEY = 20261  # the probe's sampling key: the same draws for every arm and seed
U_TYPES = ("wait", "direct_try", "answer_premature", "answer_found", "key", "non_key")

TASK = TaskSection(
    family="keysearch",
    kwargs={"num_keys": NUM_KEYS, "max_tries": MAX_TRIES},
    prompts_per_step=8,
    group_size=8,
    max_new_tokens=16,
    max_turns=MAX_TRIES + 1,
    max_len=192,
)
# anti_sd.md section 4: 2 layers, d 64-128.
MODEL = ModelSection(preset="tiny", overrides={"num_layers": 2})


def config():
    """The shared base: section 8's task and warm start, GRPO's settings, avg@8 held out."""
    return presets.cpu(
        NAME,
        TASK,
        MethodSection(name="grpo"),
        model=MODEL,
        steps=STEPS,
        learning_rate=5e-5,
        sft_steps=400,
        sft_noise=0.4,
        sft_demos=4096,
        eval_every=10,
        eval_prompts=32,
        eval_samples=SAMPLES,
        checkpoint_every=10,
    )


def smoke_config():
    """Two RL steps of the same pipeline on the 2-layer smoke model (2 prompts x 4 samples) and
    a 4-key lock with 2 tries (3 turns), evaluated with 8 samples of 2 prompts so pass@8 exists."""
    task = dataclasses.replace(
        TASK, kwargs={"num_keys": 4, "max_tries": 2}, max_turns=3, max_len=96
    )
    base = presets.smoke(NAME, task, MethodSection(name="grpo"), prompts=2, group_size=4)
    return dataclasses.replace(
        base, train=dataclasses.replace(base.train, eval_samples=SAMPLES, checkpoint_every=2)
    )


def _pieces(tokenizer, ids) -> dict[int, str]:
    special = set(tokenizer.all_special_ids)
    return {i: "" if i in special else tokenizer.decode([i]) for i in set(int(i) for i in ids)}


def _words(tokens, positions, pieces) -> list[tuple[str, list[int]]]:
    """The words of one assistant turn with their token positions (a space token starts a word
    and belongs to it; special tokens such as the end of the turn belong to none)."""
    words: list[tuple[str, list[int]]] = []
    for pos in positions:
        piece = pieces[int(tokens[pos])]
        if not piece:
            continue
        if not words or (piece[0] == " " and words[-1][0]):
            words.append(("", []))
        text, where = words[-1]
        words[-1] = (text + piece.strip(), where + [pos])
    return [w for w in words if w[0]]


def _runs(mask: np.ndarray) -> list[np.ndarray]:
    """Maximal runs of True in a [T] mask, as position arrays."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [np.arange(a, b) for a, b in zip(edges[::2], edges[1::2])]


def token_type_u(traj, tasks, u, tokenizer, group_size) -> dict[str, list[float]]:
    """u summed over each word of the responses, grouped by the word's role (section 8).

    Roles: "wait" (WAIT); "direct_try" (TRY opening a turn, no WAIT before it); "answer_premature"
    and "answer_found" (the ANSWER keyword before and after the episode's first YES); "key" and
    "non_key" (the number after TRY/ANSWER, equal to the hidden key or not). A word's u is the
    sum of its tokens' u (a leading space token included): log pi(word|x,c,..) - log pi(word|x,..).
    """
    tokens = np.asarray(traj.tokens)
    action, env = np.asarray(traj.action_mask, bool), np.asarray(traj.env_mask, bool)
    warning = np.asarray(traj.warning_mask, bool)
    pieces = _pieces(tokenizer, tokens[action | env])
    out: dict[str, list[float]] = {t: [] for t in U_TYPES}
    for b in range(tokens.shape[0]):
        key = tasks[b // group_size].answer
        found = False
        observations = {run[0]: run for run in _runs(env[b] & ~warning[b])}
        for turn in _runs(action[b]):
            before = [p for p in observations if p < turn[0]]
            found = found or any(
                "YES" in "".join(pieces[int(tokens[b, q])] for q in observations[p]) for p in before
            )
            for p in before:
                observations.pop(p)
            words = _words(tokens[b], turn, pieces)
            for i, (word, where) in enumerate(words):
                value = float(np.sum(u[b, where]))
                if word == "WAIT":
                    out["wait"].append(value)
                elif word == "TRY" and i == 0:
                    out["direct_try"].append(value)
                elif word == "ANSWER":
                    out["answer_found" if found else "answer_premature"].append(value)
                elif word.isdigit() and i > 0 and words[i - 1][0] in ("TRY", "ANSWER"):
                    out["key" if int(word) == key else "non_key"].append(value)
    return out


def self_teacher(trainer, traj, tasks, group_size: int) -> tuple[np.ndarray, np.ndarray]:
    """u = log pi(y_t|x,c,y<t) - log pi(y_t|x,y<t) and the teacher's entropy, [B, T] (0 off the
    response), for the policy in `trainer` whatever its method: the training-time teacher
    context (ASD-7, `collect.teacher_batch`) and the same no-grad pass as Anti-SD's trainer."""
    teacher = collect.teacher_batch(
        trainer.family,
        traj,
        tasks,
        trainer.tokenizer,
        group_size=group_size,
        seed=trainer.config.train.seed,
    )
    forward = make_forward_fn(
        trainer.graphdef,
        temperature=trainer.config.task.temperature,
        impl=trainer.config.train.kernel_impl,
        with_hidden=False,
        with_teacher=True,
    )
    out = forward(trainer.state.params, trainer.rest, train_batch(traj), teacher)
    action = np.asarray(traj.action_mask, bool)
    u = np.where(action, np.asarray(out.teacher_logprobs) - np.asarray(out.logprobs), 0.0)
    return u, np.asarray(out.teacher_entropy)


def probe(trainer, *, smoke: bool) -> dict:
    """Search behaviour, pass@k and the self-teacher's u by token type on held-out instances.

    `SAMPLES` samples of each of the first instances (32; smoke 2) of the held-out split at the
    training temperature, drawn with one fixed key for every arm and seed. Scalars: WAIT and TRY
    counts per response, the premature-answer rate (ANSWER before any YES, among all responses),
    the no-answer rate, response tokens, pass@1 and pass@8, and the mean u of each token role
    (`token_type_u`; a role that never occurs is left out). The teacher is the policy itself
    reading the ASD-7 context (a correct peer of the group, else the reference solution), as in
    training, whatever the arm's method.
    """
    instances = 2 if smoke else 32
    family, task_cfg, tokenizer = trainer.family, trainer.config.task, trainer.tokenizer
    tasks = [family.generate("heldout", i) for i in range(instances)]
    traj = collect.sample_trajectories(
        trainer.policy,
        family,
        tasks,
        tokenizer,
        task_cfg,
        jax.random.key(PROBE_KEY),
        group_size=SAMPLES,
    )
    correct = np.asarray(traj.rewards).reshape(instances, SAMPLES) >= 1.0
    ks = list(range(1, SAMPLES + 1))
    pass_at = [
        float(np.mean([losses.pass_at_k(SAMPLES, int(c.sum()), k) for c in correct])) for k in ks
    ]
    info = traj.info
    u, teacher_entropy = self_teacher(trainer, traj, tasks, SAMPLES)
    by_type = token_type_u(traj, tasks, u, tokenizer, SAMPLES)
    action = np.asarray(traj.action_mask, bool)
    return {
        "scalars": {
            "pass@1": pass_at[0],
            "pass@8": pass_at[-1],
            "waits_per_response": float(np.mean([i["waits"] for i in info])),
            "tries_per_response": float(np.mean([i["tries"] for i in info])),
            "premature_answer_rate": float(np.mean([i["premature"] for i in info])),
            "no_answer_rate": float(np.mean([i["reason"].startswith("no answer") for i in info])),
            "response_tokens": float(action.sum(1).mean()),
            "teacher_entropy_median": float(losses.teacher_entropy_median(teacher_entropy, action)),
            **{f"u_{t}": float(np.mean(v)) for t, v in by_type.items() if v},
        },
        "curves": {"pass@k": {"x": ks, "y": pass_at}},
    }


def best_accuracy(num_keys: int = NUM_KEYS, max_tries: int = MAX_TRIES) -> float:
    """The best policy's accuracy: search `max_tries` distinct keys, else guess one of the rest."""
    if max_tries >= num_keys:
        return 1.0
    return (max_tries + 1) / num_keys


def _budget_text() -> str:
    if MAX_TRIES >= NUM_KEYS:
        return "a systematic search always finds the key, so the best policy scores 1"
    return (
        f"a systematic search finds the key in {MAX_TRIES} of {NUM_KEYS} instances and must "
        f"guess among the {NUM_KEYS - MAX_TRIES} untried keys otherwise, so the best policy "
        f"scores {best_accuracy():.3f}"
    )


def _anti_sd(**kwargs) -> tuple[str, ...]:
    return ("method.name=anti_sd", f"method.kwargs={ {'coef_max': 0.5, **kwargs}!r}")


STUDY = Study(
    name=NAME,
    title="Anti-SD vs GRPO and self-distillation on hidden-key search",
    description=(
        "Seven arms fine-tune the same SFT warm start on anti_sd.md section 8's hidden-key "
        f"search (N = {NUM_KEYS} keys, {MAX_TRIES} tries: {_budget_text()}). "
        "Warm start: a 2-layer, 128-wide decoder, 400 SFT steps on 4,096 traces, half "
        "student-mode (WAIT before every TRY, 40% answering before the key is found) and half "
        "teacher-mode (the prompt carries `SOL TRY k* YES ANSWER k*` and CORRECT/INCORRECT; the "
        f"trace goes straight to `TRY k*`). Then {STEPS} RL steps of 8 prompts x 8 samples, one "
        "AdamW update per batch (lr 5e-5, gradient clip 1.0), temperature 1. Held-out metric: "
        f"avg@{SAMPLES} (pass@1 from {SAMPLES} samples) on 32 held-out locks every 10 steps. The "
        "probe draws 8 samples of 32 held-out locks from every final policy and from the warm "
        "start: WAIT/TRY counts, premature-answer rate (ANSWER before any YES: "
        f"{1 - MAX_TRIES / NUM_KEYS:.2f} even for the best policy, which must guess when its "
        f"{MAX_TRIES} tries miss), pass@k (k = 1..8) and the self-teacher's "
        "u by token role. Expected (section 8): SD raises premature answering and lowers "
        "accuracy; Anti-SD reaches GRPO's final accuracy in a fraction of its steps (paper: "
        "20-50%) and ends higher; reverse-KL ascent blows up (endless WAIT); no-teacher "
        "collapses; no-gate may work, then degrade. "
        "Outcome of the committed run (7 arms x 3 seeds, 56.6 min): SD reproduces as expected "
        "(premature answering 0.34 -> 0.90 against GRPO, +0.560 [+0.321, +0.798]; WAITs per "
        "response 5.2 -> 0.04; final avg@8 0.061, -0.611 [-0.680, -0.542]). Anti-SD does not "
        "speed anything up here: final avg@8 0.672 = GRPO's 0.672 (+0.000 [-0.017, +0.017]), "
        "both reach 0.65 at step 23 on average (the measured fraction is 1.0, the paper's "
        "20-50%), and its WAIT, TRY and premature-answer rates equal GRPO's. The no-gate arm "
        "(-0.009 [-0.043, +0.025]) and the multiplicative composition (-0.021 [-0.119, +0.077]) "
        "match GRPO too, so the gate is not what hides the effect: it was open on 43-83% of "
        "steps, but the token term is small (mean |lambda JSD| 0.057 per token against "
        "advantages of order 1), the teacher's median entropy stays at 0.03 nats, and u(key) "
        "is not positive on student rollouts (-0.18 on the warm start) while u(WAIT) is "
        "strongly negative (-7.3): ascending the JSD has little to push towards. Reverse-KL "
        "ascent blows up in 2 of 3 seeds (0.055 and 0.359 against 0.645; no-answer rate 0.44, "
        "WAITs 5.8) as section 8 expects; no-teacher (u = -s) does not collapse in 30 steps "
        "(0.681, +0.009 [-0.044, +0.063])."
    ),
    config=config,
    smoke_config=smoke_config,
    arms={
        "grpo": ("method.name=grpo",),
        # Plain on-policy self-distillation: reverse-KL descent, delta = +u, lambda 0.5, no gate
        # (the paper does not state its SD settings; section 8's library choice).
        "sd": _anti_sd(divergence="rkl", direction="descent", gate=False),
        "anti_sd": _anti_sd(),
        "rkl_ascent": _anti_sd(divergence="rkl"),
        "anti_sd_no_gate": _anti_sd(gate=False),
        "anti_sd_mult": _anti_sd(compose="mult"),
        # u = -s (the teacher's log-prob replaced by 0); the gate reads the student's entropy.
        "no_teacher": _anti_sd(teacher="none"),
    },
    baseline="grpo",
    metric="pass@1",
    target=0.65,
    diagnostics=(
        "anti_sd_gate",
        "teacher_entropy_median",
        "student_entropy_median",
        "anti_sd_u_mean",
        "anti_sd_penalty_mean",
        "entropy",
        "response_tokens",
    ),
    tuning=(
        "No arm was tuned. The shared settings (task, model, SFT mixture, lr 5e-5, batch 8 x 8, "
        "one update per batch, gradient clip 1.0, 30 steps) were chosen once, for GRPO and the "
        "budget, from one measurement of seed 0 (2026-12-02, on this CPU under heavy load): the "
        "warm start scored avg@8 0.473 held out (probe: premature-answer rate 0.50, 3.9 tries "
        "per response) and GRPO reached 0.594 after 10 steps and 0.656 after 20 (the ceiling is "
        "0.75), so GRPO does not solve the task in a few steps but gains most of its headroom in "
        "20; N = 12 and 8 tries were not varied. The target 0.65 is GRPO's seed-0 value at step "
        "20. A 10-step run of the Anti-SD arm (seed 0, same warm start) drew GRPO's rollouts "
        "(rewards, lengths) while the gate was closed (steps 1-5); the gate opened at step 6 and "
        "closed at step 7 for the "
        "rest of the 10 steps: the median teacher entropy is only 0.035-0.043 nats and moves "
        "between batches by more than the 7% band (H_warm 0.039, tau_down 0.036), so the gated "
        "arms may stay close to GRPO and the no-gate arm is the one that isolates the token "
        "term. An RL step cost about 5.5-6 CPU-s in both arms (the teacher pass is cheap). "
        "Every Anti-SD arm uses the paper's lambda_max 0.5, W 5, tau_down 0.93 H_warm, clip "
        "0.2/0.2 and token-mean aggregation; each ablation changes one knob (SD: reverse KL, "
        "descent, no gate, the spec's library choice; no-teacher: u = -s, gate on the student's "
        "entropy, a library choice)."
    ),
    seeds=3,
    budget_minutes=90.0,
    probe=probe,
)
