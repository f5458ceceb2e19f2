"""`mix_batch` and `CallableMixer`: one call, ``mixer(images, targets)``, for users with their own loader.

timm's ``Mixup`` and torchvision's ``CutMix`` are called on a batch and return the mixed batch and
its targets; our mixers do the same, as a thin layer over the plan / render split the loader uses:
draw the plan on the host, render it on the images' device in one pass (`render`), mix the labels
with the same plan (`mix_targets`). Images are the decoder's uint8 (N, S, S, 3) or float (N, 3, S, S)
in [0, 1]; the output is normalized float (N_out, 3, S, S), N_out = N for in-place mixes and
N + M for appended ones and SpliceMix (the regular images first).
"""
from __future__ import annotations

import numpy as np
import torch

from mlic_pipe.mix.dispatch import render
from mlic_pipe.mix.settings import RenderSettings, image_size_of
from mlic_pipe.mix.targets import mix_targets

__all__ = ["CallableMixer", "mix_batch"]


def mix_batch(mixer, images: torch.Tensor, targets: torch.Tensor, rng: np.random.Generator, *,
              settings: RenderSettings | None = None, rule: str = "union",
              **options) -> tuple[torch.Tensor, torch.Tensor]:
    """(mixed images, mixed targets) of one batch: `mixer`'s plan drawn from `rng`, rendered and applied to labels.

    Args:
        targets: (N, C) multi-hot (or soft) labels, any device; returned as float32 on the images' device.
        settings, options: how to render (`RenderSettings` and its field names, e.g. ``out_dtype``);
            for float images already normalized pass ``mean=(0, 0, 0), std=(1, 1, 1)``.
        rule: "union" or "area", as `mix_targets`.
    """
    size = image_size_of(images)
    if targets.ndim != 2 or len(targets) != len(images):
        raise ValueError(f"targets must be (N, C) with N = {len(images)} images, got {tuple(targets.shape)}")
    extra = {"images": images} if getattr(mixer, "needs_images", False) else {}
    plan = mixer.plan(len(images), size, rng, device=images.device, **extra)
    mixed = render(images, plan, settings, **options)
    return mixed, mix_targets(targets.to(images.device), plan, rule)


class CallableMixer:
    """Makes a mixer callable as ``mixer(images, targets)`` (see `mix_batch`).

    The decisions come from `rng` when given (reproducible), else from a generator this mixer
    seeds from the OS on its first call and keeps, as timm's ``Mixup`` draws from numpy's.
    """

    _generator: np.random.Generator | None = None

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, *, rng: np.random.Generator | None = None,
                 settings: RenderSettings | None = None, rule: str = "union",
                 **options) -> tuple[torch.Tensor, torch.Tensor]:
        if rng is None:
            if self._generator is None:
                self._generator = np.random.default_rng()
            rng = self._generator
        return mix_batch(self, images, targets, rng, settings=settings, rule=rule, **options)
