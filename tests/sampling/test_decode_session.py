"""DecodeSession against an uncached full forward pass: tokens, log-probs, continuation, stops, compiles."""

import jax
import numpy as np
import pytest
from flax import nnx
from sampling_oracles import log_softmax, numpy_sampling_log_probs

from rljax.models import Decoder, ModelConfig
from rljax.sampling import DecodeSession, Greedy, Temperature, decode, extend

PROMPTS = [[1, 2, 3, 4, 5], [7, 8], [9, 10, 11, 12, 13, 14, 15, 16, 17]]
NO_STOPS = [(), (), ()]


def make_session(model, strategy, batch_size=3, max_len=48, seed=0):
    return DecodeSession(
        model, batch_size=batch_size, max_len=max_len, strategy=strategy, key=jax.random.key(seed)
    )


def generated_positions(context_len, num_tokens):
    """Rows of the full-forward logits that predict the tokens at context_len .. context_len+n-1."""
    return np.arange(context_len - 1, context_len - 1 + num_tokens)


def test_greedy_with_cache_equals_argmax_by_full_recomputation(tiny_model, full_logits):
    session = make_session(tiny_model, Greedy())
    session.prefill(PROMPTS)
    gens = session.generate(max_new_tokens=[12, 12, 12], stop_tokens=NO_STOPS, active=[True] * 3)
    sequences = [p + g.tokens for p, g in zip(PROMPTS, gens)]
    for prompt, gen, logits in zip(PROMPTS, gens, full_logits(sequences)):
        # Causality: the full forward's logits at t-1 are those of a recomputation over tokens[:t].
        expected = np.argmax(logits[generated_positions(len(prompt), 12)], axis=-1)
        assert gen.tokens == expected.tolist()
        assert gen.logprobs == [0.0] * 12 and not gen.stopped
    assert session.lengths == [len(p) + 12 for p in PROMPTS]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_equal_full_forward_at_temperature(tiny_model, full_logits, temperature):
    session = make_session(tiny_model, Temperature(temperature), seed=1)
    session.prefill(PROMPTS)
    gens = session.generate(max_new_tokens=[10, 7, 10], stop_tokens=NO_STOPS, active=[True] * 3)
    sequences = [p + g.tokens for p, g in zip(PROMPTS, gens)]
    for prompt, gen, logits in zip(PROMPTS, gens, full_logits(sequences)):
        rows = generated_positions(len(prompt), len(gen.tokens))
        expected = log_softmax(logits[rows] / temperature)[np.arange(len(rows)), gen.tokens]
        np.testing.assert_allclose(gen.logprobs, expected, atol=1e-4)
    assert [len(g.tokens) for g in gens] == [10, 7, 10]


def test_top_k_top_p_logprobs_are_renormalised(tiny_model, full_logits):
    session = make_session(tiny_model, Temperature(0.9, top_k=8, top_p=0.8), seed=2)
    session.prefill(PROMPTS)
    gens = session.generate(max_new_tokens=[9, 9, 9], stop_tokens=NO_STOPS, active=[True] * 3)
    sequences = [p + g.tokens for p, g in zip(PROMPTS, gens)]
    for prompt, gen, logits in zip(PROMPTS, gens, full_logits(sequences)):
        rows = generated_positions(len(prompt), 9)
        reference = numpy_sampling_log_probs(logits[rows], 0.9, 8, 0.8)[np.arange(9), gen.tokens]
        assert np.all(np.isfinite(reference)), "a truncated token was sampled"
        np.testing.assert_allclose(gen.logprobs, reference, atol=1e-4)


def test_continuation_equals_fresh_prefill_of_the_concatenation(tiny_model, full_logits):
    chunks = [[20, 21, 22], [], [23]]
    session = make_session(tiny_model, Greedy())
    session.prefill(PROMPTS)
    first = session.generate(max_new_tokens=[5, 3, 4], stop_tokens=NO_STOPS, active=[True] * 3)
    session.append(chunks)
    second = session.generate(
        max_new_tokens=[6, 6, 6], stop_tokens=NO_STOPS, active=[True, False, True]
    )

    contexts = [p + g.tokens + c for p, g, c in zip(PROMPTS, first, chunks)]
    fresh = make_session(tiny_model, Greedy())
    fresh.prefill(contexts)
    again = fresh.generate(
        max_new_tokens=[6, 6, 6], stop_tokens=NO_STOPS, active=[True, False, True]
    )
    assert [g.tokens for g in second] == [g.tokens for g in again]
    assert second[1].tokens == [] and not second[1].stopped
    assert (
        session.lengths
        == fresh.lengths
        == [len(c) + len(g.tokens) for c, g in zip(contexts, second)]
    )


def test_multi_turn_logprobs_equal_full_forward(tiny_model, full_logits):
    chunks = [[30, 31], [32, 33, 34, 35], []]
    session = make_session(tiny_model, Temperature(1.0), seed=3)
    session.prefill(PROMPTS)
    first = session.generate(max_new_tokens=[4, 6, 5], stop_tokens=NO_STOPS, active=[True] * 3)
    session.append(chunks)
    second = session.generate(max_new_tokens=[5, 5, 5], stop_tokens=NO_STOPS, active=[True] * 3)
    sequences = [p + a.tokens + c + b.tokens for p, a, c, b in zip(PROMPTS, first, chunks, second)]
    for prompt, a, chunk, b, logits in zip(PROMPTS, first, chunks, second, full_logits(sequences)):
        log_probs = log_softmax(logits)
        turn_one = generated_positions(len(prompt), len(a.tokens))
        turn_two = generated_positions(len(prompt) + len(a.tokens) + len(chunk), len(b.tokens))
        np.testing.assert_allclose(a.logprobs, log_probs[turn_one, a.tokens], atol=1e-4)
        np.testing.assert_allclose(b.logprobs, log_probs[turn_two, b.tokens], atol=1e-4)
    assert session.lengths == [len(s) for s in sequences]


def _first_occurrence_at_or_before(tokens, limit):
    """Largest k <= limit such that tokens[k] does not occur in tokens[:k]."""
    return max(k for k in range(limit + 1) if tokens[k] not in tokens[:k])


def test_per_row_stop_sets_and_budgets(tiny_model):
    prompts = PROMPTS + [[40, 41, 42, 43]]
    reference = make_session(tiny_model, Greedy(), batch_size=4)
    reference.prefill(prompts)
    ref = [
        g.tokens
        for g in reference.generate(
            max_new_tokens=[12] * 4, stop_tokens=[()] * 4, active=[True] * 4
        )
    ]
    k0 = _first_occurrence_at_or_before(ref[0], 8)
    k3 = _first_occurrence_at_or_before(ref[3], 6)
    absent = min(set(range(64)) - set(ref[1][:5]))
    stop_tokens = [
        {ref[0][k0]},
        {absent},
        {ref[2][0]},
        {ref[3][k3], 63 if ref[3][k3] != 63 else 62},
    ]
    session = make_session(tiny_model, Greedy(), batch_size=4)
    session.prefill(prompts)
    gens = session.generate(
        max_new_tokens=[12, 5, 12, k3 + 1],
        stop_tokens=stop_tokens,
        active=[True, True, False, True],
    )
    assert gens[0].tokens == ref[0][: k0 + 1] and gens[0].stopped
    assert gens[1].tokens == ref[1][:5] and not gens[1].stopped
    assert gens[2].tokens == [] and gens[2].logprobs == [] and not gens[2].stopped
    # the stop token is the last one the budget allows: the row still counts as stopped
    assert gens[3].tokens == ref[3][: k3 + 1] and gens[3].stopped
    assert session.lengths == [
        len(prompts[0]) + k0 + 1,
        len(prompts[1]) + 5,
        len(prompts[2]),
        len(prompts[3]) + k3 + 1,
    ]


def test_same_bucket_does_not_recompile(tiny_model):
    def run(prompts, budget, chunk):
        session = make_session(tiny_model, Temperature(1.0))
        session.prefill(prompts)
        session.generate(
            max_new_tokens=[budget] * 3, stop_tokens=[{5}, (), {6, 7}], active=[True] * 3
        )
        session.append([chunk, [], chunk])
        session.generate(
            max_new_tokens=[budget] * 3, stop_tokens=NO_STOPS, active=[True, True, False]
        )

    run(PROMPTS, 6, [1, 2])
    sizes = extend._cache_size(), decode._cache_size()
    run([[3] * 11, [4, 5, 6], [7]], 9, [8, 9, 10])  # other lengths, same buckets (<= 16)
    assert (extend._cache_size(), decode._cache_size()) == sizes
    run(PROMPTS, 20, [1, 2])  # 20 new tokens: the next step bucket (32) compiles decode once more
    assert (extend._cache_size(), decode._cache_size()) == (sizes[0], sizes[1] + 1)


def test_errors_are_clear_and_leave_the_session_usable(tiny_model):
    session = make_session(tiny_model, Greedy(), max_len=16)
    with pytest.raises(ValueError, match="prefill it first"):
        session.generate(max_new_tokens=[1, 1, 1], stop_tokens=NO_STOPS, active=[True] * 3)
    session.prefill(PROMPTS)
    with pytest.raises(
        ValueError, match=r"row 2: context of 9 tokens \+ max_new_tokens 8 exceeds max_len=16"
    ):
        session.generate(max_new_tokens=[1, 1, 8], stop_tokens=NO_STOPS, active=[True] * 3)
    with pytest.raises(
        ValueError, match=r"row 0: context of 5 tokens \+ chunk of 12 exceeds max_len=16"
    ):
        session.append([[1] * 12, [], []])
    with pytest.raises(ValueError, match="expected batch_size=3"):
        session.append([[1], [2]])
    with pytest.raises(ValueError, match=r"stop_tokens\[1\] has ids \[64\] outside the vocabulary"):
        session.generate(max_new_tokens=[1, 1, 1], stop_tokens=[(), {64}, ()], active=[True] * 3)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        session.append([[], [99], []])
    with pytest.raises(ValueError, match=r"max_new_tokens\[0\] = -1"):
        session.generate(max_new_tokens=[-1, 1, 1], stop_tokens=NO_STOPS, active=[True] * 3)
    assert session.lengths == [5, 2, 9]
    gens = session.generate(max_new_tokens=[11, 14, 7], stop_tokens=NO_STOPS, active=[True] * 3)
    assert [len(g.tokens) for g in gens] == [11, 14, 7]
    assert session.lengths == [16, 16, 16]


def test_one_setting_for_every_row_equals_per_row_lists(tiny_model):
    per_row = make_session(tiny_model, Temperature(1.0), seed=3)
    per_row.prefill(PROMPTS)
    expected = per_row.generate(max_new_tokens=[6] * 3, stop_tokens=[{5}] * 3, active=[True] * 3)
    shared = make_session(tiny_model, Temperature(1.0), seed=3)
    shared.prefill(PROMPTS)
    assert shared.generate(max_new_tokens=6, stop_tokens={5}) == expected
    defaults = make_session(tiny_model, Greedy())
    defaults.prefill(PROMPTS)
    gens = defaults.generate(max_new_tokens=4)  # no stop tokens, every row active
    assert [len(g.tokens) for g in gens] == [4, 4, 4] and not any(g.stopped for g in gens)
    assert defaults.generate(max_new_tokens=4, active=False) == [type(gens[0])([], [], False)] * 3


def test_a_scan_layers_model_decodes_inside_the_loop(full_logits):
    """The decode loop runs a model whose layers are an nnx scan (the pod presets' scan_layers);
    greedy tokens equal the argmax of the scanned model's own uncached forward pass."""
    model = Decoder(
        ModelConfig.tiny(vocab_size=64, num_layers=2, scan_layers=True), rngs=nnx.Rngs(3)
    )
    graphdef, state = nnx.split(model)
    session = make_session(model, Greedy())
    session.prefill(PROMPTS)
    gens = session.generate(max_new_tokens=[6, 6, 6], stop_tokens=NO_STOPS, active=[True] * 3)
    for prompt, gen in zip(PROMPTS, gens):
        sequence = np.asarray([prompt + gen.tokens], np.int32)
        logits = nnx.merge(graphdef, state).logits(sequence, segment_ids=np.ones_like(sequence))
        expected = np.argmax(np.asarray(logits)[0, generated_positions(len(prompt), 6)], axis=-1)
        assert gen.tokens == expected.tolist()
