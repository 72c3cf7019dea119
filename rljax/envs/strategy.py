"""HiddenKey: a strategy task for Poly-EPO (poly_epo.md section 8).

Prompt: an instance x of 6 random digits. Response: `[S_s] w1 w2 w3` with a strategy s in
{1..S} and work tokens w_j = (x_j + s*j) mod 10 (j = 1..3, x_j the j-th digit). A response that
breaks the grammar or gets a work token wrong is malformed: reward 0, cluster `DEGENERATE`.
Otherwise the environment executes the strategy: its answer is g(x) = (sum of digits) mod 10 if
s is in Works(x), else (g(x) + s) mod 10, and the reward is 1[answer = g(x)].

Works(x) is hidden and fixed per instance: s is in Works(x) iff u(secret, x, s) < p_s, where u is
SHA-256 of "secret/x/s" read as a big-endian 64-bit fraction and p = `SUCCESS_RATES` =
(0.55, 0.35, 0.30, 0.25, 0.20, 0.15). One strategy alone covers at most 55% of the instances, all
six cover 1 - prod(1 - p_s) = 89.56%; the other 10.44% no strategy solves.

`Verdict.info["cluster"]` is the response's strategy cluster, assigned by a `ClusterFn`
`(task, response) -> int` (the rule-based `rule_cluster` by default: s, or `DEGENERATE` = -1
for a malformed response; an LM judge implements the same interface). The trainer reads it for
`losses.poly_epo_advantages`, which takes integer cluster ids only.

This module is the one home of the Poly-EPO string judges (PEPO-7, PEPO-9): `rule_cluster` and
`NoisyJudge` per response, `tag_cluster` for any response that starts with a `[S_k]` strategy tag,
and `cluster_group`, the group-level judge call with the failure fallback.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from rljax.envs import registry
from rljax.envs.base import Task, Verdict, check_split

DEGENERATE = -1
EXPERT_MIXES = ("working", "uniform")
SUCCESS_RATES = (0.55, 0.35, 0.30, 0.25, 0.20, 0.15)
SYSTEM_PROMPT = (
    "Choose a strategy s and answer [S_s] w1 w2 w3, where w_j = (x_j + s*j) mod 10 and x_j is "
    "the j-th digit."
)
_RESPONSE = re.compile(r"\s*\[S_(\d+)\]((?:\s+\d)*)\s*")


class ClusterFn(Protocol):
    """A judge: the strategy cluster id of one response to a task (`DEGENERATE` if malformed)."""

    def __call__(self, task: Task, response: str) -> int: ...


def parse_response(task: Task, response: str) -> tuple[int | None, str]:
    """Parses `[S_s] w1 .. wm` and checks the strategy id and the work tokens.

    Args:
        task: a HiddenKey task (`meta` holds "digits" and "num_strategies").
        response: the response text.

    Returns:
        (s, "") for a well-formed response, else (None, reason) with reason "malformed: ...".
    """
    digits, num_strategies = task.meta["digits"], task.meta["num_strategies"]
    num_work = task.meta["work_tokens"]
    match = _RESPONSE.fullmatch(response)
    if match is None:
        return None, "malformed: expected '[S_s] w1 w2 ...' with single-digit work tokens"
    strategy, work = int(match.group(1)), match.group(2).split()
    if not 1 <= strategy <= num_strategies:
        return None, f"malformed: strategy {strategy} is not in 1..{num_strategies}"
    if len(work) != num_work:
        return None, f"malformed: {len(work)} work tokens, expected {num_work}"
    expected = work_tokens(digits, strategy, num_work)
    if work != expected:
        return (
            None,
            f"malformed: work tokens {' '.join(work)}, expected {' '.join(expected)} for S_{strategy}",
        )
    return strategy, ""


def work_tokens(digits: str, strategy: int, count: int) -> list[str]:
    """The work tokens w_j = (x_j + s*j) mod 10, j = 1..count, of strategy s on digits x.

    Args:
        digits: the instance digits x, e.g. "407193".
        strategy: s >= 1.
        count: number of work tokens (<= len(digits)).

    Returns:
        The work tokens as digit strings.
    """
    return [str((int(digits[j - 1]) + strategy * j) % 10) for j in range(1, count + 1)]


def rule_cluster(task: Task, response: str, *, degenerate: int = DEGENERATE) -> int:
    """Rule-based judge (poly_epo.md PEPO-9, the judge-free default): the strategy s, or degenerate.

    Args:
        task: a HiddenKey task.
        response: the response text.
        degenerate: id of malformed responses (the paper's judge uses 100).

    Returns:
        s for a well-formed response (valid grammar and work tokens), else `degenerate`.
    """
    strategy, _ = parse_response(task, response)
    return degenerate if strategy is None else strategy


GroupClusterFn = Callable[[str, Sequence[str]], Sequence[int]]
"""A group judge: (prompt, the G responses) -> G cluster ids (the paper's LM judge clusters all G
responses of a prompt jointly)."""


def tag_cluster(
    response: str, *, pattern: str = r"^\s*\[S_(\d+)\]", degenerate: int = DEGENERATE
) -> int:
    """Strategy-tag judge: the id of a leading `[S_k]` tag, or `degenerate` if there is none.

    Poly-EPO eq. PEPO-9 (arXiv 2604.17654), the judge-free default for synthetic tasks whose
    responses name their strategy. Unlike `rule_cluster` it needs no task and does not check the
    work tokens. Pure and host-side.

    Args:
        response: the decoded response text.
        pattern: regular expression whose first group is the decimal strategy id.
        degenerate: id returned when the pattern does not match.

    Returns:
        The strategy id (an int), or `degenerate`.
    """
    match = re.search(pattern, response)
    return int(match.group(1)) if match else degenerate


def cluster_group(
    prompt: str,
    responses: Sequence[str],
    *,
    cluster_fn: GroupClusterFn | None = None,
    degenerate: int = DEGENERATE,
) -> tuple[np.ndarray, bool]:
    """Cluster ids of one prompt's G responses with a pluggable group judge (host-side).

    Poly-EPO eqs. PEPO-7 and PEPO-9 (arXiv 2604.17654). `cluster_fn(prompt, responses)` returns G
    integer ids, `degenerate` marking malformed responses (the paper's LM judge uses 100). If it
    raises or returns the wrong number of ids, every response gets its own cluster (maximal
    diversity) and `ok` is False so the caller can count the failure.

    Args:
        prompt: the prompt text given to the judge.
        responses: the G response texts.
        cluster_fn: the judge; None applies `tag_cluster` to each response.
        degenerate: id of malformed responses; the fallback ids avoid it.

    Returns:
        (ids, ok): ids is an int32 [G] numpy array; ok is False when the fallback was used.
    """
    group_size = len(responses)
    try:
        if cluster_fn is None:
            ids = [tag_cluster(response, degenerate=degenerate) for response in responses]
        else:
            ids = cluster_fn(prompt, responses)
        ids = np.asarray(ids)
        if ids.shape != (group_size,) or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"expected {group_size} integer ids, got {ids!r}")
        return ids.astype(np.int32), True
    except Exception:  # noqa: BLE001 -- any judge failure falls back to distinct clusters (PEPO-9)
        distinct = [i for i in range(group_size + 1) if i != degenerate][:group_size]
        return np.asarray(distinct, np.int32), False


@dataclasses.dataclass(frozen=True)
class NoisyJudge:
    """A judge that relabels a response at random with probability `epsilon` (judge noise, poly_epo.md 8).

    The relabel draw is a hash of (seed, task uid, response), so a response always gets the same
    id; a relabelled response gets a uniform id in 1..num_strategies.

    Attributes:
        epsilon: relabel probability, in [0, 1].
        num_strategies: S, the number of strategy ids.
        base: the judge whose ids are relabelled.
        seed: seed of the relabel hash.
    """

    epsilon: float
    num_strategies: int = len(SUCCESS_RATES)
    base: ClusterFn = rule_cluster
    seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {self.epsilon!r}")
        if not isinstance(self.num_strategies, int) or self.num_strategies < 1:
            raise ValueError(f"num_strategies must be an int >= 1, got {self.num_strategies!r}")

    def __call__(self, task: Task, response: str) -> int:
        """The base judge's id, or with probability epsilon a uniform id in 1..num_strategies.

        Args:
            task: the task.
            response: the response text.

        Returns:
            The cluster id.
        """
        digest = hashlib.sha256(f"{self.seed}/{task.uid}/{response}".encode()).digest()
        if _unit(digest[:8]) < self.epsilon:
            return 1 + int.from_bytes(digest[8:16], "big") % self.num_strategies
        return self.base(task, response)


@dataclasses.dataclass(frozen=True)
class HiddenKeyFamily:
    """HiddenKey instances: several strategies, each working on a hidden share of the instances.

    Attributes:
        num_digits: digits of an instance x (spec 6).
        work_tokens: work tokens per response (spec 3), <= num_digits.
        success_rates: p_s of each strategy s = 1..S (spec `SUCCESS_RATES`), each in [0, 1].
        secret: the secret of the hidden Works(x) hash (fixes which strategies work where).
        seed: family seed (which instances are drawn).
        heldout_fraction: share of the instance space (by a hash of x) reserved for "heldout".
        cluster_fn: the judge writing `Verdict.info["cluster"]`.
        judge_noise: epsilon of poly_epo.md section 8's judge noise: `cluster_fn`'s id is relabelled
            at random with this probability (`NoisyJudge`, seeded by `secret`). The reward and the
            executed strategy are unchanged: only the cluster the method reads is noisy.
        system: system-turn text of every task (e.g. `SYSTEM_PROMPT`; None: no system turn).
        name: family name, the first field of every uid.
        expert_mix: which strategy `expert` demonstrates: "working" (a uniformly chosen working
            strategy, which reads the hidden Works(x)) or "uniform" (poly_epo.md section 8's SFT
            mixture: a uniformly random strategy in 1..S, whatever works).
    """

    num_digits: int = 6
    work_tokens: int = 3
    success_rates: tuple[float, ...] = SUCCESS_RATES
    secret: int = 0
    seed: int = 0
    heldout_fraction: float = 0.2
    cluster_fn: ClusterFn = rule_cluster
    judge_noise: float = 0.0
    system: str | None = None
    name: str = "strategy"
    expert_mix: str = "working"

    def __post_init__(self):
        if not isinstance(self.num_digits, int) or self.num_digits < 1:
            raise ValueError(f"num_digits must be an int >= 1, got {self.num_digits!r}")
        if not isinstance(self.work_tokens, int) or not 1 <= self.work_tokens <= self.num_digits:
            raise ValueError(
                f"work_tokens must be an int in [1, num_digits={self.num_digits}], "
                f"got {self.work_tokens!r}"
            )
        rates = tuple(float(p) for p in self.success_rates)
        if not rates or not all(0.0 <= p <= 1.0 for p in rates):
            raise ValueError(
                f"success_rates must be a non-empty sequence of values in [0, 1], "
                f"got {self.success_rates!r}"
            )
        object.__setattr__(self, "success_rates", rates)
        if not callable(self.cluster_fn):
            raise ValueError(
                f"cluster_fn must be a callable (task, response) -> int, got {self.cluster_fn!r}"
            )
        if not 0.0 <= self.judge_noise <= 1.0:
            raise ValueError(f"judge_noise must be in [0, 1], got {self.judge_noise!r}")
        registry.check_heldout_fraction(self.heldout_fraction)
        if self.expert_mix not in EXPERT_MIXES:
            raise ValueError(f"expert_mix must be one of {EXPERT_MIXES}, got {self.expert_mix!r}")

    @property
    def num_strategies(self) -> int:
        """S, the number of strategies."""
        return len(self.success_rates)

    def generate(self, split: str, index: int) -> Task:
        """Returns instance `index` of `split`: the digits x and the hidden Works(x).

        Args:
            split: "train" or "heldout" (disjoint by a hash of x).
            index: any non-negative int.

        Returns:
            The task: prompt "digits 4 0 7 1 9 3", answer g(x) = sum of digits mod 10, and `meta`
            with "digits", "works" (the strategies that solve x, hidden from the policy),
            "num_strategies" and "work_tokens".
        """
        check_split(split)
        digits = registry.sample_in_split(
            self._draw,
            seed=self.seed,
            split=split,
            index=index,
            heldout_fraction=self.heldout_fraction,
        )
        works = [
            s
            for s in range(1, self.num_strategies + 1)
            if strategy_unit(self.secret, digits, s) < self.success_rates[s - 1]
        ]
        return Task(
            uid=f"{self.name}/{split}/{index}",
            family=self.name,
            prompt=f"digits {' '.join(digits)}",
            answer=sum(int(d) for d in digits) % 10,
            system=self.system,
            meta={
                "digits": digits,
                "works": works,
                "num_strategies": self.num_strategies,
                "work_tokens": self.work_tokens,
            },
        )

    def verify(self, task: Task, response: str) -> Verdict:
        """Executes the response's strategy: reward 1 iff it is well formed and s is in Works(x).

        Args:
            task: a task of this family.
            response: the full response.

        Returns:
            The verdict; `info` holds "reason" ("correct", "wrong" or "malformed"), "cluster" (from
            `cluster_fn`) and, when well formed, "strategy" and "answer" (the executed answer).
        """
        judge = self.cluster_fn
        if self.judge_noise > 0:
            judge = NoisyJudge(self.judge_noise, self.num_strategies, base=judge, seed=self.secret)
        cluster = judge(task, response)
        if not isinstance(cluster, (int, np.integer)) or isinstance(cluster, bool):
            raise ValueError(f"cluster_fn must return an int cluster id, got {cluster!r}")
        strategy, reason = parse_response(task, response)
        if strategy is None:
            return Verdict(0.0, {"reason": reason, "cluster": int(cluster)})
        works = strategy in task.meta["works"]
        answer = task.answer if works else (task.answer + strategy) % 10
        info = {"cluster": int(cluster), "strategy": strategy, "answer": answer}
        if works:
            return Verdict(1.0, {"reason": f"correct: S_{strategy} solves this instance", **info})
        reason = f"wrong: S_{strategy} does not solve this instance (answer {answer}, expected {task.answer})"
        return Verdict(0.0, {"reason": reason, **info})

    def expert(self, task: Task, rng: np.random.Generator, noise: float = 0.0) -> str:
        """A scripted response: a strategy (chosen by `expert_mix`) with the right work tokens.

        "working": a uniformly chosen working strategy; with probability `noise` one mistake, a
        wrong work token (malformed) or a strategy that does not solve the instance. On an
        instance no strategy solves (10.4% with the spec's rates) it uses S_1, the most reliable
        one, and scores 0 whatever the noise.
        "uniform" (poly_epo.md section 8): a uniformly random strategy in 1..S, so the warm start
        can execute every strategy; with probability `noise` one work token is wrong (malformed).

        Args:
            task: a task of this family.
            rng: randomness for the choice and the mistake.
            noise: probability of a mistake, in [0, 1].

        Returns:
            "[S_s] w1 w2 w3".
        """
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise must be in [0, 1], got {noise!r}")
        works = task.meta["works"]
        failing = [s for s in range(1, self.num_strategies + 1) if s not in works]
        if self.expert_mix == "uniform":
            strategy = int(rng.integers(1, self.num_strategies + 1))
        else:
            strategy = int(rng.choice(works)) if works else 1
        work = work_tokens(task.meta["digits"], strategy, self.work_tokens)
        if rng.random() < noise:
            if self.expert_mix == "working" and failing and works and rng.random() < 0.5:
                strategy = int(rng.choice(failing))
                work = work_tokens(task.meta["digits"], strategy, self.work_tokens)
            else:
                j = int(rng.integers(len(work)))
                work[j] = str((int(work[j]) + int(rng.integers(1, 10))) % 10)
        return f"[S_{strategy}] {' '.join(work)}"

    def _draw(self, rng: np.random.Generator) -> tuple[str, str]:
        digits = "".join(str(int(d)) for d in rng.integers(0, 10, size=self.num_digits))
        return digits, digits


def strategy_unit(secret: int, digits: str, strategy: int) -> float:
    """u(secret, x, s): SHA-256 of "secret/x/s" as a big-endian 64-bit fraction in [0, 1).

    Args:
        secret: the family secret.
        digits: the instance digits x.
        strategy: s.

    Returns:
        The fraction; s solves x iff it is below p_s.
    """
    return _unit(hashlib.sha256(f"{secret}/{digits}/{strategy}".encode()).digest()[:8])


def _unit(eight_bytes: bytes) -> float:
    return int.from_bytes(eight_bytes, "big") / 2.0**64
