"""Run report: summary JSON, PNG curves and a markdown page, written from a run directory.

Reads `config.json`, `metrics.jsonl` and `eval.jsonl` (what the trainer writes) and produces
`report/summary.json`, `report/curves.png` (reward, held-out accuracy, entropy and the method's own
diagnostics against the step) and `report/README.md`.
"""

from __future__ import annotations

import json
import math

from etils import epath
from matplotlib.figure import Figure

# Metrics every run logs; everything else a method logs is plotted as a diagnostic.
CORE_CURVES = ("reward", "entropy", "loss", "grad_norm")
METHOD_PREFIXES = (
    "clip",
    "kl",
    "echo",
    "env_ce",
    "delta",
    "tmn",
    "anti_sd",
    "teacher",
    "stage",
    "poly_epo",
    "adv",
)


def _read_jsonl(path: epath.Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    pairs = [
        (r["step"], r[key])
        for r in records
        if key in r and isinstance(r[key], (int, float)) and math.isfinite(r[key])
    ]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def write_report(run_dir: str | epath.Path) -> epath.Path:
    """Writes the report of `run_dir` and returns the path of its markdown page."""
    run_dir = epath.Path(run_dir)
    out = run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    config = json.loads((run_dir / "config.json").read_text())
    train = _read_jsonl(run_dir / "metrics.jsonl")
    evals = _read_jsonl(run_dir / "eval.jsonl")

    diagnostics = sorted(
        {k for r in train for k in r if k.startswith(METHOD_PREFIXES) and k not in CORE_CURVES}
    )
    eval_keys = sorted({k for r in evals for k in r if k.startswith(("pass@", "maj@"))})
    panels = [("train", k) for k in CORE_CURVES if any(k in r for r in train)]
    panels += [("eval", k) for k in eval_keys] + [("train", k) for k in diagnostics]

    cols = 3
    rows = max(1, math.ceil(len(panels) / cols))
    # A bare Figure (no pyplot): writing a report never changes the caller's matplotlib backend.
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (source, key) in zip(axes.flat, panels):
        steps, values = _series(train if source == "train" else evals, key)
        ax.plot(steps, values, marker="o" if source == "eval" else None, markersize=3)
        ax.set_title(key if source == "train" else f"held-out {key}", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(
        f"{config.get('name', run_dir.name)}: {config['method']['name']} on "
        f"{config['task']['family']}",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=90)

    summary = {
        "run_dir": str(run_dir),
        "method": config["method"]["name"],
        "task": config["task"]["family"],
        "steps": train[-1]["step"] if train else 0,
        "first_eval": evals[0] if evals else None,
        "final_eval": evals[-1] if evals else None,
        "final_train": train[-1] if train else None,
        "mean_steps_per_s": _mean(train, "steps_per_s"),
        "mean_tokens_per_s": _mean(train, "tokens_per_s"),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))

    lines = [
        f"# Run report: {config.get('name', run_dir.name)}",
        "",
        f"- method: `{summary['method']}`, task: `{summary['task']}`, steps: {summary['steps']}",
        f"- throughput: {_fmt(summary['mean_steps_per_s'])} steps/s, "
        f"{_fmt(summary['mean_tokens_per_s'])} tokens/s",
        "",
    ]
    if evals:
        lines += [
            "| held-out metric | first (step %d) | final (step %d) |"
            % (evals[0]["step"], evals[-1]["step"]),
            "|---|---|---|",
        ]
        lines += [
            f"| {k} | {_fmt(evals[0].get(k))} | {_fmt(evals[-1].get(k))} |" for k in eval_keys
        ]
        lines.append("")
    lines += [
        "![curves](curves.png)",
        "",
        "Config:",
        "",
        "```json",
        json.dumps(config, indent=2),
        "```",
        "",
    ]
    page = out / "README.md"
    page.write_text("\n".join(lines))
    return page


def _mean(records: list[dict], key: str) -> float | None:
    _, values = _series(records, key)
    return sum(values) / len(values) if values else None


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"
