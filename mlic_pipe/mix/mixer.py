"""The `Mixer` protocol and the registry of mixers, from which `create_mixer` and the CLI read.

A mixer is anything that draws a `MixPlan` for a batch and says the smallest batch it can mix:
the loader, the preview and the trainer depend on these two members only, never on a class.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch

from mlic_pipe.mix.masks import CutMix, FMix, MixUp, ResizeMix, SaliencyMix
from mlic_pipe.mix.plan import MixPlan
from mlic_pipe.mix.splicemix import SpliceMix
from mlic_pipe.registry import Registry

__all__ = ["MIXERS", "NO_MIX", "Mixer", "create_mixer", "plan_batch"]

NO_MIX = "none"  # the name under which the registry gives "no mixer" (None)


@runtime_checkable
class Mixer(Protocol):
    """Draws every random decision of one batch as a plan (the host half of an augmentation)."""

    @property
    def min_batch_size(self) -> int:
        """The smallest batch the mixer can plan; the loader leaves smaller last batches unmixed."""

    def plan(self, batch_size: int, image_size: int, rng: np.random.Generator,
             device: torch.device | str | None = None) -> MixPlan:
        """The plan of one batch of `batch_size` decoded `image_size` x `image_size` images.

        A mixer whose plan depends on the pixels sets ``needs_images = True`` and is called with
        ``images=`` (the decoded uint8 NHWC batch) as well.
        """


def _no_mix(**kwargs) -> None:
    """no mixing: the batch as decoded"""
    if kwargs:
        raise ValueError(f"mix '{NO_MIX}' takes no options, got {sorted(kwargs)}")
    return None


MIXERS: Registry[Mixer | None] = Registry("mixer")
MIXERS.register("splicemix", SpliceMix, "SpliceMix: grids of downsampled batch images, cells dropped (the paper's default mode)")
MIXERS.register("cutmix", CutMix, "CutMix: the partner inside a box of area (1 - lambda) S^2")
MIXERS.register("fmix", FMix, "FMix: the partner outside a low-frequency mask")
MIXERS.register("resizemix", ResizeMix, "ResizeMix: the whole partner shrunk into a box (tau ~ U(0.1, 0.8))")
MIXERS.register("saliencymix", SaliencyMix, "SaliencyMix: CutMix's box centred on the partner's saliency peak")
MIXERS.register("mixup", MixUp, "MixUp: lambda * primary + (1 - lambda) * partner")
MIXERS.register(NO_MIX, _no_mix, "no mixing")


def create_mixer(mix: str | Mixer | None, **kwargs) -> Mixer | None:
    """A mixer from a registered name (with its constructor's `kwargs`), an instance (as is) or None.

    ``"none"`` and None give None: the loader then delivers the batch unmixed.
    """
    if mix is None:
        return None
    if isinstance(mix, Mixer):
        if kwargs:
            raise ValueError("options apply to a mixer given by name, not to an instance")
        return mix
    if not isinstance(mix, str):
        raise ValueError(f"mix must be a name ({', '.join(MIXERS)}), a Mixer or None, got {mix!r}")
    return MIXERS.create(mix.lower(), **kwargs)


def plan_batch(mixer: Mixer, images: torch.Tensor, image_size: int, rng: np.random.Generator,
               device: torch.device | str | None = None) -> MixPlan:
    """`mixer`'s plan for the decoded batch `images`, handing them over when the mixer reads pixels."""
    extra = {"images": images} if getattr(mixer, "needs_images", False) else {}
    return mixer.plan(len(images), image_size, rng, device=device, **extra)
