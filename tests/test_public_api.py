"""The public surface: `__all__` names exist and are documented; importing the trainer is quiet."""

import subprocess
import sys

import rljax
import rljax.train

# Hides PyTorch from transformers (as on a machine without it), then imports the trainer.
_IMPORT_WITHOUT_TORCH = """
import importlib.util, sys
find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a, **k: (
    None if name.split(".")[0] == "torch" else find_spec(name, *a, **k)
)
sys.modules["torch"] = None
import rljax.train
"""


def test_train_exports_are_documented():
    assert {"train", "Trainer", "RunResult", "init_state", "TrainBatch"} <= set(rljax.train.__all__)
    for name in rljax.train.__all__:
        obj = getattr(rljax.train, name)
        assert obj.__doc__ and obj.__doc__.strip(), name
    assert set(rljax.__all__) >= {"losses", "methods", "train"}


def test_importing_the_trainer_prints_nothing():
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_WITHOUT_TORCH], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
