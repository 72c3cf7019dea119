"""The Poly-EPO cpu preset's warm start can execute every strategy (issue 21).

With the old demonstrations (a working strategy chosen with the hidden Works(x), 30% noise) S_1
made 30% of the demonstrations and S_6 under 7%, 18% had a wrong work token, and the warm-started
policy wrote valid work tokens only for S_1: 73% of its samples were degenerate, groups had 0.89
distinct valid clusters, and Poly-EPO's set diversity had nothing to act on.
"""

import numpy as np
from rljax.experiments import poly_epo

from rljax.envs import registry


def test_cpu_preset_demonstrations_cover_every_strategy():
    config = poly_epo.PRESETS["cpu"]()
    family = registry.make(config.task.family, **config.task.kwargs)
    rng = np.random.default_rng(config.train.seed)
    tasks = [family.generate("train", i) for i in range(1200)]
    clusters = np.array(
        [family.verify(t, family.expert(t, rng, config.sft.noise)).info["cluster"] for t in tasks]
    )
    valid = clusters[clusters != -1]
    assert len(valid) / len(clusters) >= 0.9  # poly_epo.md 8: ~95% valid work tokens
    share = np.bincount(valid, minlength=family.num_strategies + 1)[1:] / len(valid)
    assert share.min() > 0.12 and share.max() < 0.22  # about 1/6 each
