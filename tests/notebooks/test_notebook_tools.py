"""The notebooks' plumbing: the percent-format builder and the shared helpers."""

from __future__ import annotations

import pathlib
import sys

import chex
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "notebooks"))

import build_notebooks  # noqa: E402
import nbhelpers  # noqa: E402

from rljax import methods  # noqa: E402
from rljax.train.config import ExperimentConfig, apply_overrides  # noqa: E402

SOURCE = """# %% [markdown]
# # Title
#
# Some *text*.

# %%
x = 1

# %%
print(x)
"""


def test_parse_cells_splits_markdown_and_code():
    cells = build_notebooks.parse_cells(SOURCE)
    assert [c.cell_type for c in cells] == ["markdown", "code", "code"]
    assert cells[0].source == "# Title\n\nSome *text*."
    assert cells[1].source == "x = 1"
    assert cells[2].source == "print(x)"


@pytest.mark.parametrize(
    "source, message",
    [
        ("x = 1\n# %%\ny = 2\n", "before the first"),
        ("# %% [raw]\nx\n", "unknown cell marker"),
        ("# %% [markdown]\nnot a comment\n", "must start with '# '"),
    ],
)
def test_parse_cells_rejects_malformed_sources(source, message):
    with pytest.raises(ValueError, match=message):
        build_notebooks.parse_cells(source, origin="bad.py")


def test_build_gives_stable_ids_and_no_outputs(tmp_path):
    path = tmp_path / "demo.py"
    path.write_text(SOURCE)
    notebook = build_notebooks.build(path)
    assert [cell["id"] for cell in notebook.cells] == ["demo-00", "demo-01", "demo-02"]
    assert all(cell.outputs == [] for cell in notebook.cells if cell.cell_type == "code")
    assert build_notebooks.notebook_text(path) == build_notebooks.notebook_text(path)


def test_run_dir_is_keyed_by_the_config(tmp_path):
    config = ExperimentConfig()
    same = nbhelpers.run_dir(ExperimentConfig(), root=tmp_path)
    other = nbhelpers.run_dir(apply_overrides(config, ["train.steps=3"]), root=tmp_path)
    assert nbhelpers.run_dir(config, root=tmp_path) == same
    assert other != same
    assert same.parent == tmp_path and same.name.startswith("grpo-grpo-")


def test_with_method_replaces_only_the_method():
    config = apply_overrides(ExperimentConfig(), ["train.steps=3"])
    swapped = nbhelpers.with_method(config, "echo", coef=0.1)
    assert swapped.method.name == "echo" and swapped.method.kwargs == {"coef": 0.1}
    assert swapped.train == config.train and swapped.task == config.task


def test_token_and_response_credit_by_hand():
    mask = np.array([[0, 1, 1, 0], [0, 1, 1, 1]], np.float32)
    credit = nbhelpers.token_credit(jnp.array([2.0, -1.0]), mask)
    np.testing.assert_array_equal(credit, [[0, 2, 2, 0], [0, -1, -1, -1]])
    per_token = np.array([[0, 1, 3, 9], [0, 2, 2, 2]], np.float32)
    np.testing.assert_allclose(nbhelpers.token_credit(per_token, mask), per_token * mask)
    np.testing.assert_allclose(nbhelpers.response_credit(per_token, mask), [2.0, 2.0])
    np.testing.assert_allclose(nbhelpers.response_credit(per_token, np.zeros_like(mask)), [0, 0])


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-sum-norm"])
def test_loss_credit_is_the_advantage_on_policy(mode):
    # GRPO on one group of two: rewards [1, 0] -> z-scores [0.707107, -0.707107] (unbiased std).
    method = methods.grpo(mode=mode)
    mask = jnp.array([[0, 1, 1, 0], [0, 1, 1, 1]], jnp.float32)
    old = jnp.array([[0.0, -0.5, -1.0, 0.0], [0.0, -2.0, -0.1, -0.3]])
    batch = {
        "old_logprobs": old,
        "action_mask": mask,
        "advantages": jnp.array([0.707107, -0.707107]),
    }
    credit = nbhelpers.loss_credit(method, batch)
    if mode == "token-mean":  # dL/dlogp = -A / N, N = 5 tokens
        expected = np.array([[0, 1, 1, 0], [0, -1, -1, -1]]) * 0.707107
    else:  # dL/dlogp = -A / (B * T) = -A / 8, scaled by N = 5
        expected = np.array([[0, 1, 1, 0], [0, -1, -1, -1]]) * 0.707107 * 5 / 8
    chex.assert_trees_all_close(credit, expected, atol=1e-6)
