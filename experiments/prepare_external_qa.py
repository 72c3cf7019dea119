"""Prepare a gsm8k-like question/answer dataset for training, offline, from JSON-lines files.

    python -m rljax.experiments.prepare_external_qa --train train.jsonl [--test test.jsonl] \\
        --data-dir /data/tfds --name gsm8k

Each line is a JSON object with a "question" and an "answer" whose final answer follows "####"
(gsm8k's format: `{"question": "...", "answer": "... #### 72"}`). The files are written as the TFDS
dataset `jsonl_qa/<name>` (array_record, read without TensorFlow) with splits "train" and "test";
without `--test`, the last `--num-test` lines of the train file are held out. Then train on it with
`task.family=external_qa` (see the README, "Train a real model"):

    --set task.family=external_qa \\
    --set 'task.kwargs={"dataset": "jsonl_qa/gsm8k", "data_dir": "/data/tfds", "answer_format": "boxed"}'
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from rljax.data import tfds_builders


def prepare(
    train: str,
    data_dir: str,
    *,
    name: str,
    test: str | None = None,
    num_test: int = 0,
    fields: tuple[str, ...] = ("question", "answer"),
) -> str:
    """Writes the dataset; returns its TFDS name (`jsonl_qa/<name>`).

    Raises:
        ValueError: a malformed line (naming file and line), no held-out split, or `name` already
            prepared in `data_dir`.
    """
    if test is not None:
        return tfds_builders.build_jsonl_qa(
            {"train": train, "test": test}, data_dir, name=name, fields=fields
        )
    rows = tfds_builders.read_jsonl(train, fields)
    if not 0 < num_test < len(rows):
        raise ValueError(
            f"without --test, --num-test must be in [1, {len(rows) - 1}] (the file has "
            f"{len(rows)} records), got {num_test}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for split, part in (("train", rows[:-num_test]), ("test", rows[-num_test:])):
            files[split] = os.path.join(tmp, f"{split}.jsonl")
            with open(files[split], "w") as f:
                f.writelines(json.dumps(row) + "\n" for row in part)
        return tfds_builders.build_jsonl_qa(files, data_dir, name=name, fields=fields)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(
        prog="python -m rljax.experiments.prepare_external_qa",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--train", required=True, help="JSON-lines file of the train split")
    parser.add_argument("--test", default=None, help="JSON-lines file of the held-out split")
    parser.add_argument(
        "--num-test", type=int, default=0, help="without --test: hold out the last N train lines"
    )
    parser.add_argument("--data-dir", required=True, help="TFDS data directory to write into")
    parser.add_argument("--name", required=True, help="dataset name: jsonl_qa/<name>")
    parser.add_argument(
        "--fields", nargs=2, default=("question", "answer"), metavar=("PROMPT", "ANSWER")
    )
    args = parser.parse_args(argv)
    try:
        dataset = prepare(
            args.train,
            args.data_dir,
            name=args.name,
            test=args.test,
            num_test=args.num_test,
            fields=tuple(args.fields),
        )
    except (OSError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    print(f"prepared {dataset} in {args.data_dir}")
    return dataset


if __name__ == "__main__":
    main(sys.argv[1:])
