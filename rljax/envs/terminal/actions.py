"""Parsing of one agent action: `<think> ... </think> <cmd> COMMAND </cmd>` (echo.md section 8.1).

The parser never raises on model text. It returns the first parseable command (the first
`<cmd>` block with non-blank content) and the harness's format warnings, in this order:

    Missing <think> block                  no `<think>` tag at all
    Found N <think> blocks, expected 1     N > 1 complete think blocks
    Found N <cmd> blocks, expected 1       N > 1 complete cmd blocks (library addition: the
                                           extra commands are not run, and the policy is told)
    Unclosed <TAG> tag                     an opening tag with no closing tag after it
    Empty <TAG> block                      a complete block whose content is blank
    Text detected before first XML tag     non-blank text before the first think/cmd tag
    Text detected after final XML tag      non-blank text after the last think/cmd tag (unless
                                           that tag is unclosed: the text is its content)

A block's content is opaque: tags inside a complete block are part of its text. After an unclosed
tag, scanning resumes right after it, so `<think> ... <cmd> ls </cmd>` still runs `ls`. When no
command can run, `ParsedAction.error` holds the spec's observation text. The terminal action
`answer V` is a command whose first word is `answer`; `answer_value` extracts V.
"""

from __future__ import annotations

import dataclasses
import re

TAGS = ("think", "cmd")
NO_TOOL_CALL = "No valid tool calls or done signal found."
NO_COMMANDS = "No commands provided. Please provide commands to execute or set done."
_OPEN = re.compile(r"<(think|cmd)>")
_ANY_TAG = re.compile(r"</?(?:think|cmd)>")


@dataclasses.dataclass(frozen=True)
class ParsedAction:
    """One parsed action.

    Attributes:
        command: the first non-blank `<cmd>` content, stripped; None if there is none.
        warnings: the format warnings, in the order of the module docstring.
        error: the observation text when `command` is None (`NO_TOOL_CALL` when there is no
            complete `<cmd>` block, `NO_COMMANDS` when every one is blank); None otherwise.
    """

    command: str | None
    warnings: tuple[str, ...]
    error: str | None


def parse_action(text: str) -> ParsedAction:
    """Parses one assistant turn into its first command and the format warnings.

    Implements the action format and warning list of echo.md section 8.1 (ECHO, arXiv 2605.24517;
    harness of microsoft/echo-rl).

    Args:
        text: the raw text of one assistant turn.

    Returns:
        The parsed action (never raises on any string).
    """
    blocks, unclosed, unclosed_at = _scan(text)
    warnings = []
    if not blocks["think"] and "think" not in unclosed:
        warnings.append("Missing <think> block")
    for tag in TAGS:
        if len(blocks[tag]) > 1:
            warnings.append(f"Found {len(blocks[tag])} <{tag}> blocks, expected 1")
    warnings += [f"Unclosed <{tag}> tag" for tag in unclosed]
    warnings += [f"Empty <{tag}> block" for tag in TAGS if any(not b.strip() for b in blocks[tag])]
    tags = list(_ANY_TAG.finditer(text))
    if tags and text[: tags[0].start()].strip():
        warnings.append("Text detected before first XML tag")
    if tags and tags[-1].start() not in unclosed_at and text[tags[-1].end() :].strip():
        warnings.append("Text detected after final XML tag")

    commands = [block.strip() for block in blocks["cmd"] if block.strip()]
    if commands:
        return ParsedAction(commands[0], tuple(warnings), None)
    return ParsedAction(None, tuple(warnings), NO_COMMANDS if blocks["cmd"] else NO_TOOL_CALL)


def cmd_blocks(text: str) -> list[str]:
    """Contents of every complete `<cmd>` block, in order, scanned as `parse_action` scans.

    A `<cmd>` tag inside a think block is thought, not a command, exactly as for one action.

    Args:
        text: any text, e.g. several actions concatenated.

    Returns:
        The raw (unstripped) contents of the cmd blocks.
    """
    return _scan(text)[0]["cmd"]


def _scan(text: str) -> tuple[dict[str, list[str]], list[str], set[int]]:
    """Finds the complete blocks (opaque contents), the unclosed tags and their offsets."""
    if not isinstance(text, str):
        raise ValueError(f"text must be str, got {type(text).__name__}")
    blocks: dict[str, list[str]] = {tag: [] for tag in TAGS}
    unclosed: list[str] = []
    unclosed_at: set[int] = set()  # start offsets of opening tags that are never closed
    position = 0
    while (opening := _OPEN.search(text, position)) is not None:
        tag = opening.group(1)
        closing = text.find(f"</{tag}>", opening.end())
        if closing < 0:
            if tag not in unclosed:
                unclosed.append(tag)
            unclosed_at.add(opening.start())
            position = opening.end()
        else:
            blocks[tag].append(text[opening.end() : closing])
            position = closing + len(f"</{tag}>")
    return blocks, unclosed, unclosed_at


def answer_value(command: str) -> str | None:
    """The value V of a terminal action `answer V` (stripped), or None for any other command.

    Args:
        command: a parsed command, e.g. "answer ab12".

    Returns:
        "ab12" for "answer ab12"; "" for a bare "answer" (a usage error); None otherwise.
    """
    words = command.split(None, 1)
    if not words or words[0] != "answer":
        return None
    return words[1].strip() if len(words) > 1 else ""
