"""`MixSchedule`: which mixer, if any, mixes each batch (timm's ``Mixup(prob, switch_prob)``, ``--mixup-off-epoch``).

A schedule is itself a `Mixer`: per batch it draws whether to mix (probability `prob`), which of its mixers
(by `weights`), and defers the plan to that mixer; from epoch `off_epoch` on it mixes nothing. Every decision
comes from the batch's generator, which the loader seeds with (seed, epoch, rank, batch), so a resumed run and
a run on other hardware make the same choices. A batch left unmixed is the identity plan: with an appending
mixer (SpliceMix, ``append=True``) in the schedule, batches differ in size (B or B + M).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from mlic_pipe.errors import ConfigError
from mlic_pipe.mix.plan import MixPlan

__all__ = ["MixSchedule", "check_schedule"]


def check_schedule(count: int, weights: Sequence[float] | None, prob: float, off_epoch: int | None) -> np.ndarray:
    """The schedule's weights for `count` mixers, normalized (equal when None); refused, naming the flag, unless
    they, `prob` and `off_epoch` can work. Shared by `MixSchedule` and `TrainConfig.validate`."""
    weights = np.ones(count) if weights is None else np.asarray(weights, dtype=np.float64)
    if weights.shape != (count,) or (weights < 0).any() or weights.sum() <= 0:
        raise ConfigError(f"{{mix_weights}} needs one non-negative weight per mixer ({count}), not all 0, "
                          f"got {list(weights)}")
    if not 0 <= prob <= 1:
        raise ConfigError(f"{{mix_prob}} must be within [0, 1], got {prob}")
    if off_epoch is not None and off_epoch < 0:
        raise ConfigError(f"{{mix_off_epoch}} must be at least 0, got {off_epoch}")
    return weights / weights.sum()


class MixSchedule:
    """Several mixers chosen per batch with `weights`, applied with probability `prob`, off from `off_epoch`.

    Args:
        mixers: the mixers (instances; see `create_mixer`).
        weights: relative odds of each mixer (equal by default); normalized here.
        prob: the probability that a batch is mixed at all.
        off_epoch: the first epoch with no mixing (None: never off).
    """

    def __init__(self, mixers: Sequence, weights: Sequence[float] | None = None, prob: float = 1.0,
                 off_epoch: int | None = None):
        self.mixers = list(mixers)
        if not self.mixers or any(m is None for m in self.mixers):
            raise ConfigError("a mix schedule needs at least one mixer, and 'none' is not one: lower {mix_prob} "
                              "to leave batches unmixed")
        self.weights = check_schedule(len(self.mixers), weights, prob, off_epoch)
        self.prob, self.off_epoch = float(prob), off_epoch
        self.epoch = 0
        self.needs_images = any(getattr(m, "needs_images", False) for m in self.mixers)

    @property
    def min_batch_size(self) -> int:
        return max(m.min_batch_size for m in self.mixers)

    @property
    def largest_side(self) -> int | None:
        """The largest grid side of any SpliceMix in the schedule (for SpliceMix-CL's feature-map check)."""
        sides = [side for m in self.mixers if (side := getattr(m, "largest_side", None)) is not None]
        return max(sides) if sides else None

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next plans belong to (the loader sets it before each batch)."""
        self.epoch = int(epoch)

    def choose(self, rng: np.random.Generator):
        """The mixer of the next batch, or None (unmixed); draws from `rng` only for what is random."""
        if self.off_epoch is not None and self.epoch >= self.off_epoch:
            return None
        if self.prob < 1 and rng.random() >= self.prob:
            return None
        if len(self.mixers) == 1:
            return self.mixers[0]
        return self.mixers[int(rng.choice(len(self.mixers), p=self.weights))]

    def plan(self, batch_size: int, image_size: int, rng: np.random.Generator,
             device: torch.device | str | None = None, images: torch.Tensor | None = None) -> MixPlan:
        mixer = self.choose(rng)
        if mixer is None:
            return MixPlan.identity(batch_size)
        extra = {"images": images} if getattr(mixer, "needs_images", False) else {}
        return mixer.plan(batch_size, image_size, rng, device=device, **extra)

    def __repr__(self) -> str:
        odds = ", ".join(f"{m!r}: {w:.2f}" for m, w in zip(self.mixers, self.weights))
        return f"MixSchedule({odds}; prob={self.prob}, off_epoch={self.off_epoch})"
