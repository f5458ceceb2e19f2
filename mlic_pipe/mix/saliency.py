"""`saliency_peaks`: where each image of a batch is most salient, by spectral residual (Hou & Zhang, CVPR 2007).

SaliencyMix centres its box on the partner's saliency peak; its published code calls OpenCV's
``StaticSaliencySpectralResidual`` per image on the host. This is the same method, batched on the
images' device: grey image downscaled to 64 x 64, log amplitude spectrum minus its 3 x 3 average
(the spectral residual), back with the original phase, squared magnitude, Gaussian blur, argmax.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["WORKING_SIZE", "saliency_maps", "saliency_peaks"]

WORKING_SIZE = 64  # OpenCV's working resolution for the spectral residual


def _gaussian_kernel(sigma: float, device) -> torch.Tensor:
    radius = max(1, int(3 * sigma))
    x = torch.arange(-radius, radius + 1, device=device, dtype=torch.float32)
    kernel = torch.exp(-x**2 / (2 * sigma**2))
    return kernel / kernel.sum()


def saliency_maps(images: torch.Tensor, sigma: float = 2.5) -> torch.Tensor:
    """(N, 64, 64) float32 spectral-residual saliency of uint8 (N, S, S, 3) or float (N, 3, S, S) images."""
    grey = images.float().mean(-1) if images.dtype == torch.uint8 else images.float().mean(1)
    small = F.interpolate(grey[:, None], size=(WORKING_SIZE, WORKING_SIZE), mode="area")[:, 0]
    spectrum = torch.fft.fft2(small)
    log_amplitude = torch.log(spectrum.abs().clamp_min(1e-8))
    average = F.avg_pool2d(F.pad(log_amplitude[:, None], (1, 1, 1, 1), mode="replicate"), 3, stride=1)[:, 0]
    residual = torch.polar(torch.exp(log_amplitude - average), torch.angle(spectrum))
    saliency = torch.fft.ifft2(residual).abs() ** 2
    kernel = _gaussian_kernel(sigma, images.device)
    pad = len(kernel) // 2
    blurred = F.conv2d(F.pad(saliency[:, None], (pad, pad, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    blurred = F.conv2d(F.pad(blurred, (0, 0, pad, pad), mode="reflect"), kernel.view(1, 1, -1, 1))
    return blurred[:, 0]


def saliency_peaks(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """(N, 2) int64 (y, x) of each image's saliency peak, in `image_size` pixel coordinates (on the host)."""
    maps = saliency_maps(images)
    flat = maps.flatten(1).argmax(1)
    cells = torch.stack([flat // WORKING_SIZE, flat % WORKING_SIZE], 1).cpu()
    return ((cells.double() + 0.5) * image_size / WORKING_SIZE).long().clamp(0, image_size - 1)
