"""Task families, verifiers and reward metrics.

`registry.make(name, **knobs)` builds a family by name; `metrics` holds the reward metrics shared
by the verifiers. The interfaces (`Task`, `Verdict`, `TaskFamily`, ...) live in `rljax.envs.base`.
"""

from rljax.envs import metrics, registry
from rljax.envs.arithmetic import ArithmeticFamily
from rljax.envs.countdown import CountdownFamily
from rljax.envs.registry import make, names, register

__all__ = [
    "ArithmeticFamily",
    "CountdownFamily",
    "make",
    "metrics",
    "names",
    "register",
    "registry",
]
