"""Template-driven chat formats: rljax's segment-wise ids against `apply_chat_template`.

Each family's tokenizer is built here from a small byte-level BPE (its real pre-tokenizer regex, the
family's special tokens, merges trained on the test strings) with the family's published chat
template (tests/data/templates/*.jinja); nothing is downloaded. The oracle is
`tokenizer.apply_chat_template`, which renders the Jinja template and encodes the whole text at once.
"""

import pathlib
import types

import numpy as np
import pytest
import tokenizers
import transformers

from rljax.data import (
    DEFAULT_FORMAT,
    Role,
    Turn,
    chat_format,
    encode_action,
    load_tokenizer,
    render_conversation,
    render_observation,
    render_prompt,
    resolve_format,
    role_masks,
    stop_token_ids,
)

TEMPLATES = pathlib.Path(__file__).parent / "templates"
QWEN_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
CORPUS = [
    "You are a careful math tutor. Put the final answer in \\boxed{}.",
    "What is 17 + 25? Then check the value of k07 in f03.",
    "Let me add the numbers. 17 + 25 = 42 so the answer is \\boxed{42}",
    "grep k07 f03",
    "k07=ab12 (exit_code=0)",
    "The value of k07 is ab12",
    "Thanks, now multiply it by 2",
    "Cutting Knowledge Date: December 2023 Today Date: 26 Jul 2024",
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
    "Missing think block",
]
FAMILIES = {
    # name: (template file, special tokens, other added tokens, bos, eos, pad, regex)
    "qwen2": (
        "qwen2.jinja",
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        ["<tool_call>", "</tool_call>"],
        None,
        "<|im_end|>",
        "<|endoftext|>",
        QWEN_REGEX,
    ),
    "qwen3": (
        "qwen3.jinja",
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        [
            "<tool_call>",
            "</tool_call>",
            "<tool_response>",
            "</tool_response>",
            "<think>",
            "</think>",
        ],
        None,
        "<|im_end|>",
        "<|endoftext|>",
        QWEN_REGEX,
    ),
    "llama3": (
        "llama3.jinja",
        [
            "<|begin_of_text|>",
            "<|end_of_text|>",
            "<|start_header_id|>",
            "<|end_header_id|>",
            "<|eom_id|>",
            "<|eot_id|>",
            "<|python_tag|>",
        ],
        [],
        "<|begin_of_text|>",
        "<|eot_id|>",
        "<|end_of_text|>",
        LLAMA_REGEX,
    ),
}


def build_tokenizer(family: str) -> transformers.PreTrainedTokenizerFast:
    path, special, added, bos, eos, pad, regex = FAMILIES[family]
    base = tokenizers.Tokenizer(tokenizers.models.BPE())
    base.pre_tokenizer = tokenizers.pre_tokenizers.Sequence(
        [
            tokenizers.pre_tokenizers.Split(tokenizers.Regex(regex), behavior="isolated"),
            tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    base.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=special,
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    base.train_from_iterator(CORPUS * 20, trainer=trainer)
    base.add_tokens([tokenizers.AddedToken(t, special=False, normalized=False) for t in added])
    if bos is not None:  # Llama 3's tokenizer.json prepends <|begin_of_text|> when asked to
        base.post_processor = tokenizers.processors.TemplateProcessing(
            single=f"{bos} $A",
            pair=f"{bos} $A {bos} $B",
            special_tokens=[(bos, base.token_to_id(bos))],
        )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=base,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        clean_up_tokenization_spaces=False,
        chat_template=(TEMPLATES / path).read_text(),
    )


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_tok(request):
    return request.param, build_tokenizer(request.param)


KWARGS = {"llama3": {"date_string": "26 Jul 2024"}}
SYSTEM = "You are a careful math tutor. Put the final answer in \\boxed{}."
QUESTION = "What is 17 + 25?"
# Qwen3's template keeps an assistant turn's reasoning only after the last user query and inserts an
# empty <think> block into a final assistant turn without one: these contents are its canonical
# rendering, the text a Qwen3 policy emits.
THINK = "<think>\nLet me add the numbers.\n</think>\n\n"


def answer(family: str, text: str) -> str:
    return THINK + text if family == "qwen3" else text


def messages_of(turns):
    roles = {"observation": "tool"}
    return [{"role": roles.get(t.role, t.role), "content": t.text} for t in turns]


def oracle(tok, turns, family, generation_prompt):
    out = tok.apply_chat_template(
        messages_of(turns),
        add_generation_prompt=generation_prompt,
        tokenize=True,
        return_dict=False,
        **KWARGS.get(family, {}),
    )
    return list(out)


def masked(tok, rendered, mask):
    """Decodes each maximal run of tokens under `mask`."""
    out, run = [], []
    for token, on in zip(rendered.tokens.tolist() + [None], mask.tolist() + [False]):
        if on:
            run.append(token)
        elif run:
            out.append(tok.decode(run, skip_special_tokens=False))
            run = []
    return out


def conversations(family):
    a1 = answer(family, "17 + 25 = 42 so the answer is \\boxed{42}")
    return {
        "single_turn": [Turn("system", SYSTEM), Turn("user", QUESTION), Turn("assistant", a1)],
        "single_turn_no_system": [Turn("user", QUESTION), Turn("assistant", a1)],
        "multi_turn": [
            Turn("system", SYSTEM),
            Turn("user", QUESTION),
            Turn("assistant", "42"),
            Turn("user", "Thanks, now multiply it by 2"),
            Turn("assistant", answer(family, "The answer is \\boxed{84}")),
        ],
        "tool": [
            Turn("user", "Check the value of k07 in f03."),
            Turn("assistant", answer(family, "grep k07 f03")),
            Turn("observation", "k07=ab12 (exit_code=0)"),
            Turn("assistant", answer(family, "The value of k07 is ab12")),
        ],
    }


@pytest.mark.parametrize("name", ["single_turn", "single_turn_no_system", "multi_turn", "tool"])
def test_ids_equal_apply_chat_template(family_tok, name):
    family, tok = family_tok
    fmt = chat_format(tok, **KWARGS.get(family, {}))
    turns = conversations(family)[name]
    # The whole conversation (ending after an assistant turn) and every prompt prefix ending in a
    # user or tool turn with the generation prompt.
    rendered = render_conversation(tok, turns, fmt=fmt)
    assert rendered.tokens.tolist() == oracle(tok, turns, family, False)
    for k in range(1, len(turns)):
        if turns[k - 1].role in ("user", "observation"):
            prefix = render_conversation(tok, turns[:k], fmt=fmt, generation_prompt=True)
            assert prefix.tokens.tolist() == oracle(tok, turns[:k], family, True), k


@pytest.mark.parametrize("name", ["single_turn", "multi_turn", "tool"])
def test_masks_decode_to_the_assistant_and_tool_contents(family_tok, name):
    family, tok = family_tok
    fmt = chat_format(tok, **KWARGS.get(family, {}))
    turns = conversations(family)[name]
    rendered = render_conversation(tok, turns, fmt=fmt)
    action, env, warning = role_masks(rendered.roles)
    end = {"llama3": "<|eot_id|>"}.get(family, "<|im_end|>")
    assert masked(tok, rendered, action) == [t.text + end for t in turns if t.role == "assistant"]
    assert masked(tok, rendered, env) == [t.text for t in turns if t.role == "observation"]
    assert not warning.any()
    system = [t.text for t in turns if t.role == "system"]
    assert masked(tok, rendered, rendered.roles == Role.SYSTEM) == system
    assert masked(tok, rendered, rendered.roles == Role.USER) == [
        t.text for t in turns if t.role == "user"
    ]


def test_rollout_pieces_concatenate_to_the_template(family_tok):
    """Prompt + actions + observations, as a rollout appends them, give the template's ids."""
    family, tok = family_tok
    fmt = chat_format(tok, **KWARGS.get(family, {}))
    turns = conversations(family)["tool"]
    tokens = render_prompt(tok, turns[0].text, fmt=fmt).tokens.tolist()
    tokens += encode_action(tok, turns[1].text, fmt=fmt)
    tokens += render_observation(tok, turns[2].text, fmt=fmt).tokens.tolist()
    tokens += encode_action(tok, turns[3].text, fmt=fmt)
    expected = oracle(tok, turns, family, False)
    # A rollout stops at the policy's end token; the template closes the turn with its glue after it.
    tail = {"llama3": 0}.get(family, 1)  # ChatML's trailing "\n"
    assert tokens == expected[: len(expected) - tail]
    assert tok.decode(expected[len(tokens) :]) == ("\n" if tail else "")


def test_stop_tokens_and_formats(family_tok):
    family, tok = family_tok
    fmt = resolve_format(tok)
    end = {"llama3": "<|eot_id|>"}.get(family, "<|im_end|>")
    assert fmt.end == end
    assert stop_token_ids(tok) == {tok.convert_tokens_to_ids(end), tok.eos_token_id}
    assert resolve_format(tok) is fmt  # cached per tokenizer
    expected_glue = {
        "qwen2": "<|im_end|>\n<|im_start|>user\n<tool_response>\n",
        "qwen3": "<|im_end|>\n<|im_start|>user\n<tool_response>\n",
        "llama3": '<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n\n"',
    }[family]
    assert fmt.glue("assistant", "observation") == expected_glue


def test_warnings_inside_a_tool_turn(family_tok):
    family, tok = family_tok
    fmt = chat_format(tok, **KWARGS.get(family, {}))
    rendered = render_observation(tok, "k07=ab12", "Missing think block", fmt=fmt)
    _, env, warning = role_masks(rendered.roles)
    assert masked(tok, rendered, env) == [
        tok.decode(rendered.tokens[env], skip_special_tokens=False)
    ]
    text = "WARNINGS:\n- Missing think block\n\n"
    if family == "llama3":  # the template JSON-encodes tool contents
        text = text.replace("\n", "\\n")
    assert masked(tok, rendered, warning) == [text]
    assert masked(tok, rendered, env & ~warning) == ["k07=ab12"]


def test_llama3_tool_contents_are_json_encoded():
    tok = build_tokenizer("llama3")
    turns = [
        Turn("user", QUESTION),
        Turn("assistant", "grep k07 f03"),
        Turn("observation", 'k07="ab12"\n(exit_code=0)'),
    ]
    rendered = render_conversation(tok, turns, fmt=chat_format(tok, date_string="26 Jul 2024"))
    text = tok.apply_chat_template(
        messages_of(turns), tokenize=False, add_generation_prompt=False, date_string="26 Jul 2024"
    )
    assert tok.decode(rendered.tokens, skip_special_tokens=False) == text
    _, env, _ = role_masks(rendered.roles)
    assert masked(tok, rendered, env) == ['k07=\\"ab12\\"\\n(exit_code=0)']


def test_qwen3_thinking_switch():
    tok = build_tokenizer("qwen3")
    off = chat_format(tok, enable_thinking=False)
    prompt = render_prompt(tok, QUESTION, fmt=off)
    assert prompt.tokens.tolist() == list(
        tok.apply_chat_template(
            [{"role": "user", "content": QUESTION}],
            add_generation_prompt=True,
            enable_thinking=False,
            return_dict=False,
        )
    )
    assert tok.decode(prompt.tokens).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert (prompt.roles[-6:] == Role.TEMPLATE).all()


def test_no_template_falls_back_to_the_builtin_format():
    tok = load_tokenizer()
    assert tok.chat_template is None
    assert resolve_format(tok) is DEFAULT_FORMAT
    assert stop_token_ids(tok) == {tok.convert_tokens_to_ids("<|end|>")}


def test_a_template_without_an_end_token_raises():
    tok = build_tokenizer("qwen2")
    plain = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
    with pytest.raises(ValueError, match="end-of-turn"):
        chat_format(tok, template=plain)


def test_date_defaults_to_today_like_the_template():
    tok = build_tokenizer("llama3")
    rendered = render_prompt(tok, QUESTION)  # no date_string: both use strftime_now
    expected = tok.apply_chat_template(
        [{"role": "user", "content": QUESTION}], add_generation_prompt=True, return_dict=False
    )
    np.testing.assert_array_equal(rendered.tokens, expected)


def test_a_base_model_eos_also_stops():
    tok = build_tokenizer("qwen3")
    tok.eos_token = "<|endoftext|>"  # Qwen3 base checkpoints end documents with <|endoftext|>
    fmt = chat_format(tok)
    assert fmt.stops == ("<|endoftext|>",)
    assert stop_token_ids(tok, fmt) == {
        tok.convert_tokens_to_ids("<|im_end|>"),
        tok.convert_tokens_to_ids("<|endoftext|>"),
    }


@pytest.mark.parametrize("family", ["qwen3", "llama3"])
def test_rollout_with_a_template_tokenizer(family):
    """A scripted two-turn rollout's tokens are the template's ids; masks hold actions / tool text."""
    from rljax.envs.base import Observation, Task, Verdict
    from rljax.rollout.agent import rollout
    from rljax.rollout.session import ScriptedSession

    tok = build_tokenizer(family)
    if family == "llama3":
        tok.chat_template = tok.chat_template.replace(  # pin the date the template would print
            'strftime_now("%d %b %Y")', '"26 Jul 2024"'
        )

    class Episode:
        def __init__(self):
            self.turns = 0

        def step(self, action):
            self.turns += 1
            done = self.turns == 2
            return Observation(text="" if done else "k07=ab12 (exit_code=0)", done=done)

        def verdict(self):
            return Verdict(1.0, {})

    class Family:
        name = "probe"

        def start(self, task):
            return Episode()

        def generate(self, split, index):
            raise NotImplementedError

        def verify(self, task, response):
            return Verdict(1.0, {})

        def expert(self, task, rng, noise=0.0):
            raise NotImplementedError

        def expert_actions(self, task, rng, noise=0.0):
            raise NotImplementedError

    turns = conversations(family)["tool"]
    task = Task(uid="probe/train/0", family="probe", prompt=turns[0].text, answer=None)
    actions = [[turns[1].text, turns[3].text]]
    traj = rollout(
        ScriptedSession(tok, actions, max_len=512),
        Family(),
        [task],
        tok,
        max_tokens=512,
        max_turns=2,
    )
    n = int(traj.lengths[0])
    expected = oracle(tok, turns, family, False)
    end = {"llama3": 0}.get(family, 1)
    assert traj.tokens[0, :n].tolist() == expected[: len(expected) - end]
    action = np.asarray(traj.action_mask[0, :n], bool)
    env = np.asarray(traj.env_mask[0, :n], bool)
    sequence = types.SimpleNamespace(tokens=np.asarray(traj.tokens[0, :n]))
    assert masked(tok, sequence, action) == [
        turns[1].text + tok.eos_token,
        turns[3].text + tok.eos_token,
    ]
    assert masked(tok, sequence, env) == [turns[2].text]
