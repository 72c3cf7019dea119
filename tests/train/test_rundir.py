"""Run directory: the exclusive lock across processes, steps-below-latest, config and log repair."""

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from rljax.train import metrics, rundir

_HOLDER = textwrap.dedent(
    """
    import sys, time
    from rljax.train.rundir import RunLock
    lock = RunLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(600)
    """
)


def _hold(directory):
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(directory)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_process_is_refused_naming_the_holder(tmp_path):
    proc = _hold(tmp_path)
    try:
        with pytest.raises(rundir.RunDirectoryLockedError, match=f'"pid": {proc.pid}'):
            rundir.RunLock(tmp_path).acquire()
    finally:
        proc.kill()
        proc.wait()


def test_lock_is_released_when_the_holder_is_killed(tmp_path):
    proc = _hold(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with rundir.RunLock(tmp_path) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()


def test_lock_is_exclusive_within_one_process_and_released_on_exit(tmp_path):
    with rundir.RunLock(tmp_path):
        with pytest.raises(rundir.RunDirectoryLockedError, match="only one process"):
            rundir.RunLock(tmp_path).acquire()
    rundir.RunLock(tmp_path).acquire().release()


def test_steps_below_latest_checkpoint_are_refused():
    with pytest.raises(ValueError, match="train.steps=5 is below the latest checkpoint, step 8"):
        rundir.check_steps(5, [7, 8])
    rundir.check_steps(8, [7, 8])
    rundir.check_steps(1, [])


def test_write_config_replaces_atomically(tmp_path):
    rundir.write_config(tmp_path, '{"a": 1}')
    rundir.write_config(tmp_path, '{"a": 2}')
    assert json.loads((tmp_path / "config.json").read_text()) == {"a": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_torn_last_line_is_dropped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "x": 1.0}\n{"step": 2, "x": 2.0}\n{"step": 3, "x"')
    with caplog.at_level(logging.WARNING):
        rundir.prepare_logs(tmp_path, resume_step=2)
    assert "torn last line" in caplog.text
    assert path.read_text() == '{"step": 1, "x": 1.0}\n{"step": 2, "x": 2.0}\n'


def test_metric_writer_resumes_over_a_torn_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "x": 1.0}\n{"step": 2, "x": 2.0}\n{"st')
    writer = metrics.MetricWriter(tmp_path, resume_step=1)
    writer.write(2, {"x": 5.0})
    writer.close()
    assert metrics.read_metrics(tmp_path) == [{"step": 1, "x": 1.0}, {"step": 2, "x": 5.0}]


def test_complete_last_line_without_newline_gets_one(tmp_path):
    path = tmp_path / "eval.jsonl"
    path.write_text('{"step": 1}')
    assert metrics.repair_jsonl(path) == [{"step": 1}]
    assert path.read_text() == '{"step": 1}\n'


def test_corrupt_line_before_the_last_is_an_error(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"st\n{"step": 3}\n')
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        metrics.repair_jsonl(path)


def test_start_from_zero_moves_old_logs_aside(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    (tmp_path / "eval.jsonl").write_text("")
    rundir.prepare_logs(tmp_path, resume_step=0)
    assert (tmp_path / "metrics.jsonl.1").read_text() == '{"step": 1}\n'
    assert not (tmp_path / "metrics.jsonl").exists()
    assert (tmp_path / "eval.jsonl").exists()  # empty: nothing to keep
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    rundir.prepare_logs(tmp_path, resume_step=0)
    assert (tmp_path / "metrics.jsonl.2").exists()


def test_lock_holder_info_is_written(tmp_path):
    with rundir.RunLock(tmp_path) as lock:
        info = json.loads(lock.path.read_text())
    assert (
        info["pid"] == os.getpid()
        and info["host"]
        and time.strptime(info["since"], "%Y-%m-%d %H:%M:%S")
    )
