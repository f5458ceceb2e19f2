"""`pil_resize`: the CPU decode's resize, PIL's bilinear resize bit for bit, as a DALI operator compiled by numba.

Why: on the CPU, DALI's antialiased resize was the costliest step of the decode: on the demo photos (640 x 480
JPEGs, a 0.7-1.0 area window) on one core, decoding a window took ~1.4 ms and resizing it ~4 ms to 224 x 224,
about twice what PIL takes for the same resize, so a DataLoader with PIL workers kept up with DALI on a CPU.
This resize takes ~0.6-1.3 ms for 640 x 480 -> 224 x 224 (Pillow ~1.6-2.5 ms on the same core), and the
loader's whole CPU decode stage runs 1.61x (S=224) and 2.25x (S=448) as fast as with DALI's
(``benchmarks/test_bench_decode_resize.py``, 2 cores). The papers' loaders resize with PIL (torchvision's
RandomResizedCrop and Resize on PIL images), so the resize here is PIL's: Pillow's bilinear filter, its support
widened by the downscale factor (antialiasing), taps rounded to 22-bit fixed point, the horizontal pass first and
rounded to uint8 before the vertical one (Pillow's ``src/libImaging/Resample.c``: ``precompute_coeffs``,
``normalize_coeffs_8bpc``, the 8-bit passes). The tests hold it to Pillow bit for bit. (Pillow 13 runs the
vertical pass first when the height shrinks much more than the width, which moves near-ties by one level; this
keeps the horizontal-first order of every earlier Pillow, the one the papers ran.)

How it runs: DALI's numba operator calls the compiled C function for each sample on DALI's own threads,
without the GIL (`mlic_pipe.loading.numba_operator`: compiled once, with numba's disk cache, ~2-5 s the first
time on a machine, ~0.4 s to load afterwards; the output size lives in a small shape function per size).

Where it is used: the CPU pipeline with ``antialias=True`` and ``resize="auto"`` (the defaults). The GPU pipeline
keeps DALI's resize (fast there); ``antialias=False`` keeps DALI's plain bilinear one; ``resize="dali"`` DALI's
antialiased one (the GPU's pixels on the CPU). Without numba or the DALI plugin,
`available` says why and the pipeline uses DALI's resize with one warning.
"""
from __future__ import annotations

import functools
import time
import warnings

import numpy as np

from mlic_pipe.loading import numba_operator
from mlic_pipe.loading.numba_operator import IMPORT_ERROR

if IMPORT_ERROR is None:
    import numba
    from numba import cfunc, njit
else:
    numba = None

__all__ = ["IMPORT_ERROR", "available", "compile_seconds", "pil_resize", "resize_into"]

PRECISION_BITS = 22  # Pillow's for 8-bit images: 32 bits less 8 for the value and 2 for overflow
_compile_seconds: dict[str, float] = {}


def compile_seconds() -> dict[str, float]:
    """Seconds this process spent compiling or loading the operator's C functions, by function."""
    return {**_compile_seconds, **numba_operator.compile_seconds()}


if numba is not None:
    _started = time.perf_counter()
    _JIT = numba_operator.JIT

    @njit(**_JIT)
    def _coefficients(in_size, out_size):
        """Each output index's first source index, tap count and fixed-point weights, as Pillow computes them.

        Bilinear filter ``max(0, 1 - |t|)`` with support 1, widened by the scale when downscaling; weights
        normalized to sum 1 in float64, then rounded half away from zero to `PRECISION_BITS` bits.
        """
        scale = in_size / out_size
        filter_scale = max(scale, 1.0)
        support, reciprocal = filter_scale, 1.0 / filter_scale  # Pillow multiplies by the reciprocal: so here
        width = int(np.ceil(support)) * 2 + 1
        bounds = np.zeros((out_size, 2), np.int64)
        weights = np.zeros((out_size, width), np.int32)
        raw = np.zeros(width, np.float64)
        for out in range(out_size):
            center = (out + 0.5) * scale
            first = max(int(center - support + 0.5), 0)
            count = min(int(center + support + 0.5), in_size) - first
            total = 0.0
            for tap in range(count):
                t = abs((tap + first - center + 0.5) * reciprocal)
                raw[tap] = 1.0 - t if t < 1.0 else 0.0
                total += raw[tap]
            for tap in range(count):
                w = raw[tap] / total if total != 0.0 else raw[tap]
                weights[out, tap] = int(w * (1 << PRECISION_BITS) + (0.5 if w >= 0 else -0.5))
            bounds[out, 0], bounds[out, 1] = first, max(count, 0)
        return bounds, weights

    @njit(**_JIT)
    def _clip8(total):
        value = total >> PRECISION_BITS
        return 0 if value < 0 else (255 if value > 255 else value)

    _BAND = 64  # source rows the horizontal pass takes at once: its int32 sums over them fill vector registers
    # the 8 x 8 byte transpose's three steps: swap bytes, then byte pairs, then quads between words `step` apart
    _TRANSPOSE_STEPS = ((np.uint64(8), np.uint64(0x00FF00FF00FF00FF), 1),
                        (np.uint64(16), np.uint64(0x0000FFFF0000FFFF), 2),
                        (np.uint64(32), np.uint64(0x00000000FFFFFFFF), 4))

    @njit(**_JIT)
    def _swap(a, b, shift, mask):
        """One step of the 8 x 8 byte transpose: `b`'s `mask` bits and `a`'s shifted down by `shift` exchanged."""
        t = ((a >> shift) ^ b) & mask
        return a ^ (t << shift), b ^ t

    @njit(**_JIT)
    def _transpose_bytes(source, rows, columns, target):
        """The byte matrix (rows, columns) written transposed, both given as flat uint64 views.

        Why: the horizontal pass runs fast over rows laid side by side, and a byte-by-byte transpose took longer
        than the pass itself (1.3 ms for a 640 x 480 image, against 0.25 ms here). Each 8 x 8 byte block is eight
        words, transposed in registers by `_TRANSPOSE_STEPS`. `rows` and `columns` are multiples of 8.
        """
        words_in, words_out = columns // 8, rows // 8
        block = np.empty(8, np.uint64)
        for block_row in range(words_out):
            for block_column in range(words_in):
                at = block_row * 8 * words_in + block_column
                for k in range(8):
                    block[k] = source[at + k * words_in]
                for shift, mask, step in _TRANSPOSE_STEPS:
                    for k in range(8):
                        if k & step == 0:
                            block[k], block[k + step] = _swap(block[k], block[k + step], shift, mask)
                to = block_column * 8 * words_out + block_row
                for k in range(8):
                    target[to + k * words_out] = block[k]

    @njit(**_JIT)
    def resize_into(out, image):
        """Resize the uint8 (H, W, 3) `image` into the uint8 (h, w, 3) `out` as PIL's bilinear resize.

        Both passes run whole vectors of independent sums: the vertical one along a row, the horizontal one
        across `_BAND` rows at a time, transposed so that a source column is contiguous (per pixel, the
        horizontal pass had 3 channels x ~7 taps of scalar work: 2.5 ms of a 640 x 480 -> 224 resize, now ~1 ms
        in all). Integer sums, so the order of the additions leaves every value as Pillow's.
        """
        height, width = image.shape[0], image.shape[1]
        out_h, out_w = out.shape[0], out.shape[1]
        bounds_x, weights_x = _coefficients(width, out_w)
        bounds_y, weights_y = _coefficients(height, out_h)
        half = np.int32(1 << (PRECISION_BITS - 1))
        # the horizontal pass over only the source rows the vertical taps read, rounded to uint8 as Pillow does
        top = bounds_y[0, 0]
        bottom = bounds_y[out_h - 1, 0] + bounds_y[out_h - 1, 1]
        n_in, n_out = width * 3, out_w * 3
        in_padded, out_padded = (n_in + 7) // 8 * 8, (n_out + 7) // 8 * 8
        bands = (bottom - top + _BAND - 1) // _BAND
        lines = image.reshape(height, n_in)
        band = np.zeros((_BAND, in_padded), np.uint8)  # a band of source rows, padded to whole words
        columns = np.empty((in_padded, _BAND), np.uint8)  # the band transposed
        summed = np.empty((out_padded, _BAND), np.uint8)  # its horizontal pass, still transposed
        rows = np.empty((bands * _BAND, out_padded), np.uint8)  # the horizontal pass, row by row
        total = np.empty(_BAND, np.int32)
        band_words, column_words = band.reshape(-1).view(np.uint64), columns.reshape(-1).view(np.uint64)
        summed_words = summed.reshape(-1).view(np.uint64)
        for index in range(bands):
            start = top + index * _BAND
            for j in range(_BAND):  # rows past the last one repeat it; their sums are never read
                line, target = lines[min(start + j, bottom - 1)], band[j]
                for i in range(n_in):
                    target[i] = line[i]
            _transpose_bytes(band_words, _BAND, in_padded, column_words)
            for x in range(out_w):
                first, taps = bounds_x[x, 0], weights_x[x]
                for c in range(3):
                    total[:] = half
                    for tap in range(bounds_x[x, 1]):
                        w, source = taps[tap], columns[(first + tap) * 3 + c]
                        for j in range(_BAND):
                            total[j] += np.int32(source[j]) * w
                    target = summed[3 * x + c]
                    for j in range(_BAND):
                        target[j] = _clip8(total[j])
            _transpose_bytes(summed_words, out_padded, _BAND,
                             rows[index * _BAND:(index + 1) * _BAND].reshape(-1).view(np.uint64))
        # the vertical pass: whole rows at a time
        total = np.empty(n_out, np.int32)
        for y in range(out_h):
            total[:] = half
            first = bounds_y[y, 0] - top
            for tap in range(bounds_y[y, 1]):
                w, source = weights_y[y, tap], rows[first + tap]
                for i in range(n_out):
                    total[i] += np.int32(source[i]) * w
            target = out[y].reshape(n_out)
            for i in range(n_out):
                target[i] = _clip8(total[i])

    @cfunc(numba_operator.RUN_SIGNATURE, nopython=True, cache=True)
    def _run(out_ptr, out_shapes_ptr, out_ndims_ptr, num_outs, in_ptr, in_shapes_ptr, in_ndims_ptr, num_ins):
        resize_into(numba_operator.image_at(out_ptr, out_shapes_ptr), numba_operator.image_at(in_ptr, in_shapes_ptr))

    _compile_seconds["run"] = time.perf_counter() - _started


@functools.lru_cache(maxsize=1)
def available() -> str | None:
    """None when the operator can be built; else why not (and DALI's resize is used, with one warning)."""
    if IMPORT_ERROR is not None:
        return IMPORT_ERROR
    return numba_operator.available(_run.address)


def pil_resize(images, size: int):
    """`images` (uint8 HWC CPU DataNodes) resized to `size` x `size` as PIL's bilinear resize; None if unavailable.

    The caller falls back to DALI's resize on None; the reason is warned once per process.
    """
    reason = available()
    if reason is not None:
        _warn_once(reason)
        return None
    return numba_operator.square_images(_run.address, images, size)


@functools.lru_cache(maxsize=1)
def _warn_once(reason: str) -> None:
    warnings.warn(f"mlic-pipe: the CPU decode resizes with DALI's resize, about twice as slow as the compiled PIL "
                  f"resize, which cannot be built here ({reason}); pip install numba to get it", stacklevel=3)
