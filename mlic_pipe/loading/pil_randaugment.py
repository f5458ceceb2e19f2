"""`pil_randaugment`: the randaugment package's policy (and ML-Decoder's CutoutPIL) as one compiled CPU operator.

Why: in DALI's operators the policy (`mlic_pipe.loading.pypi_randaugment`) is a chain of conditionals over 15
candidate ops of a dozen elementwise passes each; on a CPU that cost ~11 ms a 448 x 448 image on 2 threads, about
8x what Pillow itself takes for the same ops. Here one numba function per sample reads the sample's uniforms,
makes the same decisions (the graph's arithmetic, in float32) and applies the ops with Pillow's arithmetic, so
the CPU pays about what the published PIL transform pays (first use compiles it, once per machine: ~16 s on this
project's CPU; later processes load it). The GPU keeps the graph.

Pillow's arithmetic per op (the tests hold every op at every magnitude and sign to Pillow): blends
``in1 + alpha (in2 - in1)`` in float32, truncated (``Image.blend``); PIL's integer luma; ImageStat's mean;
SMOOTH's 3 x 3 average rounded (``(2 sum + 13) // 26``: the float sum is never near a tie); AutoContrast's
table in float64; translations by ``ImagingScaleAffine``'s accumulated float64 positions; rotations by
``affine_fixed``'s 16.16 fixed point; shears and Equalize as `pil_affine` and `pil_equalize`.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from mlic_pipe.loading import numba_operator
from mlic_pipe.loading.numba_operator import IMPORT_ERROR
from mlic_pipe.loading.pypi_randaugment import CUTOUT_COLOUR, CUTOUT_DRAWS, FILL, LAYER_DRAWS, LAYERS, OPS, \
    magnitude_table, rotation_fixed

__all__ = ["apply_op_into", "available", "pil_randaugment", "policy_into"]

_TABLES = np.stack([magnitude_table(op) for op in OPS])  # (15, 10) float64, the package's magnitudes
(INVERT, CUTOUT, SHARPNESS, AUTOCONTRAST, POSTERIZE, SHEAR_X, TRANSLATE_X, TRANSLATE_Y, SHEAR_Y, ROTATE, EQUALIZE,
 CONTRAST, COLOR, SOLARIZE, BRIGHTNESS) = (OPS.index(name) for name in (
    "invert", "cutout", "sharpness", "autocontrast", "posterize", "shear_x", "translate_x", "translate_y", "shear_y",
    "rotate", "equalize", "contrast", "color", "solarize", "brightness"))  # op ids, as `OPS` orders them
_ROTATION_ENTRIES = 60  # rotation_fixed's 10 x 6, carried in each sample's parameters (they depend on the size)

if IMPORT_ERROR is None:
    from numba import cfunc, njit

    from mlic_pipe.loading.pil_affine import affine_into
    from mlic_pipe.loading.pil_equalize import equalize_into

    _JIT = numba_operator.JIT

    @njit(**_JIT)
    def _index(u, count):
        """The graph's `uniform_index`: floor(min(u * count, count - 1)) in float32."""
        return int(math.floor(min(np.float32(u) * np.float32(count), np.float32(count - 1))))

    @njit(**_JIT)
    def _blend_value(low, high, alpha):
        value = np.float32(low) + alpha * (np.float32(high) - np.float32(low))
        return 0 if value <= 0.0 else (255 if value >= 255.0 else np.uint8(value))

    @njit(**_JIT)
    def _luma(r, g, b):
        return (np.int64(r) * 19595 + np.int64(g) * 38470 + np.int64(b) * 7471 + 0x8000) >> 16

    @njit(**_JIT)
    def _enhance(out, image, op, alpha):
        """The blends: Brightness with 0, Color with each pixel's luma, Contrast with the mean luma, Sharpness with
        SMOOTH's average."""
        height, width = image.shape[0], image.shape[1]
        grey = 0
        if op == CONTRAST:
            total = 0
            for y in range(height):
                for x in range(width):
                    total += _luma(image[y, x, 0], image[y, x, 1], image[y, x, 2])
            grey = int(total / (height * width) + 0.5)
        for y in range(height):
            for x in range(width):
                if op == COLOR:
                    grey = _luma(image[y, x, 0], image[y, x, 1], image[y, x, 2])
                for c in range(3):
                    low = grey
                    if op == SHARPNESS:  # the smoothed pixel, the border as it was
                        if 0 < y < height - 1 and 0 < x < width - 1:
                            total = 4 * np.int64(image[y, x, c])
                            for dy in range(-1, 2):
                                for dx in range(-1, 2):
                                    total += image[y + dy, x + dx, c]
                            low = (2 * total + 13) // 26
                        else:
                            low = image[y, x, c]
                    out[y, x, c] = _blend_value(low, image[y, x, c], alpha)

    @njit(**_JIT)
    def _autocontrast(out, image):
        for c in range(3):
            low, high = 255, 0
            for y in range(image.shape[0]):
                for x in range(image.shape[1]):
                    low, high = min(low, image[y, x, c]), max(high, image[y, x, c])
            lut = np.arange(256).astype(np.uint8)
            if high > low:
                scale = 255.0 / (high - low)
                offset = -low * scale
                for v in range(256):
                    lut[v] = min(max(int(v * scale + offset), 0), 255)
            for y in range(image.shape[0]):
                for x in range(image.shape[1]):
                    out[y, x, c] = lut[image[y, x, c]]

    @njit(**_JIT)
    def _point(out, image, op, magnitude):
        """Invert, Posterize, Solarize: a table per level."""
        lut = np.empty(256, dtype=np.uint8)
        mask = 255 ^ ((1 << (8 - int(magnitude))) - 1)
        for v in range(256):
            lut[v] = 255 - v if op == INVERT else (v & mask if op == POSTERIZE else (v if v < magnitude else 255 - v))
        for y in range(image.shape[0]):
            for x in range(image.shape[1]):
                for c in range(3):
                    out[y, x, c] = lut[image[y, x, c]]

    @njit(**_JIT)
    def _translate(out, image, offset, axis):
        """ImagingScaleAffine with the unit matrix shifted by `offset` along `axis`: positions accumulated in
        float64 from ``offset + 0.5``, floored (-1 below 0), outside the image the fill."""
        height, width = image.shape[0], image.shape[1]
        columns = np.empty(width, dtype=np.int64)
        position = (offset if axis == 1 else 0.0) + 0.5
        for x in range(width):
            columns[x] = -1 if position < 0.0 else int(position)
            position += 1.0
        position = (offset if axis == 0 else 0.0) + 0.5
        for y in range(height):
            row = -1 if position < 0.0 else int(position)
            position += 1.0
            for x in range(width):
                inside = 0 <= row < height and 0 <= columns[x] < width
                for c in range(3):
                    out[y, x, c] = image[row, columns[x], c] if inside else FILL

    @njit(**_JIT)
    def _rotate(out, image, fixed):
        """affine_fixed: source ``(a2 + x a0 + y a1) >> 16`` in 16.16 integers, outside the image the fill."""
        height, width = image.shape[0], image.shape[1]
        a0, a1, a2, a3, a4, a5 = fixed[0], fixed[1], fixed[2], fixed[3], fixed[4], fixed[5]
        for y in range(height):
            xx, yy = a2 + y * a1, a5 + y * a4
            for x in range(width):
                xin, yin = (xx + x * a0) >> 16, (yy + x * a3) >> 16
                inside = 0 <= xin < width and 0 <= yin < height
                for c in range(3):
                    out[y, x, c] = image[yin, xin, c] if inside else FILL

    @njit(**_JIT)
    def _cutout(out, image, size, centre_y, centre_x):
        out[:] = image
        half = int(size) // 2
        height, width = image.shape[0], image.shape[1]
        for y in range(max(0, centre_y - half), min(height, centre_y + half)):
            for x in range(max(0, centre_x - half), min(width, centre_x + half)):
                for c in range(3):
                    out[y, x, c] = CUTOUT_COLOUR[c]

    @njit(**_JIT)
    def apply_op_into(out, image, op, index, sign, centre_y, centre_x, tables, rotations):
        """`out` = op `op` (its position in `OPS`) of `image` at magnitude `index`, `sign` +-1, Cutout's centre."""
        magnitude = tables[op, index]
        if op == INVERT or op == POSTERIZE or op == SOLARIZE:
            _point(out, image, op, magnitude)
        elif op == CUTOUT:
            _cutout(out, image, magnitude, centre_y, centre_x)
        elif op == SHARPNESS or op == CONTRAST or op == COLOR or op == BRIGHTNESS:
            _enhance(out, image, op, np.float32(1.0 + magnitude * sign))
        elif op == AUTOCONTRAST:
            _autocontrast(out, image)
        elif op == SHEAR_X or op == SHEAR_Y:
            shear = magnitude * sign
            matrix = np.array([1.0, shear, 0.0, 0.0, 1.0, 0.0]) if op == SHEAR_X else \
                np.array([1.0, 0.0, 0.0, shear, 1.0, 0.0])
            affine_into(out, image, matrix, np.uint8(FILL))
        elif op == TRANSLATE_X or op == TRANSLATE_Y:
            _translate(out, image, magnitude * image.shape[1] * sign, 1 if op == TRANSLATE_X else 0)
        elif op == ROTATE:
            _rotate(out, image, rotations[index])
        else:
            equalize_into(out, image)

    @njit(**_JIT)
    def _cutout_pil(image, u, factor):
        size = image.shape[0]
        half = int(factor * size + 0.5) // 2
        y, x = _index(u[0], size), _index(u[1], size)
        for row in range(max(y - half, 0), min(min(y + half, size) + 1, size)):
            for column in range(max(x - half, 0), min(min(x + half, size) + 1, size)):
                for c in range(3):
                    image[row, column, c] = _index(u[2 + c], 256)

    @njit(**_JIT)
    def policy_into(out, image, uniforms, cutout, tables, rotations):
        """`out` = CutoutPIL(`cutout`, if > 0) then the package's two layers, decided by `uniforms` as the graph's
        `pypi_rand_augment` decides them."""
        current = image.copy()
        first = 0
        if cutout > 0:
            _cutout_pil(current, uniforms, cutout)
            first = CUTOUT_DRAWS
        scratch = np.empty_like(current)
        size = image.shape[0]
        for layer in range(LAYERS):
            u = uniforms[first + LAYER_DRAWS * layer:first + LAYER_DRAWS * (layer + 1)]
            if not np.float32(u[1]) < 0.5:
                continue
            sign = -1.0 if np.float32(u[2]) < 0.5 else 1.0
            apply_op_into(scratch, current, _index(u[0], len(OPS)), 1 + _index(u[3], 9), sign, _index(u[4], size),
                          _index(u[5], size), tables, rotations)
            current, scratch = scratch, current
        out[:] = current

    @cfunc(numba_operator.RUN_SIGNATURE, nopython=True, cache=True)
    def _run(out_ptr, out_shapes_ptr, out_ndims_ptr, num_outs, in_ptr, in_shapes_ptr, in_ndims_ptr, num_ins):
        parameters = numba_operator.vector_at(in_ptr, in_shapes_ptr)  # cutout, rotation_fixed, the uniforms
        rotations = parameters[1:1 + _ROTATION_ENTRIES].astype(np.int64).reshape((10, 6))
        policy_into(numba_operator.image_at(out_ptr, out_shapes_ptr), numba_operator.image_at(in_ptr, in_shapes_ptr),
                    parameters[1 + _ROTATION_ENTRIES:], parameters[0], _TABLES, rotations)


@functools.lru_cache(maxsize=1)
def available() -> str | None:
    """None when the operator can be built; else why not (the graph then runs the policy in DALI's operators)."""
    if IMPORT_ERROR is not None:
        return IMPORT_ERROR
    return numba_operator.available(_run.address)


def pil_randaugment(images, uniforms, size: int, cutout: float):
    """`images` (uint8 `size` x `size` x 3 CPU DataNodes) through the policy decided by `uniforms` (float DataNodes,
    `pypi_randaugment.draws(cutout)` per sample); None if the operator cannot be built."""
    if available() is not None:
        return None
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    rotations = types.Constant(rotation_fixed(size).reshape(-1).astype(np.int32))  # exact in float64, not float32
    parameters = fn.cat(fn.cast(uniforms[0:1] * 0.0 + float(cutout), dtype=types.FLOAT64),
                        fn.cast(uniforms[0:1] * 0 + rotations, dtype=types.FLOAT64),
                        fn.cast(uniforms, dtype=types.FLOAT64))
    return numba_operator.square_images(_run.address, images, size, parameters)
