"""Studies: arm configs share the setup and pair by seed, the report's numbers match hand-worked
values, and `--smoke` of every study runs end to end, skipping a finished run and resuming an
interrupted one from its checkpoint."""

import dataclasses
import json

import pytest
from rljax.experiments import reproduce, studies, study_report
from rljax.experiments.studies import Study

from rljax.train.sft import fingerprint


def _sections(config, free_task_kwargs=()):
    d = json.loads(config.to_json())
    kwargs = {k: v for k, v in d["task"]["kwargs"].items() if k not in free_task_kwargs}
    task = {**d["task"], "kwargs": kwargs}
    return d["model"], task, d["sft"], {k: d["train"][k] for k in studies.SHARED_TRAIN_FIELDS}


@pytest.mark.parametrize("name", studies.names())
@pytest.mark.parametrize("smoke", [True, False])
def test_arms_share_the_setup_and_seeds_pair_them(name, smoke):
    study = studies.get(name)
    assert study.baseline in study.arms and len(study.arms) >= 2
    for seed in range(3):
        configs = {a: study.run_config(a, seed, smoke=smoke) for a in study.arms}
        assert {c.train.seed for c in configs.values()} == {seed}
        # Every arm of a seed: same model, task, SFT, evaluation and budget, hence one warm start;
        # an SFT arm differs in its `sft` section only, so its warm start is its own (so does an
        # arm that changes one of the study's `arm_task_kwargs`).
        free = study.arm_task_kwargs
        shared = [c for a, c in configs.items() if a not in study.sft_arms]
        assert len({json.dumps(_sections(c, free), sort_keys=True) for c in shared}) == 1
        base_task = configs[study.baseline].task
        assert len({fingerprint(c) for c in shared if c.task == base_task}) == 1
        base_model, base_task, _, base_train = _sections(configs[study.baseline], free)
        for arm in study.sft_arms:
            model, task, _, train = _sections(configs[arm], free)
            assert (model, task, train) == (base_model, base_task, base_train)
            assert fingerprint(configs[arm]) != fingerprint(configs[study.baseline])
    # Seeds change the warm start (initialisation, SFT data order), unless the study fixes it
    # (`sft.seed`: one warm start for every seed) ...
    base = [study.run_config(study.baseline, s, smoke=smoke) for s in range(3)]
    shared = base[0].sft.seed is not None
    assert len({fingerprint(c) for c in base}) == (1 if shared else 3)
    assert len({c.train.seed for c in base}) == 3
    # ... but never the held-out evaluation: the same tasks, prompts and samples for every seed.
    for c in base:
        assert c.task == base[0].task
        assert (c.train.eval_prompts, c.train.eval_samples) == (
            base[0].train.eval_prompts,
            base[0].train.eval_samples,
        )


def _toy_study(**kwargs):
    grpo_family = studies.get("grpo_family")
    fields = dict(
        name="toy",
        title="toy",
        description="toy",
        config=grpo_family.config,
        smoke_config=grpo_family.smoke_config,
        arms={"a": ("method.name=grpo",), "b": ("method.name=rloo",)},
        baseline="a",
        metric="pass@1",
        target=0.65,
        diagnostics=("clip_fraction",),
        tuning="none",
    )
    fields.update(kwargs)
    return Study(**fields)


def test_arm_task_kwargs_may_differ_between_arms():
    base = dict(_toy_study().run_config("a", 0).task.kwargs)
    noisy = f"task.kwargs={ {**base, 'judge_noise': 0.2}!r}"
    study = _toy_study(arms={"a": (), "b": (noisy,)}, arm_task_kwargs=("judge_noise",))
    assert study.run_config("b", 0).task.kwargs == {**base, "judge_noise": 0.2}
    assert fingerprint(study.run_config("b", 0)) != fingerprint(study.run_config("a", 0))
    with pytest.raises(ValueError, match=r"arm 'b'.*task"):
        _toy_study(arms={"a": (), "b": (noisy,)}).run_config("b", 0)
    other = _toy_study(
        arms={"a": (), "b": (f"task.kwargs={ {'judge_noise': 0.2}!r}",)},
        arm_task_kwargs=("judge_noise",),
    )
    with pytest.raises(ValueError, match=r"arm 'b'.*task"):
        other.run_config("b", 0)


def test_arm_may_not_change_the_shared_setup():
    study = _toy_study(arms={"a": (), "b": ("task.group_size=4",)})
    study.run_config("a", 0)
    with pytest.raises(ValueError, match=r"arm 'b'.*task"):
        study.run_config("b", 0)
    with pytest.raises(ValueError, match="train.steps"):
        _toy_study(arms={"a": (), "b": ("train.steps=5",)}).run_config("b", 0)
    with pytest.raises(ValueError, match="baseline"):
        _toy_study(baseline="c")


def test_cli_rejects_unknown_study_and_arm(tmp_path):
    with pytest.raises(SystemExit, match="unknown study"):
        reproduce.main(["no_such_study", "--runs-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="unknown arm"):
        reproduce.main(["grpo_family", "--arms", "grpo,ppo", "--runs-dir", str(tmp_path)])


def _write_run(runs, arm, seed, evals):
    run_dir = runs / f"{arm}-seed{seed}"
    run_dir.mkdir(parents=True)
    lines = [json.dumps({"step": step, "pass@1": v}) for step, v in evals]
    (run_dir / "eval.jsonl").write_text("\n".join(lines) + "\n")
    metrics = [json.dumps({"step": s, "reward": 0.1 * s, "clip_fraction": 0.0}) for s in (1, 2)]
    (run_dir / "metrics.jsonl").write_text("\n".join(metrics) + "\n")


def _write_report(study, tmp_path, runs, records, warm, command):
    """The report of arms a and b over seeds 0-2, written to `tmp_path / "report"`."""
    return study_report.write(
        study,
        tmp_path / "report",
        runs=runs,
        arms=["a", "b"],
        seeds=[0, 1, 2],
        warm_starts=warm,
        records=records,
        command=command,
        session_wall_s=1.0,
        smoke=False,
    )


def test_report_numbers_hand_worked(tmp_path):
    study = _toy_study()
    runs = tmp_path / "runs"
    # Final pass@1 by seed: a = [0.5, 0.6, 0.7], b = [0.6, 0.8, 0.7].
    finals = {"a": [0.5, 0.6, 0.7], "b": [0.6, 0.8, 0.7]}
    for arm, values in finals.items():
        for seed, final in enumerate(values):
            _write_run(runs, arm, seed, [(0, 0.3), (1, 0.66 if arm == "b" else 0.4), (2, final)])
    records = {(a, s): {"wall_s": 60.0 * (s + 1)} for a in finals for s in range(3)}
    warm = {s: [{"wall_s": 30.0, "shared": True}] for s in range(3)}
    page = _write_report(
        study, tmp_path, runs, records, warm, "python -m rljax.experiments.reproduce toy"
    )
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    a, b = summary["results"]["a"], summary["results"]["b"]
    # a: mean 0.6, sd 0.1, half-width 4.302653 * 0.1 / sqrt(3) = 0.248414.
    assert a["final"]["mean"] == pytest.approx(0.6)
    assert a["final"]["sd"] == pytest.approx(0.1)
    assert a["final"]["low"] == pytest.approx(0.351586, abs=1e-6)
    # b - a by seed: [0.1, 0.2, 0.0] -> mean 0.1, sd 0.1, [-0.148414, 0.348414].
    assert b["diff_to_baseline_per_seed"] == pytest.approx({"0": 0.1, "1": 0.2, "2": 0.0})
    assert b["diff_to_baseline"]["mean"] == pytest.approx(0.1)
    assert b["diff_to_baseline"]["low"] == pytest.approx(-0.148414, abs=1e-6)
    assert b["diff_to_baseline"]["high"] == pytest.approx(0.348414, abs=1e-6)
    # Target 0.65: b reaches it at step 1 in every seed; a only at step 2 in seed 2.
    assert b["steps_to_target"] == {"mean_over_reached": 1.0, "reached": 3, "seeds": 3}
    assert a["steps_to_target"] == {"mean_over_reached": 2.0, "reached": 1, "seeds": 3}
    # a's peak by seed: 0.5, 0.6, 0.7 (step 2). b reaches it at steps 1, 1 (0.66) and 2 (0.7).
    assert summary["baseline_peak_per_seed"] == pytest.approx({"0": 0.5, "1": 0.6, "2": 0.7})
    assert b["steps_to_baseline_peak_per_seed"] == {"0": 1, "1": 1, "2": 2}
    assert b["steps_to_baseline_peak"] == {"mean_over_reached": 4 / 3, "reached": 3, "seeds": 3}
    assert a["steps_to_baseline_peak"] == {"mean_over_reached": 2.0, "reached": 3, "seeds": 3}
    assert a["wall_s"]["mean"] == pytest.approx(120.0)
    assert summary["wall_s"] == {"sft": 90.0, "runs": 720.0, "total": 810.0}
    text = page.read_text()
    assert (
        "| b | 0.300 | 0.700 +- 0.100 | [0.452, 0.948] | +0.100 +- 0.100 | [-0.148, +0.348]" in text
    )
    assert "| 2 (1/3) | 2 (3/3) | 2.0 min |" in text  # a: steps to 0.65, to its own peak
    assert "python -m rljax.experiments.reproduce toy" in text and summary["commit"] in text
    assert (tmp_path / "report" / "curves.png").stat().st_size > 0


def test_steps_to_baseline_peak_per_seed_hand_worked(tmp_path):
    runs = tmp_path / "runs"
    # Baseline a peaks at 0.5 (step 10) in seed 0 and at 0.6 (step 20) in seed 1. b reaches 0.5
    # at step 10 in seed 0 and never 0.6 in seed 1 (its own peak there is 0.55).
    curves = {
        ("a", 0): [(0, 0.2), (10, 0.5), (20, 0.4)],
        ("a", 1): [(0, 0.2), (10, 0.3), (20, 0.6)],
        ("b", 0): [(0, 0.2), (10, 0.55), (20, 0.3)],
        ("b", 1): [(0, 0.2), (10, 0.5), (20, 0.55)],
    }
    for (arm, seed), evals in curves.items():
        _write_run(runs, arm, seed, evals)
    records = {key: {"wall_s": 1.0} for key in curves}
    summary = study_report.summarize(
        _toy_study(), runs=runs, arms=["a", "b"], seeds=[0, 1], records=records, warm_starts={}
    )
    assert summary["baseline_peak_per_seed"] == {0: 0.5, 1: 0.6}
    a, b = summary["results"]["a"], summary["results"]["b"]
    assert a["steps_to_baseline_peak_per_seed"] == {0: 10, 1: 20}
    assert b["steps_to_baseline_peak_per_seed"] == {0: 10, 1: None}
    assert b["steps_to_baseline_peak"] == {"mean_over_reached": 10.0, "reached": 1, "seeds": 2}
    # Without the baseline among the arms there is no peak to reach.
    alone = study_report.summarize(
        _toy_study(), runs=runs, arms=["b"], seeds=[0, 1], records=records, warm_starts={}
    )
    assert alone["baseline_peak_per_seed"] is None
    assert alone["results"]["b"]["steps_to_baseline_peak"] is None


def _lines(path):
    return path.read_text().splitlines()


# The harness's skip/resume/pairing mechanics run in the default suite on grpo_family (the
# cheapest study); every other study's whole smoke (all arms x 2 seeds, probes) is slow: each takes
# minutes, and its configs and arms are checked in the default suite above.
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=[] if name == "grpo_family" else [pytest.mark.slow])
        for name in studies.names()
    ],
)
def test_smoke_study_skips_finished_and_resumes_interrupted_runs(tmp_path, name):
    study = studies.get(name)
    runs, out = tmp_path / "runs", tmp_path / "report"
    common = ["--smoke", "--runs-dir", str(runs), "--out", str(out)]
    base, other = study.baseline, next(a for a in study.arms if a != study.baseline)

    # A first session finishes the baseline's seed-0 run ...
    reproduce.main([name, "--seeds", "1", "--arms", base, *common])
    finished = runs / f"{base}-seed0"
    marker_before = (finished / reproduce.MARKER).stat().st_mtime_ns
    metrics_before = _lines(finished / "metrics.jsonl")
    # ... and is killed in the next run after its step-1 checkpoint (simulated by training that
    # run's own config, stopped at step 1, in its directory).
    train, _, _ = reproduce._driver()
    config = study.run_config(other, 0, smoke=True)
    interrupted = runs / f"{other}-seed0"
    train(
        dataclasses.replace(config, train=dataclasses.replace(config.train, steps=1)), interrupted
    )
    assert reproduce.latest_checkpoint(interrupted) == 1
    assert not (interrupted / reproduce.MARKER).exists()
    step1 = _lines(interrupted / "metrics.jsonl")[0]

    # The same command again, over every arm and the smoke's 2 seeds.
    page = reproduce.main([name, *common])

    # The finished run was skipped, the interrupted one resumed from step 1 (its step-1 log line,
    # with its wall-clock throughput, is the first session's) and ran to the last step.
    assert (finished / reproduce.MARKER).stat().st_mtime_ns == marker_before
    assert _lines(finished / "metrics.jsonl") == metrics_before
    record = json.loads((interrupted / reproduce.MARKER).read_text())
    assert record["resumed_from"] == [1] and record["final_step"] == 2
    assert _lines(interrupted / "metrics.jsonl")[0] == step1
    assert [json.loads(x)["step"] for x in _lines(interrupted / "metrics.jsonl")] == [1, 2]

    # One SFT warm start per seed, shared by every arm of that seed (an SFT arm's own: one per
    # seed and distinct SFT section).
    starts = {a: fingerprint(study.run_config(a, 0, smoke=True)) for a in study.arms}
    assert len([p for p in (runs / "sft").iterdir() if p.is_dir()]) == 2 * len(set(starts.values()))
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["results"]) == set(study.arms)
    assert summary["seeds"] == [0, 1]
    for arm in study.arms:
        for seed in (0, 1):
            evals = [json.loads(x) for x in _lines(runs / f"{arm}-seed{seed}" / "eval.jsonl")]
            assert [e["step"] for e in evals] == [0, 1, 2]
            # Paired by seed: every arm starts from the seed's warm start (the arms sharing it
            # alike), evaluated identically.
            twin = next(a for a in study.arms if starts[a] == starts[arm])
            first = json.loads(_lines(runs / f"{twin}-seed{seed}" / "eval.jsonl")[0])
            assert evals[0] == first
            final = summary["results"][arm]["final_per_seed"][str(seed)]
            assert final == evals[-1][study.metric]
    assert page == out / "report.md"
    text = page.read_text()
    assert f"python -m rljax.experiments.reproduce {name} --smoke" in text
    assert summary["commit"] in text
    # Every run records the commit of the session that ran it (not the report's own commit,
    # which is read later and differs when the tree changes meanwhile).
    shas = summary["run_commits"].values()
    assert len(shas) == 2 * len(study.arms) and all(len(s.split()[0]) == 40 for s in shas)
    assert (out / "curves.png").stat().st_size > 0


def _probe_record(value, curve):
    return {"wall_s": 1.0, "probe": {"scalars": {"p": value}, "curves": {"c": curve}}}


def test_probe_report_numbers_hand_worked(tmp_path):
    study = _toy_study(probe=lambda trainer, smoke: {})
    runs = tmp_path / "runs"
    # Probe scalar p by seed: a = [1, 2, 3], b = [2, 4, 3]; warm starts [0, 0.5, 1].
    values = {"a": [1.0, 2.0, 3.0], "b": [2.0, 4.0, 3.0]}
    records = {}
    for arm, per_seed in values.items():
        for seed, value in enumerate(per_seed):
            _write_run(runs, arm, seed, [(0, 0.3), (2, 0.5)])
            curve = {"x": [1.0, 2.0], "y": [value, value + seed]}
            records[(arm, seed)] = _probe_record(value, curve)
    warm = {
        s: [{**_probe_record(0.5 * s, {"x": [1.0, 2.0], "y": [0.0, 0.0]}), "shared": True}]
        for s in range(3)
    }
    _write_report(study, tmp_path, runs, records, warm, "c")
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    p = summary["probes"]["scalars"]["p"]
    # a: mean 2, sd 1, half-width 4.302653 / sqrt(3) = 2.484138.
    assert p["arms"]["a"]["interval"]["mean"] == pytest.approx(2.0)
    assert p["arms"]["a"]["interval"]["low"] == pytest.approx(2.0 - 2.484138, abs=1e-6)
    assert "diff_to_baseline" not in p["arms"]["a"]
    # b - a by seed: [1, 2, 0] -> mean 1, sd 1, [-1.484138, 3.484138].
    diff = p["arms"]["b"]["diff_to_baseline"]
    assert (diff["mean"], diff["sd"]) == pytest.approx((1.0, 1.0))
    assert diff["high"] == pytest.approx(3.484138, abs=1e-6)
    assert p["warm_start"]["mean"] == pytest.approx(0.5)
    curves = summary["probes"]["curves"]
    assert curves["b"]["1"]["c"]["y"] == [4.0, 5.0] and "warm start" in curves
    text = (tmp_path / "report" / "report.md").read_text()
    assert "| p | (warm start) | 0.500 +- 0.500 |" in text
    assert (
        "| p | b | 3.000 +- 1.000 | [0.516, 5.484] | +1.000 +- 1.000 | [-1.484, +3.484] |" in text
    )
    assert (tmp_path / "report" / "probes.png").stat().st_size > 0


def test_scalar_only_probe_links_no_curves(tmp_path):
    # The echo study's probe returns scalars only: the report must not link a probes.png that
    # was never drawn.
    study = _toy_study(probe=lambda trainer, smoke: {})
    runs = tmp_path / "runs"
    records = {}
    for arm in ("a", "b"):
        for seed in range(3):
            _write_run(runs, arm, seed, [(0, 0.3), (2, 0.5)])
            probe = {"scalars": {"p": 1.0 + seed}, "curves": {}}
            records[(arm, seed)] = {"wall_s": 1.0, "probe": probe}
    start = {"scalars": {"p": 0.0}, "curves": {}}
    warm = {s: [{"wall_s": 1.0, "probe": start, "shared": True}] for s in range(3)}
    _write_report(study, tmp_path, runs, records, warm, "c")
    text = (tmp_path / "report" / "report.md").read_text()
    assert "| p | (warm start) | 0.000 +- 0.000 |" in text
    assert "probes.png" not in text and not (tmp_path / "report" / "probes.png").exists()


def test_probe_scalar_undefined_for_a_seed(tmp_path):
    # delta_f32's seed 4 policies answered nothing right, so DelTA's coefficients (which need a
    # group with both outcomes) were undefined there: the arm is reported over the other seeds.
    study = _toy_study(probe=lambda trainer, smoke: {})
    runs = tmp_path / "runs"
    values = {"a": [1.0, 2.0, 3.0], "b": [2.0, 4.0, None]}
    records = {}
    for arm, per_seed in values.items():
        for seed, value in enumerate(per_seed):
            _write_run(runs, arm, seed, [(0, 0.3), (2, 0.5)])
            scalars = {"q": 1.0} if value is None else {"p": value, "q": 1.0}
            records[(arm, seed)] = {"wall_s": 1.0, "probe": {"scalars": scalars, "curves": {}}}
    start = {"scalars": {"p": 0.0, "q": 0.0}, "curves": {}}
    warm = {s: [{"wall_s": 1.0, "probe": start, "shared": True}] for s in range(3)}
    _write_report(study, tmp_path, runs, records, warm, "c")
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    b = summary["probes"]["scalars"]["p"]["arms"]["b"]
    assert b["interval"]["n"] == 2 and b["interval"]["mean"] == pytest.approx(3.0)
    # b - a over seeds 0 and 1: [1, 2] -> mean 1.5, sd 0.707107.
    assert b["diff_to_baseline"]["n"] == 2
    assert (b["diff_to_baseline"]["mean"], b["diff_to_baseline"]["sd"]) == pytest.approx(
        (1.5, 0.707107), abs=1e-6
    )
    text = (tmp_path / "report" / "report.md").read_text()
    assert "| p | b (2 of 3 seeds) | 3.000 +- 1.414 |" in text
    assert "| q | b | 1.000 +- 0.000 |" in text


def test_contrasts_hand_worked(tmp_path):
    # Beyond the baseline a: c - b on the final metric and on a probe scalar that c's seed 2
    # leaves undefined (paired over seeds 0 and 1 only).
    arms = {"a": ("method.name=grpo",), "b": ("method.name=rloo",), "c": ("method.name=dapo",)}
    study = _toy_study(
        arms=arms, probe=lambda trainer, smoke: {}, contrasts=(("c", "b", ("pass@1", "p")),)
    )
    runs = tmp_path / "runs"
    finals = {"a": [0.4, 0.4, 0.4], "b": [0.5, 0.6, 0.7], "c": [0.7, 0.7, 0.9]}
    probe_values = {"a": [0.0, 0.0, 0.0], "b": [1.0, 2.0, 3.0], "c": [2.0, 4.0, None]}
    records = {}
    for arm in arms:
        for seed in range(3):
            _write_run(runs, arm, seed, [(0, 0.3), (2, finals[arm][seed])])
            value = probe_values[arm][seed]
            scalars = {} if value is None else {"p": value}
            records[(arm, seed)] = {"wall_s": 1.0, "probe": {"scalars": scalars, "curves": {}}}
    start = {"scalars": {"p": 0.0}, "curves": {}}
    warm = {s: [{"wall_s": 1.0, "probe": start, "shared": True}] for s in range(3)}
    study_report.write(
        study,
        tmp_path / "report",
        runs=runs,
        arms=list(arms),
        seeds=[0, 1, 2],
        warm_starts=warm,
        records=records,
        command="c",
        session_wall_s=1.0,
        smoke=False,
    )
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    final, probe = summary["contrasts"]
    # pass@1: c - b = [0.2, 0.1, 0.2]: mean 0.166667, sd 0.057735, half-width
    # 4.302653 * 0.057735 / sqrt(3) = 0.143422, so low 0.023245.
    assert (final["measure"], final["arm"], final["reference"]) == ("pass@1", "c", "b")
    assert (final["diff"]["mean"], final["diff"]["sd"]) == pytest.approx(
        (0.166667, 0.057735), abs=1e-6
    )
    assert final["diff"]["low"] == pytest.approx(0.023245, abs=1e-6)
    # p over seeds 0 and 1: c = [2, 4], b = [1, 2]: diff [1, 2], mean 1.5, sd 0.707107.
    assert (probe["arm_mean"], probe["reference_mean"]) == pytest.approx((3.0, 1.5))
    assert probe["diff"]["n"] == 2 and probe["diff"]["sd"] == pytest.approx(0.707107, abs=1e-6)
    text = (tmp_path / "report" / "report.md").read_text()
    assert "| c | b | pass@1 | 0.767 | 0.600 | +0.167 +- 0.058 | [+0.023, +0.310] |" in text
    # A measure no seed defines for both arms (never logged, or misspelt) is shown, not dropped.
    unknown = _toy_study(
        arms=arms, probe=lambda trainer, smoke: {}, contrasts=(("c", "b", ("q",)),)
    )
    (row,) = study_report.summarize_contrasts(
        unknown, arms=list(arms), results=summary["results"], probes=summary["probes"]
    )
    assert row["diff"] is None and row["measure"] == "q"
    lines = study_report._contrast_lines([row], "pass@1")
    assert "| c | b | q | undefined | undefined | no seed defines it for both arms | |" in lines


def test_contrasts_are_checked():
    with pytest.raises(ValueError, match="two different arms"):
        _toy_study(contrasts=(("b", "z", ("pass@1",)),))
    with pytest.raises(ValueError, match="two different arms"):
        _toy_study(contrasts=(("b", "b", ("pass@1",)),))
    with pytest.raises(ValueError, match="needs measures"):
        _toy_study(contrasts=(("b", "a", ("p",)),))  # no probe: only the metric
    with pytest.raises(ValueError, match="needs measures"):
        _toy_study(contrasts=(("b", "a", ()),))


def test_probe_results_are_checked():
    assert studies.check_probe("s", {"scalars": {"x": 1}}) == {"scalars": {"x": 1.0}, "curves": {}}
    with pytest.raises(ValueError, match="'x' is nan"):
        studies.check_probe("s", {"scalars": {"x": float("nan")}})
    with pytest.raises(ValueError, match="one non-zero length"):
        studies.check_probe("s", {"curves": {"c": {"x": [1, 2], "y": [1]}}})
    with pytest.raises(ValueError, match="a probe returns"):
        studies.check_probe("s", {"scalar": {}})


def test_sft_arms_may_change_only_the_warm_start():
    study = _toy_study(arms={"a": (), "b": ("sft.num_demos=1024",)}, sft_arms=("b",))
    assert study.run_config("b", 0).sft.num_demos == 1024
    assert fingerprint(study.run_config("b", 0)) != fingerprint(study.run_config("a", 0))
    with pytest.raises(ValueError, match=r"arm 'b'.*sft.*sft_arms"):
        _toy_study(arms={"a": (), "b": ("sft.num_demos=1024",)}).run_config("b", 0)
    with pytest.raises(ValueError, match="sft_arms"):
        _toy_study(sft_arms=("c",))


def _param_probe(trainer, *, smoke):
    import jax
    import numpy as np

    leaves = jax.tree.leaves(trainer.state.params)
    total = float(sum(np.abs(np.asarray(x, np.float64)).sum() for x in leaves))
    return {"scalars": {"abs_sum": total}, "curves": {"flat": {"x": [0, 1], "y": [total, 1.0]}}}


def test_smoke_study_with_probe_and_sft_arm(tmp_path, monkeypatch):
    """An SFT arm trains its own warm start once per seed; the probe measures every warm start
    and every final policy once, and a rerun reads the stored probes."""
    # Weight decay moves the parameters even when the smoke's 2 steps see no reward.
    decay = "optim.weight_decay=0.5"
    study = _toy_study(
        arms={"a": (decay,), "b": (decay, "sft.num_demos=4")}, sft_arms=("b",), probe=_param_probe
    )
    monkeypatch.setattr(studies, "get", lambda name: study)
    runs, out = tmp_path / "runs", tmp_path / "report"
    argv = ["toy", "--smoke", "--seeds", "1", "--runs-dir", str(runs), "--out", str(out)]
    reproduce.main(argv)
    # Two warm starts for seed 0 (a's shared one and b's own), in the SFT cache and probed.
    assert len([p for p in (runs / "sft").iterdir() if p.is_dir()]) == 2
    summary = json.loads((out / "summary.json").read_text())
    (shared,) = [w for w in summary["warm_starts"]["0"] if w["shared"]]
    (own,) = [w for w in summary["warm_starts"]["0"] if not w["shared"]]
    assert (shared["arms"], own["arms"], own["dir"]) == (["a"], ["b"], "sft-seed0-b")
    start_a, start_b = shared["probe"]["scalars"]["abs_sum"], own["probe"]["scalars"]["abs_sum"]
    assert start_a != start_b  # different demonstrations, different warm starts
    final = summary["probes"]["scalars"]["abs_sum"]["arms"]
    # Training moved the parameters away from the warm start the run began with.
    assert final["a"]["per_seed"]["0"] != start_a and final["b"]["per_seed"]["0"] != start_b
    stored = {p: p.stat().st_mtime_ns for p in runs.glob("*/" + reproduce.PROBE)}
    assert len(stored) == 4  # 2 warm starts + 2 runs
    reproduce.main(argv)
    assert {p: p.stat().st_mtime_ns for p in runs.glob("*/" + reproduce.PROBE)} == stored


def test_warm_start_shared_across_seeds_is_trained_and_probed_once(tmp_path, monkeypatch):
    """With `sft.seed` fixed, every seed's arms start from that seed's warm start (trained and
    probed once, in its directory); the seeds still vary the RL."""
    toy = _toy_study()

    def shared_config(smoke):
        base = (toy.smoke_config if smoke else toy.config)()
        return dataclasses.replace(base, sft=dataclasses.replace(base.sft, seed=0))

    decay = "optim.weight_decay=0.5"  # moves the parameters even when no reward is seen
    study = _toy_study(
        config=lambda: shared_config(False),
        smoke_config=lambda: shared_config(True),
        arms={"a": (decay,)},
        probe=_param_probe,
    )
    assert study.run_config("a", 1, smoke=True).sft.steps > 0
    monkeypatch.setattr(studies, "get", lambda name: study)
    runs, out = tmp_path / "runs", tmp_path / "report"
    reproduce.main(["toy", "--smoke", "--seeds", "2", "--runs-dir", str(runs), "--out", str(out)])
    assert len([p for p in (runs / "sft").iterdir() if p.is_dir()]) == 1
    assert sorted(p.name for p in runs.glob("sft-seed*")) == ["sft-seed0"]
    summary = json.loads((out / "summary.json").read_text())
    (w0,), (w1,) = summary["warm_starts"]["0"], summary["warm_starts"]["1"]
    assert w0 == w1 and w0["dir"] == "sft-seed0"
    assert summary["wall_s"]["sft"] == pytest.approx(w0["wall_s"])  # counted once
    assert (
        "warm starts shared across seeds (`sft.seed`): `sft-seed0` (seeds 0, 1)"
        in (out / "report.md").read_text()
    )
    final = summary["probes"]["scalars"]["abs_sum"]["arms"]["a"]["per_seed"]
    assert w0["probe"]["scalars"]["abs_sum"] not in (final["0"], final["1"])
    # The seeds drew different rollouts from the one warm start.
    entropy = [
        [
            json.loads(line)["rollout_entropy"]
            for line in _lines(runs / f"a-seed{s}" / "metrics.jsonl")
        ]
        for s in (0, 1)
    ]
    assert entropy[0] != entropy[1]


def test_a_record_written_before_a_new_config_field_is_the_same_run():
    config = _toy_study().run_config("a", 3)
    stored = json.loads(config.to_json())
    del stored["sft"]["seed"]  # a record from before `sft.seed` existed
    assert reproduce._same_run(stored, config)
    same = dataclasses.replace(config, sft=dataclasses.replace(config.sft, seed=3))
    assert reproduce._same_run(stored, same)  # the warm start's seed is the run's anyway
    other = dataclasses.replace(config, sft=dataclasses.replace(config.sft, seed=0))
    assert not reproduce._same_run(stored, other)
