"""`erase_noise`: the per-pixel standard normal noise of random erasing's "pixel" mode, the same on every renderer.

timm's ``RandomErasing(mode="pixel")`` fills a box with ``torch.normal_()``, whose stream depends on
the device and the call order. A render pass needs noise that any pixel can compute alone, and the
torch reference, the compiled CPU renderer and the Triton kernel must agree, so the noise is a
counter-based hash: pixel (c, y, x) of a box with seed k takes

    key = lowbias32(k);  n = (c * S + y) * S + x
    h1 = lowbias32((2 n) ^ key);  h2 = lowbias32((2 n + 1) ^ key)
    u1 = ((h1 >> 8) + 1) / 2^24 in (0, 1];  u2 = (h2 >> 8) / 2^24 in [0, 1)
    z = sqrt(-2 ln u1) * cos(2 pi u2)                       (Box-Muller, float32)

with ``lowbias32`` Chris Wellons' 32-bit integer hash (x ^= x >> 16; x *= 0x7feb352d; x ^= x >> 15;
x *= 0x846ca68b; x ^= x >> 16, all mod 2^32). The integers are exact everywhere; the float32
log / cos differ between math libraries by an ulp or so, far inside the renderers' 1e-5.
"""
from __future__ import annotations

import math

import torch

__all__ = ["HASH_MULTIPLIERS", "erase_noise", "lowbias32"]

HASH_MULTIPLIERS = (0x7FEB352D, 0x846CA68B)
_MASK = 0xFFFFFFFF


def _mul32(x: torch.Tensor, multiplier: int) -> torch.Tensor:
    """(x * multiplier) mod 2^32 for int64 x in [0, 2^32), without overflowing int64."""
    low, high = x & 0xFFFF, x >> 16
    return (low * multiplier + (((high * multiplier) & 0xFFFF) << 16)) & _MASK


def lowbias32(x: torch.Tensor) -> torch.Tensor:
    """The 32-bit hash, on int64 tensors holding uint32 values."""
    x = x & _MASK
    x = _mul32(x ^ (x >> 16), HASH_MULTIPLIERS[0])
    x = _mul32(x ^ (x >> 15), HASH_MULTIPLIERS[1])
    return x ^ (x >> 16)


def erase_noise(seed: int, size: int, channels: int = 3, device: torch.device | str = "cpu") -> torch.Tensor:
    """(channels, size, size) float32 standard normal noise of a box with `seed`, indexed by image position."""
    key = lowbias32(torch.tensor(int(seed), dtype=torch.int64))
    c = torch.arange(channels, device=device, dtype=torch.int64)[:, None, None]
    y = torch.arange(size, device=device, dtype=torch.int64)[None, :, None]
    x = torch.arange(size, device=device, dtype=torch.int64)[None, None, :]
    counter = (c * size + y) * size + x
    h1 = lowbias32((2 * counter) ^ key.to(device))
    h2 = lowbias32((2 * counter + 1) ^ key.to(device))
    u1 = ((h1 >> 8) + 1).to(torch.float32) * (1.0 / 16777216.0)
    u2 = (h2 >> 8).to(torch.float32) * (1.0 / 16777216.0)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * math.pi) * u2)
