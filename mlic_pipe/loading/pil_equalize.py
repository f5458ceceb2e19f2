"""`equalize_into`: PIL's ``ImageOps.equalize`` bit for bit (numba), for the compiled CPU policy.

Why: the `randaugment` package's Equalize needs a per-channel histogram. DALI has no histogram operator, so the
GPU graph compares every pixel with the 256 levels (`pypi_randaugment.equalize_in_graph`: a few hundred MB for a
moment per 448 x 448 image, cheap on a GPU, far too dear on a CPU); the compiled CPU policy
(`mlic_pipe.loading.pil_randaugment`) takes one pass over the image and ~1 ms with this.

PIL's table, per channel (Pillow's ``ImageOps.equalize``): with ``step = (N - count of the top occupied
level) // 255``, ``lut[v] = (step // 2 + #pixels below v) // step``, at most 255; the channel is left as it was
when it holds one level or ``step`` is 0.
"""
from __future__ import annotations

import numpy as np

from mlic_pipe.loading import numba_operator
from mlic_pipe.loading.numba_operator import IMPORT_ERROR

__all__ = ["equalize_into"]

if IMPORT_ERROR is None:
    from numba import njit

    @njit(**numba_operator.JIT)
    def equalize_into(out, image):
        """Equalize the uint8 (H, W, 3) `image` into `out` (same shape), channel by channel, as PIL."""
        height, width, channels = image.shape
        flat, target = image.reshape(height * width, channels), out.reshape(height * width, channels)
        histogram = np.zeros((channels, 256), dtype=np.int64)
        for i in range(height * width):
            for c in range(channels):
                histogram[c, flat[i, c]] += 1
        lut = np.empty((channels, 256), dtype=np.uint8)
        for c in range(channels):
            top, used = -1, 0
            for v in range(256):
                if histogram[c, v]:
                    top, used = v, used + 1
            step = (height * width - histogram[c, top]) // 255 if used > 1 else 0
            below = step // 2
            for v in range(256):
                lut[c, v] = min(below // step, 255) if step else v
                below += histogram[c, v]
        for i in range(height * width):
            for c in range(channels):
                target[i, c] = lut[c, flat[i, c]]
