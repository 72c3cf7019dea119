"""The real-model tools: a gsm8k-like TFDS dataset prepared offline from JSON lines and trained on
as `task.family="external_qa"`, and the tiny random-weight checkpoint directory."""

import json
import pathlib

import numpy as np
import pytest
import transformers
from rljax.experiments import cli, grpo, prepare_external_qa, tiny_checkpoint

from rljax.data import chat
from rljax.envs import metrics, registry
from rljax.models import load_hf
from rljax.train.components import policy_tokenizer
from rljax.train.config import ModelSection

TEMPLATES = pathlib.Path(__file__).parents[1] / "data" / "templates"


def gsm8k_rows(n: int) -> list[dict]:
    return [
        {
            "question": f"Sam has {i} apples and buys {i + 1000} more. How many apples now?",
            "answer": f"He has {i} + {i + 1000} = <<{i}+{i + 1000}={2 * i + 1000}>> apples.\n"
            f"#### {2 * i + 1000:,}",
            "id": i,  # other fields are ignored
        }
        for i in range(n)
    ]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("qa")
    train = write_jsonl(tmp / "train.jsonl", gsm8k_rows(20))
    data_dir = str(tmp / "tfds")
    argv = ["--train", train, "--num-test", "4", "--data-dir", data_dir, "--name", "toy"]
    assert prepare_external_qa.main(argv) == "jsonl_qa/toy"
    return data_dir, train


def test_prepared_dataset_is_an_external_qa_family(prepared):
    data_dir, _ = prepared
    family = registry.make(
        "external_qa",
        dataset="jsonl_qa/toy",
        data_dir=data_dir,
        answer_format="boxed",
        system="Be brief.",
    )
    assert family.name == "toy"
    assert (family.num_examples("train"), family.num_examples("heldout")) == (16, 4)
    task = family.generate("heldout", 1)  # line 18 of the file
    assert task.uid == "toy/heldout/1" and task.system == "Be brief."
    assert task.prompt == (
        "Sam has 17 apples and buys 1017 more. How many apples now?\n" + metrics.BOXED_INSTRUCTION
    )
    assert task.answer == "1034"  # after '####', thousands separator removed
    for response, reward in [
        ("17 + 1017 = 1034, so \\boxed{1034}", 1.0),
        ("\\boxed{$1{,}034$}", 1.0),
        ("\\boxed{1035}", 0.0),
        ("<answer>1034</answer>", 0.0),  # boxed format: no box, malformed
    ]:
        assert family.verify(task, response).reward == reward, response
    assert family.expert(task, np.random.default_rng(0)) == "\\boxed{1034}"
    tag = registry.make("external_qa", dataset="jsonl_qa/toy", data_dir=data_dir)
    assert tag.generate("train", 0).prompt.endswith("now?")
    assert tag.verify(tag.generate("train", 0), "<answer>1000</answer>").reward == 1.0


def test_prepare_refuses_bad_input(prepared, tmp_path):
    data_dir, train = prepared
    with pytest.raises(SystemExit, match="already exists"):
        prepare_external_qa.main(
            ["--train", train, "--num-test", "4", "--data-dir", data_dir, "--name", "toy"]
        )
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "#### 1"}\n{"question": "q2"}\n')
    with pytest.raises(SystemExit, match=r"bad.jsonl:2 has no string field 'answer'"):
        prepare_external_qa.main(
            ["--train", str(bad), "--num-test", "1", "--data-dir", str(tmp_path), "--name", "x"]
        )
    with pytest.raises(SystemExit, match=r"--num-test must be in \[1, 19\]"):
        prepare_external_qa.main(["--train", train, "--data-dir", str(tmp_path), "--name", "y"])
    # With a separate test file, the splits are the two files.
    test = write_jsonl(tmp_path / "test.jsonl", gsm8k_rows(3))
    name = prepare_external_qa.main(
        ["--train", train, "--test", test, "--data-dir", str(tmp_path / "t"), "--name", "two"]
    )
    family = registry.make("external_qa", dataset=name, data_dir=str(tmp_path / "t"))
    assert (family.num_examples("train"), family.num_examples("heldout")) == (20, 3)


def test_tiny_checkpoint_is_a_complete_hf_directory(tmp_path):
    out = tiny_checkpoint.main(
        ["--out", str(tmp_path / "tiny"), "--chat-template", str(TEMPLATES / "qwen3.jinja")]
    )
    tokenizer = policy_tokenizer(ModelSection(hf_path=str(out)))
    end, eos = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    assert chat.stop_token_ids(tokenizer) == {end, eos}  # the template's end + generation config
    model = load_hf(out)
    assert model.config.vocab_size == len(tokenizer) and model.config.num_layers == 2
    torch_model = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert torch_model.config.model_type == "qwen3"


@pytest.mark.slow
def test_grpo_smoke_on_a_prepared_dataset(prepared, tmp_path):
    data_dir, _ = prepared
    kwargs = {"dataset": "jsonl_qa/toy", "data_dir": data_dir}
    cli.main(
        "grpo",
        grpo.PRESETS,
        [
            "--preset",
            "smoke",
            "--run-dir",
            str(tmp_path / "run"),
            "--set",
            "task.family=external_qa",
            "--set",
            f"task.kwargs={kwargs!r}",
            "--set",
            "task.max_len=96",
        ],
    )
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]
