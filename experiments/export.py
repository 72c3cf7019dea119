"""Export a checkpoint of a run as a Hugging Face directory (weights, tokenizer, generation config).

    python -m rljax.experiments.export --run-dir runs/grpo-real-seed0 [--step 100] [--out DIR]

The run is rebuilt from its `config.json` (the checkpoint the run started from, `model.hf_path`,
must still be where the config says: its tokenizer and config are read again), checkpoint `--step`
(default: the latest) is restored and verified, and the policy is written to `--out` (default
`<run-dir>/hf-step<N>`) with `rljax.train.export.export_hf`. The run directory is locked while it
is read, so a run that is still training is refused rather than read mid-save.
"""

from __future__ import annotations

import argparse
import json
import sys

from etils import epath
from rljax.experiments import cli

from rljax.train import Trainer, rundir
from rljax.train.config import ExperimentConfig


def export_checkpoint(
    run_dir: str | epath.Path, *, step: int | None = None, out: str | epath.Path | None = None
) -> epath.Path:
    """Writes checkpoint `step` (None: the latest) of `run_dir` as a Hugging Face directory.

    Returns:
        The directory written (default `<run_dir>/hf-step<step>`).

    Raises:
        FileNotFoundError: no `config.json` or no such checkpoint; RunDirectoryLockedError: the
            run is being trained.
    """
    run_dir = epath.Path(run_dir)
    config_file = run_dir / rundir.CONFIG_FILE
    if not config_file.exists():
        raise FileNotFoundError(f"{config_file} does not exist: is {run_dir} a run directory?")
    stored = json.loads(config_file.read_text())
    for section in ("task", "method"):  # JSON stored the presets' tuples (e.g. digits) as lists
        stored[section]["kwargs"] = _tuples(stored[section]["kwargs"])
    config = ExperimentConfig.from_dict(stored)
    with rundir.RunLock(run_dir):
        trainer = Trainer(config, run_dir)
        step = trainer.load_checkpoint(step)
        return trainer.export(out or run_dir / f"hf-step{step}")


def _tuples(value):
    """Lists (as JSON stores tuples) back to tuples, inside dicts too."""
    if isinstance(value, dict):
        return {key: _tuples(item) for key, item in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(item) for item in value)
    return value


def main(argv: list[str] | None = None) -> epath.Path:
    parser = argparse.ArgumentParser(
        prog="python -m rljax.experiments.export", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--run-dir", required=True, help="the run directory")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    parser.add_argument("--out", default=None, help="output directory (default: RUN/hf-step<N>)")
    args = parser.parse_args(argv)
    cli.configure_logging()
    try:
        out = export_checkpoint(args.run_dir, step=args.step, out=args.out)
    except (FileNotFoundError, ValueError, rundir.RunDirectoryLockedError) as err:
        raise SystemExit(f"error: {err}") from None
    print(f"exported: {out}")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
