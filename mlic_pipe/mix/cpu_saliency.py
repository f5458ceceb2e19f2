"""`saliency_maps_cpu`: `mlic_pipe.mix.saliency`'s maps for CPU batches, compiled by numba, the same numbers.

The torch form (`saliency_maps`) runs the steps as whole-batch tensor ops: on a CPU that was
826 ms of plan for B=32 at S=448 (this project's 2-core machine; `mlic-pipe profile --mix
saliencymix`), twenty times the batch's decode, because each of the six neighbourhoods gathers
the integral image twice through index tensors. Here one image at a time, one row at a time:
the integral's rows for the box's top and bottom edges are subtracted into a row padded with
its end values on both sides (the clamped box edges become plain offsets into it), so the box
sums of a row are two shifted contiguous reads that vectorize. Every step keeps the torch
form's types and order of operations (integers exact, the mean's float32 division, the float64
scaling), so the maps are equal bit for bit (tested). Compiled once per machine with numba's
disk cache, like `mlic_pipe.mix.cpu_render`; without numba `saliency_maps` stays with torch.
"""
from __future__ import annotations

import time

import numpy as np

from mlic_pipe.mix.host_threads import over_parts
from mlic_pipe.mix.saliency import NEIGHBOURHOODS

try:
    import numba
    from numba import njit
    AVAILABLE = True
except ImportError:  # no wheel for this platform: `saliency_maps` runs the torch form
    AVAILABLE = False

__all__ = ["AVAILABLE", "compile_seconds", "saliency_maps_cpu"]

_SCALES = np.asarray(NEIGHBOURHOODS, np.int64)
_compile_seconds: dict[str, float] = {}


def compile_seconds() -> dict[str, float]:
    """Seconds each compiled variant's first call took in this process (compiling once per machine, else loading)."""
    return dict(_compile_seconds)


def saliency_maps_cpu(images: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """(R, H, W) uint8 maps of images `rows` (default: all, in order) of uint8 (N, H, W, 3) RGB `images`
    (H and W >= 2). The rows are read in place: SaliencyMix maps its partners without gathering them first
    (a 19 MB copy for B=32 at S=448, ~6-11 ms on this project's machine, a third of the maps' own time)."""
    if not AVAILABLE:
        raise RuntimeError("saliency_maps_cpu needs numba; saliency_maps runs the torch form where it is missing")
    count, height, width, channels = images.shape
    if channels != 3 or images.dtype != np.uint8 or min(height, width) < 2:
        raise ValueError(f"saliency_maps_cpu needs uint8 (N, H, W, 3) images of at least 2 x 2, got "
                         f"{images.shape} {images.dtype}")
    rows = np.arange(count, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
    if len(rows) and (rows.min() < 0 or rows.max() >= count):
        raise ValueError(f"rows must index the {count} images, got {rows.min()} .. {rows.max()}")
    exact = np.int32 if 255 * height * width < 2**31 else np.int64  # the integral's type, as the torch form's
    maps = np.empty((len(rows), height, width), np.uint8)
    images = np.ascontiguousarray(images).reshape(count, height, 3 * width)

    def part(start: int, stop: int) -> None:  # maps start .. stop - 1, with scratch of their own
        integral, padded = np.zeros((height + 1, width + 1), exact), np.empty(width + 2 * int(_SCALES.max()) + 2, exact)
        _maps(images, rows[start:stop], _SCALES, maps[start:stop], integral, padded)
    started = time.perf_counter()
    over_parts(part, len(rows))  # maps on torch's thread count (`over_parts`)
    _compile_seconds.setdefault(np.dtype(exact).name, time.perf_counter() - started)
    return maps


if AVAILABLE:
    # numpy's error model: no ZeroDivisionError check in the loops (it kept the divisions from vectorizing);
    # no divisor here is ever 0 (a box holds at least 2 x 2 pixels; the scalings divide by a positive maximum)
    _JIT = dict(cache=True, nogil=True, error_model="numpy")
    # the per-row function allocates nothing: without numba's reference counting (as `cpu_render`'s rows), its
    # 2,688 calls an image at S=448 cost no atomic counts on the views passed
    _ROW = dict(_JIT, _nrt=False) if hasattr(numba.core.options.DefaultOptions, "_nrt") else _JIT

    @njit(**_JIT)
    def _reflect(i, size):
        """Reflect-101 border (OpenCV's default, torch's "reflect"): -1 -> 1, size -> size - 2."""
        return -i if i < 0 else (2 * size - 2 - i if i >= size else i)

    @njit(**_JIT)
    def _blurred_grey(image, grey, work):
        """OpenCV's fixed-point BGR2GRAY of the RGB image (H, 3 W), then its 3 x 3 Gaussian blur twice (into
        `grey`)."""
        height, width = grey.shape
        for y in range(height):  # a row as decoded, channels interleaved (a 3-D index kept this 5x slower)
            row, out = image[y], grey[y]
            for x in range(width):
                out[x] = (np.int32(row[3 * x]) * 4899 + np.int32(row[3 * x + 1]) * 9617
                          + np.int32(row[3 * x + 2]) * 1868 + (1 << 13)) >> 14
        for _ in range(2):
            for y in range(height):  # [1, 2, 1] along x into `work`
                row, out = grey[y], work[y]
                out[0] = row[1] + 2 * row[0] + row[1]
                for x in range(1, width - 1):
                    out[x] = row[x - 1] + 2 * row[x] + row[x + 1]
                out[width - 1] = row[width - 2] + 2 * row[width - 1] + row[width - 2]
            for y in range(height):  # [1, 2, 1] along y, rounded: (total + 8) // 16
                above, below = work[_reflect(y - 1, height)], work[_reflect(y + 1, height)]
                middle, out = work[y], grey[y]
                for x in range(width):
                    out[x] = (above[x] + 2 * middle[x] + below[x] + 8) >> 4

    @njit(**_ROW, fastmath={"nnan", "ninf", "nsz"})  # finite values: lets max() vectorize; divisions stay exact
    def _contrast_row(upper, lower, centre_row, width_of, rows, on_row, off_row, contrast):
        """One row at one scale: the contrast to the box mean (float32, as the torch form), then its two parts
        truncated into on and off. Three loops, each over few arrays, so the compiler's overlap checks are few
        enough to vectorize them."""
        for x in range(centre_row.shape[0]):
            contrast[x] = np.float32(width_of[x] * rows - 1)  # the box's area less the centre
        for x in range(centre_row.shape[0]):
            centre = centre_row[x]
            contrast[x] = np.float32(centre) - np.float32(upper[x] - lower[x] - centre) / contrast[x]
        for x in range(centre_row.shape[0]):
            on_row[x] += np.int16(max(contrast[x], np.float32(0.0)))  # truncated, as the C cast
        for x in range(centre_row.shape[0]):
            off_row[x] += np.int16(max(-contrast[x], np.float32(0.0)))

    @njit(**_JIT)
    def _contrasts(grey, integral, scales, on, off, padded, width_of, contrast):
        """on / off: the truncated positive and negative contrasts to each neighbourhood's mean, summed.

        Row by row, all six scales of a row before the next (its grey, on and off rows stay in L1); the box
        sums of row y at scale n come from `padded`, the integral's rows at the box's bottom and top
        subtracted, with the end values repeated n times on both sides: its clamped left and right edges
        become plain offsets, x + 1 and x + 2n + 1.
        """
        height, width = grey.shape
        on[:] = 0
        off[:] = 0
        for s in range(scales.shape[0]):  # the clamped box's width at each x
            n = scales[s]
            for x in range(width):
                width_of[s, x] = min(max(x + n + 1, 0), width) - min(max(x - n + 1, 0), width)
        for y in range(height):
            for s in range(scales.shape[0]):
                n = scales[s]
                y1, y2 = min(max(y - n + 1, 0), height), min(max(y + n + 1, 0), height)
                top, bottom = integral[y1], integral[y2]
                # loops over slices from 0 (an index n + j kept the copy from vectorizing: 4.5x slower)
                middle = padded[n:n + width + 1]
                for j in range(width + 1):
                    middle[j] = bottom[j] - top[j]
                padded[:n] = middle[0]
                padded[n + width + 1:2 * n + width + 1] = middle[width]
                _contrast_row(padded[2 * n + 1:2 * n + 1 + width], padded[1:1 + width], grey[y], width_of[s],
                              y2 - y1, on[y], off[y], contrast)

    @njit(**_JIT)
    def _scaled(total, out):
        """trunc(255 * (total / max)), the ratio in float32 and the product in float64 (0 where flat)."""
        peak = np.float32(total.max())
        for y in range(total.shape[0]):
            for x in range(total.shape[1]):
                ratio = np.float32(total[y, x]) / peak if peak > 0 else np.float32(0.0)
                out[y, x] = np.int64(np.floor(255.0 * np.float64(ratio)))

    @njit(**_JIT)
    def _maps(images, rows, scales, maps, integral, padded):
        """Map n of image ``rows[n]`` into ``maps[n]``; `integral` (zeros) and `padded` scratch in the integral's type."""
        count, height, width = maps.shape
        # the narrowest types that hold each step's values (grey 0..255, a blurred row at most 1020, on and off
        # six truncated contrasts of at most 255, a scaled sum 0..255): the same numbers in a smaller working
        # set, which the decode's threads leave less cache for
        grey = np.empty((height, width), np.uint8)
        work = np.empty((height, width), np.int16)
        on = np.empty((height, width), np.int16)
        off = np.empty((height, width), np.int16)
        on_scaled = np.empty((height, width), np.int16)
        off_scaled = np.empty((height, width), np.int16)
        width_of = np.empty((scales.shape[0], width), np.int64)
        contrast = np.empty(width, np.float32)
        for n in range(count):
            _blurred_grey(images[rows[n]], grey, work)
            for y in range(height):  # exact: at most 255 H W; row and column 0 stay 0
                total = 0
                for x in range(width):
                    total += grey[y, x]
                    integral[y + 1, x + 1] = integral[y, x + 1] + total
            _contrasts(grey, integral, scales, on, off, padded, width_of, contrast)
            _scaled(on, on_scaled)
            _scaled(off, off_scaled)
            top = np.float64(max(on_scaled.max(), off_scaled.max()))
            for y in range(height):
                for x in range(width):
                    value = 255.0 * np.float64(on_scaled[y, x] + off_scaled[y, x]) / top if top > 0 else 0.0
                    maps[n, y, x] = np.uint8(np.int64(np.floor(value)) % 256)
