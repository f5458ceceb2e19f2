"""The `randaugment` package's RandAugment (PyPI 1.0.2), the one ML-Decoder and ASL train with, in the DALI graph.

ML-Decoder's and ASL's training transform is ``Resize((448, 448)) + CutoutPIL(0.5) + RandAugment() + ToTensor()``,
with ``from randaugment import RandAugment``: the PyPI package ``randaugment`` 1.0.2 (jizongFox/pytorch-randaugment,
``randaugment/randaugment.py``), not timm's RandAugment. Its policy, read from that file and kept here:

- `RandAugment()` picks one of 135 x 135 two-op sub-policies uniformly: each op one of 15 (`OPS`, its order) at a
  magnitude index 1..9, independently; each op is applied with probability 0.5.
- A magnitude index picks ``ranges[op][index]`` of `SubPolicy` (`magnitude_table`: linspaces of 10, index 0 never
  drawn); shears, translations and the four enhancements take a random sign, rotation does not (a positive angle,
  PIL's counter-clockwise); enhancements are ``enhance(1 + m * sign)``.
- Geometry as PIL does it on the S x S image: shears by an affine map about the top-left corner, bicubic (PIL's
  a = -1 kernel, taps clamped to the image, a pixel whose source falls outside filled); translations by
  ``m * S`` pixels and rotations about the centre, nearest; fill (128, 128, 128) everywhere.
- Its own Cutout: a box of ``round(linspace(0, 20, 10))[index]`` pixels around a uniform centre, half-open
  (``clip(c -+ size // 2)``), painted (125, 122, 113).

Two forms, both PIL's arithmetic and held to Pillow by the tests at every magnitude and sign:

- On the CPU, one compiled operator runs the whole policy per sample (`mlic_pipe.loading.pil_randaugment`):
  ~2 ms a 448 x 448 image on this project's 2-core CPU (DALI's 2 threads; Pillow's own ops take ~2.4 ms on one
  core), where the graph below took ~11 ms.
- Elsewhere (the GPU, or a CPU without numba), DALI's operators under conditionals (`select`, here): the blends
  truncate as ``Image.blend`` in float32, the grey of Color and Contrast is PIL's integer luma, AutoContrast's
  and Equalize's tables are ImageOps' (Equalize's histogram as a comparison with the 256 levels: ~0.6 GB for a
  moment per 448 x 448 image, cheap on a GPU), shears PIL's float64 bicubic from nearest warps
  (`shear_in_graph`). One op is exact only up to 256 pixels: rotation, PIL's 16.16 fixed point given to DALI's
  float32 warp, where beyond 256 pixels a position's 16 fractional bits no longer fit (at 448: ~0.1% of a
  rotated image's pixels, each on a rounding edge, take their neighbour's value).

ML-Decoder's CutoutPIL runs first, before the ops (``cutout``), as the published transform runs it; the policy
string ``mldecoder`` is that pair. Every decision (the ops, whether each applies, signs, magnitudes, box centres,
the cutout's colour) comes from the sample's uniforms, drawn from (seed, epoch, row) (`apply_auto_augment`).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["OPS", "apply_op", "draws", "equalize_in_graph", "magnitude_table", "pypi_rand_augment",
           "rotation_fixed", "shear_in_graph"]

OPS = ("invert", "cutout", "sharpness", "autocontrast", "posterize", "shear_x", "translate_x", "translate_y",
       "shear_y", "rotate", "equalize", "contrast", "color", "solarize", "brightness")  # get_trans_list's order
LAYERS = 2  # a sub-policy is two ops
LAYER_DRAWS = 6  # per op: which, whether it applies, sign, magnitude index, box centre y and x
CUTOUT_DRAWS = 5  # CutoutPIL: centre y, centre x, three colour channels
FILL = 128
CUTOUT_COLOUR = (125, 122, 113)
_RANGES = {  # SubPolicy's ranges: np.linspace(low, high, 10)
    "shear_x": (0, 0.3), "shear_y": (0, 0.3), "translate_x": (0, 150 / 331), "translate_y": (0, 150 / 331),
    "rotate": (0, 30), "color": (0.0, 0.9), "posterize": (8, 4), "solarize": (256, 0), "contrast": (0.0, 0.9),
    "sharpness": (0.0, 0.9), "brightness": (0.0, 0.9), "cutout": (0, 20),
}
_ROUNDED = ("posterize", "cutout")  # np.round(...).astype(int)


def draws(cutout: float) -> int:
    """Uniforms per sample: CutoutPIL's (when `cutout`) and `LAYER_DRAWS` per op."""
    return (CUTOUT_DRAWS if cutout else 0) + LAYERS * LAYER_DRAWS


def magnitude_table(op: str) -> np.ndarray:
    """The package's magnitude of `op` at each index 0..9 (ops without one: zeros)."""
    if op not in _RANGES:
        return np.zeros(10)
    table = np.linspace(*_RANGES[op], 10)
    return np.round(table) if op in _ROUNDED else table


def pypi_rand_augment(images, uniforms, image_size: int, cutout: float = 0.0):
    """`images` (uint8 S x S x 3, a DALI node) after CutoutPIL(`cutout`, if set) and the package's RandAugment.

    `uniforms` holds `draws(cutout)` per sample. DALI's operators under conditionals: the pipeline must be built
    with ``enable_conditionals=True``. (On the CPU, `apply_auto_augment` runs the compiled form instead,
    `mlic_pipe.loading.pil_randaugment`: the same decisions and pixels.)
    """
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types
    from nvidia.dali.auto_aug.core import select
    from nvidia.dali.pipeline import do_not_convert

    from mlic_pipe.loading.graph_draws import uniform_index

    first = 0
    if cutout:
        images = _cutout_pil(images, [uniforms[k] for k in range(CUTOUT_DRAWS)], image_size, cutout)
        first = CUTOUT_DRAWS
    ops = [do_not_convert(_laid_out(_OP_FUNCTIONS[name])) for name in OPS] + [do_not_convert(_identity)]
    for layer in range(LAYERS):
        u = [uniforms[first + LAYER_DRAWS * layer + k] for k in range(LAYER_DRAWS)]
        pick = uniform_index(u[0], len(OPS))
        skipped = 1 - fn.cast(u[1] < 0.5, dtype=types.INT32)
        op = pick + skipped * (len(OPS) - pick)  # the last candidate, identity: "not applied"
        index = 1 + uniform_index(u[3], 9)
        sign = 1.0 - 2.0 * fn.cast(u[2] < 0.5, dtype=types.FLOAT)
        images = select(ops, op, images, index=index, sign=sign, centre_y=u[4], centre_x=u[5], size=image_size)
    return images


def apply_op(images, op: str, index, sign, centre_y, centre_x, size: int):
    """One op of `OPS` with its decisions given as per-sample nodes: magnitude `index` (int32, 1..9), `sign`
    (float, +-1), Cutout's centre (uniforms in [0, 1)). What each layer of `pypi_rand_augment` selects among."""
    return _laid_out(_OP_FUNCTIONS[op])(images, index=index, sign=sign, centre_y=centre_y, centre_x=centre_x,
                                        size=size)


# ---- the ops: (images, index, sign, centre_y, centre_x, size) -> images, each PIL's formula ----


def _identity(images, **_):
    return images


def _laid_out(op):
    """`op` with its output named HWC: arithmetic over broadcast constants and reductions leave the layout empty,
    and the conditionals merge only branches whose layouts agree."""
    import functools

    @functools.wraps(op)
    def named(images, **kwargs):
        import nvidia.dali.fn as fn

        return fn.reshape(op(images, **kwargs), layout="HWC")
    return named


def _here(images, node):
    """`node` (computed on the CPU from the draws) on `images`' device: a GPU graph's arithmetic takes its tensor
    operands there."""
    return node.gpu() if images.device == "gpu" else node


def _zeros_like(images):
    """A uint8 zero image per sample, shaped as `images` (what `fn.erase` paints masks into)."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    return fn.cast(images * types.Constant(0, dtype=types.UINT8), dtype=types.UINT8)


def _constant(images, array):
    """A constant array on `images`' device."""
    import nvidia.dali.types as types

    return types.Constant(array, device=images.device)


def _magnitude(op: str, index):
    from mlic_pipe.loading.graph_draws import table_lookup

    return table_lookup(index, magnitude_table(op))


def _to_uint8(values):
    """Float values to uint8 as PIL's 8-bit writes do: clipped to [0, 255], truncated."""
    import nvidia.dali.fn as fn
    import nvidia.dali.math as dmath
    import nvidia.dali.types as types

    return fn.cast(dmath.floor(dmath.clamp(values, 0.0, 255.0)), dtype=types.UINT8)


def _blend(degenerate, images, factor):
    """``Image.blend(degenerate, images, factor)``: ``in1 + factor * (in2 - in1)`` in float32, clipped, truncated."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    low = fn.cast(degenerate, dtype=types.FLOAT)
    return _to_uint8(low + factor * (fn.cast(images, dtype=types.FLOAT) - low))


def _enhance_factor(op: str, index, sign):
    """``1 + m * sign`` as the package computes it (in float64, then float32 as PIL's blend takes it)."""
    from mlic_pipe.loading.graph_draws import table_lookup

    up = sign > 0.0
    return table_lookup(index, 1.0 + magnitude_table(op)) * up + table_lookup(index, 1.0 - magnitude_table(op)) * \
        (up ^ True)


def _luma(images):
    """PIL's RGB -> L: ``(19595 R + 38470 G + 7471 B + 0x8000) >> 16`` per pixel (int32, H x W x 1)."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    weights = _constant(images, np.array([[[19595, 38470, 7471]]], dtype=np.int32))
    total = fn.reductions.sum(fn.cast(images, dtype=types.INT32) * weights, axis_names="C", keep_dims=True,
                              dtype=types.INT32)
    return (total + 0x8000) // 65536


def _invert(images, **_):
    import nvidia.dali.types as types

    return types.Constant(255, dtype=types.UINT8) - images


def _brightness(images, index, sign, **_):
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    return _to_uint8(_here(images, _enhance_factor("brightness", index, sign)) * fn.cast(images, dtype=types.FLOAT))


def _color(images, index, sign, **_):
    return _blend(_luma(images), images, _here(images, _enhance_factor("color", index, sign)))


def _contrast(images, index, sign, size, **_):
    """The grey is ``int(mean of L + 0.5)`` over the image (ImageStat's mean, in float64 here)."""
    import nvidia.dali.fn as fn
    import nvidia.dali.math as dmath
    import nvidia.dali.types as types

    total = fn.reductions.sum(_luma(images), axis_names="HWC", keep_dims=True, dtype=types.INT64)
    grey = dmath.floor(fn.cast(total, dtype=types.FLOAT64) / float(size * size) + 0.5)
    return _blend(fn.cast(grey, dtype=types.FLOAT), images, _here(images, _enhance_factor("contrast", index, sign)))


def _sharpness(images, index, sign, size, **_):
    """PIL's SMOOTH filter (3 x 3, centre 5, /13, rounded; the 1-pixel border left as it was), then the blend."""
    import nvidia.dali.fn as fn
    import nvidia.dali.math as dmath
    import nvidia.dali.types as types

    kernel = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=np.float32) / 13
    smooth = fn.cast(dmath.floor(fn.filter(images, _constant(images, kernel), dtype=types.FLOAT) + 0.5),
                     dtype=types.UINT8)
    inner = fn.erase(_zeros_like(images), anchor=[1, 1], shape=[size - 2, size - 2], axis_names="HW", fill_value=1)
    degenerate = smooth * inner + images * (types.Constant(1, dtype=types.UINT8) - inner)
    return _blend(degenerate, images, _here(images, _enhance_factor("sharpness", index, sign)))


def _autocontrast(images, **_):
    """ImageOps.autocontrast per channel: ``int(v * scale + offset)``, scale 255 / (hi - lo), in float64."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    low = fn.cast(fn.reductions.min(images, axis_names="HW", keep_dims=True), dtype=types.FLOAT64)
    high = fn.cast(fn.reductions.max(images, axis_names="HW", keep_dims=True), dtype=types.FLOAT64)
    spread = high > low
    scale = 255.0 / (high - low + (1 - spread))
    offset = -low * scale
    stretched = _to_uint8(fn.cast(images, dtype=types.FLOAT64) * scale + offset)
    return fn.cast(stretched * spread + images * (1 - spread), dtype=types.UINT8)


def _posterize(images, index, **_):
    """ImageOps.posterize: keep the top ``bits`` bits."""
    import nvidia.dali.fn as fn
    import nvidia.dali.math as dmath
    import nvidia.dali.types as types

    bits = fn.cast(_magnitude("posterize", index), dtype=types.INT32)
    mask = 256 - fn.cast(dmath.pow(2.0, fn.cast(8 - bits, dtype=types.FLOAT)), dtype=types.INT32)  # no shifts
    return images & _here(images, fn.cast(mask, dtype=types.UINT8))


def _solarize(images, index, **_):
    import nvidia.dali.types as types

    keep = images < _here(images, _magnitude("solarize", index))
    return images * keep + (types.Constant(255, dtype=types.UINT8) - images) * (keep ^ True)


def _warp(images, matrix, nearest: bool = True, fill: bool = True):
    """PIL's affine ``transform`` matrix (output pixel centre -> source point) applied by DALI's warp."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    interp = types.INTERP_NN if nearest else types.INTERP_LINEAR
    extra = {"fill_value": FILL} if fill else {}
    return fn.warp_affine(images, matrix=matrix, interp_type=interp, **extra)


def _affine(a, b, c, d, e, f):
    import nvidia.dali.fn as fn

    return fn.reshape(fn.stack(a, b, c, d, e, f), shape=[2, 3])


def _translate(images, index, sign, size, axis: int):
    offset = _magnitude("translate_x", index) * float(size) * sign
    zero, one = offset * 0.0, offset * 0.0 + 1.0
    matrix = _affine(one, zero, offset, zero, one, zero) if axis == 1 else _affine(one, zero, zero, zero, one, offset)
    return _warp(images, matrix)


def _translate_x(images, index, sign, size, **_):
    return _translate(images, index, sign, size, 1)


def _translate_y(images, index, sign, size, **_):
    return _translate(images, index, sign, size, 0)


def rotation_fixed(size: int) -> np.ndarray:
    """PIL's ``Image.rotate(angle)`` of a `size` x `size` image at each magnitude index, as ``affine_fixed`` runs
    it: the entries (a0, a1, a2, a3, a4, a5) in 16.16 fixed point (int64, 10 x 6), a2 and a5 at pixel (0, 0)'s
    centre; the source of output (x, y) is ``((a2 + x a0 + y a1) >> 16, (a5 + x a3 + y a4) >> 16)``.

    PIL's matrix: the angle's cos and sin rounded to 15 places, about the centre (size / 2, size / 2).
    """
    fix = lambda value: math.floor(value * 65536.0 + 0.5)
    rows = []
    for angle in magnitude_table("rotate"):
        radians = -math.radians(angle)
        a, b = round(math.cos(radians), 15), round(math.sin(radians), 15)
        d, e = round(-math.sin(radians), 15), round(math.cos(radians), 15)
        centre = size / 2.0
        c, f = a * -centre + b * -centre + centre, d * -centre + e * -centre + centre
        rows.append([fix(a), fix(b), fix(c + a * 0.5 + b * 0.5), fix(d), fix(e), fix(f + d * 0.5 + e * 0.5)])
    return np.array(rows, dtype=np.int64)


def _rotation_matrices(size: int) -> np.ndarray:
    """`rotation_fixed` as DALI's warp matrices (source of the pixel centre, so the half pixel comes off)."""
    a0, a1, a2, a3, a4, a5 = (column for column in rotation_fixed(size).T.astype(np.float64))
    return np.stack([a0, a1, a2 - (a0 + a1) / 2, a3, a4, a5 - (a3 + a4) / 2], axis=1) / 65536.0


def _rotate(images, index, size, **_):
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    table = _rotation_matrices(size)
    matrix = _affine(*[fn.lookup_table(index, keys=list(range(10)), values=[float(v) for v in table[:, k]],
                                       dtype=types.FLOAT) for k in range(6)])
    return _warp(images, matrix)


def _shear_x(images, index, sign, size, **_):
    return _shear(images, _signed_magnitude("shear_x", index, sign), size, axis=1)


def _shear_y(images, index, sign, size, **_):
    return _shear(images, _signed_magnitude("shear_y", index, sign), size, axis=0)


def _shear(images, shear, size: int, axis: int):
    return shear_in_graph(images, shear, size, axis)


def _signed_magnitude(op: str, index, sign):
    """``m * sign`` in float64, as PIL's transform takes the package's float64 magnitude."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    return _float64_lookup(index, magnitude_table(op)) * (2.0 * fn.cast(sign > 0.0, dtype=types.FLOAT64) - 1.0)


def _float64_lookup(index, values):
    """``values[index]`` as float64, exactly: DALI's operator arguments and constants are float32, so each value
    travels as three float32 parts whose float64 sum is the value (24 + 24 + 24 bits cover float64's 53)."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    from mlic_pipe.loading.graph_draws import table_lookup

    rest, total = np.asarray(values, dtype=np.float64), None
    for _ in range(3):
        part = rest.astype(np.float32)
        rest = rest - part.astype(np.float64)
        node = fn.cast(table_lookup(index, part.tolist()), dtype=types.FLOAT64)
        total = node if total is None else total + node
    return total


def shear_in_graph(images, shear, size: int, axis: int):
    """PIL's bicubic affine ``(1, v, 0, 0, 1, 0)`` (x, ``axis`` 1) or ``(1, 0, 0, v, 1, 0)`` (y, ``axis`` 0).

    Each output line reads its source line at the fractional position ``p = (x + 0.5) + v (y + 0.5) - 0.5``
    (float64, as PIL's ``affine_transform`` and ``BICUBIC_HEAD``): the taps are the four pixels from ``floor(p)
    - 1`` (clamped to the image), weighted by PIL's a = -1 cubic of ``p - floor(p)``; a source point outside the
    image gives the fill. DALI's nearest warps fetch the taps (`_shear_taps`), each also reporting the index it
    read, so the window is PIL's even where float32 rounds a position across a pixel edge.
    """
    import nvidia.dali.fn as fn
    import nvidia.dali.math as dmath
    import nvidia.dali.types as types

    line = np.arange(size, dtype=np.float64) + 0.5
    line = line.astype(np.float32)  # k + 0.5: exact in float32, the constants' type
    across = fn.cast(_constant(images, line.reshape((size, 1, 1) if axis == 1 else (1, size, 1))), dtype=types.FLOAT64)
    along = fn.cast(_constant(images, line.reshape((1, size, 1) if axis == 1 else (size, 1, 1))), dtype=types.FLOAT64)
    source = along + _here(images, shear) * across  # PIL's source coordinate along the sheared axis
    position = source - 0.5
    first = dmath.floor(position)
    taps, reads = _shear_taps(images, fn.cast(shear, dtype=types.FLOAT), size, axis)
    window = []
    for k in range(4):  # PIL's tap k: pixel first - 1 + k, whichever warp tap read it (their mean, if several did)
        hits = [fn.cast(read == first + float(k - 1), dtype=types.FLOAT64) for read in reads]
        window.append(sum(tap * hit for tap, hit in zip(taps, hits)) / dmath.max(sum(hits), 1.0))
    v1, v2, v3, v4 = window
    frac = position - first
    p2, p3, p4 = v3 - v1, 2.0 * (v1 - v2) + v3 - v4, v2 - v1 - v3 + v4
    sample = _to_uint8(v2 + frac * (p2 + frac * (p3 + frac * p4)))
    inside = (source >= 0.0) & (source < float(size))
    return fn.cast(sample * inside + FILL * (inside ^ True), dtype=types.UINT8)


_TAP_PAD = 3  # pixels of edge replication around the image: every tap PIL may read, unclamped


def _shear_taps(images, shear, size: int, axis: int):
    """Nearest-warp taps (float64) along the sheared axis around each output's source position p, and the index
    each read (a channel warped alongside).

    The warps compute p in float32: where p is within rounding of a pixel edge, a warp at a whole-pixel offset
    may read either side (and two may skip a pixel between them), while a warp at a half-pixel offset is far from
    any edge; elsewhere the whole-pixel offsets are the safe ones. Both sets together read every pixel of PIL's
    window. The image is edge-padded first (PIL clamps its taps to the image), so the index is never clamped.
    """
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    pixels = fn.cast(images, dtype=types.FLOAT)
    edge = (lambda k: pixels[:, k:k + 1]) if axis == 1 else (lambda k: pixels[k:k + 1])
    padded = fn.cat(*[edge(0)] * _TAP_PAD, pixels, *[edge(size - 1)] * _TAP_PAD, axis=axis)
    span = size + 2 * _TAP_PAD
    ramp = np.arange(-_TAP_PAD, size + _TAP_PAD, dtype=np.float32)
    index = _constant(images, ramp.reshape((1, span, 1) if axis == 1 else (span, 1, 1)))
    padded = fn.cat(padded, padded[:, :, 0:1] * 0.0 + index, axis=2)  # RGB + the source index
    zero, one = shear * 0.0, shear * 0.0 + 1.0
    taps, reads = [], []
    for shift in (-1.0, 0.0, 1.0, 2.0, -1.5, -0.5, 0.5, 1.5, 2.5):  # reads floor(p + 0.5 + shift)
        offset = zero + (shift + _TAP_PAD)  # the warp's source is the output pixel's centre (+ 0.5) moved
        matrix = _affine(one, shear, offset, zero, one, zero) if axis == 1 else \
            _affine(one, zero, zero, shear, one, offset)
        warped = fn.warp_affine(padded, matrix=matrix, size=[size, size], interp_type=types.INTERP_NN)
        taps.append(fn.cast(warped[:, :, 0:3], dtype=types.FLOAT64))
        reads.append(fn.cast(warped[:, :, 3:4], dtype=types.FLOAT64))
    return taps, reads


def _equalize(images, **_):
    return equalize_in_graph(images)


def equalize_in_graph(images):
    """ImageOps.equalize per channel in DALI's operators: ``lut[v] = (step // 2 + #pixels below v) // step`` with
    ``step = (N - count of the top level) // 255``; the channel unchanged when it has one level or ``step == 0``.
    The histogram and the lookup compare each pixel with the 256 levels (DALI has no histogram and no per-sample
    gather): ~0.6 GB of intermediates for a moment per 448 x 448 image, fine on a GPU."""
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types

    levels = _constant(images, np.arange(256, dtype=np.uint8).reshape(1, 1, 1, 256))
    wide = fn.expand_dims(images, axes=[3])
    histogram = fn.cast(fn.reductions.sum(fn.cast(wide == levels, dtype=types.UINT8), axes=[0, 1],
                                          dtype=types.UINT64), dtype=types.INT32)  # (3, 256)
    below = _constant(images, np.triu(np.ones((256, 256), dtype=np.int32), 1))  # [u, v]: u < v
    under = fn.reductions.sum(fn.expand_dims(histogram, axes=[2]) * below, axes=[1], dtype=types.INT32)  # (3, 256)
    occupied = fn.cast(histogram > 0, dtype=types.INT32)
    # under[] never decreases, so its largest value at an occupied level is N less the top level's count
    step = fn.reductions.max(under * occupied, axes=[1], keep_dims=True) // 255
    valid = fn.cast((fn.reductions.sum(occupied, axes=[1], keep_dims=True) > 1) & (step > 0), dtype=types.INT32)
    safe = step + 1 - valid
    identity = _constant(images, np.arange(256, dtype=np.int32).reshape(1, 256))
    lut = ((safe // 2 + under) // safe) * valid + identity * (1 - valid)
    return _apply_lut(wide, levels, lut)


def _apply_lut(wide, levels, lut):
    """``lut[c, v]`` at each pixel of value v in channel c, as the sum of the table's increments over levels <= v
    (the table never decreases; capped at 255 as ``Image.point`` stores it); `levels`: the histogram's 0..255."""
    import nvidia.dali.fn as fn
    import nvidia.dali.math as dmath
    import nvidia.dali.types as types

    lut = dmath.min(lut, 255)
    increments = fn.cast(lut - fn.cat(lut[:, 0:1] * 0, lut[:, 0:255], axis=1), dtype=types.UINT8)
    reached = fn.cast(wide >= levels, dtype=types.UINT8)
    value = fn.reductions.sum(reached * fn.expand_dims(increments, axes=[0, 1]), axes=[3], dtype=types.UINT64)
    return fn.cast(value, dtype=types.UINT8)


def _cutout(images, index, centre_y, centre_x, size, **_):
    """The package's Cutout: a half-open box ``[c - s // 2, c + s // 2)`` clipped, c uniform, (125, 122, 113)."""
    import nvidia.dali.fn as fn
    import nvidia.dali.math as dmath
    import nvidia.dali.types as types

    from mlic_pipe.loading.graph_draws import uniform_index

    half = dmath.floor(_magnitude("cutout", index) * 0.5)
    y, x = (fn.cast(uniform_index(u, size), dtype=types.FLOAT) for u in (centre_y, centre_x))
    y0, x0 = dmath.max(y - half, 0.0), dmath.max(x - half, 0.0)
    y1, x1 = dmath.min(y + half, float(size)), dmath.min(x + half, float(size))
    return fn.erase(images, anchor=fn.stack(y0, x0), shape=fn.stack(y1 - y0, x1 - x0), axis_names="HW",
                    fill_value=list(CUTOUT_COLOUR))


def _cutout_pil(images, u, size: int, factor: float):
    """ML-Decoder's CutoutPIL before the ops (`mlic_pipe.mix.erasing.Cutout`'s box and colour): a PIL rectangle,
    far corner included, of a colour uniform in 0..255 per channel."""
    import nvidia.dali.fn as fn
    import nvidia.dali.math as dmath
    import nvidia.dali.types as types

    from mlic_pipe.loading.graph_draws import uniform_index

    half = float(int(factor * size + 0.5) // 2)
    y, x = (fn.cast(uniform_index(v, size), dtype=types.FLOAT) for v in (u[0], u[1]))
    y0, x0 = dmath.max(y - half, 0.0), dmath.max(x - half, 0.0)
    y1, x1 = (dmath.min(dmath.min(c + half, float(size)) + 1.0, float(size)) for c in (y, x))
    colour = fn.cast(fn.stack(*[uniform_index(v, 256) for v in u[2:5]]), dtype=types.UINT8)
    box = fn.erase(_zeros_like(images), anchor=fn.stack(y0, x0), shape=fn.stack(y1 - y0, x1 - x0), axis_names="HW",
                   fill_value=1)
    colour = _here(images, fn.reshape(colour, shape=[1, 1, 3]))
    return images * (types.Constant(1, dtype=types.UINT8) - box) + colour * box


_OP_FUNCTIONS = {
    "invert": _invert, "cutout": _cutout, "sharpness": _sharpness, "autocontrast": _autocontrast,
    "posterize": _posterize, "shear_x": _shear_x, "translate_x": _translate_x, "translate_y": _translate_y,
    "shear_y": _shear_y, "rotate": _rotate, "equalize": _equalize, "contrast": _contrast, "color": _color,
    "solarize": _solarize, "brightness": _brightness,
}
