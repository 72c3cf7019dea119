"""The notebooks run top to bottom in a fresh kernel, and match the sources they are built from.

Each notebook is executed with nbclient in a new `python3` kernel (matplotlib's Agg backend, one
CPU device, as on a laptop); any cell that raises fails the test. The method notebooks train
small models and are marked slow (ECHO's too: minutes of CPU); the quickstart and the model
notebook run in the default suite.
"""

from __future__ import annotations

import os
import pathlib
import re
import sys

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[2] / "notebooks"
sys.path.insert(0, str(NOTEBOOKS))

import build_notebooks  # noqa: E402

# Notebook -> whether it is too slow for the default suite (it trains two small models).
NOTEBOOK_SPEED = {
    "quickstart": False,
    "model": False,
    "echo": True,
    "delta": True,
    "golong": True,
    "anti_sd": True,
    "rubric_em": True,
    "poly_epo": True,
}
CELL_TIMEOUT_S = 900
DEVICE_COUNT_FLAG = re.compile(r"--xla_force_host_platform_device_count=\d+")


def test_every_source_has_a_notebook_and_a_test_entry():
    sources = {path.stem for path in build_notebooks.source_paths()}
    notebooks = {path.stem for path in NOTEBOOKS.glob("*.ipynb")}
    assert sources == notebooks == set(NOTEBOOK_SPEED)


@pytest.mark.parametrize("source", build_notebooks.source_paths(), ids=lambda path: path.stem)
def test_committed_notebook_matches_its_source(source):
    committed = (NOTEBOOKS / f"{source.stem}.ipynb").read_text()
    assert committed == build_notebooks.notebook_text(source), (
        f"{source.stem}.ipynb is out of date; run python notebooks/build_notebooks.py"
    )
    notebook = nbformat.reads(committed, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")


def _kernel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the kernel inherits: Agg plots, CPU, one device (the test session fakes eight)."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    flags = DEVICE_COUNT_FLAG.sub("", os.environ.get("XLA_FLAGS", "")).strip()
    if flags:
        monkeypatch.setenv("XLA_FLAGS", flags)
    else:
        monkeypatch.delenv("XLA_FLAGS", raising=False)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=[pytest.mark.slow] if slow else [])
        for name, slow in NOTEBOOK_SPEED.items()
    ],
)
def test_notebook_runs_top_to_bottom(name, monkeypatch):
    _kernel_environment(monkeypatch)
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()
    errors = [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors
