"""Task-family registry and the shared content-hash split rule."""

import dataclasses
import hashlib

import numpy as np
import pytest

from rljax.envs import ArithmeticFamily, CountdownFamily, registry
from rljax.envs.base import Task, Verdict


@pytest.fixture(autouse=True)
def _private_registry(monkeypatch):
    """Each test registers into a copy, so registrations do not leak between tests."""
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))


@dataclasses.dataclass(frozen=True)
class EchoFamily:
    """A minimal family: the answer is the index."""

    name: str = "echo"

    def generate(self, split, index):
        return Task(
            uid=f"{self.name}/{split}/{index}", family=self.name, prompt=str(index), answer=index
        )

    def verify(self, task, response):
        return Verdict(float(response == str(task.answer)), {"reason": "compared"})

    def expert(self, task, rng, noise=0.0):
        return str(task.answer)


def test_builtins():
    assert {"arithmetic", "countdown"} <= set(registry.names())
    assert registry.make("arithmetic", digits=3) == ArithmeticFamily(digits=3)
    assert registry.make("countdown", num_numbers=4, seed=2) == CountdownFamily(
        num_numbers=4, seed=2
    )


def test_register_callable_and_path():
    registry.register("echo", EchoFamily)
    assert registry.make("echo", name="echo2").generate("train", 3).uid == "echo2/train/3"
    registry.register("echo_by_path", f"{__name__}:EchoFamily")
    assert registry.make("echo_by_path") == EchoFamily()
    assert registry.names() == sorted(registry.names())


def test_register_conflicts_and_overwrite():
    registry.register("echo", EchoFamily)
    with pytest.raises(ValueError, match="'echo' is already registered"):
        registry.register("echo", EchoFamily)
    registry.register("echo", lambda: EchoFamily(name="other"), overwrite=True)
    assert registry.make("echo").name == "other"


@pytest.mark.parametrize(
    "name, factory, message",
    [
        ("", EchoFamily, "name must be a non-empty str"),
        ("x", 3, "factory must be callable"),
        ("x", "no_colon_path", "factory must be callable"),
    ],
)
def test_register_bad_arguments(name, factory, message):
    with pytest.raises(ValueError, match=message):
        registry.register(name, factory)


def test_make_errors():
    with pytest.raises(ValueError, match=r"unknown task family 'nope'; registered: \["):
        registry.make("nope")
    registry.register("not_a_family", lambda: object())
    with pytest.raises(ValueError, match="returned object, which is not a TaskFamily"):
        registry.make("not_a_family")


def test_content_split_is_the_documented_hash():
    # sha256("37+45") read as a big-endian 64-bit fraction, compared with the held-out share.
    for content in ("37+45", "12*3", "[3, 7, 25]->175", ""):
        unit = int.from_bytes(hashlib.sha256(content.encode("utf-8")).digest()[:8], "big") / 2**64
        for fraction in (0.1, 0.5, 0.9):
            expected = "heldout" if unit < fraction else "train"
            assert registry.content_split(content, heldout_fraction=fraction) == expected


def test_content_split_share():
    splits = [registry.content_split(str(i), heldout_fraction=0.25) for i in range(4000)]
    # Binomial(4000, 0.25): mean 1000, std 27.
    assert 900 <= splits.count("heldout") <= 1100


def test_instance_rng_is_deterministic_and_split_specific():
    a = registry.instance_rng(0, "train", 5).integers(1 << 30, size=4)
    assert np.array_equal(a, registry.instance_rng(0, "train", 5).integers(1 << 30, size=4))
    assert not np.array_equal(a, registry.instance_rng(0, "heldout", 5).integers(1 << 30, size=4))
    assert not np.array_equal(a, registry.instance_rng(1, "train", 5).integers(1 << 30, size=4))
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        registry.instance_rng(-1, "train", 0)


def test_sample_in_split_rejects_until_the_split_matches():
    def draw(rng):
        value = int(rng.integers(10**6))
        return str(value), value

    for split in ("train", "heldout"):
        value = registry.sample_in_split(draw, seed=0, split=split, index=7, heldout_fraction=0.3)
        assert registry.content_split(str(value), heldout_fraction=0.3) == split


def test_sample_in_split_gives_up_on_an_empty_split():
    contents = [str(i) for i in range(100)]
    train_only = next(
        c for c in contents if registry.content_split(c, heldout_fraction=0.5) == "train"
    )
    with pytest.raises(ValueError, match="no instance of split 'heldout' found in 50 draws"):
        registry.sample_in_split(
            lambda rng: (train_only, None),
            seed=0,
            split="heldout",
            index=0,
            heldout_fraction=0.5,
            max_tries=50,
        )
