"""Random decisions shared by every mixer: argument checks and the order sources are drawn in."""
from __future__ import annotations

import numpy as np

__all__ = ["check_mix_ratio", "check_probability", "concatenated_permutations"]


def check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {value}")


def check_mix_ratio(mix_ratio: float) -> None:
    if not 0.0 < mix_ratio <= 1.0:
        raise ValueError(f"mix_ratio must be in (0, 1] (mixed images per regular image), got {mix_ratio}")


def concatenated_permutations(batch_size: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` input rows from back-to-back random permutations of the batch.

    An image is reused only after every image of the batch was used once (SpliceMix's rule).
    """
    permutations = -(-count // batch_size)
    if permutations == 0:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([rng.permutation(batch_size) for _ in range(permutations)])[:count]
