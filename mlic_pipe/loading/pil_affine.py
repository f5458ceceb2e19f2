"""`affine_into`: PIL's bicubic ``Image.transform(size, AFFINE, matrix, BICUBIC, fillcolor)`` bit for bit (numba).

Why: the `randaugment` package shears with PIL's bicubic affine transform, which DALI's warp does not offer (its
CPU warp has no cubic filter, and PIL's cubic is its own: a = -1). The compiled CPU policy
(`mlic_pipe.loading.pil_randaugment`) shears with this (~8-16 ms a 448 x 448 image on a core); the GPU graph
builds the same arithmetic from nearest warps (`pypi_randaugment.shear_in_graph`).

PIL's arithmetic (Pillow's ``Geometry.c``: ``affine_transform``, ``BICUBIC_HEAD``, ``BICUBIC_BODY``), in
float64 as there: the source point of output pixel (x, y) is ``a0 (x + 0.5) + a1 (y + 0.5) + a2`` (and the
same with a3..a5); outside the image it takes the fill; inside, the 4 x 4 taps from ``floor(p - 0.5) - 1``,
columns clamped to the image, rows past the edges repeating the last row read; the cubic
``v2 + d (v3 - v1 + d (2 (v1 - v2) + v3 - v4 + d (v2 - v1 - v3 + v4)))`` along x, then along y; clipped to
[0, 255] and truncated.
"""
from __future__ import annotations

import math

import numpy as np

from mlic_pipe.loading import numba_operator
from mlic_pipe.loading.numba_operator import IMPORT_ERROR

__all__ = ["affine_into"]

if IMPORT_ERROR is None:
    from numba import njit

    @njit(**numba_operator.JIT)
    def _cubic(v1, v2, v3, v4, d):
        return v2 + d * ((v3 - v1) + d * ((2 * (v1 - v2) + v3 - v4) + d * (v2 - v1 - v3 + v4)))

    @njit(**numba_operator.JIT)
    def _row(image, row, c0, c1, c2, c3, dx, band):
        return _cubic(float(image[row, c0, band]), float(image[row, c1, band]), float(image[row, c2, band]),
                      float(image[row, c3, band]), dx)

    @njit(**numba_operator.JIT)
    def _sample(image, x0, y0, dx, dy, band):
        """PIL's BICUBIC_BODY for one band: row y0 clamped, then rows y0+1..y0+3 each read when inside the image
        and otherwise the previous row's value repeated; columns x0..x0+3 clamped."""
        height, width = image.shape[0], image.shape[1]
        c0, c1 = min(max(x0, 0), width - 1), min(max(x0 + 1, 0), width - 1)
        c2, c3 = min(max(x0 + 2, 0), width - 1), min(max(x0 + 3, 0), width - 1)
        v1 = _row(image, min(max(y0, 0), height - 1), c0, c1, c2, c3, dx, band)
        v2 = _row(image, y0 + 1, c0, c1, c2, c3, dx, band) if 0 <= y0 + 1 < height else v1
        v3 = _row(image, y0 + 2, c0, c1, c2, c3, dx, band) if 0 <= y0 + 2 < height else v2
        v4 = _row(image, y0 + 3, c0, c1, c2, c3, dx, band) if 0 <= y0 + 3 < height else v3
        return _cubic(v1, v2, v3, v4, dy)

    @njit(**numba_operator.JIT)
    def affine_into(out, image, matrix, fill):
        """`out` (uint8 (h, w, 3)) as PIL's bicubic affine transform of `image` by `matrix` (a0..a5), `fill`
        where the source point falls outside."""
        height, width = image.shape[0], image.shape[1]
        a0, a1, a2, a3, a4, a5 = matrix[0], matrix[1], matrix[2], matrix[3], matrix[4], matrix[5]
        for y in range(out.shape[0]):
            for x in range(out.shape[1]):
                xin = a0 * (x + 0.5) + a1 * (y + 0.5) + a2
                yin = a3 * (x + 0.5) + a4 * (y + 0.5) + a5
                if xin < 0.0 or xin >= width or yin < 0.0 or yin >= height:
                    for band in range(3):
                        out[y, x, band] = fill
                    continue
                xin, yin = xin - 0.5, yin - 0.5
                x0, y0 = math.floor(xin), math.floor(yin)
                dx, dy = xin - x0, yin - y0
                for band in range(3):
                    value = _sample(image, x0 - 1, y0 - 1, dx, dy, band)
                    out[y, x, band] = 0 if value <= 0.0 else (255 if value >= 255.0 else np.uint8(value))
