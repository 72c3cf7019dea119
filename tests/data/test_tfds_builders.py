"""TFDS task datasets (array_record, read with tfds.data_source) and the ExternalQA adapter."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow_datasets as tfds

from rljax.data import tfds_builders
from rljax.envs import ArithmeticFamily, CountdownFamily, metrics
from rljax.envs.base import Task, TaskFamily

GSM8K_LIKE = {
    "train": [
        (
            "Natalia sold 48 clips in April and half as many in May. How many in total?",
            "In May she sold 48/2 = <<48/2=24>>24 clips.\nIn total 48+24 = <<48+24=72>>72.\n#### 72",
        ),
        ("Weng earns $12 an hour. How much for 50 minutes?", "12/60*50 = 10\n#### 10"),
        (
            "A shop sells 1,000 pens a week for 5 weeks, then 250 more. How many pens?",
            "5*1000 + 250\n#### 5,250",
        ),
    ],
    "test": [
        ("Tom is 3 years younger than Ann, who is 10. How old is Tom?", "10 - 3 = 7\n#### 7"),
        ("It was -4 degrees and fell by 2. What is it now?", "-4 - 2\n#### -6"),
    ],
}


class TinyGsm8k(tfds.core.GeneratorBasedBuilder):
    """A local stand-in for gsm8k: the same features, five records."""

    VERSION = tfds.core.Version("1.0.0")
    code_path = None  # no checksums file; see RljaxTasks

    def _info(self):
        features = tfds.features.FeaturesDict(
            {name: tfds.features.Text() for name in ("question", "answer")}
        )
        return tfds.core.DatasetInfo(builder=self, features=features, disable_shuffling=True)

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(rows) for split, rows in GSM8K_LIKE.items()}

    def _generate_examples(self, rows):
        for i, (question, answer) in enumerate(rows):
            yield i, {"question": question, "answer": answer}


@pytest.fixture(scope="module")
def gsm8k_dir(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    TinyGsm8k(data_dir=data_dir, file_format="array_record").download_and_prepare()
    return data_dir


@pytest.fixture(scope="module")
def arithmetic_dir(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tasks"))
    name = tfds_builders.build_task_dataset(
        ArithmeticFamily(seed=1), data_dir, num_train=24, num_heldout=6
    )
    assert name == "rljax_tasks/arithmetic"
    return data_dir


def test_example_round_trip():
    task = Task(
        uid="x/train/3",
        family="x",
        prompt="Q?",
        answer={"a": [1, 2]},
        task_id=4,
        system="Be brief.",
        meta={"k": "v"},
    )
    example = tfds_builders.task_to_example(task)
    assert json.loads(example["answer"]) == {"a": [1, 2]} and json.loads(example["meta"]) == {
        "k": "v"
    }
    as_read = {k: v.encode() if isinstance(v, str) else np.int32(v) for k, v in example.items()}
    assert tfds_builders.example_to_task(as_read) == task
    no_system = Task(uid="x/train/4", family="x", prompt="Q?", answer=7)
    assert tfds_builders.example_to_task(tfds_builders.task_to_example(no_system)) == no_system
    with pytest.raises(ValueError, match=r"record is missing task features \['meta'\]"):
        tfds_builders.example_to_task({k: v for k, v in example.items() if k != "meta"})


def test_written_records_are_the_family_instances(arithmetic_dir):
    family = ArithmeticFamily(seed=1)
    for split, count in (("train", 24), ("heldout", 6)):
        source = tfds.data_source("rljax_tasks/arithmetic", data_dir=arithmetic_dir, split=split)
        assert len(source) == count
        raw = source[count - 1]
        expected = family.generate(split, count - 1)
        assert raw["uid"] == expected.uid.encode() and raw["prompt"] == expected.prompt.encode()
        assert json.loads(raw["answer"]) == expected.answer and int(raw["task_id"]) == 0
        tasks = tfds_builders.load_tasks(
            "rljax_tasks/arithmetic", data_dir=arithmetic_dir, split=split
        )
        assert [tasks[i] for i in range(count)] == [family.generate(split, i) for i in range(count)]


def test_reading_needs_no_tensorflow(arithmetic_dir):
    # A fresh interpreter reads and decodes the records without ever importing tensorflow.
    script = textwrap.dedent(f"""
        import sys

        from rljax.data import tfds_builders
        tasks = tfds_builders.load_tasks("rljax_tasks/arithmetic", data_dir={arithmetic_dir!r}, split="heldout")
        print(len(tasks), tasks[0].uid, any(m.split(".")[0] == "tensorflow" for m in sys.modules))
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["6", "arithmetic/heldout/0", "False"]


def test_configs_side_by_side_and_stale_rebuild(tmp_path):
    data_dir = str(tmp_path)
    small = CountdownFamily(num_numbers=3, seed=0)
    name = tfds_builders.build_task_dataset(
        small, data_dir, num_train=5, num_heldout=2, config_name="cd3"
    )
    sizes = {"num_train": 5, "num_heldout": 2}
    other = tfds_builders.build_task_dataset(CountdownFamily(num_numbers=4), data_dir, **sizes)
    assert (name, other) == ("rljax_tasks/cd3", "rljax_tasks/countdown")
    assert (
        len(tfds_builders.load_tasks(name, data_dir=data_dir, split="train")[0].meta["numbers"])
        == 3
    )
    assert (
        len(tfds_builders.load_tasks(other, data_dir=data_dir, split="train")[0].meta["numbers"])
        == 4
    )
    # The same build again reuses the files; a different family or size under one config refuses.
    assert tfds_builders.build_task_dataset(small, data_dir, **sizes, config_name="cd3") == name
    with pytest.raises(ValueError, match="already holds CountdownFamily"):
        tfds_builders.build_task_dataset(
            CountdownFamily(seed=9), data_dir, num_train=5, num_heldout=2, config_name="cd3"
        )
    with pytest.raises(ValueError, match="split sizes"):
        tfds_builders.build_task_dataset(
            small, data_dir, num_train=6, num_heldout=2, config_name="cd3"
        )


def test_bad_num_examples(tmp_path):
    with pytest.raises(ValueError, match="num_examples must map splits"):
        tfds_builders.RljaxTasks(
            family=ArithmeticFamily(), num_examples={"test": 3}, data_dir=str(tmp_path)
        )


def test_final_number_after_hashes():
    assert tfds_builders.final_number_after_hashes("a #### b\n#### 1,250 ") == "1250"
    with pytest.raises(ValueError, match="no '####' final-answer marker"):
        tfds_builders.final_number_after_hashes("72")


class TestExternalQA:
    @pytest.fixture
    def family(self, gsm8k_dir):
        return tfds_builders.ExternalQA.from_tfds(
            "tiny_gsm8k", data_dir=gsm8k_dir, splits={"train": "train", "heldout": "test"}
        )

    def test_generate(self, family):
        assert isinstance(family, TaskFamily) and family.name == "tiny_gsm8k"
        assert (family.num_examples("train"), family.num_examples("heldout")) == (3, 2)
        task = family.generate("train", 0)
        assert task.uid == "tiny_gsm8k/train/0" and task.prompt == GSM8K_LIKE["train"][0][0]
        assert [family.generate("train", 2).answer, family.generate("heldout", 1).answer] == [
            "5250",
            "-6",
        ]
        with pytest.raises(ValueError, match=r"index must be in \[0, 2\)"):
            family.generate("heldout", 2)

    @pytest.mark.parametrize(
        "response, reward, reason",
        [
            ("<think>48+24</think><answer>72</answer>", 1.0, "correct"),
            ("<answer> 72.0 </answer>", 1.0, "correct"),
            ("<answer>71</answer>", 0.0, "wrong: expected '72', got '71'"),
            ("The answer is 72.", 0.0, "malformed: no <answer>...</answer> tag"),
        ],
    )
    def test_verify(self, family, response, reward, reason):
        verdict = family.verify(family.generate("train", 0), response)
        assert (verdict.reward, verdict.info["reason"]) == (reward, reason)

    def test_expert(self, family):
        rng = np.random.default_rng(0)
        task = family.generate("heldout", 1)
        assert family.expert(task, rng) == "<answer>-6</answer>"
        assert family.expert(task, rng, noise=1.0) in ("<answer>-7</answer>", "<answer>-5</answer>")

    def test_text_answers_and_missing_fields(self, gsm8k_dir):
        # Exact-match family over the raw solutions: a mistake is another record's solution.
        family = tfds_builders.ExternalQA.from_tfds(
            "tiny_gsm8k",
            data_dir=gsm8k_dir,
            splits={"heldout": "test"},
            name="qa",
            extract=str.strip,
            metric=metrics.exact_match,
        )
        task = family.generate("heldout", 0)
        mistake = family.expert(task, np.random.default_rng(0), noise=1.0)
        assert mistake == f"<answer>{GSM8K_LIKE['test'][1][1]}</answer>"
        assert family.verify(task, mistake).reward == 0.0
        with pytest.raises(ValueError, match="qa has no 'train' split"):
            family.generate("train", 0)
        partial = tfds_builders.ExternalQA(
            name="f1", sources=family.sources, extract=str.strip, metric=metrics.token_f1
        )
        # pred tokens [10, -, 3] vs gold [10, -, 3, =, 7, ####, 7]: common 3, P = 1, R = 3/7,
        # F1 = 2 * (3/7) / (10/7) = 0.6.
        verdict = partial.verify(partial.generate("heldout", 0), "<answer>10 - 3</answer>")
        assert verdict.reward == pytest.approx(0.6)
        assert (
            verdict.info["reason"]
            == "partial: scored 0.600, expected '10 - 3 = 7\\n#### 7', got '10 - 3'"
        )
        wrong_field = tfds_builders.ExternalQA(
            name="q", sources=family.sources, prompt_field="problem"
        )
        with pytest.raises(ValueError, match="has no field 'problem'"):
            wrong_field.generate("heldout", 0)
