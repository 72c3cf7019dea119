"""`MiniResearchFamily`: RubricEM's offline research environment (rubric_em.md section 8.1).

    family = MiniResearchFamily(seed=0)                  # or registry.make("miniresearch", seed=0)
    task = family.generate("train", 0)                   # "<query> COMPARE E03 E11 size </query>"
    episode = family.start(task)
    obs = episode.step("<plan> ... </plan> <call> search E03 size </call>")   # obs.text: <tool_output>
    ...
    verdict = episode.verdict()       # reward: answer score; info["stage_rewards"]: [Plan, Research, Review, Answer]

Rollouts pass `family.stage_scheme` to the rollout so every generated token gets its stage id.

Group judging and state. The episodes of one task that are started together (a rollout starts the G
rows of a prompt before any verdict) form a group; the first `verdict()` of any of them judges the
whole group through the rubric buffer (`buffer.RubricBuffer.judge_group`). For a training question
that is one REM-9 step: new discriminative rubrics are proposed from the group's contrast, every
rollout is scored, the buffer is pruned to its caps. Held-out questions and `verify` score against
the current buffer without changing it. So a training step changes the buffer of each question it
rolls out; the reflection bank changes only through `write_reflection` (REM-10: the trainer's
reflection phase writes the best judged reflection). Both survive a checkpoint through
`get_state()` / `set_state()` (JSON). `with_reference` puts retrieved reflections into a prompt
(REM-11; evaluation does not use it).

Reward and info. `Verdict.reward` is the final answer reward: the Answer stage's score over the
question's persistent rubrics (0 without an `<answer>`). `info` holds "reason", "stage_rewards"
(K = 4 floats, judge noise applied to stages 0-2 when `judge_noise` > 0), "judge_failed", the
process metrics of section 8.3 ("fact_recall", "rumor_used", "duplicate_calls", "premature_done",
"dishonest_map", "calls"), "failures" (the true failure set a reflection should diagnose),
"transcript" (the episode's text, for the reflection prompt), "turns" and "warning_turns".

Reflection tasks (`reflection_task`) are tasks of the family too: `start` plays one as a single-turn
`ReflectionEpisode` (reward: the judged utility), `expert_actions` writes the scripted reflection
(`expert.expert_reflection`), and the SFT warm start mixes them in (`warm_start_tasks`,
`reflection_demos`), so the meta-policy starts from valid reflections.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
import weakref
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from rljax.envs import registry
from rljax.envs.base import Task, Verdict, check_split
from rljax.envs.replay import replay
from rljax.envs.research import expert as expert_lib
from rljax.envs.research.buffer import DEFAULT_ADDITIONS, DEFAULT_CAPS, RubricBuffer, StageScores
from rljax.envs.research.corpus import Corpus, make_corpus
from rljax.envs.research.episode import ResearchEpisode
from rljax.envs.research.judge import NUM_STAGES, ProgrammaticJudge, StageJudge
from rljax.envs.research.queries import FILTER_SIZE, KINDS, Query, draw_query, gold_result
from rljax.envs.research.reflection import (
    REFLECT_PREFIX,
    ReflectionBank,
    ReflectionEpisode,
    ReflectionScore,
    reference_block,
    score_reflections,
)
from rljax.envs.stages import MINI_RESEARCH_STAGES, StageScheme

SYSTEM_PROMPT = (
    "Answer the <query> with research. First <plan> <rubric> [NEED e a] [AVOID blog] </rubric> <rplan> "
    "[SEARCH e a] </rplan> </plan>, then one tool call per turn: <call> search e a </call> or <call> open ddd "
    "</call>, each later turn opening with <state> [HAVE e a] [MISSING e a] CONT </state>. Finish with "
    "<state> ... DONE </state> <review> [MAP e a ddd] [GAP e a] </review> <answer> [FACT e a v CITE ddd] "
    "[CMP e1 e2 >|<|=] [SEL e] </answer>."
)
RETRIEVAL_MODES = ("within", "cross")
_REFLECT_SUFFIX = "/reflect"
# Folded into the seed of a reflection demonstration's episode: independent of the SFT expert's.
_DEMO_STREAM = 0xDE30
_TOOL_OUTPUT = re.compile(r"<tool_output>.*?</tool_output>", re.S)


@dataclasses.dataclass(eq=False)
class MiniResearchFamily:
    """MiniResearch questions over a seeded document corpus, judged stage by stage (a `MultiTurnFamily`).

    Attributes:
        seed: world seed: fixes the corpus and, with (split, index), every question.
        num_entities: entities in the world (section 8.1: 40).
        num_heldout_entities: the last entities, reserved for held-out questions (section 8.1: 8,
            E32-E39); train questions use the others, so the splits share no question.
        rumor_fraction: share of facts with a blog rumor (0.3).
        num_documents: corpus size (500).
        kinds: question templates to draw from, a subset of ("lookup", "compare", "filter").
        max_calls: tool calls per episode (8).
        max_turns: turn limit of an episode (the final answer turn included).
        judge_noise: sigma of the optional judge noise R~ = clip(R + N(0, sigma^2), 0, 1) on
            stages 0-2 (deterministic in the seed, the task and the transcripts).
        caps: per-stage cap of active adaptive rubrics (3, 2, 2, 3).
        additions: per-stage rubrics a generate step may add (2, 2, 2, 3).
        top_k: reflections retrieved by similarity in "cross" mode (2).
        system: system-turn text of every task (e.g. `SYSTEM_PROMPT`; None: no system turn).
        judge: the stage judge (None: the rule-based `ProgrammaticJudge`); any `StageJudge`.
        reflection_demos: share of the warm-start (SFT) demonstrations that are scripted
            reflections (`warm_start_tasks`), in [0, 1).
        scaffold: the scripted expert writes the plan, states and review (False: bare calls and
            the answer, rubric_em.md 8.3's unstructured SFT). Prompts, episodes and judging are
            the same either way.
        name: family name, the first field of every uid.
    """

    seed: int = 0
    num_entities: int = 40
    num_heldout_entities: int = 8
    rumor_fraction: float = 0.3
    num_documents: int = 500
    kinds: tuple[str, ...] = KINDS
    max_calls: int = 8
    max_turns: int = 10
    judge_noise: float = 0.0
    caps: tuple[int, ...] = DEFAULT_CAPS
    additions: tuple[int, ...] = DEFAULT_ADDITIONS
    top_k: int = 2
    system: str | None = None
    judge: StageJudge | None = None
    reflection_demos: float = 0.0
    scaffold: bool = True
    name: str = "miniresearch"
    stage_scheme: ClassVar[StageScheme] = MINI_RESEARCH_STAGES

    def __post_init__(self):
        self.kinds = tuple(self.kinds)
        if not self.kinds or set(self.kinds) - set(KINDS) or len(set(self.kinds)) < len(self.kinds):
            raise ValueError(f"kinds must be distinct entries of {KINDS}, got {self.kinds!r}")
        needed = 2 * (FILTER_SIZE if "filter" in self.kinds else 2)
        if not isinstance(self.max_calls, int) or self.max_calls < needed:
            raise ValueError(
                f"max_calls must be an int >= {needed} (a search and an open per document), "
                f"got {self.max_calls!r}"
            )
        if not isinstance(self.max_turns, int) or self.max_turns < needed + 1:
            raise ValueError(
                f"max_turns must be an int >= {needed + 1} (every call plus the answer), "
                f"got {self.max_turns!r}"
            )
        train_entities = self.num_entities - self.num_heldout_entities
        if not FILTER_SIZE <= self.num_heldout_entities or train_entities < FILTER_SIZE:
            raise ValueError(
                f"both splits need >= {FILTER_SIZE} entities: num_entities={self.num_entities}, "
                f"num_heldout_entities={self.num_heldout_entities}"
            )
        if not 0.0 <= self.judge_noise:
            raise ValueError(f"judge_noise must be >= 0, got {self.judge_noise!r}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k!r}")
        if not 0.0 <= self.reflection_demos < 1.0:
            raise ValueError(f"reflection_demos must be in [0, 1), got {self.reflection_demos!r}")
        self.corpus: Corpus = make_corpus(
            self.seed,
            num_entities=self.num_entities,
            rumor_fraction=self.rumor_fraction,
            num_documents=self.num_documents,
        )
        self.truth = ProgrammaticJudge(self.corpus)
        if self.judge is None:
            self.judge = self.truth
        if not isinstance(self.judge, StageJudge):
            raise ValueError(
                f"judge must implement StageJudge (persistent_rubrics, propose, score), "
                f"got {self.judge!r}"
            )
        self.buffer = RubricBuffer(self.caps, self.additions)
        self.bank = ReflectionBank()
        self._open_groups: dict[str, list[weakref.ref]] = {}
        self._judged: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    # -- TaskFamily ----------------------------------------------------------------------------

    def generate(self, split: str, index: int) -> Task:
        """Returns question `index` of `split`; same inputs, same task.

        Args:
            split: "train" (entities before the held-out ones) or "heldout" (the last ones).
            index: any non-negative int.

        Returns:
            The task: `prompt` is the question, `answer` {"facts": {"e a": v}, "result": ...},
            `task_id` the template (0 lookup, 1 compare, 2 filter), `meta` the query, the question
            text, the split and the world seed.
        """
        check_split(split)
        cut = self.num_entities - self.num_heldout_entities
        pool = self.corpus.entities[:cut] if split == "train" else self.corpus.entities[cut:]
        query = draw_query(
            registry.instance_rng(self.seed, split, index), self.corpus, pool, self.kinds
        )
        question = query.text()
        answer = {
            "facts": {f"{e} {a}": self.corpus.values[(e, a)] for e, a in query.facts()},
            "result": gold_result(query, self.corpus.values),
        }
        return Task(
            uid=f"{self.name}/{split}/{index}",
            family=self.name,
            prompt=question,
            answer=answer,
            task_id=KINDS.index(query.kind),
            system=self.system,
            meta={
                "query": query.to_meta(),
                "question": question,
                "split": split,
                "world_seed": self.seed,
            },
        )

    def verify(self, task: Task, response: str) -> Verdict:
        """Replays a whole response (turns cut after each `</call>`, tool outputs ignored) in a fresh
        episode and scores it against the current buffer, without changing it.

        Args:
            task: a task of this family.
            response: every turn of the episode, concatenated (e.g. `expert()`'s output).

        Returns:
            The verdict of the replayed episode.
        """
        self._check_task(task)
        if is_reflection_task(task):
            return replay(self.start(task), [response])
        episode = ResearchEpisode(
            self.corpus,
            functools.partial(self._episode_verdict, task),
            max_calls=self.max_calls,
            max_turns=self.max_turns,
        )
        return replay(episode, re.split(r"(?<=</call>)", _TOOL_OUTPUT.sub(" ", response)))

    def expert(self, task: Task, rng: np.random.Generator, noise: float = 0.0) -> str:
        """The scripted expert as one response.

        Args:
            task: a task of this family.
            rng: the expert's randomness.
            noise: imperfection scale in [0, 1].

        Returns:
            `expert_actions` joined by newlines (`verify` scores it like the episode).
        """
        return "\n".join(self.expert_actions(task, rng, noise))

    # -- MultiTurnFamily -----------------------------------------------------------------------

    def start(self, task: Task) -> ResearchEpisode | ReflectionEpisode:
        """Starts an episode and adds it to the open group of `task` (judged at its first verdict).

        Args:
            task: a task of this family.

        Returns:
            The episode (a one-turn `ReflectionEpisode` for a reflection task).
        """
        self._check_task(task)
        if is_reflection_task(task):
            return ReflectionEpisode(task.meta["failures"], num_stages=NUM_STAGES)
        episode = ResearchEpisode(
            self.corpus,
            functools.partial(self._episode_verdict, task),
            max_calls=self.max_calls,
            max_turns=self.max_turns,
        )
        self._open_groups.setdefault(task.uid, []).append(weakref.ref(episode))
        return episode

    def expert_actions(self, task: Task, rng: np.random.Generator, noise: float = 0.0) -> list[str]:
        """The scripted expert's turns (`expert.expert_actions`).

        Args:
            task: a task of this family.
            rng: the expert's randomness.
            noise: imperfection scale in [0, 1]; 0 gives answer reward 1 and full stage marks.

        Returns:
            One action per turn, ending with the answer turn (a reflection task: the scripted
            reflection, `expert.expert_reflection`).
        """
        self._check_task(task)
        query = Query.from_meta(task.meta["query"])
        if is_reflection_task(task):
            return [expert_lib.expert_reflection(query, task.meta["failures"], rng, noise)]
        return expert_lib.expert_actions(
            self.corpus, query, rng, noise, max_calls=self.max_calls, scaffold=self.scaffold
        )

    def warm_start_tasks(self, num_tasks: int) -> list[Task]:
        """The SFT demonstrations' tasks: training questions, and reflections on some of them.

        The last `round(reflection_demos * num_tasks)` are reflection tasks: each reflects on the
        expert's episode of training question `index` at the warm-start imperfection rates
        (`expert.SFT_NOISE`; its own seeded draws), so its failure set is varied; the others are
        training questions 0, 1, ... as for any family.

        Args:
            num_tasks: how many demonstrations.

        Returns:
            `num_tasks` tasks.
        """
        reflections = round(self.reflection_demos * num_tasks)
        tasks = [self.generate("train", i) for i in range(num_tasks)]
        for index in range(num_tasks - reflections, num_tasks):
            task = tasks[index]
            rng = np.random.default_rng([self.seed, index, _DEMO_STREAM])
            verdict = self.verify(task, self.expert(task, rng, expert_lib.SFT_NOISE))
            tasks[index] = self.reflection_task(task, verdict.info)
        return tasks

    # -- judging -------------------------------------------------------------------------------

    def _episode_verdict(self, task: Task, episode: ResearchEpisode) -> Verdict:
        judged = self._judged.get(episode)
        if judged is None or judged[0] != episode.turns:
            live = [ref() for ref in self._open_groups.pop(task.uid, [])]
            group = [ep for ep in live if ep is not None]
            in_group = episode in group
            if not in_group:  # re-judged after more turns, or never started in a group (verify)
                self._open_groups.setdefault(task.uid, []).extend(weakref.ref(ep) for ep in group)
                group = [episode]
            update = in_group and task.meta["split"] == "train"
            scores = self.buffer.judge_group(
                self.judge,
                task,
                [ep.transcript for ep in group],
                question=task.meta["question"],
                update=update,
            )
            for ep, score in zip(group, self._noisy(task, group, scores)):
                self._judged[ep] = (ep.turns, score)
        return self._verdict(task, episode, self._judged[episode][1])

    def _noisy(
        self, task: Task, group: list[ResearchEpisode], scores: list[StageScores]
    ) -> list[StageScores]:
        if self.judge_noise == 0.0:
            return scores
        digest = hashlib.sha256(
            "\n".join([str(self.seed), task.uid] + [ep.transcript.text for ep in group]).encode(
                "utf-8"
            )
        ).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "big"))
        out = []
        for score in scores:
            noise = rng.normal(0.0, self.judge_noise, NUM_STAGES - 1)
            rewards = np.clip(np.asarray(score.stage_rewards[:-1]) + noise, 0.0, 1.0)
            out.append(
                dataclasses.replace(
                    score, stage_rewards=(*map(float, rewards), score.stage_rewards[-1])
                )
            )
        return out

    def _verdict(self, task: Task, episode: ResearchEpisode, score: StageScores) -> Verdict:
        transcript = episode.transcript
        failures = self.truth.failures(task, transcript)
        if transcript.answer is None:
            reason = "no answer: the episode ended without <answer>"
        elif score.reward == 1.0:
            reason = "correct"
        else:
            reason = f"answer score {score.reward:.3f}; failures: {', '.join(failures) or 'none'}"
        info = {
            "reason": reason,
            "stage_rewards": list(score.stage_rewards),
            "judge_failed": score.judge_failed,
            **self.truth.process_metrics(task, transcript),
            "failures": failures,
            "transcript": transcript.text,
            "turns": episode.turns,
            "warning_turns": transcript.warning_turns,
        }
        return Verdict(score.reward, info)

    def _check_task(self, task: Task) -> None:
        if task.family != self.name or task.meta.get("world_seed") != self.seed:
            raise ValueError(
                f"task {task.uid!r} (family {task.family!r}, world seed {task.meta.get('world_seed')!r}) "
                f"does not belong to family {self.name!r} with seed {self.seed}"
            )

    # -- reflection bank (REM-10, REM-11) ------------------------------------------------------

    def with_reference(self, task: Task, mode: str) -> Task:
        """The task with retrieved reflections in a `<ref> ... </ref>` block before the question.

        Args:
            task: a task of this family.
            mode: "within" (the question's own entry) or "cross" (the `top_k` most similar other
                questions' entries).

        Returns:
            A copy of the task with the block prepended to the prompt (the task itself when nothing
            is retrieved); uid and meta are unchanged, so judging is unaffected.
        """
        if mode not in RETRIEVAL_MODES:
            raise ValueError(f"mode must be one of {RETRIEVAL_MODES}, got {mode!r}")
        question = task.meta["question"]
        if mode == "within":
            entries = [e for e in [self.bank.exact(question)] if e is not None]
        else:
            entries = self.bank.similar(question, self.top_k)
        return (
            dataclasses.replace(task, prompt=f"{reference_block(entries)} {task.prompt}")
            if entries
            else task
        )

    def reflection_task(self, task: Task, info: dict) -> Task:
        """The reflection prompt for one judged rollout (REM-10): `<reflect>` + question + trajectory.

        Args:
            task: the rollout's task.
            info: the rollout's verdict info (needs "transcript" and "failures").

        Returns:
            A task whose prompt is the reflection prompt and whose `meta["failures"]` the judge uses.
        """
        question = task.meta["question"]
        return Task(
            uid=f"{task.uid}{_REFLECT_SUFFIX}",
            family=self.name,
            prompt=f"{REFLECT_PREFIX} {question} {info['transcript']}",
            answer=list(info["failures"]),
            meta={
                "question": question,
                "failures": list(info["failures"]),
                "query": task.meta["query"],
                "split": task.meta["split"],
                "world_seed": self.seed,
            },
        )

    def judge_reflections(
        self, reflection_task: Task, reflections: Sequence[str]
    ) -> list[ReflectionScore]:
        """Scores reflections (section 8.1's reflection judge).

        Args:
            reflection_task: from `reflection_task`.
            reflections: the G_ref candidates.

        Returns:
            One `ReflectionScore` per candidate.
        """
        return score_reflections(reflections, reflection_task.meta["failures"])

    def write_reflection(
        self, reflection_task: Task, reflections: Sequence[str], scores: Sequence[ReflectionScore]
    ) -> bool:
        """Writes the best valid reflection into the bank entry of the question (REM-10).

        Args:
            reflection_task: from `reflection_task`.
            reflections: the G_ref candidates.
            scores: their scores (`judge_reflections`).

        Returns:
            True if an entry was written, False if no candidate is valid.
        """
        return self.bank.write(reflection_task.meta["question"], reflections, scores) is not None

    # -- checkpoint state ----------------------------------------------------------------------

    def get_state(self) -> dict:
        """The evolving state, for checkpoint metadata.

        Returns:
            JSON-serialisable {"buffer": rubric buffer, "bank": reflection bank}.
        """
        return {"buffer": self.buffer.get_state(), "bank": self.bank.get_state()}

    def set_state(self, state: dict) -> None:
        """Restores the evolving state.

        Args:
            state: `get_state`'s data.
        """
        if set(state) != {"buffer", "bank"}:
            raise ValueError(f"state must have keys 'buffer' and 'bank', got {sorted(state)}")
        self.buffer.set_state(state["buffer"])
        self.bank.set_state(state["bank"])


def is_reflection_task(task: Task) -> bool:
    """Whether `task` is a reflection prompt (`MiniResearchFamily.reflection_task`)."""
    return task.uid.endswith(_REFLECT_SUFFIX)
