"""`ResearchEpisode`: one MiniResearch session played turn by turn (an `Episode`).

Each `step` parses one assistant turn (`grammar.parse_turn`) and records its blocks in the
episode's `Transcript`. A turn with an `<answer>` ends the episode. Otherwise its single `<call>`
runs (at most `max_calls` per episode) and the observation is `<tool_output> ... </tool_output>`:
search snippets separated by " ; ", the opened document, or `[ERROR no such doc]`. Format problems
(a first turn without a plan, no call and no answer, a malformed item or call, an over-budget call)
come back as harness warnings, one per line, and nothing runs for a malformed call. The episode also
ends at `max_turns`.

The verdict comes from the family's group judge: the first `verdict()` of any episode judges every
episode of its group (the rollouts of one question started together), see
`MiniResearchFamily.start`.
"""

from __future__ import annotations

from collections.abc import Callable

from rljax.envs.base import Observation, Verdict
from rljax.envs.research.corpus import Corpus
from rljax.envs.research.grammar import CallRecord, StateRecord, Transcript, parse_turn


class ResearchEpisode:
    """A MiniResearch session.

    Args:
        corpus: the world the tools read.
        judge: `episode -> Verdict`, the family's (group) judgement of this episode.
        max_calls: tool-call budget (section 8.1: 8).
        max_turns: turn limit, the final answer turn included.
    """

    def __init__(
        self,
        corpus: Corpus,
        judge: Callable[[ResearchEpisode], Verdict],
        *,
        max_calls: int,
        max_turns: int,
    ):
        if max_calls < 1 or max_turns < 1:
            raise ValueError(
                f"max_calls and max_turns must be >= 1, got {max_calls} and {max_turns}"
            )
        self._corpus, self._judge = corpus, judge
        self.max_calls, self.max_turns = max_calls, max_turns
        self.transcript = Transcript()
        self.turns = 0
        self.done = False

    def step(self, action: str) -> Observation:
        """Applies one assistant turn and returns the tool output (or warnings).

        Args:
            action: the text of one assistant turn.

        Returns:
            The observation; `done` once the answer is given or the turn limit is reached.
        """
        if self.done:
            raise RuntimeError(f"the episode is over after {self.turns} turns; start a new one")
        self.turns += 1
        turn = parse_turn(action)
        record = self.transcript
        record.segments.append(action)
        warnings = list(turn.errors)
        if self.turns == 1 and turn.plan is None:
            warnings.append("the first turn must open with <plan> ... </plan>")
        if turn.plan is not None and record.plan is None:
            record.plan = turn.plan
        if turn.state is not None:
            record.states.append(StateRecord(turn.state, frozenset(record.opened)))
        text = ""
        if turn.answer is not None:
            record.review, record.answer, self.done = turn.review, turn.answer, True
            if turn.num_calls:
                warnings.append("the <call> of the answer turn was not run")
        else:
            if turn.review is not None:
                warnings.append(
                    "a <review> belongs to the final turn, with the <answer>; this one is not read"
                )
            if turn.num_calls == 0:
                warnings.append(
                    "end each turn with one <call> search EXX ATTR </call> or <call> open DDD </call>, "
                    "or finish with <review> ... </review> <answer> ... </answer>"
                )
            elif turn.call is not None and len(record.calls) >= self.max_calls:
                warnings.append(
                    f"call budget spent ({self.max_calls} calls); write <review> and <answer> now"
                )
            elif turn.call is not None:
                text = self._run(turn.call)
            self.done = self.turns >= self.max_turns
        record.warning_turns += bool(warnings)
        if text:
            record.segments.append(text)
        return Observation(text, "\n".join(warnings), self.done)

    def _run(self, call) -> str:
        if call.tool == "search":
            docs = self._corpus.search(*call.args)
            self.transcript.calls.append(CallRecord(call, tuple(doc.doc_id for doc in docs)))
            return f"<tool_output> {' ; '.join(doc.snippet() for doc in docs)} </tool_output>"
        doc = self._corpus.open(call.args[0])
        self.transcript.calls.append(CallRecord(call, () if doc is None else (doc.doc_id,)))
        return f"<tool_output> {'[ERROR no such doc]' if doc is None else doc.full_text()} </tool_output>"

    def verdict(self) -> Verdict:
        """The judgement of the episode so far.

        Returns:
            The family's verdict (see `MiniResearchFamily` for `info`).
        """
        return self._judge(self)
