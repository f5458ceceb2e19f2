"""`RenderSettings`: how a plan is rendered, as one validated value shared by every renderer.

The reference renderer, the Triton kernel, the dispatcher and the loader all take the same six
choices (normalization, output dtype, resampling, corner convention, memory format). Written once
here and checked once on construction, so a bad value fails where it is set, not deep in a kernel
launch, and the loader holds the whole contract as one attribute.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from mlic_pipe.mix.plan import MixPlan

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "OUT_DTYPES", "RESAMPLE_MODES", "RenderSettings", "check_render_call",
           "image_size_of"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESAMPLE_MODES = ("bilinear", "area")
OUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class RenderSettings:
    """Everything but the images and the plan that decides the rendered numbers.

    Attributes:
        mean, std: per-channel normalization in the [0, 1] scale (ImageNet's by default).
        out_dtype: float32, float16 or bfloat16.
        resample: "bilinear" (the papers' choice, no antialiasing) or "area" (box filter).
        align_corners: bilinear sampling convention; True as SpliceMix.
        channels_last: return channels_last tensors.
    """

    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    out_dtype: torch.dtype = torch.float32
    resample: str = "bilinear"
    align_corners: bool = True
    channels_last: bool = False

    def __post_init__(self):
        mean, std = tuple(float(m) for m in self.mean), tuple(float(s) for s in self.std)
        if len(mean) != 3 or len(std) != 3 or any(s == 0 for s in std):
            raise ValueError(f"mean and std need three values each and std no zeros, got {self.mean}, {self.std}")
        if self.out_dtype not in OUT_DTYPES:
            raise ValueError(f"out_dtype must be torch.float32, float16 or bfloat16, got {self.out_dtype}")
        if self.resample not in RESAMPLE_MODES:
            raise ValueError(f"resample must be one of {RESAMPLE_MODES}, got {self.resample!r}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "align_corners", bool(self.align_corners))
        object.__setattr__(self, "channels_last", bool(self.channels_last))

    @classmethod
    def resolve(cls, settings: "RenderSettings | None" = None, **options) -> "RenderSettings":
        """`settings` with `options` (field names) applied; the defaults when both are empty."""
        if settings is None:
            return cls(**options)
        if not isinstance(settings, cls):
            raise TypeError(f"settings must be a RenderSettings, got {type(settings).__name__}")
        return dataclasses.replace(settings, **options) if options else settings

    def output_shape(self, num_outputs: int, image_size: int) -> tuple[int, int, int, int]:
        return (num_outputs, 3, image_size, image_size)

    def affine(self, uint8: bool) -> tuple[list[float], list[float]]:
        """Per-channel (scale, shift) with ``normalized = x * scale + shift``: the compiled renderers' one
        multiply-add, for 0-255 values (`uint8`, also an erase colour) or values in [0, 1]."""
        scales = [1.0 / ((255.0 if uint8 else 1.0) * s) for s in self.std]
        return scales, [-m / s for m, s in zip(self.mean, self.std)]

    def empty(self, num_outputs: int, image_size: int, device: torch.device | str) -> torch.Tensor:
        """An uninitialized output batch of this dtype and memory format."""
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        return torch.empty(self.output_shape(num_outputs, image_size), dtype=self.out_dtype, device=device,
                           memory_format=layout)


def image_size_of(images: torch.Tensor) -> int:
    """S of a uint8 (N, S, S, 3) or float (N, 3, S, S) batch; ValueError for anything else."""
    if images.dtype == torch.uint8:
        if images.ndim != 4 or images.shape[3] != 3 or images.shape[1] != images.shape[2]:
            raise ValueError(f"uint8 images must be (N, S, S, 3) NHWC, got {tuple(images.shape)}")
        return int(images.shape[1])
    if images.is_floating_point():
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
            raise ValueError(f"float images must be (N, 3, S, S) NCHW, got {tuple(images.shape)}")
        return int(images.shape[2])
    raise ValueError(f"images must be uint8 (N, S, S, 3) or float (N, 3, S, S), got dtype {images.dtype}")


def check_render_call(images: torch.Tensor, plan: MixPlan, settings: RenderSettings,
                      out: torch.Tensor | None) -> tuple[int, tuple[int, int, int, int]]:
    """The checks every renderer makes before it reads a byte; returns S and the output shape.

    A host plan is validated against the batch here, so a bad plan is an error message, never an
    out-of-bounds read in the kernel.
    """
    size = image_size_of(images)
    if plan.device.type == "cpu":
        plan.validate(len(images), size)
    shape = settings.output_shape(plan.num_outputs, size)
    if out is not None and (out.shape != shape or out.dtype != settings.out_dtype or out.device != images.device):
        raise ValueError(f"out must be {shape} {settings.out_dtype} on {images.device}, got "
                         f"{tuple(out.shape)} {out.dtype} on {out.device}")
    return size, shape

