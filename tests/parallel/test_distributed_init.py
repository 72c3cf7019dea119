"""initialize(): the single-process no-op and argument/env validation (no process group is started)."""

import pytest

from rljax.parallel import distributed


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in (
        distributed.ENV_COORDINATOR,
        distributed.ENV_NUM_PROCESSES,
        distributed.ENV_PROCESS_ID,
    ):
        monkeypatch.delenv(name, raising=False)


def test_no_configuration_is_a_single_process_no_op():
    assert distributed.initialize() is False


def test_one_process_is_a_no_op(monkeypatch):
    assert distributed.initialize(num_processes=1) is False
    monkeypatch.setenv(distributed.ENV_NUM_PROCESSES, "1")
    monkeypatch.setenv(distributed.ENV_COORDINATOR, "localhost:1234")
    assert distributed.initialize() is False


def test_partial_configuration_names_what_is_missing(monkeypatch):
    with pytest.raises(ValueError, match=r"\['process_id'\] not given"):
        distributed.initialize("localhost:1234", 2)
    monkeypatch.setenv(distributed.ENV_NUM_PROCESSES, "4")
    with pytest.raises(ValueError, match=r"\['coordinator_address', 'process_id'\] not given"):
        distributed.initialize()


def test_out_of_range_process_id(monkeypatch):
    with pytest.raises(ValueError, match=r"process_id=2 must lie in \[0, num_processes=2\)"):
        distributed.initialize("localhost:1234", 2, 2)
    monkeypatch.setenv(distributed.ENV_PROCESS_ID, "x")
    with pytest.raises(ValueError, match="JAX_PROCESS_ID='x' is not an integer"):
        distributed.initialize("localhost:1234", 2)
