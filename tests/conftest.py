"""Test-wide JAX settings: 8 fake CPU devices for sharding tests, strict rank promotion."""

import os
import sys

# `python -m pytest` puts the working directory (the repository root) first on sys.path, where the
# top-level `kernels/` folder (installed as `rljax.kernels`) then shadows the `kernels` distribution
# that transformers (>= 5.25) imports with every PyTorch model class: `from kernels import
# CUDAProperties` fails. Nothing imports the repository root by path (rljax, rljax.kernels and
# rljax.experiments come from the installed package), so the tests run without it.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _ROOT]

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests never write compiled programs to the home directory (rljax.train.compile_cache).
os.environ.setdefault("RLJAX_COMPILATION_CACHE", "off")

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

import hypothesis  # noqa: E402

# Property tests draw the same examples on every run (CI results do not depend on luck).
hypothesis.settings.register_profile("rljax", derandomize=True, database=None, deadline=None)
hypothesis.settings.load_profile("rljax")

import pytest  # noqa: E402


@pytest.fixture(
    scope="session", params=[pytest.param(False, id="nojit"), pytest.param(True, id="jit")]
)
def variant(request):
    """Runs a test twice: `variant(f)` is `f` itself (nojit), then `jax.jit(f)` (jit).

    Every loss is tested jitted and not (STYLE.md). Session scope keeps the fixture usable from
    hypothesis `@given` tests (they reject function-scoped fixtures).
    """
    return jax.jit if request.param else (lambda f: f)
