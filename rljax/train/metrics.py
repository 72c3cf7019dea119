"""Metric sinks: JSONL always, TensorBoard when `tensorboardX` is installed, a live progress bar."""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any, Mapping

import numpy as np
from etils import epath

log = logging.getLogger(__name__)


def to_python(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Converts scalar arrays to floats (non-scalars are dropped: logs hold scalars only)."""
    out = {}
    for key, value in metrics.items():
        arr = np.asarray(value)
        if arr.size == 1 and arr.dtype.kind in "biuf":
            out[key] = float(arr.reshape(()))
    return out


class MetricWriter:
    """Appends one JSON object per step to `metrics.jsonl` and mirrors it to TensorBoard if present.

    On resume, pass `resume_step`: lines of steps after it (written after the last checkpoint by
    the run that crashed) are dropped, so the file always matches the restored state; a torn last
    line (a kill mid-write) is dropped with a warning.
    """

    def __init__(
        self,
        run_dir: str | epath.Path,
        *,
        resume_step: int | None = None,
        progress_total: int | None = None,
    ):
        self.path = epath.Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            kept = [
                record
                for record in repair_jsonl(self.path)
                if resume_step is not None and record["step"] <= resume_step
            ]
            self.path.write_text("".join(json.dumps(r, allow_nan=True) + "\n" for r in kept))
        self._tb = _tensorboard(epath.Path(run_dir) / "tensorboard")
        self._bar = _progress(progress_total, initial=resume_step or 0)

    def write(self, step: int, metrics: Mapping[str, Any]) -> dict[str, float]:
        record = {"step": int(step), **to_python(metrics)}
        with self.path.open("a") as f:
            f.write(json.dumps(record, allow_nan=True) + "\n")
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and math.isfinite(value):
                    self._tb.add_scalar(key, value, step)
        if self._bar is not None:
            shown = {
                k: f"{record[k]:.3g}" for k in ("reward", "tokens_per_s", "loss") if k in record
            }
            self._bar.set_postfix(shown)
            self._bar.update(1)
        return record

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._bar is not None:
            self._bar.close()


def read_metrics(run_dir: str | epath.Path) -> list[dict]:
    """The records of `<run_dir>/metrics.jsonl` ([] when absent)."""
    path = epath.Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def repair_jsonl(path: str | os.PathLike) -> list[dict]:
    """Drops a torn last line of a JSONL log (with a warning) and returns its records.

    Only the last line can be torn by a kill mid-write: an unparsable line before it is real
    corruption and raises ValueError naming the file and line. A last line that parses but lacks
    its newline gets one, so the next append starts a new line.

    Args:
        path: the JSONL file (it must exist).

    Returns:
        The parsed records, in order.
    """
    path = epath.Path(path)
    text = path.read_text()
    lines = text.splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number < len(lines):
                raise ValueError(f"{path} line {number} is not valid JSON ({err}): {line[:80]!r}")
            log.warning("%s: dropping a torn last line (a kill mid-write): %r", path, line[:80])
            text = "".join(kept + "\n" for kept in lines[:-1])
            tmp = path.parent / (path.name + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
            return records
    if text and not text.endswith("\n"):
        with path.open("a") as f:
            f.write("\n")
    return records


def _tensorboard(directory: epath.Path):
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(directory))


def _progress(total: int | None, initial: int):
    if total is None:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="rl", dynamic_ncols=True)
