"""`tools/import_graph.py`: the package's import graph has no cycle and no upward import."""

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _tool():
    spec = importlib.util.spec_from_file_location(
        "import_graph", ROOT / "tools" / "import_graph.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_cycle_and_no_upward_import():
    tool = _tool()
    edges = tool.graph()
    assert "rljax.train.loop" in edges and "rljax.kernels" in edges
    assert tool.cycles(edges) == []
    assert tool.layer_violations(edges) == []


def test_the_checker_finds_cycles_and_upward_imports():
    tool = _tool()
    edges = {
        "rljax.losses.a": {"rljax.methods"},  # upward: losses < methods
        "rljax.methods": {"rljax.losses.a"},
        "rljax.train.x": {"rljax.train.y", "rljax.rollout"},
        "rljax.train.y": {"rljax.train.x"},
        "rljax.rollout": {"rljax.envs.base"},
        "rljax.envs.base": set(),
    }
    assert tool.cycles(edges) == [
        ["rljax.losses.a", "rljax.methods"],
        ["rljax.train.x", "rljax.train.y"],
    ]
    assert tool.layer_violations(edges) == [("rljax.losses.a", "rljax.methods")]
    assert tool.allowed("rollout") == {
        "rollout",
        "data",
        "sampling",
        "envs",
        "models",
        "kernels",
        "parallel",
        "losses",
    }
