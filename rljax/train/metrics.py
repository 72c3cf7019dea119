"""Metric sinks: JSONL always, TensorBoard when `tensorboardX` is installed, a live progress bar."""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

import numpy as np
from etils import epath


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
    the run that crashed) are dropped, so the file always matches the restored state.
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
                line
                for line in self.path.read_text().splitlines()
                if line and resume_step is not None and json.loads(line)["step"] <= resume_step
            ]
            self.path.write_text("".join(line + "\n" for line in kept))
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
    path = epath.Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


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
