"""Cutout and random erasing as erase boxes in the plan, painted by the render in the same pass as the mix.

Two erasers, each turning per-output uniforms into `MixPlan.erase` boxes (`with_erase`):

- `Cutout(factor)`: ML-Decoder's and ASL's ``CutoutPIL`` (their public code): one box per image,
  side ``cut = int(factor * S + 0.5)``, centre uniform over the pixels, corners ``clip(c -+ cut // 2,
  0, S)`` and PIL's rectangle, which includes its far corner; a colour uniform in 0..255 per
  channel; every image, always.
- `RandomErasing(prob, mode, max_count)`: timm's ``RandomErasing`` (its ``--reprob``, ``--remode``,
  ``--recount``): with probability `prob` an image gets 1..max_count boxes; each tries up to 10
  times for an area U(min_area, max_area) * S^2 / count and an aspect exp(U(log 0.3, log 1 / 0.3)),
  sides rounded half to even as Python's ``round``, kept if both are smaller than S, at a uniform
  position; filled with 0 (``const``), a per-channel standard normal (``rand``) or per-pixel
  standard normal noise (``pixel``), in normalized space, as timm fills after normalization.

Where the uniforms come from is the caller's choice (`erase_plan`): the loader draws a regular
output's from (seed, epoch, row), so an image is erased alike on any rank and after any resume, and
a mixed output's from the batch generator, as its mix. Departures: the boxes are painted on the
rendered (cropped, resized, normalized) image, after the mix, where ML-Decoder cuts out before
RandAugment and timm erases each image before mixing.
"""
from __future__ import annotations

import math

import numpy as np

from mlic_pipe.mix.plan import ERASE_COLOUR, ERASE_NOISE, ERASE_NONE, ERASE_VALUE, MixPlan

__all__ = ["ATTEMPTS", "Cutout", "ERASE_MODES", "RandomErasing", "erase_plan", "erasers"]

ATTEMPTS = 10  # timm's tries per box
ERASE_MODES = ("const", "rand", "pixel")


def _normals(uniforms: np.ndarray) -> np.ndarray:
    """Box-Muller: standard normals from pairs of uniforms in [0, 1) (last axis even)."""
    u1, u2 = 1.0 - uniforms[..., 0::2], uniforms[..., 1::2]
    radius = np.sqrt(-2.0 * np.log(u1))
    return np.concatenate([radius * np.cos(2 * math.pi * u2), radius * np.sin(2 * math.pi * u2)], -1)


class Cutout:
    """ML-Decoder's CutoutPIL: one box of side int(factor * S + 0.5) of a random colour per image."""

    columns = 5  # centre y, centre x, three colour channels

    def __init__(self, factor: float = 0.5):
        if not 0 < factor <= 1:
            raise ValueError(f"cutout factor must be in (0, 1], got {factor}")
        self.factor = float(factor)

    def __repr__(self) -> str:
        return f"Cutout(factor={self.factor})"

    def boxes(self, uniforms: np.ndarray, image_size: int) -> tuple[np.ndarray, ...]:
        """(boxes (N, 1, 4), kinds (N, 1), values (N, 1, 3), seeds (N, 1)) from (N, `columns`) uniforms."""
        size, half = image_size, int(self.factor * image_size + 0.5) // 2
        centre = np.minimum((uniforms[:, :2] * size).astype(np.int64), size - 1)  # np.random.randint(S)
        low = np.clip(centre - half, 0, size)
        high = np.minimum(np.clip(centre + half, 0, size) + 1, size)  # PIL draws the far corner too
        boxes = np.stack([low[:, 0], low[:, 1], high[:, 0], high[:, 1]], -1)[:, None]
        colour = np.minimum((uniforms[:, 2:5] * 256).astype(np.int64), 255)  # random.randint(0, 255)
        count = len(uniforms)
        return boxes, np.full((count, 1), ERASE_COLOUR), colour[:, None].astype(np.float32), np.zeros((count, 1))


class RandomErasing:
    """timm's RandomErasing: with probability `prob`, 1..max_count boxes filled as `mode` says (after normalization)."""

    def __init__(self, prob: float = 0.25, mode: str = "const", max_count: int = 1, *, min_area: float = 0.02,
                 max_area: float = 1 / 3, min_aspect: float = 0.3, max_aspect: float | None = None):
        if not 0 <= prob <= 1:
            raise ValueError(f"random erasing prob must be in [0, 1], got {prob}")
        if mode not in ERASE_MODES:
            raise ValueError(f"random erasing mode must be one of {ERASE_MODES}, got {mode!r}")
        if max_count < 1:
            raise ValueError(f"random erasing max_count must be at least 1, got {max_count}")
        if not 0 < min_area <= max_area <= 1:
            raise ValueError(f"need 0 < min_area <= max_area <= 1, got {min_area}, {max_area}")
        self.prob, self.mode, self.max_count = float(prob), mode, int(max_count)
        self.min_area, self.max_area = float(min_area), float(max_area)
        self.log_aspect = (math.log(min_aspect), math.log(max_aspect or 1 / min_aspect))

    def __repr__(self) -> str:
        return f"RandomErasing(prob={self.prob}, mode={self.mode!r}, max_count={self.max_count})"

    @property
    def columns(self) -> int:
        return 2 + self.max_count * self._per_box

    _per_box = 2 * ATTEMPTS + 2 + 4 + 1  # attempts (area, aspect), position, 4 uniforms for 3 normals, seed

    def boxes(self, uniforms: np.ndarray, image_size: int) -> tuple[np.ndarray, ...]:
        """(boxes (N, max_count, 4), kinds, values (N, max_count, 3), seeds) from (N, `columns`) uniforms."""
        count, size = len(uniforms), image_size
        applied = uniforms[:, 0] < self.prob
        boxes_per = 1 + np.minimum((uniforms[:, 1] * self.max_count).astype(np.int64), self.max_count - 1)
        boxes = np.zeros((count, self.max_count, 4), np.int64)
        kinds = np.full((count, self.max_count), ERASE_NONE)
        values = np.zeros((count, self.max_count, 3), np.float32)
        seeds = np.zeros((count, self.max_count), np.int64)
        for k in range(self.max_count):
            u = uniforms[:, 2 + k * self._per_box: 2 + (k + 1) * self._per_box]
            height, width, found = self._sides(u[:, :2 * ATTEMPTS], boxes_per, size)
            top = (u[:, 2 * ATTEMPTS] * (size - height + 1)).astype(np.int64)  # random.randint(0, S - h)
            left = (u[:, 2 * ATTEMPTS + 1] * (size - width + 1)).astype(np.int64)
            boxes[:, k] = np.stack([top, left, top + height, left + width], -1)
            used = applied & found & (k < boxes_per)
            kinds[used, k] = ERASE_NOISE if self.mode == "pixel" else ERASE_VALUE
            if self.mode == "rand":
                values[:, k] = _normals(u[:, 2 * ATTEMPTS + 2: 2 * ATTEMPTS + 6])[:, :3]
            seeds[:, k] = (u[:, -1] * (2**31 - 1)).astype(np.int64)
        return np.where(kinds[..., None] == ERASE_NONE, 0, boxes), kinds, values, seeds

    def _sides(self, attempts: np.ndarray, boxes_per: np.ndarray, size: int):
        """Each output's first attempt whose sides fit (timm's loop of 10), and whether one did."""
        height = np.zeros(len(attempts), np.int64)
        width = np.zeros(len(attempts), np.int64)
        found = np.zeros(len(attempts), bool)
        low, high = self.log_aspect
        for a in range(ATTEMPTS):
            area = (self.min_area + attempts[:, 2 * a] * (self.max_area - self.min_area)) * (size * size) / boxes_per
            aspect = np.exp(low + attempts[:, 2 * a + 1] * (high - low))
            h, w = np.rint(np.sqrt(area * aspect)).astype(np.int64), np.rint(np.sqrt(area / aspect)).astype(np.int64)
            fits = ~found & (h < size) & (w < size)
            height, width, found = np.where(fits, h, height), np.where(fits, w, width), found | fits
        return height, width, found


def erasers(cutout: float = 0.0, reprob: float = 0.0, remode: str = "const", recount: int = 1) -> list:
    """The erasers the flags ask for (`--cutout FACTOR`, `--reprob P --remode M --recount N`; 0 = off), in the
    order they paint: Cutout first, then random erasing."""
    return ([Cutout(cutout)] if cutout else []) + ([RandomErasing(reprob, remode, recount)] if reprob else [])


def erase_plan(plan: MixPlan, erasers, image_size: int, uniforms) -> MixPlan:
    """`plan` with every eraser's boxes appended, in order; `uniforms(columns)` gives (N_out, columns) draws."""
    parts = [eraser.boxes(uniforms(eraser.columns), image_size) for eraser in erasers]
    if not parts:
        return plan
    return plan.with_erase(*(np.concatenate([part[i] for part in parts], 1) for i in range(4)))
