"""`saliency_peaks`: where each image of a batch is most salient, by OpenCV's fine-grained saliency, batched.

SaliencyMix's published code (its CIFAR and ImageNet scripts, and openmixup) centres the box on the
argmax of ``cv2.saliency.StaticSaliencyFineGrained`` (Montabone & Soto, 2010), called per image on
the host. This computes the same map for the whole batch on the images' device (on a CPU by its
compiled twin, `mlic_pipe.mix.cpu_saliency`), step by step as opencv_contrib's
``staticSaliencyFineGrained.cpp`` does:

1. grey = OpenCV's BGR2GRAY weights on the right channels of the RGB batch, in its fixed point
   (``(4899 R + 9617 G + 1868 B + 2^13) >> 14``);
2. two 3 x 3 Gaussian blurs (kernel [1, 2, 1] / 4 per axis, reflect-101 border, rounded to uint8);
3. for each of 6 neighbourhoods n (12, 24, 48, 28, 56, 112): the mean of the box
   ``[y - n + 1, y + n + 1) x [x - n + 1, x + n + 1)`` clipped to the image, without the centre
   pixel (from an integral image); on = trunc(max(grey - mean, 0)), off = trunc(max(mean - grey, 0));
4. on and off summed over the scales, each scaled to 0..255 by its maximum (truncated);
5. saliency = 255 (on + off) / max(max on, max off), cast to uint8 as OpenCV's C cast does on x86
   (values above 255 wrap modulo 256).

The integral is exact (int64) where OpenCV's is float32, so a map can differ by one level in a few
pixels of a large image (OpenCV 5 returns the map divided by 255 as float32); the tests compare the
maps and the peaks with OpenCV's on photographs.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["NEIGHBOURHOODS", "saliency_maps", "saliency_maps_torch", "saliency_peaks"]

NEIGHBOURHOODS = (12, 24, 48, 28, 56, 112)  # 3*4, 3*4*2, 3*4*2*2, 7*4, 7*4*2, 7*4*2*2, as OpenCV's


def _check_batch(images: torch.Tensor) -> None:
    """ValueError unless `images` is a decoded uint8 (N, H, W, 3) RGB batch."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"saliency needs the decoded uint8 (N, H, W, 3) RGB batch, got {tuple(images.shape)} "
                         f"{images.dtype}")


def _grey(images: torch.Tensor) -> torch.Tensor:
    """(N, H, W) int32 grey of uint8 (N, H, W, 3) RGB images, OpenCV's fixed-point BGR2GRAY on RGB."""
    rgb = images.to(torch.int32)
    return (rgb[..., 0] * 4899 + rgb[..., 1] * 9617 + rgb[..., 2] * 1868 + (1 << 13)) >> 14


def _blur(grey: torch.Tensor) -> torch.Tensor:
    """OpenCV's GaussianBlur(3 x 3, sigma 0) on uint8: [1, 2, 1] / 4 per axis, reflect-101, rounded half up."""
    padded = F.pad(grey[:, None].to(torch.float32), (1, 1, 1, 1), mode="reflect")[:, 0]
    rows = padded[:, :, :-2] + 2 * padded[:, :, 1:-1] + padded[:, :, 2:]
    total = rows[:, :-2] + 2 * rows[:, 1:-1] + rows[:, 2:]  # an integer <= 4080: exact in float32
    return torch.div(total.to(torch.int32) + 8, 16, rounding_mode="floor")


def _box_means(integral: torch.Tensor, grey: torch.Tensor, n: int) -> torch.Tensor:
    """OpenCV's getMean: the clipped box's sum from the integral, less the centre, over its area less one."""
    height, width = grey.shape[1:]
    ys, xs = torch.arange(height, device=grey.device), torch.arange(width, device=grey.device)
    y1, y2 = (ys - n + 1).clamp(0, height), (ys + n + 1).clamp(0, height)
    x1, x2 = (xs - n + 1).clamp(0, width), (xs + n + 1).clamp(0, width)
    rows = integral.index_select(1, y2) - integral.index_select(1, y1)  # (N, H, W + 1): whole rows of the box
    total = rows.index_select(2, x2) - rows.index_select(2, x1)
    area = ((x2 - x1)[None, :] * (y2 - y1)[:, None] - 1).to(torch.float32)
    return (total - grey).to(torch.float32) / area


def _scaled(total: torch.Tensor) -> torch.Tensor:
    """trunc(255 * (total / max)) per image, in float32 as OpenCV's mixScales (0 where the image is flat)."""
    peak = total.flatten(1).amax(1).to(torch.float32)[:, None, None]
    ratio = torch.where(peak > 0, total.to(torch.float32) / peak.clamp_min(1), torch.zeros((), device=total.device))
    return torch.floor(255.0 * ratio.to(torch.float64)).to(torch.int64)


def saliency_maps(images: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
    """(R, H, W) uint8 fine-grained saliency of images `rows` (default: all) of uint8 (N, H, W, 3) RGB images
    (see the module docstring).

    CPU batches go through the compiled twin (`mlic_pipe.mix.cpu_saliency`: the same maps, 21x faster for
    B=32 at S=448 on this project's 2-core machine; it reads the rows in place), others (and CPU ones without
    numba) through the tensor ops below.
    """
    from mlic_pipe.mix import cpu_saliency

    _check_batch(images)
    if images.device.type == "cpu" and cpu_saliency.AVAILABLE and min(images.shape[1:3]) >= 2:
        chosen = None if rows is None else torch.as_tensor(rows).cpu().numpy()
        return torch.from_numpy(cpu_saliency.saliency_maps_cpu(images.contiguous().numpy(), chosen))
    return saliency_maps_torch(images if rows is None else images[torch.as_tensor(rows).to(images.device)])


def saliency_maps_torch(images: torch.Tensor) -> torch.Tensor:
    """`saliency_maps` by whole-batch tensor ops, on the images' device (the GPU's path, and the CPU's reference)."""
    _check_batch(images)
    grey = _blur(_blur(_grey(images)))
    exact = torch.int32 if 255 * grey.shape[1] * grey.shape[2] < 2**31 else torch.int64
    grey = grey.to(exact)
    integral = F.pad(grey.cumsum(1, dtype=exact).cumsum(2, dtype=exact), (1, 0, 1, 0))  # (N, H + 1, W + 1), exact
    on = torch.zeros_like(grey)
    off = torch.zeros_like(grey)
    centre = grey.to(torch.float32)
    for n in NEIGHBOURHOODS:
        contrast = centre - _box_means(integral, grey, n)
        on += contrast.clamp_min(0).to(exact)  # truncation, as the C cast to uchar of a positive float
        off += contrast.neg_().clamp_min_(0).to(exact)
    on, off = _scaled(on), _scaled(off)
    top = torch.maximum(on.flatten(1).amax(1), off.flatten(1).amax(1)).to(torch.float64)[:, None, None]
    value = torch.where(top > 0, 255.0 * (on + off).to(torch.float64) / top.clamp_min(1), torch.zeros((), dtype=torch.float64,
                                                                                                   device=grey.device))
    return (torch.floor(value).to(torch.int64) % 256).to(torch.uint8)  # the C cast to uchar wraps above 255


def saliency_peaks(images: torch.Tensor, image_size: int | None = None, rows: torch.Tensor | None = None
                   ) -> torch.Tensor:
    """(R, 2) int64 (y, x) of each image's saliency argmax (the first in row-major order), on the host, for images
    `rows` (default: all)."""
    maps = saliency_maps(images, rows)
    if maps.device.type == "cpu":  # numpy's argmax of uint8 rows: ~1 ms for B=32 at S=448 cache-cold, torch's ~4
        flat = torch.from_numpy(maps.numpy().reshape(len(maps), -1).argmax(1).astype(np.int64))
    else:
        flat = maps.flatten(1).argmax(1)
    width = maps.shape[-1]
    return torch.stack([flat // width, flat % width], 1).cpu()
