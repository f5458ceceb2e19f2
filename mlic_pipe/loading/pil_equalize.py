"""`pil_equalize`: PIL's ``ImageOps.equalize`` bit for bit, as a DALI operator compiled by numba (the CPU graph's).

Why: the `randaugment` package's Equalize (`mlic_pipe.loading.pypi_randaugment`) needs a per-channel histogram.
DALI has no histogram operator, so the graph's portable form compares every pixel with the 256 levels: a few
hundred MB for a moment per 448 x 448 image and ~0.1-0.5 s on a CPU core, cheap on a GPU, far too dear on a
CPU. Here the same table takes one pass over the image and ~1 ms.

PIL's table, per channel (Pillow's ``ImageOps.equalize``): with ``step = (N - count of the top occupied
level) // 255``, ``lut[v] = (step // 2 + #pixels below v) // step``, at most 255; the channel is left as it was
when it holds one level or ``step`` is 0.
"""
from __future__ import annotations

import functools
import time

import numpy as np

from mlic_pipe.loading import numba_operator
from mlic_pipe.loading.numba_operator import IMPORT_ERROR

__all__ = ["available", "equalize_into", "pil_equalize"]

_compile_seconds: dict[str, float] = {}

if IMPORT_ERROR is None:
    from numba import cfunc, njit

    _started = time.perf_counter()

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

    @cfunc(numba_operator.RUN_SIGNATURE, nopython=True, cache=True)
    def _run(out_ptr, out_shapes_ptr, out_ndims_ptr, num_outs, in_ptr, in_shapes_ptr, in_ndims_ptr, num_ins):
        equalize_into(numba_operator.image_at(out_ptr, out_shapes_ptr), numba_operator.image_at(in_ptr, in_shapes_ptr))

    _compile_seconds["run"] = time.perf_counter() - _started


@functools.lru_cache(maxsize=1)
def available() -> str | None:
    """None when the operator can be built; else why not (the graph then equalizes with its portable form)."""
    if IMPORT_ERROR is not None:
        return IMPORT_ERROR
    return numba_operator.available(_run.address)


def pil_equalize(images, size: int):
    """`images` (uint8 `size` x `size` x 3 CPU DataNodes) equalized as PIL; None if the operator cannot be built."""
    if available() is not None:
        return None
    return numba_operator.square_images(_run.address, images, size)
