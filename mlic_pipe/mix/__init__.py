"""Mixing: random decisions as plans (SpliceMix, CutMix, FMix, MixUp), label mixing, rendering.

Modules: `plan` (MixPlan, the table and mask-mode constants), `mixer` (the Mixer protocol and the
registry of mixers), `splicemix` and `masks` (the mixers), `cells` (cell geometry shared with
SpliceMix-CL), `settings` (RenderSettings), `reference` (the torch renderer, the specification),
`schedule` (MixSchedule: several mixers per batch, a probability, an off epoch),
`dispatch` (`render`: kernel, compiled CPU renderer or reference), `cpu_render` (the compiled CPU
renderer), `targets` (label mixing), `calling` (``mixer(images, targets)`` in one call, `mix_batch`),
`saliency` and `cpu_saliency` (SaliencyMix's maps, and their compiled CPU twin), `normals` and
`rank_ramp` (FMix's spectra and threshold on the CPU, compiled), `host_threads` (those CPU plans on
several threads).
"""
from __future__ import annotations

from mlic_pipe.mix.calling import mix_batch
from mlic_pipe.mix.dispatch import render
from mlic_pipe.mix.masks import CutMix, FMix, MixUp, ResizeMix, SaliencyMix, fmix_masks
from mlic_pipe.mix.mixer import MIXERS, Mixer, create_mixer, plan_batch
from mlic_pipe.mix.plan import MixPlan
from mlic_pipe.mix.reference import normalize, render_reference
from mlic_pipe.mix.schedule import MixSchedule
from mlic_pipe.mix.settings import IMAGENET_MEAN, IMAGENET_STD, RenderSettings
from mlic_pipe.mix.splicemix import SpliceMix, parse_grid
from mlic_pipe.mix.targets import mix_ignore, mix_targets

__all__ = [
    "CutMix", "FMix", "IMAGENET_MEAN", "IMAGENET_STD", "MIXERS", "Mixer", "MixPlan", "MixSchedule", "MixUp", "RenderSettings",
    "ResizeMix", "SaliencyMix", "SpliceMix", "create_mixer", "fmix_masks", "mix_batch", "plan_batch", "mix_ignore", "mix_targets", "normalize", "parse_grid", "render", "render_reference",
]
