"""TFDS datasets of task instances (array_record), and external TFDS QA datasets as task families.

`build_task_dataset(family, data_dir, ...)` writes a family's instances with the generic builder
`RljaxTasks` (one TFDS config per family), so a run can read a fixed, versioned prompt set with
`tfds.data_source("rljax_tasks/<config>", data_dir=..., split=...)` -- random access through
array_record, no TensorFlow needed. `ExternalQA` adapts a TFDS dataset the user prepared (e.g.
gsm8k) into a task family with an `<answer>` verifier, so it plugs into the same pipeline.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds

from rljax.envs import metrics
from rljax.envs.arithmetic import boxed_integer
from rljax.envs.base import SPLITS, Task, TaskFamily, Verdict, check_split

BUILDER_NAME = "rljax_tasks"
TEXT_FEATURES = ("uid", "family", "prompt", "answer", "system", "meta")


def task_features() -> tfds.features.FeaturesDict:
    """The TFDS features of a task record.

    Returns:
        Text features uid, family, prompt, answer (JSON), system ("" for none), meta (JSON), and
        an int32 scalar task_id.
    """
    features = {name: tfds.features.Text() for name in TEXT_FEATURES}
    features["task_id"] = tfds.features.Scalar(dtype=np.int32)
    return tfds.features.FeaturesDict(features)


def task_to_example(task: Task) -> dict[str, Any]:
    """Encodes a task as a TFDS example (the inverse of `example_to_task`).

    Args:
        task: any task whose answer and meta are JSON-serialisable.

    Returns:
        A dict with the `task_features()` keys.
    """
    return {
        "uid": task.uid,
        "family": task.family,
        "prompt": task.prompt,
        "answer": json.dumps(task.answer),
        "system": task.system or "",
        "meta": json.dumps(task.meta, sort_keys=True),
        "task_id": task.task_id,
    }


def example_to_task(record: Mapping[str, Any]) -> Task:
    """Decodes a record read back from a task dataset (text features arrive as bytes).

    Args:
        record: a dict with the `task_features()` keys.

    Returns:
        The task, equal to the one that was written.
    """
    missing = set(TEXT_FEATURES + ("task_id",)) - set(record)
    if missing:
        raise ValueError(
            f"record is missing task features {sorted(missing)}; got keys {sorted(record)}"
        )
    text = {name: _text(record[name]) for name in TEXT_FEATURES}
    return Task(
        uid=text["uid"],
        family=text["family"],
        prompt=text["prompt"],
        answer=json.loads(text["answer"]),
        task_id=int(record["task_id"]),
        system=text["system"] or None,
        meta=json.loads(text["meta"]),
    )


class RljaxTasks(tfds.core.GeneratorBasedBuilder):
    """Generic TFDS builder over any task family; the config name defaults to the family name.

    Examples are written in index order (`disable_shuffling`), so record i of split s is
    `family.generate(s, i)`.
    """

    VERSION = tfds.core.Version("1.0.0")
    # Nothing is downloaded, so there is no checksums file next to the code; without this TFDS
    # resolves the package path through `importlib_resources`, which is not a dependency.
    code_path = None

    def __init__(
        self,
        *,
        family: TaskFamily,
        num_examples: Mapping[str, int],
        config_name: str | None = None,
        **kwargs: Any,
    ):
        unknown = set(num_examples) - set(SPLITS)
        if unknown or any(n < 0 for n in num_examples.values()):
            raise ValueError(
                f"num_examples must map splits in {SPLITS} to counts >= 0, got {dict(num_examples)}"
            )
        self._family = family
        self._num_examples = dict(num_examples)
        config = tfds.core.BuilderConfig(name=config_name or family.name, description=repr(family))
        super().__init__(config=config, **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"Task instances of {self._family!r}.",
            features=task_features(),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        del dl_manager
        return {split: self._generate_examples(split, n) for split, n in self._num_examples.items()}

    def _generate_examples(self, split: str, num: int):
        for index in range(num):
            yield index, task_to_example(self._family.generate(split, index))


def build_task_dataset(
    family: TaskFamily,
    data_dir: str,
    *,
    num_train: int,
    num_heldout: int,
    config_name: str | None = None,
) -> str:
    """Writes `num_train` train and `num_heldout` held-out instances of `family` as array_record.

    Args:
        family: any task family.
        data_dir: TFDS data directory.
        num_train: train instances (indices 0..num_train-1).
        num_heldout: held-out instances.
        config_name: the TFDS config name (default: `family.name`); use distinct names for
            differently configured families in one `data_dir`.

    Returns:
        The dataset name for `tfds.data_source(name, data_dir=data_dir, split=...)`.
    """
    builder = RljaxTasks(
        family=family,
        num_examples={"train": num_train, "heldout": num_heldout},
        config_name=config_name,
        data_dir=data_dir,
        file_format="array_record",
    )
    if builder.is_prepared():
        _check_same_build(builder, {"train": num_train, "heldout": num_heldout})
    builder.download_and_prepare()
    return f"{BUILDER_NAME}/{builder.builder_config.name}"


def _check_same_build(builder: RljaxTasks, num_examples: dict[str, int]) -> None:
    """Refuses to reuse a prepared dataset written from a different family or with other sizes."""
    written = tfds.builder_from_directory(builder.data_path)
    sizes = {name: split.num_examples for name, split in written.info.splits.items()}
    expected = builder.builder_config.description
    if written.builder_config.description != expected or sizes != num_examples:
        raise ValueError(
            f"{builder.data_path} already holds {written.builder_config.description} with split sizes "
            f"{sizes}, not {expected} with {num_examples}; pass another config_name or data_dir"
        )


class TaskRecords(Sequence[Task]):
    """Random-access tasks over a TFDS data source of task records (decoded on access)."""

    def __init__(self, source: Sequence[Mapping[str, Any]]):
        self._source = source

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> Task:
        return example_to_task(self._source[index])


def load_tasks(name: str, *, data_dir: str, split: str) -> TaskRecords:
    """Opens a dataset written by `build_task_dataset` as a random-access sequence of tasks.

    Args:
        name: the name `build_task_dataset` returned, e.g. "rljax_tasks/arithmetic".
        data_dir: the TFDS data directory.
        split: "train" or "heldout".

    Returns:
        The tasks of that split, decoded on access (no TensorFlow needed).
    """
    check_split(split)
    return TaskRecords(tfds.data_source(name, data_dir=data_dir, split=split))


def final_number_after_hashes(answer: str) -> str:
    """gsm8k answer extractor: the final answer after the last "####".

    Args:
        answer: a gsm8k-style solution ending in "#### <number>".

    Returns:
        The text after the last "####", stripped, with thousands commas removed.
    """
    if "####" not in answer:
        raise ValueError(f"answer has no '####' final-answer marker: {answer[-80:]!r}")
    return answer.rsplit("####", 1)[1].strip().replace(",", "")


@dataclasses.dataclass(frozen=True)
class ExternalQA:
    """A task family over an external question/answer dataset (random-access records per split).

    The prompt is the record's `prompt_field`; the gold answer is `extract(record[answer_field])`.
    With `answer_format="tag"` the response must end with `<answer>...</answer>`; with "boxed" (for
    real instruction-tuned models) the prompt asks for `\\boxed{}` on a new line
    (`metrics.BOXED_INSTRUCTION`, as the math papers prompt gsm8k) and the last box of the response
    is read, tolerating LaTeX around a number (`$`, `\\text{}`, `1{,}234`). `metric(content, gold)`
    scores the answer.

    Attributes:
        name: family name (uid prefix).
        sources: split ("train"/"heldout") -> random-access records, e.g. `tfds.data_source(...)`.
        prompt_field: record field holding the question.
        answer_field: record field holding the gold solution.
        extract: gold solution text -> gold answer string.
        metric: (predicted answer text, gold answer) -> reward in [0, 1].
        task_id: task type for every instance.
        answer_format: "tag" or "boxed" (see above).
        system: system-turn text of every task (None: no system turn).
    """

    name: str
    sources: Mapping[str, Sequence[Mapping[str, Any]]]
    prompt_field: str = "question"
    answer_field: str = "answer"
    extract: Callable[[str], str] = final_number_after_hashes
    metric: Callable[[str, Any], float] = metrics.numeric_match
    task_id: int = 0
    answer_format: str = "tag"
    system: str | None = None

    def __post_init__(self):
        metrics.check_answer_format(self.answer_format)

    @classmethod
    def from_tfds(
        cls,
        dataset: str,
        *,
        data_dir: str,
        splits: Mapping[str, str],
        name: str | None = None,
        **kwargs: Any,
    ) -> ExternalQA:
        """Opens a prepared TFDS dataset as a family.

        Args:
            dataset: TFDS name, e.g. "gsm8k" or "gsm8k/main".
            data_dir: the TFDS data directory holding it.
            splits: "train"/"heldout" -> the dataset's split names, e.g. {"heldout": "test"}.
            name: family name (default: the dataset name without config).
            **kwargs: the other `ExternalQA` fields (fields, extractor, metric, task_id).

        Returns:
            The family.
        """
        for split in splits:
            check_split(split)
        sources = {
            split: tfds.data_source(dataset, data_dir=data_dir, split=tfds_split)
            for split, tfds_split in splits.items()
        }
        return cls(name=name or dataset.split("/")[0], sources=sources, **kwargs)

    def num_examples(self, split: str) -> int:
        """Counts the records of `split` ("train" or "heldout")."""
        return len(self._source(split))

    def generate(self, split: str, index: int) -> Task:
        """Task from record `index` of `split`.

        Args:
            split: "train" or "heldout" (must be one of `sources`).
            index: record index in [0, num_examples(split)).

        Returns:
            The task; `answer` is the extracted gold answer string.
        """
        source = self._source(split)
        if not 0 <= index < len(source):
            raise ValueError(
                f"index must be in [0, {len(source)}) for split {split!r}, got {index}"
            )
        record = source[index]
        for field in (self.prompt_field, self.answer_field):
            if field not in record:
                raise ValueError(
                    f"record {index} of {split!r} has no field {field!r}; fields: {sorted(record)}"
                )
        prompt = _text(record[self.prompt_field])
        if self.answer_format == "boxed":
            prompt = f"{prompt}\n{metrics.BOXED_INSTRUCTION}"
        return Task(
            uid=f"{self.name}/{split}/{index}",
            family=self.name,
            prompt=prompt,
            answer=self.extract(_text(record[self.answer_field])),
            task_id=self.task_id,
            system=self.system,
        )

    def verify(self, task: Task, response: str) -> Verdict:
        """Scores the stripped final answer (`<answer>` content, or the last box) with `metric`.

        Args:
            task: a task of this family.
            response: the full response (text before the answer tag is allowed).

        Returns:
            The verdict; `info["reason"]` starts with "correct", "partial" (a metric strictly
            between 0 and 1), "wrong" or "malformed" (no single final answer tag: reward 0).
        """
        content, reason = metrics.extract_final_answer(response, self.answer_format)
        if content is None:
            return Verdict(0.0, {"reason": reason})
        content = boxed_integer(content) if self.answer_format == "boxed" else content.strip()
        reward = float(self.metric(content, task.answer))
        if reward == 1.0:
            return Verdict(reward, {"reason": "correct"})
        kind = "wrong:" if reward == 0.0 else f"partial: scored {reward:.3f},"
        return Verdict(reward, {"reason": f"{kind} expected {task.answer!r}, got {content!r}"})

    def expert(self, task: Task, rng: np.random.Generator, noise: float = 0.0) -> str:
        """Answers with the gold answer; with probability `noise` a near miss.

        The near miss is the gold number off by one (numeric golds) or the gold answer of another
        record of the same split (the answer to a different question).
        """
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise must be in [0, 1], got {noise!r}")
        answer = task.answer
        if rng.random() < noise:
            answer = self._near_miss(task, rng)
        if self.answer_format == "boxed":
            return f"\\boxed{{{answer}}}"
        return f"<answer>{answer}</answer>"

    def _near_miss(self, task: Task, rng: np.random.Generator) -> str:
        value = metrics.parse_number(task.answer)
        if value is not None and value == int(value):
            return str(int(value) + int(rng.choice([-1, 1])))
        source = self._source(task.uid.rsplit("/", 2)[1])
        for index in rng.permutation(len(source)):
            other = self.extract(_text(source[int(index)][self.answer_field]))
            if self.metric(other, task.answer) < 1.0:
                return other
        raise ValueError(
            f"no record of {task.uid!r}'s split has a different answer to use as a mistake"
        )

    def _source(self, split: str) -> Sequence[Mapping[str, Any]]:
        check_split(split)
        if split not in self.sources:
            raise ValueError(
                f"{self.name} has no {split!r} split; available: {sorted(self.sources)}"
            )
        return self.sources[split]


def external_qa(
    dataset: str,
    *,
    data_dir: str,
    splits: Mapping[str, str] | None = None,
    name: str | None = None,
    **kwargs: Any,
) -> ExternalQA:
    """The registry's "external_qa" family: `ExternalQA.from_tfds` with config-friendly defaults.

    A run trains on a prepared TFDS dataset with `task.family="external_qa"` and e.g.
    `task.kwargs={"dataset": "jsonl_qa/gsm8k", "data_dir": "/data/tfds", "answer_format": "boxed"}`.

    Args:
        dataset: TFDS name ("gsm8k", or "jsonl_qa/<name>" written by `build_jsonl_qa`).
        data_dir: the TFDS data directory.
        splits: "train"/"heldout" -> the dataset's split names (default: train and test).
        name: family name (default: the dataset's name without its builder prefix).
        **kwargs: the other `ExternalQA` fields (prompt_field, answer_field, answer_format,
            system, task_id).
    """
    splits = {"train": "train", "heldout": "test"} if splits is None else splits
    default = dataset.split("/")[-1] if dataset.startswith(f"{JSONL_BUILDER}/") else None
    return ExternalQA.from_tfds(
        dataset, data_dir=data_dir, splits=splits, name=name or default, **kwargs
    )


JSONL_BUILDER = "jsonl_qa"


class JsonlQa(tfds.core.GeneratorBasedBuilder):
    """Question/answer records from JSON-lines files as a TFDS dataset `jsonl_qa/<config_name>`
    (array_record), e.g. gsm8k's `{"question": ..., "answer": "... #### 72"}` lines.

    Each split is one file; every line must hold the `fields` as strings, written in file order.
    """

    VERSION = tfds.core.Version("1.0.0")
    code_path = None  # nothing is downloaded; see RljaxTasks

    def __init__(
        self,
        *,
        files: Mapping[str, str] | None = None,
        config_name: str = "default",
        fields: Sequence[str] = ("question", "answer"),
        **kwargs: Any,
    ):
        self._files = dict(files or {})
        self._fields = tuple(fields)
        config = tfds.core.BuilderConfig(name=config_name, description=json.dumps(self._files))
        super().__init__(config=config, **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        features = {field: tfds.features.Text() for field in self._fields}
        return tfds.core.DatasetInfo(
            builder=self,
            description="Question/answer records from JSON-lines files.",
            features=tfds.features.FeaturesDict(features),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        del dl_manager
        return {split: self._generate_examples(path) for split, path in self._files.items()}

    def _generate_examples(self, path: str):
        for index, row in enumerate(read_jsonl(path, self._fields)):
            yield index, row


def read_jsonl(path: str, fields: Sequence[str]) -> list[dict[str, str]]:
    """The `fields` of every non-empty line of a JSON-lines file.

    Raises:
        ValueError: naming the file and line of a record that is not JSON, lacks a field, or whose
            field is not a string.
    """
    rows = []
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number} is not JSON: {err}") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number} is not a JSON object")
            for field in fields:
                if not isinstance(record.get(field), str):
                    raise ValueError(
                        f"{path}:{number} has no string field {field!r}; fields: {sorted(record)}"
                    )
            rows.append({field: record[field] for field in fields})
    if not rows:
        raise ValueError(f"{path} holds no records")
    return rows


def build_jsonl_qa(
    files: Mapping[str, str],
    data_dir: str,
    *,
    name: str,
    fields: Sequence[str] = ("question", "answer"),
) -> str:
    """Writes JSON-lines question/answer files as the TFDS dataset `jsonl_qa/<name>` (offline).

    Args:
        files: TFDS split name -> JSON-lines file, e.g. {"train": "train.jsonl", "test":
            "test.jsonl"} (gsm8k's split names, which `external_qa` reads by default).
        data_dir: the TFDS data directory.
        name: the dataset's config name.
        fields: the string fields kept from every line.

    Returns:
        The dataset name for `external_qa(dataset=..., data_dir=...)` / `tfds.data_source`.

    Raises:
        ValueError: a malformed file (`read_jsonl`), or `name` already prepared in `data_dir`
            (datasets are immutable: choose another name or remove its directory).
    """
    for path in files.values():
        read_jsonl(path, fields)  # every line is checked before anything is written
    builder = JsonlQa(
        files=files, config_name=name, fields=fields, data_dir=data_dir, file_format="array_record"
    )
    if builder.is_prepared():
        raise ValueError(
            f"{builder.data_path} already exists; choose another name or remove that directory"
        )
    builder.download_and_prepare()
    return f"{JSONL_BUILDER}/{name}"


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
