"""grain prompt pipelines: epochs, seeds, sharding, exact resume, and the three kinds of source."""

import json

import grain
import pytest
import tensorflow_datasets as tfds

from rljax.data import pipeline, tfds_builders
from rljax.envs import ArithmeticFamily, CountdownFamily


def _uids(batches):
    return [[task.uid for task in batch] for batch in batches]


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


class TinyQa(tfds.core.GeneratorBasedBuilder):
    """A local gsm8k-like dataset: "question", "answer" with the final number after "####"."""

    VERSION = tfds.core.Version("1.0.0")
    code_path = None  # no checksums file; see RljaxTasks

    def _info(self):
        features = tfds.features.FeaturesDict(
            {name: tfds.features.Text() for name in ("question", "answer")}
        )
        return tfds.core.DatasetInfo(builder=self, features=features, disable_shuffling=True)

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(6):
            yield (
                i,
                {"question": f"What is {i} plus {i}?", "answer": f"{i}+{i}={2 * i}\n#### {2 * i}"},
            )


def test_family_source():
    family = ArithmeticFamily()
    source = pipeline.FamilySource(family, "heldout", 5)
    assert len(source) == 5 and source[4] == family.generate("heldout", 4)
    with pytest.raises(IndexError, match="index 5 out of range for 5 tasks"):
        source[5]
    with pytest.raises(ValueError, match="num_tasks is required: 'arithmetic' has no num_examples"):
        pipeline.FamilySource(family, "train")
    with pytest.raises(ValueError, match="split must be one of"):
        pipeline.FamilySource(family, "valid", 3)


def test_epochs_are_seeded_permutations():
    source = pipeline.FamilySource(ArithmeticFamily(), "train", 12)
    batches = _uids(_take(pipeline.task_batches(source, batch_size=4, seed=0), 6))
    assert all(len(b) == 4 for b in batches)
    everything = sorted(f"arithmetic/train/{i}" for i in range(12))
    first, second = sum(batches[:3], []), sum(batches[3:], [])
    assert (
        sorted(first) == everything and sorted(second) == everything
    )  # each epoch sees every task once
    assert first != second  # and in a new order
    assert first != [f"arithmetic/train/{i}" for i in range(12)]  # shuffled
    assert _uids(_take(pipeline.task_batches(source, batch_size=4, seed=0), 6)) == batches
    unthreaded = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)
    plain = pipeline.task_batches(source, batch_size=4, seed=0, read_options=unthreaded)
    assert _uids(_take(plain, 6)) == batches
    assert _uids(_take(pipeline.task_batches(source, batch_size=4, seed=1), 6)) != batches


def test_unshuffled_finite_epochs_drop_the_last_partial_batch():
    source = pipeline.FamilySource(ArithmeticFamily(), "train", 10)
    batches = _uids(
        pipeline.task_batches(source, batch_size=3, seed=0, shuffle=False, num_epochs=2)
    )
    # 2 epochs x 10 tasks = 20 tasks -> 6 batches of 3; the 2 left over are dropped.
    order = [f"arithmetic/train/{i}" for i in range(10)] * 2
    assert batches == [order[i : i + 3] for i in range(0, 18, 3)]


def test_resume_mid_epoch_gives_the_identical_continuation():
    source = pipeline.FamilySource(CountdownFamily(), "train", 10)
    reference = pipeline.task_batches(source, batch_size=3, seed=7)
    _take(reference, 2)  # 6 of 10 tasks: mid-epoch
    state = json.loads(json.dumps(reference.get_state()))  # what a checkpoint would store
    expected = _take(reference, 8)  # crosses two epoch boundaries
    resumed = pipeline.task_batches(source, batch_size=3, seed=7)
    resumed.set_state(state)
    assert _take(resumed, 8) == expected  # the same Task objects' contents, not only uids


def test_shards_split_every_batch_into_contiguous_parts():
    source = pipeline.FamilySource(ArithmeticFamily(), "train", 12)
    kwargs = {"batch_size": 4, "seed": 3, "num_epochs": 1}
    whole = _uids(pipeline.task_batches(source, **kwargs))
    shards = [
        _uids(pipeline.task_batches(source, shard_index=i, shard_count=2, **kwargs)) for i in (0, 1)
    ]
    assert [len(s) for s in shards] == [3, 3] and all(len(b) == 2 for s in shards for b in s)
    assert [a + b for a, b in zip(*shards)] == whole  # shard i reads part i of each batch
    assert sorted(sum(whole, [])) == sorted(f"arithmetic/train/{i}" for i in range(12))
    with pytest.raises(ValueError, match="batch_size=3 tasks do not split evenly over 2"):
        pipeline.task_dataset(source, batch_size=3, seed=0, shard_count=2)


def test_tfds_source_matches_the_family_source(tmp_path):
    family = ArithmeticFamily(digits=3)
    name = tfds_builders.build_task_dataset(family, str(tmp_path), num_train=16, num_heldout=4)
    from_tfds = tfds_builders.load_tasks(name, data_dir=str(tmp_path), split="train")
    from_family = pipeline.FamilySource(family, "train", 16)
    kwargs = {"batch_size": 4, "seed": 11}
    expected = _take(pipeline.task_batches(from_family, **kwargs), 7)
    assert _take(pipeline.task_batches(from_tfds, **kwargs), 7) == expected


def test_external_dataset_plugs_in(tmp_path):
    TinyQa(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
    family = tfds_builders.ExternalQA.from_tfds(
        "tiny_qa", data_dir=str(tmp_path), splits={"train": "train"}
    )
    source = pipeline.FamilySource(family, "train")  # size from the dataset
    batches = _take(pipeline.task_batches(source, batch_size=3, seed=0), 2)
    tasks = sorted(sum(batches, []), key=lambda t: t.uid)
    assert [(t.prompt, t.answer) for t in tasks] == [
        (f"What is {i} plus {i}?", str(2 * i)) for i in range(6)
    ]
    assert all(
        family.verify(t, f"<answer>{2 * int(t.uid[-1])}</answer>").reward == 1.0 for t in tasks
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0, "seed": 0}, "batch_size must be > 0"),
        ({"batch_size": 2, "seed": 0, "shard_index": 2, "shard_count": 2}, "need 0 <= shard_index"),
        ({"batch_size": 2, "seed": 0, "num_epochs": 0}, "num_epochs must be > 0"),
        (
            {"batch_size": 6, "seed": 0, "shard_count": 2},
            "the source holds 5 tasks, fewer than batch_size=6",
        ),
    ],
)
def test_bad_arguments(kwargs, message):
    source = pipeline.FamilySource(ArithmeticFamily(), "train", 5)
    with pytest.raises(ValueError, match=message):
        pipeline.task_dataset(source, **kwargs)
