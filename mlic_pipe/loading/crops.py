"""The crop modes of the decode: which window of each image becomes the S x S sample.

Each recipe names its crop, and a model trained with one is evaluated with its partner:

- ``"random"``: random area ``scale`` and log-uniform aspect ``ratio``, clamped to the image, at a uniform
  position (timm's RandomResizedCrop arguments; one draw per sample, no rejection loop). CSRA's and timm's.
- ``"multiscale"``: the MultiScaleCrop of ML-GCN, ADD-GCN and SpliceMix (utilities/utils.py of zuiran/SpliceMix):
  the image is squashed to ``base`` x ``base`` (SpliceMix: S + S // 7), a crop side is drawn for each axis from
  ``int(base * scale)`` for the listed scales (a side within 3 px of S snaps to S), pairs whose scale indices
  differ by at most ``max_distort`` (SpliceMix passes 2), at one of 13 fixed offsets (corners, centre, edge
  centres, quarter points, in steps of ``(base - side) // 4``), then resized to S.
- ``"squash"``: the whole image resized to S x S (ML-Decoder and ASL train and evaluate so; our evaluation default).
- ``"center"``: timm's evaluation crop: the shorter side resized to ``floor(S / crop_pct)``, the centre S x S.

Nothing here needs the image: the random crop's window is computed in the DALI graph from the image shape and
the sample's uniforms; the multiscale crop's windows depend only on (S, base, scales, max_distort), so they are
a table here, indexed in the graph by one uniform (all windows equally likely, as the published two
`random.choice` calls over a fixed number of pairs and of offsets make them).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlic_pipe.errors import ConfigError

__all__ = ["CROPS", "CropSettings", "MULTISCALE_SCALES", "multiscale_windows"]

CROPS = ("random", "multiscale", "squash", "center")
MULTISCALE_SCALES = (1.0, 0.875, 0.75, 0.66, 0.5)
_FIXED_OFFSETS = ((0, 0), (4, 0), (0, 4), (4, 4), (2, 2),  # corners and centre, in quarter steps
                  (0, 2), (4, 2), (2, 4), (2, 0),  # edge centres
                  (1, 1), (3, 1), (1, 3), (3, 3))  # quarter points


@dataclass(frozen=True)
class CropSettings:
    """A crop mode and its arguments (see the module docstring for each mode's source).

    Attributes:
        mode: one of `CROPS`.
        scale, ratio: the random crop's area fraction and aspect (width / height) ranges.
        crop_pct: the centre crop's fraction of the resized shorter side.
        scales, max_distort, base: the multiscale crop's scales, the largest difference of the two sides'
            scale indices, and the square side the image is squashed to first (None: S + S // 7, SpliceMix's).
    """

    mode: str = "random"
    scale: tuple[float, float] = (0.7, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    crop_pct: float = 0.875
    scales: tuple[float, ...] = MULTISCALE_SCALES
    max_distort: int = 2
    base: int | None = None

    @property
    def needs_draws(self) -> bool:
        """Whether a sample's window depends on its uniforms."""
        return self.mode in ("random", "multiscale")

    def validate(self) -> None:
        if self.mode not in CROPS:
            raise ConfigError(f"{{crop}} must be one of {', '.join(CROPS)}, got {self.mode!r}")
        low, high = self.scale
        if not 0 < low <= high <= 1:
            raise ConfigError(f"{{scale}} must satisfy 0 < low <= high <= 1, got {self.scale}")
        low, high = self.ratio
        if not 0 < low <= high:
            raise ConfigError(f"{{ratio}} must satisfy 0 < low <= high, got {self.ratio}")
        if not 0 < self.crop_pct <= 1:
            raise ConfigError(f"{{crop_pct}} must be within (0, 1], got {self.crop_pct}")
        if not self.scales or not all(0 < s <= 1 for s in self.scales):
            raise ConfigError(f"the multiscale {{scales}} must be in (0, 1], got {self.scales}")
        if self.max_distort < 0:
            raise ConfigError(f"{{max_distort}} must be at least 0, got {self.max_distort}")

    def multiscale_base(self, image_size: int) -> int:
        return self.base if self.base is not None else image_size + image_size // 7

    def center_side(self, image_size: int) -> float:
        """The centre crop's side as a fraction of the image's shorter side."""
        return image_size / int(image_size / self.crop_pct)


def multiscale_windows(image_size: int, base: int, scales=MULTISCALE_SCALES, max_distort: int = 2) -> np.ndarray:
    """Every MultiScaleCrop window as (x0, y0, width, height), fractions of the squashed base x base image.

    Row ``pair * 13 + offset``: the pairs in the published order (height index outer, width index inner, both
    over `scales`), each at the 13 fixed offsets. A uniform index into the rows is the published draw.
    """
    sides = [int(base * s) for s in scales]
    sides = [image_size if abs(side - image_size) < 3 else side for side in sides]
    windows = []
    for i, height in enumerate(sides):
        for j, width in enumerate(sides):
            if abs(i - j) > max_distort:
                continue
            step_x, step_y = (base - width) // 4, (base - height) // 4
            windows += [(kx * step_x, ky * step_y, width, height) for kx, ky in _FIXED_OFFSETS]
    return np.asarray(windows, dtype=np.float64) / base
