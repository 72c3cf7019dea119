"""A study's report: `report.md` (the table), `summary.json` (every number, per seed) and
`curves.png` (the held-out metric, the reward and the methods' diagnostics, mean over seeds with a
band of +-1 sd per arm).

Reads what the trainer writes in each run directory (`eval.jsonl`, `metrics.jsonl`). Final values
are the last evaluation (at the last step); arms are compared with the baseline paired by seed
(`experiments.stats.paired_difference`). Plots need matplotlib (the `plot` extra); without it the
tables are still written and the page says the curves are missing.
"""

from __future__ import annotations

import datetime
import json
import math
import subprocess

from etils import epath
from rljax.experiments import stats
from rljax.experiments.studies import Study

LEVEL = 0.95


def _read_jsonl(path: epath.Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _series(records: list[dict], key: str) -> dict[int, float]:
    return {
        int(r["step"]): float(r[key])
        for r in records
        if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])
    }


def commit() -> str:
    """The source tree's commit, with "+uncommitted changes" when tracked files differ from it."""
    root = epath.Path(__file__).parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + (" +uncommitted changes" if dirty else "")


def steps_to_target(evals: dict[int, float], target: float) -> int | None:
    """The first evaluated step whose value reaches `target` (None if none does)."""
    return next((step for step in sorted(evals) if evals[step] >= target), None)


def _reached(reach: dict[int, int | None]) -> dict:
    """{"mean_over_reached", "reached", "seeds"} of per-seed steps (None: not reached)."""
    steps = [v for v in reach.values() if v is not None]
    return {
        "mean_over_reached": (sum(steps) / len(steps)) if steps else None,
        "reached": len(steps),
        "seeds": len(reach),
    }


def summarize(
    study: Study,
    *,
    runs: epath.Path,
    arms: list[str],
    seeds: list[int],
    records: dict,
    warm_starts: dict,
) -> dict:
    """Every number of the report, with its per-seed values."""
    metric = study.metric
    evals_of = {}
    for arm in arms:
        for seed in seeds:
            run_dir = runs / f"{arm}-seed{seed}"
            evals_of[arm, seed] = _series(_read_jsonl(run_dir / "eval.jsonl"), metric)
            if not evals_of[arm, seed]:
                raise ValueError(f"{run_dir}: no held-out {metric!r} in eval.jsonl")
    # "Steps to the baseline's peak": per seed, the baseline's best evaluation is the target.
    peaks = (
        {s: max(evals_of[study.baseline, s].values()) for s in seeds}
        if study.baseline in arms
        else None
    )
    per_arm: dict[str, dict] = {}
    for arm in arms:
        final, start, reach, to_peak, wall = {}, {}, {}, {}, {}
        for seed in seeds:
            evals = evals_of[arm, seed]
            final[seed] = evals[max(evals)]
            start[seed] = evals.get(0)
            reach[seed] = steps_to_target(evals, study.target)
            if peaks is not None:
                to_peak[seed] = steps_to_target(evals, peaks[seed])
            wall[seed] = records[(arm, seed)]["wall_s"]
        per_arm[arm] = {
            "final": stats.t_interval(list(final.values()), level=LEVEL).to_dict(),
            "final_per_seed": final,
            "start_per_seed": start,
            "steps_to_target_per_seed": reach,
            "steps_to_target": _reached(reach),
            "steps_to_baseline_peak_per_seed": to_peak if peaks is not None else None,
            "steps_to_baseline_peak": _reached(to_peak) if peaks is not None else None,
            "wall_s_per_seed": wall,
            "wall_s": stats.t_interval(list(wall.values()), level=LEVEL).to_dict(),
        }
    if study.baseline in per_arm:
        base = per_arm[study.baseline]["final_per_seed"]
        for arm in arms:
            mine = per_arm[arm]["final_per_seed"]
            per_arm[arm]["diff_to_baseline_per_seed"] = {s: mine[s] - base[s] for s in seeds}
            per_arm[arm]["diff_to_baseline"] = stats.paired_difference(
                mine, base, level=LEVEL
            ).to_dict()
    # A warm start shared across seeds (`sft.seed`) is listed under each of them, trained once.
    sft_s = sum(
        {
            w.get("dir", (s, i)): w["wall_s"]
            for s, ws in warm_starts.items()
            for i, w in enumerate(ws)
        }.values()
    )
    runs_s = sum(r["wall_s"] for r in records.values())
    probes = (
        summarize_probes(study, arms=arms, seeds=seeds, records=records, warm=warm_starts)
        if study.probe is not None
        else None
    )
    return {
        "study": study.name,
        "metric": metric,
        "target": study.target,
        "baseline": study.baseline,
        "baseline_peak_per_seed": peaks,
        "level": LEVEL,
        "seeds": seeds,
        "arms": {a: list(study.arms[a]) for a in arms},
        "results": per_arm,
        "probes": probes,
        "contrasts": summarize_contrasts(study, arms=arms, results=per_arm, probes=probes),
        "warm_starts": {str(s): w for s, w in warm_starts.items()},
        "wall_s": {"sft": sft_s, "runs": runs_s, "total": sft_s + runs_s},
    }


def summarize_probes(
    study: Study, *, arms: list[str], seeds: list[int], records: dict, warm: dict
) -> dict:
    """Per probe scalar: each arm's interval over seeds and paired difference to the baseline,
    and the warm start's (the policy every arm of a seed started from); curves per arm and seed."""
    scalars: dict[str, dict] = {}
    names = sorted({n for r in records.values() for n in r["probe"]["scalars"]})
    for name in names:
        per_arm = {}
        base_values = _defined(records, study.baseline, seeds, name)
        for arm in arms:
            # A probe may leave a scalar undefined for a policy (DelTA's coefficients need a
            # group with both outcomes); the arm is reported over the seeds that define it.
            values = _defined(records, arm, seeds, name)
            if not values:
                continue
            entry = {
                "per_seed": values,
                "interval": stats.t_interval(list(values.values()), level=LEVEL).to_dict(),
            }
            shared = sorted(set(values) & set(base_values))
            if arm != study.baseline and shared:
                entry["diff_to_baseline"] = stats.paired_difference(
                    {s: values[s] for s in shared},
                    {s: base_values[s] for s in shared},
                    level=LEVEL,
                ).to_dict()
            per_arm[arm] = entry
        starts = [_shared_warm_start(warm[s]) for s in seeds]
        start_values = [w["probe"]["scalars"].get(name) for w in starts if w is not None]
        scalars[name] = {
            "arms": per_arm,
            "warm_start": stats.t_interval(start_values, level=LEVEL).to_dict()
            if start_values and None not in start_values
            else None,
        }
    curves = {arm: {s: records[(arm, s)]["probe"]["curves"] for s in seeds} for arm in arms}
    starts = {s: _shared_warm_start(warm[s]) for s in seeds}
    curves["warm start"] = {s: w["probe"]["curves"] for s, w in starts.items() if w is not None}
    return {"scalars": scalars, "curves": curves, "seeds": list(seeds)}


def summarize_contrasts(
    study: Study, *, arms: list[str], results: dict, probes: dict | None
) -> list[dict]:
    """`arm - reference` paired by seed for each of the study's contrasts whose two arms ran:
    the final held-out metric, or a probe scalar over the seeds whose probes define it for both.

    A measure that no seed defines for both arms (a probe scalar the runs never logged, e.g. a
    diagnostic of updates that dynamic sampling skipped, or a misspelt name) is kept with
    `diff` None, so the report shows it as undefined instead of dropping it.
    """
    out = []
    for arm, reference, measures in study.contrasts:
        if arm not in arms or reference not in arms:
            continue
        for measure in measures:
            if measure == study.metric:
                mine, theirs = (results[a]["final_per_seed"] for a in (arm, reference))
            else:
                scalar = (probes or {}).get("scalars", {}).get(measure, {"arms": {}})
                mine, theirs = (
                    scalar["arms"].get(a, {}).get("per_seed", {}) for a in (arm, reference)
                )
            shared = sorted(set(mine) & set(theirs))
            row = {"arm": arm, "reference": reference, "measure": measure, "diff": None}
            if shared:
                row["arm_mean"] = sum(mine[s] for s in shared) / len(shared)
                row["reference_mean"] = sum(theirs[s] for s in shared) / len(shared)
                row["diff"] = stats.paired_difference(
                    {s: mine[s] for s in shared}, {s: theirs[s] for s in shared}, level=LEVEL
                ).to_dict()
            out.append(row)
    return out


def _defined(records: dict, arm: str, seeds: list[int], name: str) -> dict[int, float]:
    """{seed: value} of probe scalar `name` for `arm`, over the seeds whose probe defines it."""
    values = {s: records[(arm, s)]["probe"]["scalars"].get(name) for s in seeds}
    return {s: v for s, v in values.items() if v is not None}


def _shared_warm_start(records: list[dict]) -> dict | None:
    """The warm start that the seed's non-SFT arms share (its directory has no arm suffix)."""
    return next((w for w in records if w.get("shared") and "probe" in w), None)


def _f(value, digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _interval(d: dict, signed: bool = False) -> str:
    if d["low"] is None:
        return "n/a (1 seed)"
    return f"[{_f(d['low'], signed=signed)}, {_f(d['high'], signed=signed)}]"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def markdown(
    study: Study, summary: dict, *, command: str, sha: str, plots: bool, smoke: bool
) -> str:
    metric, target, base = study.metric, study.target, study.baseline
    seeds = summary["seeds"]
    results = summary["results"]
    wall = summary["wall_s"]
    lines = [
        f"# {study.title}" + (" (smoke run)" if smoke else ""),
        "",
        f"Study `{study.name}`: {len(results)} arms x {len(seeds)} seeds "
        f"({', '.join(map(str, seeds))}), paired by seed, baseline `{base}`.",
        "",
        f"- command: `{command}`",
        f"- commit (report written): `{sha}`",
        *_run_commit_lines(summary["run_commits"]),
        f"- generated: {summary['generated']}",
        f"- wall time: {_minutes(wall['total'])} in all (SFT warm starts {_minutes(wall['sft'])}, "
        f"RL runs {_minutes(wall['runs'])}); budget {study.budget_minutes:.0f} min",
        *_shared_warm_start_lines(summary["warm_starts"]),
        "",
        study.description
        if not smoke
        else "Smoke run: 2 RL steps on a 2-layer model after a 2-step SFT; it checks that the "
        "pipeline runs, and its numbers mean nothing.",
        "",
        f"## Held-out {metric} after the last step",
        "",
        f"Mean +- sd over seeds and the {LEVEL:.0%} Student-t interval; the difference to `{base}` "
        f"is paired by seed (same warm start, same task draws); steps to target is the first "
        f"evaluated step with {metric} >= {target}, and steps to `{base}`'s peak the first with "
        f"{metric} >= `{base}`'s best evaluation of the same seed (each mean over the seeds that "
        "reached it).",
        "",
        f"| arm | start (SFT) | final {metric} | {LEVEL:.0%} CI | vs {base} (paired) | "
        f"{LEVEL:.0%} CI of diff | steps to {target} | steps to {base}'s peak | wall time / run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for arm, r in results.items():
        starts = [v for v in r["start_per_seed"].values() if v is not None]
        start = sum(starts) / len(starts) if starts else None
        fin = r["final"]
        diff = r.get("diff_to_baseline")
        if arm == base or diff is None:
            diff_text, diff_ci = "(baseline)" if arm == base else "n/a", ""
        else:
            diff_text = f"{_f(diff['mean'], signed=True)} +- {_f(diff['sd'])}"
            diff_ci = _interval(diff, signed=True)
        lines.append(
            f"| {arm} | {_f(start)} | {_f(fin['mean'])} +- {_f(fin['sd'])} | {_interval(fin)} | "
            f"{diff_text} | {diff_ci} | {_reach_text(r['steps_to_target'])} | "
            f"{_reach_text(r['steps_to_baseline_peak'])} | {_minutes(r['wall_s']['mean'])} |"
        )
    lines += [
        "",
        f"Per seed (final {metric}):",
        "",
        "| arm | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "|---|" + "---|" * len(seeds),
    ]
    for arm, r in results.items():
        lines.append(f"| {arm} | " + " | ".join(_f(r["final_per_seed"][s]) for s in seeds) + " |")
    lines += ["", "## Curves", ""]
    if plots:
        lines += [
            f"![curves](curves.png)\n\nMean over seeds, band +-1 sd. Held-out {metric} and the "
            f"training reward, then each method's diagnostics ({', '.join(study.diagnostics)}); "
            "an arm that does not log a diagnostic is absent from its panel.",
        ]
    else:
        lines.append("Not drawn: matplotlib is not installed (`pip install -e '.[plot]'`).")
    if summary.get("probes"):
        lines += _probe_lines(summary["probes"], base, plots)
    if summary.get("contrasts"):
        lines += _contrast_lines(summary["contrasts"], metric)
    lines += [
        "",
        "## Equal effort",
        "",
        study.tuning,
        "",
        "## Arms",
        "",
        "| arm | overrides of the shared config |",
        "|---|---|",
    ]
    lines += [f"| {a} | `{' '.join(study.arms[a])}` |" for a in results]
    lines += [
        "",
        "Every number above, with its per-seed values, is in `summary.json`; run directories "
        "hold each run's config, metrics and evaluations.",
        "",
    ]
    return "\n".join(lines)


def _reach_text(reach: dict | None) -> str:
    if reach is None:
        return "n/a"
    if reach["mean_over_reached"] is None:
        return "not reached"
    return f"{reach['mean_over_reached']:.0f} ({reach['reached']}/{reach['seeds']})"


def _run_commit_lines(run_commits: dict) -> list[str]:
    by_commit: dict[str, list[str]] = {}
    for run, sha in run_commits.items():
        by_commit.setdefault(sha, []).append(run)
    if len(by_commit) == 1:
        return [f"- runs made at: `{next(iter(by_commit))}` (every run)"]
    return [f"- runs made at: `{sha}`: {', '.join(runs)}" for sha, runs in by_commit.items()]


def _shared_warm_start_lines(warm_starts: dict) -> list[str]:
    """A line naming the warm starts that several seeds share (`sft.seed`), if any."""
    seeds_of: dict[str, list[str]] = {}
    for seed, records in warm_starts.items():
        for record in records:
            if "dir" in record:
                seeds_of.setdefault(record["dir"], []).append(seed)
    shared = {d: s for d, s in seeds_of.items() if len(s) > 1}
    if not shared:
        return []
    names = ", ".join(f"`{d}` (seeds {', '.join(s)})" for d, s in shared.items())
    return [
        f"- warm starts shared across seeds (`sft.seed`): {names}; intervals over seeds measure "
        "the RL's variation, not the warm start's"
    ]


def _probe_lines(probes: dict, base: str, plots: bool) -> list[str]:
    lines = [
        "",
        "## Probes of the final policies",
        "",
        "The study's own measurements of each run's final policy and of the SFT warm start every "
        f"arm of a seed began from: mean +- sd over seeds, the {LEVEL:.0%} Student-t interval, and "
        f"the difference to `{base}` paired by seed. A scalar that a probe leaves undefined for "
        "some seed's policy is shown over the seeds that define it (paired over the seeds both "
        "arms define), with their count.",
        "",
        f"| probe | arm | mean +- sd | {LEVEL:.0%} CI | vs {base} (paired) | {LEVEL:.0%} CI of diff |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in probes["scalars"].items():
        start = entry["warm_start"]
        if start is not None:
            lines.append(
                f"| {name} | (warm start) | {_f(start['mean'])} +- {_f(start['sd'])} | "
                f"{_interval(start)} | | |"
            )
        for arm, r in entry["arms"].items():
            fin, diff = r["interval"], r.get("diff_to_baseline")
            diff_text = (
                ("(baseline)" if arm == base else "n/a")
                if diff is None
                else f"{_f(diff['mean'], signed=True)} +- {_f(diff['sd'])}"
            )
            diff_ci = "" if diff is None else _interval(diff, signed=True)
            n, total = len(r["per_seed"]), len(probes["seeds"])
            label = arm if n == total else f"{arm} ({n} of {total} seeds)"
            lines.append(
                f"| {name} | {label} | {_f(fin['mean'])} +- {_f(fin['sd'])} | {_interval(fin)} | "
                f"{diff_text} | {diff_ci} |"
            )
    if plots and any(c for per_seed in probes["curves"].values() for c in per_seed.values()):
        lines += ["", "![probes](probes.png)", "", "Probe curves: mean over seeds, band +-1 sd."]
    return lines


def _contrast_lines(contrasts: list[dict], metric: str) -> list[str]:
    lines = [
        "",
        "## Other paired contrasts",
        "",
        f"Comparisons the study names beyond the baseline: arm minus reference paired by seed "
        f"(final held-out {metric}, or a probe scalar over the seeds that define it for both), "
        f"with the {LEVEL:.0%} Student-t interval of the difference.",
        "",
        f"| arm | reference | measure | arm | reference | diff +- sd | {LEVEL:.0%} CI of diff |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in contrasts:
        diff = c["diff"]
        if diff is None:
            lines.append(
                f"| {c['arm']} | {c['reference']} | {c['measure']} | undefined | undefined | "
                "no seed defines it for both arms | |"
            )
            continue
        lines.append(
            f"| {c['arm']} | {c['reference']} | {c['measure']} | {_f(c['arm_mean'])} | "
            f"{_f(c['reference_mean'])} | {_f(diff['mean'], signed=True)} +- {_f(diff['sd'])} | "
            f"{_interval(diff, signed=True)} |"
        )
    return lines


def plot_probes(curves: dict, title: str, path: epath.Path) -> bool:
    """Draws `probes.png` (one panel per probe curve, a band over seeds per arm); False when
    there is no curve or no matplotlib."""
    names = sorted({n for per_seed in curves.values() for c in per_seed.values() for n in c})
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return False
    if not names:
        return False
    fig, axes = _grid(Figure, len(names), cols=min(3, len(names)))
    for ax, name in zip(axes.flat, names):
        for i, (arm, per_seed) in enumerate(curves.items()):
            series = [c[name] for c in per_seed.values() if name in c]
            if not series:
                continue
            as_dicts = [dict(zip(c["x"], c["y"])) for c in series]
            color = "black" if arm == "warm start" else f"C{i}"
            _band(ax, as_dicts, arm, color)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    _save(fig, axes, len(names), f"{title}: probes, mean over seeds, band +-1 sd", path)
    return True


def _grid(figure, panels: int, cols: int = 3):
    """A figure with `panels` panels on rows of `cols`."""
    rows = math.ceil(panels / cols)
    fig = figure(figsize=(4.4 * cols, 3.1 * rows))
    return fig, fig.subplots(rows, cols, squeeze=False)


def _save(fig, axes, used: int, title: str, path: epath.Path) -> None:
    """Hides the unused panels, titles the figure and writes it to `path`."""
    for ax in list(axes.flat)[used:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def _band(ax, per_seed: list[dict[int, float]], label: str, color) -> None:
    steps = sorted(set.intersection(*(set(s) for s in per_seed)))
    if not steps:
        return
    means, sds = [], []
    for step in steps:
        mean, sd = stats.mean_sd([s[step] for s in per_seed])
        means.append(mean)
        sds.append(sd or 0.0)
    ax.plot(steps, means, label=label, color=color, lw=1.3)
    ax.fill_between(
        steps,
        [m - d for m, d in zip(means, sds)],
        [m + d for m, d in zip(means, sds)],
        color=color,
        alpha=0.2,
        lw=0,
    )


def _smooth(series: dict[int, float], window: int) -> dict[int, float]:
    steps = sorted(series)
    out = {}
    for i, step in enumerate(steps):
        chunk = [series[s] for s in steps[max(0, i - window + 1) : i + 1]]
        out[step] = sum(chunk) / len(chunk)
    return out


def plot(
    study: Study, runs: epath.Path, arms: list[str], seeds: list[int], path: epath.Path
) -> bool:
    """Draws `curves.png`; returns False when matplotlib is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return False
    evals = {a: [_read_jsonl(runs / f"{a}-seed{s}" / "eval.jsonl") for s in seeds] for a in arms}
    train = {a: [_read_jsonl(runs / f"{a}-seed{s}" / "metrics.jsonl") for s in seeds] for a in arms}
    last = max((r["step"] for rs in train.values() for recs in rs for r in recs), default=1)
    window = max(1, last // 25)
    panels = [("eval", study.metric), ("train", "reward")]
    panels += [("train", k) for k in study.diagnostics]
    fig, axes = _grid(Figure, len(panels))
    colors = {a: f"C{i}" for i, a in enumerate(arms)}
    for ax, (source, key) in zip(axes.flat, panels):
        for arm in arms:
            records = evals[arm] if source == "eval" else train[arm]
            per_seed = [_series(r, key) for r in records]
            if not all(per_seed):
                continue
            if source == "train":
                per_seed = [_smooth(s, window) for s in per_seed]
            _band(ax, per_seed, arm, colors[arm])
        title = f"held-out {key}" if source == "eval" else key
        if source == "train" and window > 1:
            title += f" (moving mean, {window} steps)"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if source == "eval":
            ax.axhline(study.target, color="gray", ls=":", lw=1)
            ax.legend(fontsize=7)
    _save(fig, axes, len(panels), f"{study.title}: mean over {len(seeds)} seeds, band +-1 sd", path)
    return True


def write(
    study: Study,
    out: epath.Path,
    *,
    runs: epath.Path,
    arms: list[str],
    seeds: list[int],
    warm_starts: dict,
    records: dict,
    command: str,
    session_wall_s: float,
    smoke: bool,
) -> epath.Path:
    """Writes `report.md`, `summary.json` and `curves.png` to `out`; returns the page's path."""
    out = epath.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(
        study, runs=runs, arms=arms, seeds=seeds, records=records, warm_starts=warm_starts
    )
    sha = commit()
    summary.update(
        {
            "command": command,
            "commit": sha,
            "run_commits": {
                f"{arm}-seed{seed}": record.get("commit", "unknown (not recorded)")
                for (arm, seed), record in sorted(records.items())
            },
            "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "session_wall_s": session_wall_s,
            "smoke": smoke,
            "base_config": json.loads(
                study.config().to_json() if not smoke else study.smoke_config().to_json()
            ),
        }
    )
    plots = plot(study, runs, arms, seeds, out / "curves.png")
    if summary["probes"]:
        plot_probes(summary["probes"]["curves"], study.title, out / "probes.png")
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    page = out / "report.md"
    page.write_text(markdown(study, summary, command=command, sha=sha, plots=plots, smoke=smoke))
    return page
