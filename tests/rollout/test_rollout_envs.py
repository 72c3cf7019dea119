"""Rollouts against the library's real environments and its real KV-cache decode session."""

import jax
import numpy as np
import pytest
from flax import nnx
from keyhunt import masked_spans

from rljax.data import format_warnings, load_tokenizer
from rljax.envs.countdown import CountdownFamily
from rljax.envs.terminal import SYSTEM_PROMPT, FindValueFamily, WriteValueFamily
from rljax.models import Decoder, ModelConfig
from rljax.rollout import ScriptedSession, expert_trajectories, rollout
from rljax.sampling import DecodeSession, Temperature


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def replay(family, task, actions):
    """Plays the actions on a fresh episode: the expected (env text, warning block) of each turn."""
    observations = []
    with family.start(task) as episode:
        for action in actions:
            obs = episode.step(action)
            observations.append((obs.text, format_warnings(obs.warning)))
            if obs.done:
                break
        return observations, episode.verdict().reward


@pytest.mark.parametrize("family_cls", [FindValueFamily, WriteValueFamily])
def test_terminal_expert_demonstrations(tok, family_cls):
    family = family_cls(seed=3, system=SYSTEM_PROMPT)
    tasks = [family.generate("train", i) for i in range(4)]
    traj = expert_trajectories(family, tasks, tok, np.random.default_rng(0), noise=0.7)
    rng = np.random.default_rng(0)
    for p, task in enumerate(tasks):
        actions = family.expert_actions(task, rng, 0.7)
        observations, reward = replay(family, task, actions)
        assert traj.rewards[p] == reward == 1.0  # the noisy expert recovers
        assert masked_spans(tok, traj.tokens[p], traj.action_mask[p]) == [
            a + "<|end|>" for a in actions
        ]
        expected_env = [warning + text for text, warning in observations if text]
        assert masked_spans(tok, traj.tokens[p], traj.env_mask[p]) == expected_env
        n = traj.lengths[p]
        assert tok.decode(traj.tokens[p, :n]).startswith(
            f"<|bos|><|system|>{SYSTEM_PROMPT}<|end|><|user|>"
        )
    assert traj.num_turns.max() > traj.num_turns.min()  # mistakes made some demonstrations longer


def test_terminal_warnings_and_episode_turn_limit(tok):
    family = FindValueFamily(seed=3)
    task = family.generate("train", 0)
    actions = [
        "<cmd> ls </cmd>",  # missing <think>: a warning, the command still runs
        "oops <think> t </think> <cmd> pwd </cmd>",  # text before the first tag
        "<think> t </think> <cmd> cat nothing </cmd>",  # the family's 3rd and last turn: episode closes itself
    ]
    observations, reward = replay(family, task, actions)
    traj = rollout(
        ScriptedSession(tok, [actions], max_len=2048),
        family,
        [task],
        tok,
        max_tokens=2048,
        max_turns=5,
    )
    assert (
        traj.info[0]["stop"] == "done"
        and traj.num_turns[0] == 3
        and traj.rewards[0] == reward == 0.0
    )
    assert all(warning for _, warning in observations[:2])
    assert masked_spans(tok, traj.tokens[0], traj.warning_mask[0]) == [
        w for _, w in observations if w
    ]
    assert masked_spans(tok, traj.tokens[0], traj.env_mask[0]) == [w + t for t, w in observations]
    assert not (traj.warning_mask & ~traj.env_mask).any()


def test_countdown_single_turn_expert(tok):
    family = CountdownFamily()
    tasks = [family.generate("train", i) for i in range(3)]
    traj = expert_trajectories(family, tasks, tok, np.random.default_rng(0))
    rng = np.random.default_rng(0)
    for p, task in enumerate(tasks):
        response = family.expert(task, rng)
        assert masked_spans(tok, traj.tokens[p], traj.action_mask[p]) == [response + "<|end|>"]
        assert traj.rewards[p] == family.verify(task, response).reward
    assert not traj.env_mask.any()


@pytest.mark.slow  # compiles the tiny model's prefill and decode (about a minute on 2 busy cores)
def test_rollout_with_the_kv_cache_session(tok):
    """The real decode session drives the same loop; its log-probs match a full forward pass."""
    model = Decoder(ModelConfig.tiny(vocab_size=len(tok)), rngs=nnx.Rngs(0))
    family = FindValueFamily(seed=3)
    tasks = [family.generate("train", i) for i in range(2)]
    session = DecodeSession(
        model, batch_size=4, max_len=64, strategy=Temperature(1.0), key=jax.random.key(0)
    )
    traj = rollout(
        session, family, tasks, tok, group_size=2, max_tokens=64, max_turns=3, max_new_tokens=8
    )
    logprobs = jax.nn.log_softmax(np.asarray(model.logits(traj.tokens), np.float32), axis=-1)
    full = np.take_along_axis(np.asarray(logprobs)[:, :-1], traj.tokens[:, 1:, None], axis=-1)[
        ..., 0
    ]
    mask = traj.action_mask[:, 1:]
    assert mask.sum() > 0 and not traj.action_mask[:, 0].any()
    np.testing.assert_allclose(traj.sampler_logprobs[:, 1:][mask], full[mask], atol=1e-4)
    for b in range(
        4
    ):  # every row: its prompt, then generated tokens (and observations if it stopped)
        prompt = tok.decode(traj.tokens[b, : traj.lengths[b]]).split("<|assistant|>")[0]
        assert prompt == f"<|bos|><|user|>{tasks[b // 2].prompt}<|end|>"
