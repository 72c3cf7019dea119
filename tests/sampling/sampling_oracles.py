"""Independent numpy references for the sampling tests."""

import numpy as np


def numpy_sampling_log_probs(logits, temperature, top_k=None, top_p=None):
    """Hugging Face warper order (temperature, top-k, top-p), written with an ascending sort."""
    scores = np.asarray(logits, np.float64) / temperature
    out = np.empty_like(scores)
    for row, s in enumerate(scores):
        s = s.copy()
        if top_k is not None and top_k < s.size:
            kth = np.sort(s)[-top_k]
            s[s < kth] = -np.inf
        if top_p is not None and top_p < 1:
            ascending = np.sort(s)
            probs = np.exp(ascending - ascending.max())
            probs /= probs.sum()
            # remove a token when the mass of it and everything below it is <= 1 - top_p
            removed = np.cumsum(probs) <= 1 - top_p
            removed[-1] = False
            cutoff = ascending[~removed].min()
            s[s < cutoff] = -np.inf
        finite = s[np.isfinite(s)]
        log_z = finite.max() + np.log(np.exp(finite - finite.max()).sum())
        out[row] = s - log_z
    return out


def log_softmax(x):
    """Row-wise log-softmax in float64."""
    x = np.asarray(x, np.float64)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
