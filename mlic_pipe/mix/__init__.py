"""Mixing: random decisions as plans (SpliceMix, CutMix, FMix, MixUp), label mixing, the reference renderer."""
from __future__ import annotations

from mlic_pipe.mix.masks import CutMix, FMix, MixUp, fmix_masks
from mlic_pipe.mix.plan import MixPlan
from mlic_pipe.mix.render import IMAGENET_MEAN, IMAGENET_STD, normalize, render, render_reference
from mlic_pipe.mix.splicemix import SpliceMix, parse_grid
from mlic_pipe.mix.targets import mix_targets

__all__ = [
    "CutMix", "FMix", "IMAGENET_MEAN", "IMAGENET_STD", "MIXERS", "MixPlan", "MixUp", "SpliceMix", "create_mixer",
    "fmix_masks", "mix_targets", "normalize", "parse_grid", "render", "render_reference",
]

MIXERS = {"splicemix": SpliceMix, "cutmix": CutMix, "fmix": FMix, "mixup": MixUp}


def create_mixer(mix):
    """A mixer from a name ("splicemix", "cutmix", "fmix", "mixup"), an instance (returned as is) or None."""
    if mix is None or hasattr(mix, "plan"):
        return mix
    if isinstance(mix, str) and mix.lower() in MIXERS:
        return MIXERS[mix.lower()]()
    raise ValueError(f"mix must be None, a mixer instance or one of {sorted(MIXERS)}, got {mix!r}")
