"""README's "Use from Python" example, run exactly as written (in a temporary directory)."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _python_example() -> str:
    section = README.read_text().split("## Use from Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the section has one python example"
    return blocks[0]


def test_use_from_python_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "readme_example"}
    exec(compile(_python_example(), str(README), "exec"), namespace)
    result = namespace["result"]
    assert [m["step"] for m in result.metrics] == [1, 2]
    assert [e["step"] for e in result.evals] == [0, 2] and "pass@4" in result.evals[-1]
    assert (tmp_path / "runs" / "custom-reward" / "checkpoints").is_dir()
    # The mean of 2 x 4 rewards that are each 0 or 1 (what the example's reward returns).
    assert all(float(m["reward"] * 8).is_integer() for m in result.metrics)
    reward, pass_at_1 = capsys.readouterr().out.split()[-2:]
    assert float(reward) == result.metrics[-1]["reward"]
    assert float(pass_at_1) == result.evals[-1]["pass@1"]
