"""Stage tags of generated tokens (RubricEM's Plan -> Research -> Review -> Answer scaffold).

rubric_em.md REM-1 segments a response deterministically on its generated text; the family's
`rljax.envs.stages.StageScheme` names the tags that delimit the stages, and `stage_ids` turns the
segmentation into per-token ids (0 Plan, 1 Research, 2 Review, 3 Answer; -1 on every token the
policy did not generate).
"""

from __future__ import annotations

import numpy as np
import transformers

from rljax.envs.stages import StageScheme


def stage_ids(
    tokenizer: transformers.PreTrainedTokenizerFast,
    tokens: np.ndarray,
    action_mask: np.ndarray,
    scheme: StageScheme,
) -> np.ndarray:
    """Per-token stage ids of generated tokens (rubric_em.md REM-1), for one sequence or a batch.

    The generated tokens are decoded one by one and their pieces concatenated, so character
    offsets map back to tokens exactly (tags are ASCII, so a multi-byte character split across
    tokens cannot hide one). A token takes the stage of its first non-whitespace character (its
    first character if it is all whitespace), so a token " <" that opens "<answer>" is Answer.

    Args:
        tokenizer: the tokenizer that produced `tokens`.
        tokens: [T] or [B, T] int token ids.
        action_mask: same shape, bool: the tokens the policy generated.
        scheme: the stage tags.

    Returns:
        int32 array shaped like `tokens`: stage in {0, 1, 2, 3} on generated tokens, -1 elsewhere.

    Raises:
        ValueError: `tokens` and `action_mask` differ in shape or are not [T] / [B, T].
    """
    tokens, action_mask = np.asarray(tokens), np.asarray(action_mask, bool)
    if tokens.shape != action_mask.shape or tokens.ndim not in (1, 2):
        raise ValueError(
            f"tokens and action_mask must share a shape [T] or [B, T], got {tokens.shape} and {action_mask.shape}"
        )
    if tokens.ndim == 2:
        return np.stack(
            [stage_ids(tokenizer, row, mask, scheme) for row, mask in zip(tokens, action_mask)]
        )
    out = np.full(tokens.shape, -1, np.int32)
    positions = np.flatnonzero(action_mask)
    if positions.size == 0:
        return out
    pieces = [tokenizer.decode([int(tok)], skip_special_tokens=False) for tok in tokens[positions]]
    starts = np.cumsum([0] + [len(piece) for piece in pieces[:-1]])
    anchors = np.array(
        [
            start + len(piece) - len(piece.lstrip()) if piece.strip() else start
            for start, piece in zip(starts, pieces)
        ]
    )
    out[positions] = np.searchsorted(
        np.asarray(scheme.boundaries("".join(pieces))), anchors, side="right"
    )
    return out
