"""The persistent compilation cache: where it goes, how it is turned off, and that it is used."""

import jax
import jax.numpy as jnp
import pytest

from rljax.train import compile_cache


@pytest.mark.parametrize(
    "value, want",
    [
        (None, compile_cache.DEFAULT_DIR),
        ("off", None),
        ("0", None),
        ("False", None),
        ("", None),
        ("/tmp/xla-here", "/tmp/xla-here"),
    ],
)
def test_directory_from_the_environment(monkeypatch, value, want):
    if value is None:
        monkeypatch.delenv(compile_cache.ENV, raising=False)
    else:
        monkeypatch.setenv(compile_cache.ENV, value)
    assert compile_cache.default_directory() == want


def test_off_leaves_jax_settings_alone(monkeypatch):
    monkeypatch.setenv(compile_cache.ENV, "off")
    before = jax.config.jax_compilation_cache_dir
    assert compile_cache.enable() is None
    assert jax.config.jax_compilation_cache_dir == before


def test_compiled_programs_are_written_and_settings_restored(tmp_path):
    before = jax.config.jax_compilation_cache_dir
    with compile_cache.enabled(tmp_path):
        assert jax.config.jax_compilation_cache_dir == str(tmp_path)
        # A program no other test compiles (the constant makes it unique).
        jax.jit(lambda x: jnp.sin(x) * 1234.5678)(jnp.ones(3)).block_until_ready()
        assert any(tmp_path.iterdir())
    assert jax.config.jax_compilation_cache_dir == before
