"""Trains rljax's built-in byte-level BPE tokenizer and writes it to `rljax/data/assets/`.

Offline, deterministic script (run once; its output is shipped with the package):

    python tools/train_tokenizer.py                      # writes rljax/data/assets/
    python tools/train_tokenizer.py --out /tmp/tok --vocab-size 768 --seed 1

The training text is generated from templates covering what rljax's task families produce: digits and
arithmetic / countdown expressions, MiniShell commands, file contents and observations (echo.md
section 8.1), English-ish prose, XML-ish action tags (<think>, <cmd>, <answer>, <plan>, <research>,
<review>, ...) and the MiniResearch bracket grammar (rubric_em.md section 8.1). The tokenizer is
byte-level (every byte is in the base alphabet), so any text round-trips losslessly whatever the
corpus; the corpus only decides which merges exist. Digits are always split into single-digit tokens
so that numbers are spelled digit by digit.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import random

import tokenizers
from tokenizers import decoders, models, pre_tokenizers, trainers

from rljax.data.tokenizer import BUILTIN_DIR, SPECIAL_TOKENS

WORDS = (
    "the a an of to and in is it that for on with as was be by this are or from at not but have "
    "has had which one all were when we there can what your if will each about how up out them then "
    "she many some so these would other into him more her two like time no way could people my than "
    "first water been call who its now find long down day did get come made may part value file key "
    "line number answer question command output error result list find search open document source "
    "entity attribute plan research review state think step check compare filter lookup missing need "
    "have done continue directory path read write count sort total sum difference product target use "
    "numbers make equal correct wrong missing found expected block tag text before after first final "
    "please provide execute executed successfully failed show showing characters truncated valid tool "
    "calls signal set commands journal blog rumor reliable founded city leader product size note "
    "fact cite map gap lesson pitfall careful require reflection rubric takeaway summary because so "
    "therefore next previous must should try again look inside contents data report grade score"
).split()
TAGS = (
    "think",
    "cmd",
    "answer",
    "plan",
    "research",
    "review",
    "rubric",
    "rplan",
    "call",
    "tool_output",
    "state",
    "query",
    "obs",
    "act",
    "ref",
    "reflect",
    "structured_plan",
    "deep_analysis",
    "research_plan",
    "state_evaluation",
    "rubric_review",
    "writing_plan",
    "reflection_rubrics",
    "reflection_takeaways",
)
SHELL_ERRORS = (
    "ls: cannot access '{p}': No such file or directory",
    "cat: {p}: No such file or directory",
    "cat: {p}: Is a directory",
    "bash: cd: {p}: No such file or directory",
    "head: cannot open '{p}' for reading: No such file or directory",
    "grep: {p}: No such file or directory",
    "wc: {p}: No such file or directory",
    "bash: {c}: command not found",
    "{c}: usage error",
)
WARNINGS = (
    "Missing <think> block",
    "Found 2 <think> blocks, expected 1",
    "Unclosed <cmd> tag",
    "Empty <cmd> block",
    "Text detected before first XML tag",
    "Text detected after final XML tag",
)
ATTRIBUTES = ("founded", "city", "leader", "product", "size")


def _value(rng: random.Random) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(4))


def _prose(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(4, 16))]
    sentence = " ".join(words)
    return sentence[0].upper() + sentence[1:] + rng.choice((".", "?", "!", ",", ":"))


def _arithmetic(rng: random.Random) -> str:
    a, b, c = rng.randint(0, 999), rng.randint(0, 99), rng.randint(1, 9)
    op1, op2 = rng.choice("+-*"), rng.choice("+-*/")
    expr = f"{a} {op1} {b} {op2} {c}"
    if rng.random() < 0.5:
        nums = " ".join(
            str(rng.choice((1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 25, 50, 75, 100))) for _ in range(4)
        )
        return (
            f"Use the numbers {nums} to make {rng.randint(10, 999)}. "
            f"<think> try ({a} {op1} {b}) {op2} {c} </think> <answer> {expr} </answer>"
        )
    return f"Compute {expr}. <think> {a} {op1} {b} = ? </think> <answer> {rng.randint(-999, 9999)} </answer>"


def _file_lines(rng: random.Random) -> str:
    return "\n".join(f"k{rng.randint(0, 99):02d}={_value(rng)}" for _ in range(5))


def _shell(rng: random.Random) -> str:
    path = rng.choice(("", "/data/", "/tmp/", "./")) + f"f{rng.randint(0, 19):02d}"
    key = f"k{rng.randint(0, 99):02d}"
    cmd = rng.choice(
        (
            f"ls {rng.choice(('/data', '/tmp', '.', ''))}".strip(),
            f"cat {path}",
            f"grep {key} {path}",
            f"head -n {rng.randint(1, 5)} {path}",
            f"tail -n {rng.randint(1, 5)} {path}",
            f"wc -l {path}",
            f"sort {path}",
            f"find /data -name {path[-3:]}",
            f"echo {_value(rng)} > {path}",
            "pwd",
            f"cd {rng.choice(('/data', '/tmp', '..'))}",
            f"mkdir {path}",
            f"rm {path}",
            f"cp {path} /tmp",
            f"answer {_value(rng)}",
        )
    )
    action = f"<think> {_prose(rng)} </think> <cmd> {cmd} </cmd>"
    if rng.random() < 0.6:
        out = rng.choice(
            (
                _file_lines(rng),
                " ".join(f"f{i:02d}" for i in range(rng.randint(1, 20))),
                f"{key}={_value(rng)}",
                "/data",
                f"5 {path}",
            )
        )
        obs = f"Command '{cmd}' executed successfully. Output: {out}\n\n(exit_code=0)"
    else:
        err = rng.choice(SHELL_ERRORS).format(p=path, c=cmd.split()[0])
        obs = f"Command '{cmd}' failed. Output: \n{err}\n\n(exit_code={rng.choice((1, 2, 127))})"
    if rng.random() < 0.2:
        obs = (
            "WARNINGS:\n"
            + "".join(f"- {rng.choice(WARNINGS)}\n" for _ in range(rng.randint(1, 2)))
            + "\n"
            + obs
        )
    if rng.random() < 0.3:
        obs = f"$ {cmd}\n{_file_lines(rng)}\n(exit={rng.choice((0, 1, 2))})"
    return f"Q: value of {key} ?\n{action}\n<obs> {obs} </obs> <act>"


def _entity(rng: random.Random) -> str:
    return f"E{rng.randint(0, 39):02d}"


def _doc(rng: random.Random) -> str:
    return f"{rng.randint(0, 499):03d}"


def _research(rng: random.Random) -> str:
    e, a, e2, a2 = _entity(rng), rng.choice(ATTRIBUTES), _entity(rng), rng.choice(ATTRIBUTES)
    return " ".join(
        (
            f"<query> {rng.choice(('LOOKUP', 'COMPARE', 'FILTER'))} {e} {_entity(rng)} {a} </query>",
            f"<plan> <rubric> [NEED {e} {a}] [AVOID blog] </rubric> <rplan> [SEARCH {e} {a}] </rplan> </plan>",
            f"<call> search {e} {a} </call> <tool_output> [DOC {_doc(rng)}] [SRC {rng.choice(('journal', 'blog'))}]"
            f" [ENT {e}] [ATTR {a}] ; [DOC {_doc(rng)}] [SRC journal] [ENT {e2}] [NOTE] </tool_output>",
            f"<call> open {_doc(rng)} </call> <tool_output> [DOC {_doc(rng)}] [SRC journal] [ENT {e}] [ATTR {a}]"
            f" [VAL V{rng.randint(0, 9)}] </tool_output>",
            f"<state> [HAVE {e} {a}] [MISSING {e2} {a2}] {rng.choice(('CONT', 'DONE'))} </state>",
            f"<review> [MAP {e} {a} {_doc(rng)}] [GAP {e2} {a2}] </review>",
            f"<answer> [FACT {e} {a} V{rng.randint(0, 9)} CITE {_doc(rng)}] [CMP {e} {e2} {rng.choice('<>=')}]"
            f" [SEL {e2}] </answer>",
            f"<reflection_rubrics> [REQ {e} {a}] [PITFALL {rng.choice(('blog', 'dup', 'premature', 'dishonest'))}]"
            f" </reflection_rubrics> <reflection_takeaways> [LESSON SEARCH {e} {a}] [LESSON CAREFUL]"
            " </reflection_takeaways>",
        )
    )


def _tags(rng: random.Random) -> str:
    tag = rng.choice(TAGS)
    return f"<{tag}>\n{_prose(rng)}\n</{tag}>"


GENERATORS = (_prose, _arithmetic, _shell, _research, _tags)


def corpus(num_docs: int, seed: int) -> list[str]:
    """Returns `num_docs` template-generated training documents (deterministic in `seed`)."""
    rng = random.Random(seed)
    return [GENERATORS[i % len(GENERATORS)](rng) for i in range(num_docs)]


def train(vocab_size: int, num_docs: int, seed: int) -> tokenizers.Tokenizer:
    """Trains the byte-level BPE: special tokens take ids 0..7 (pad first), then 256 bytes, then merges."""
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(num_docs, seed), trainer=trainer)
    return tok


def write(tok: tokenizers.Tokenizer, out: pathlib.Path) -> None:
    """Writes tokenizer.json plus the tokenizer_config.json `PreTrainedTokenizerFast` reads."""
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "pad_token": "<|pad|>",
        "bos_token": "<|bos|>",
        "eos_token": "<|eos|>",
        "extra_special_tokens": list(SPECIAL_TOKENS[3:]),
        "clean_up_tokenization_spaces": False,
        "add_bos_token": False,
        "add_eos_token": False,
        "model_max_length": 1_000_000,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=BUILTIN_DIR)
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--num-docs", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    tok = train(args.vocab_size, args.num_docs, args.seed)
    write(tok, args.out)
    print(f"wrote {args.out} (vocab {tok.get_vocab_size()})")


if __name__ == "__main__":
    main()
