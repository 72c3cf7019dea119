"""The MiniResearch action grammar: parsing one assistant turn, formatting blocks, the transcript.

The whole response follows rubric_em.md section 8.1:

    <plan> <rubric> [NEED e a]* [AVOID blog]? </rubric> <rplan> [SEARCH e a]* </rplan> </plan>
    ( <call> search e a | open ddd </call> <tool_output> ... </tool_output>
      <state> [HAVE e a]* [MISSING e a]* CONT|DONE </state> )*
    <review> [MAP e a ddd]* [GAP e a]* </review>
    <answer> [FACT e a v CITE ddd]* [CMP e1 e2 >|<|=]? [SEL e]* </answer>

An episode turn is one assistant message: the first opens with the plan, every turn but the last
ends with exactly one `<call>` (the tool output is the observation), and each later turn starts
with the `<state>` that evaluates the previous output; the last turn is `<state> ... DONE </state>
<review> ... </review> <answer> ... </answer>`. Inside `<plan>` the `<rubric>`/`<rplan>` wrappers
are optional; items are read wherever they stand in their block.
"""

from __future__ import annotations

import dataclasses
import re

from rljax.envs.research.corpus import ATTRIBUTES, Fact

BLOCK_KINDS = ("plan", "state", "call", "review", "answer")
_BLOCK = re.compile(r"<(plan|state|call|review|answer)>(.*?)</\1>", re.S)
_ITEM = re.compile(r"\[([^\[\]]*)\]")
_PLAN_WRAPPERS = re.compile(r"</?(rubric|rplan)>")
_ARG_PATTERNS = {
    "entity": re.compile(r"E\d\d"),
    "attribute": re.compile("|".join(ATTRIBUTES)),
    "value": re.compile(r"V\d"),
    "doc": re.compile(r"\d{3}"),
    "op": re.compile(r"[<>=]"),
    "blog": re.compile("blog"),
    "CITE": re.compile("CITE"),
}
_ITEM_ARGS = {
    "NEED": ("entity", "attribute"),
    "AVOID": ("blog",),
    "SEARCH": ("entity", "attribute"),
    "HAVE": ("entity", "attribute"),
    "MISSING": ("entity", "attribute"),
    "MAP": ("entity", "attribute", "doc"),
    "GAP": ("entity", "attribute"),
    "FACT": ("entity", "attribute", "value", "CITE", "doc"),
    "CMP": ("entity", "entity", "op"),
    "SEL": ("entity",),
}
_BLOCK_ITEMS = {
    "plan": ("NEED", "AVOID", "SEARCH"),
    "state": ("HAVE", "MISSING"),
    "review": ("MAP", "GAP"),
    "answer": ("FACT", "CMP", "SEL"),
}
_CALL_ARGS = {"search": ("entity", "attribute"), "open": ("doc",)}
STATUSES = ("CONT", "DONE")


@dataclasses.dataclass(frozen=True)
class Plan:
    """A `<plan>`: NEED items (the agent's own rubric), AVOID blog, SEARCH items (the research plan)."""

    needs: tuple[Fact, ...] = ()
    avoid_blog: bool = False
    searches: tuple[Fact, ...] = ()


@dataclasses.dataclass(frozen=True)
class State:
    """A `<state>`: facts it claims to have / miss, and CONT or DONE (None if missing)."""

    have: tuple[Fact, ...] = ()
    missing: tuple[Fact, ...] = ()
    status: str | None = None


@dataclasses.dataclass(frozen=True)
class Review:
    """A `<review>`: MAP (entity, attribute, doc id) and GAP (entity, attribute) items."""

    maps: tuple[tuple[str, str, str], ...] = ()
    gaps: tuple[Fact, ...] = ()


@dataclasses.dataclass(frozen=True)
class Answer:
    """An `<answer>`: FACT (entity, attribute, value, cited doc), CMP (e1, e2, op), SEL entity items."""

    facts: tuple[tuple[str, str, str, str], ...] = ()
    comparisons: tuple[tuple[str, str, str], ...] = ()
    selected: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Call:
    """A tool call: `search e a` (args (e, a)) or `open ddd` (args (ddd,))."""

    tool: str
    args: tuple[str, ...]

    def text(self) -> str:
        """The call as the policy writes it.

        Returns:
            e.g. "<call> search E03 founded </call>".
        """
        return f"<call> {self.tool} {' '.join(self.args)} </call>"


@dataclasses.dataclass(frozen=True)
class ParsedTurn:
    """One assistant turn split into its blocks; `errors` lists every format problem found."""

    plan: Plan | None = None
    state: State | None = None
    call: Call | None = None
    num_calls: int = 0
    review: Review | None = None
    answer: Answer | None = None
    errors: tuple[str, ...] = ()


def parse_turn(text: str) -> ParsedTurn:
    """Parses one assistant turn (see the module docstring for the grammar).

    Malformed items are dropped with an error naming them; a turn with several `<call>` blocks or
    a malformed call keeps `call=None` (nothing runs); of repeated plan/state/review/answer blocks
    the first is read.

    Args:
        text: the turn's text.

    Returns:
        The parsed blocks and the list of errors (empty for a well-formed turn).
    """
    errors: list[str] = []
    outside = _BLOCK.sub(" ", text).strip()
    if outside:
        errors.append(f"text outside the tags is ignored: {outside[:60]!r}")
    found: dict[str, list[str]] = {kind: [] for kind in BLOCK_KINDS}
    order = []
    for match in _BLOCK.finditer(text):
        found[match.group(1)].append(match.group(2))
        order.append(match.group(1))
    ranks = [{"plan": 0, "state": 1, "call": 2, "review": 2, "answer": 3}[kind] for kind in order]
    if ranks != sorted(ranks):
        errors.append(
            "blocks out of order: expected <plan>? <state>? then <call>, or <review> <answer>"
        )
    for kind in ("plan", "state", "review", "answer"):
        if len(found[kind]) > 1:
            errors.append(f"{len(found[kind])} <{kind}> blocks in one turn; only the first is read")
    blocks = {
        kind: _parse_block(kind, bodies[0], errors)
        for kind, bodies in found.items()
        if bodies and kind != "call"
    }
    call = None
    if len(found["call"]) > 1:
        errors.append(
            f"{len(found['call'])} <call> blocks in one turn; write exactly one per turn (none was run)"
        )
    elif found["call"]:
        call = _parse_call(found["call"][0], errors)
    return ParsedTurn(
        plan=blocks.get("plan"),
        state=blocks.get("state"),
        call=call,
        num_calls=len(found["call"]),
        review=blocks.get("review"),
        answer=blocks.get("answer"),
        errors=tuple(errors),
    )


def _parse_call(body: str, errors: list[str]) -> Call | None:
    words = body.split()
    expected = "expected `search EXX ATTR` (ATTR one of " + " ".join(ATTRIBUTES) + ") or `open DDD`"
    if not words or words[0] not in _CALL_ARGS:
        errors.append(f"malformed call {body.strip()!r}: {expected}; the call was not run")
        return None
    if not _args_match(words[1:], _CALL_ARGS[words[0]]):
        errors.append(f"malformed call {body.strip()!r}: {expected}; the call was not run")
        return None
    return Call(words[0], tuple(words[1:]))


def _args_match(args: list[str], kinds: tuple[str, ...]) -> bool:
    return len(args) == len(kinds) and all(
        _ARG_PATTERNS[k].fullmatch(a) for a, k in zip(args, kinds)
    )


def _parse_block(kind: str, body: str, errors: list[str]) -> Plan | State | Review | Answer:
    if kind == "plan":
        body = _PLAN_WRAPPERS.sub(" ", body)
    items: dict[str, list[tuple[str, ...]]] = {tag: [] for tag in _BLOCK_ITEMS[kind]}
    for match in _ITEM.finditer(body):
        words = match.group(1).split()
        tag = words[0] if words else ""
        if tag not in items or not _args_match(words[1:], _ITEM_ARGS[tag]):
            allowed = " ".join(f"[{t} {' '.join(_ITEM_ARGS[t])}]" for t in _BLOCK_ITEMS[kind])
            errors.append(
                f"malformed item [{match.group(1)}] in <{kind}>: expected one of {allowed}; it is ignored"
            )
            continue
        items[tag].append(tuple(words[1:]))
    rest = _ITEM.sub(" ", body).split()
    if kind == "state":
        status = rest[-1] if rest and rest[-1] in STATUSES else None
        if status is None or len(rest) > 1:
            errors.append(
                f"<state> must end with CONT or DONE after its items, got {' '.join(rest)!r}"
            )
        return State(tuple(items["HAVE"]), tuple(items["MISSING"]), status)
    if rest:
        errors.append(f"text between the items of <{kind}> is ignored: {' '.join(rest)[:60]!r}")
    if kind == "plan":
        return Plan(tuple(items["NEED"]), bool(items["AVOID"]), tuple(items["SEARCH"]))
    if kind == "review":
        return Review(tuple(items["MAP"]), tuple(items["GAP"]))
    facts = tuple((e, a, v, doc) for e, a, v, _, doc in items["FACT"])
    return Answer(facts, tuple(items["CMP"]), tuple(e for (e,) in items["SEL"]))


def format_plan(plan: Plan) -> str:
    """Writes a plan block.

    Args:
        plan: the plan.

    Returns:
        e.g. "<plan> <rubric> [NEED E03 size] [AVOID blog] </rubric> <rplan> [SEARCH E03 size] </rplan> </plan>".
    """
    rubric = [f"[NEED {e} {a}]" for e, a in plan.needs] + (
        ["[AVOID blog]"] if plan.avoid_blog else []
    )
    rplan = [f"[SEARCH {e} {a}]" for e, a in plan.searches]
    return (
        f"<plan> <rubric> {' '.join(rubric)} </rubric> <rplan> {' '.join(rplan)} </rplan> </plan>"
    )


def format_state(state: State) -> str:
    """Writes a state block.

    Args:
        state: the state.

    Returns:
        e.g. "<state> [HAVE E03 size] [MISSING E04 size] CONT </state>".
    """
    items = [f"[HAVE {e} {a}]" for e, a in state.have] + [
        f"[MISSING {e} {a}]" for e, a in state.missing
    ]
    return f"<state> {' '.join(items + [state.status or ''])} </state>"


def format_review(review: Review) -> str:
    """Writes a review block.

    Args:
        review: the review.

    Returns:
        e.g. "<review> [MAP E03 size 042] [GAP E04 size] </review>".
    """
    items = [f"[MAP {e} {a} {d}]" for e, a, d in review.maps] + [
        f"[GAP {e} {a}]" for e, a in review.gaps
    ]
    return f"<review> {' '.join(items)} </review>"


def format_answer(answer: Answer) -> str:
    """Writes an answer block.

    Args:
        answer: the answer.

    Returns:
        e.g. "<answer> [FACT E03 size V4 CITE 042] [CMP E03 E04 >] </answer>".
    """
    items = [f"[FACT {e} {a} {v} CITE {d}]" for e, a, v, d in answer.facts]
    items += [f"[CMP {x} {y} {op}]" for x, y, op in answer.comparisons] + [
        f"[SEL {e}]" for e in answer.selected
    ]
    return f"<answer> {' '.join(items)} </answer>"


@dataclasses.dataclass(frozen=True)
class CallRecord:
    """An executed tool call: its call and the doc ids it showed (search: up to 3; open: 0 or 1)."""

    call: Call
    results: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class StateRecord:
    """A `<state>` and the doc ids opened before it was written."""

    state: State
    opened: frozenset[str]


@dataclasses.dataclass
class Transcript:
    """What a judge sees of one episode: the parsed blocks and the full text.

    Attributes:
        plan: the first `<plan>` (later plan blocks are revisions the judge does not read).
        calls: executed tool calls in order (malformed or over-budget calls are not executed).
        states: every `<state>`, in order.
        review: the `<review>` of the final turn, or None.
        answer: the `<answer>` of the final turn, or None (no final answer).
        segments: the actions and tool outputs in order; `text` joins them.
        warning_turns: turns that got a harness warning.
    """

    plan: Plan | None = None
    calls: list[CallRecord] = dataclasses.field(default_factory=list)
    states: list[StateRecord] = dataclasses.field(default_factory=list)
    review: Review | None = None
    answer: Answer | None = None
    segments: list[str] = dataclasses.field(default_factory=list)
    warning_turns: int = 0

    @property
    def text(self) -> str:
        """The episode as one string.

        Returns:
            The actions and `<tool_output>` blocks in order, joined by spaces.
        """
        return " ".join(segment.strip() for segment in self.segments)

    @property
    def opened(self) -> set[str]:
        """The documents opened so far.

        Returns:
            Ids of the existing documents that `open` calls showed.
        """
        return {
            doc for record in self.calls if record.call.tool == "open" for doc in record.results
        }

    @property
    def shown(self) -> set[str]:
        """The documents search results showed.

        Returns:
            Ids of the documents that any search returned.
        """
        return {
            doc for record in self.calls if record.call.tool == "search" for doc in record.results
        }

    def has_stage(self, stage: int) -> bool:
        """Whether a stage has content to judge (an absent stage scores 0, REM-1's truncation rule).

        Args:
            stage: 0 Plan (a plan block), 1 Research (an executed call), 2 Review, 3 Answer.

        Returns:
            True when the stage is present.
        """
        return (self.plan, self.calls or None, self.review, self.answer)[stage] is not None
