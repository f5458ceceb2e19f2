"""The fused render kernel: one Triton launch turns a decoded uint8 batch into the mixed, normalized batch.

Each program renders one BLOCK_Y x BLOCK_X tile of one output image, all three channels. It looks
up the tile's grid cells in the packed plan, resamples the source of each cell (bilinear with
either corner convention, or area), zeroes dropped cells, blends a mask mix's partner (box,
dense mask or constant), normalizes and casts, and writes the tile once. A regular output reads
its input once; a spliced output reads a downsampled copy of each of its sources; so the bytes
moved are about one read of the batch plus one write of the result, the minimum.

The numbers are those of `mlic_pipe.mix.render_reference`, i.e. of ``F.interpolate`` per cell,
so the kernel repeats PyTorch's arithmetic: scale = (S-1)/(h-1) with align_corners (0 when h=1),
else S/h, each a correctly rounded float32 division; source index ``scale * dst`` or
``max(0, scale * (dst + 0.5) - 0.5)``, the latter rounded once as PyTorch's fused multiply-add
does; lower tap ``min(floor(src), S-1)``, upper ``min(lower+1, S-1)``, weight clamped to [0, 1];
area = the mean over ``[floor(i*S/h), ceil((i+1)*S/h))``. Normalization is one
fused multiply-add with ``1 / (255 * std)`` and ``-mean / std``, within 1e-6 of the reference's
``(x / 255 - mean) / std``.

The plan travels as one int32 table (`mlic_pipe.mix.plan.pack_plan`; its column and mask-mode
constants become the kernel's constexprs), a row per output, so a batch costs one small
host-to-device copy. Offsets are int32 unless a tensor is too large for that, in which case the
kernel is compiled with int64 offsets (`index_bits` decides, on the host).
"""
from __future__ import annotations

import functools
import inspect
import os
import re

import numpy as np

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice
from triton.runtime.interpreter import InterpretedFunction

from mlic_pipe.mix import plan as table
from mlic_pipe.mix.plan import COL_CELLS, ERASE_KIND, ERASE_NOISE, RESIZED_MODES, MixPlan, cell_edges, pack_plan
from mlic_pipe.mix.settings import RenderSettings, check_render_call, image_size_of

__all__ = ["CONFIGS", "CONFIG_VARIABLE", "INTERPRETED", "MAX_IMAGE_SIZE", "area_taps", "configs_for", "fixed_config",
           "index_bits", "kernel_arguments", "parse_configs", "pixels_per_thread", "render"]

# The plan table's columns and the mask modes, as the compile-time constants the kernel reads.
_ROWS, _COLS, _PARTNER, _MODE = (tl.constexpr(c) for c in (table.COL_ROWS, table.COL_COLS, table.COL_PARTNER,
                                                           table.COL_MODE))
_Y0, _X0, _Y1, _X1 = (tl.constexpr(c) for c in (table.COL_Y0, table.COL_X0, table.COL_Y1, table.COL_X1))
_MASK_INDEX, _LAM, _CELLS = (tl.constexpr(c) for c in (table.COL_MASK_INDEX, table.COL_LAM, table.COL_CELLS))
_BOX, _DENSE, _CONSTANT, _RESIZED, _RESIZED_NEAREST = (
    tl.constexpr(m) for m in (table.MASK_BOX, table.MASK_DENSE, table.MASK_CONSTANT, table.MASK_RESIZED,
                              table.MASK_RESIZED_NEAREST))
_ERASE_COLUMNS, _EY0, _EX0, _EY1, _EX1 = (tl.constexpr(c) for c in (table.ERASE_COLUMNS, table.ERASE_Y0, table.ERASE_X0,
                                                                      table.ERASE_Y1, table.ERASE_X1))
_EKIND, _EV0, _ESEED = (tl.constexpr(c) for c in (table.ERASE_KIND, table.ERASE_V0, table.ERASE_SEED))
_ECOLOUR, _ENOISE = tl.constexpr(table.ERASE_COLOUR), tl.constexpr(table.ERASE_NOISE)
_FAST_MATH = tl.constexpr(os.environ.get("TRITON_INTERPRET", "0") != "1")  # libdevice does not interpret
_INT32_MAX = 2**31 - 1
MAX_IMAGE_SIZE = 16384  # keeps every in-image product (e.g. local * S in area resampling) inside int32


@triton.jit
def _axis_cells(pos, parts, size):
    """Per coordinate along one axis: its cell, and the cell's start and extent (exact partition)."""
    cell = ((pos + 1) * parts - 1) // size
    start = cell * size // parts
    extent = (cell + 1) * size // parts - start
    return cell, pos - start, extent


@triton.jit
def _bilinear_taps(local, extent, size, ALIGN_CORNERS: tl.constexpr):
    """Lower and upper source coordinate and the upper tap's weight, as F.interpolate computes them."""
    if ALIGN_CORNERS:
        scale = tl.math.div_rn(tl.zeros_like(local).to(tl.float32) + (size - 1),
                               tl.maximum(extent - 1, 1).to(tl.float32))
        src = tl.where(extent > 1, scale, 0.0) * local.to(tl.float32)
    else:
        scale = tl.math.div_rn(tl.zeros_like(local).to(tl.float32) + size, extent.to(tl.float32))
        # PyTorch computes scale * (dst + 0.5) - 0.5 as one fused multiply-add; the float32 product is
        # exact in float64, so rounding once from float64 gives the same value (also when interpreted)
        src = (scale.to(tl.float64) * (local.to(tl.float64) + 0.5) - 0.5).to(tl.float32)
        src = tl.maximum(src, 0.0)
    lower = tl.minimum(tl.floor(src).to(local.dtype), size - 1)
    frac = tl.minimum(tl.maximum(src - lower.to(tl.float32), 0.0), 1.0)
    upper = tl.minimum(lower + 1, size - 1)
    return lower, upper, frac


@triton.jit
def _nearest_tap(local, extent, size):
    """F.interpolate's nearest source index: min(floor(dst * float32(size / extent)), size - 1), in float32."""
    scale = tl.math.div_rn(tl.zeros_like(local).to(tl.float32) + size, extent.to(tl.float32))
    return tl.minimum(tl.floor(local.to(tl.float32) * scale).to(local.dtype), size - 1)


@triton.jit
def _area_bounds(local, extent, size):
    """First and one-past-last source coordinate averaged into each destination (adaptive pooling)."""
    return local * size // extent, ((local + 1) * size + extent - 1) // extent


@triton.jit
def _lowbias32(x):
    """`mlic_pipe.mix.noise.lowbias32` on uint32 values (the products wrap mod 2^32, as the hash wants)."""
    x = (x ^ (x >> 16)) * 0x7FEB352D
    x = (x ^ (x >> 15)) * 0x846CA68B
    return x ^ (x >> 16)


@triton.jit
def _erase_noise(seed, c, ys, xs, size):
    """The erase noise of a box with `seed` at channel c over the tile (see `mlic_pipe.mix.noise`)."""
    key = _lowbias32(seed.to(tl.uint32))
    counter = ((c * size + ys[:, None]) * size + xs[None, :]).to(tl.uint32)
    h1 = _lowbias32((2 * counter) ^ key)
    h2 = _lowbias32((2 * counter + 1) ^ key)
    u1 = ((h1 >> 8) + 1).to(tl.float32) * (1.0 / 16777216.0)
    u2 = (h2 >> 8).to(tl.float32) * (1.0 / 16777216.0)
    if _FAST_MATH:  # the GPU's approximate log2 and cos (cos over -pi..pi, where it is accurate to 2^-20.9):
        # libdevice's exact cosf carries a range-reduction path in local memory, which made ptxas spill
        radius = tl.sqrt(-2.0 * 0.6931472 * libdevice.fast_log2f(u1))
        return -radius * libdevice.fast_cosf(6.2831855 * u2 - 3.1415927)
    return tl.sqrt(-2.0 * tl.log(u1)) * tl.cos(6.2831855 * u2)  # the interpreter: numpy's


@triton.jit
def _erase(value, row, erase_at, c, ys, xs, size, cscale, shift, NUM_ERASE: tl.constexpr, ERASE_NOISE: tl.constexpr):
    """Paint the output's erase boxes over one channel of the tile, box by box in order."""
    for e in tl.static_range(NUM_ERASE):
        at = row + erase_at + e * _ERASE_COLUMNS
        kind = tl.load(at + _EKIND)
        inside = ((ys >= tl.load(at + _EY0)) & (ys < tl.load(at + _EY1)))[:, None] & \
                 ((xs >= tl.load(at + _EX0)) & (xs < tl.load(at + _EX1)))[None, :] & (kind != 0)
        fill = tl.load(at + _EV0 + c).to(tl.float32, bitcast=True)
        fill = tl.where(kind == _ECOLOUR, fill * cscale + shift, fill)
        if ERASE_NOISE:  # computed for every box's tile when any box has noise: a branch on the kind spilled
            noise = _erase_noise(tl.load(at + _ESEED), c, ys, xs, size)
            fill = tl.where(kind == _ENOISE, noise, fill)
        value = tl.where(inside, fill, value)
    return value


@triton.jit
def _render_kernel(
    src_ptr, table_ptr, masks_ptr, out_ptr,
    size, table_width,
    s_n, s_c, s_y, s_x,
    o_n, o_c, o_y, o_x,
    m_n, m_y, m_x,
    scale0, scale1, scale2, shift0, shift1, shift2, cscale0, cscale1, cscale2, erase_at,
    BLOCK_Y: tl.constexpr, BLOCK_X: tl.constexpr, AREA: tl.constexpr, ALIGN_CORNERS: tl.constexpr,
    TAPS_Y: tl.constexpr, TAPS_X: tl.constexpr, HAS_MASKS: tl.constexpr, INDEX_64: tl.constexpr,
    HAS_RESIZED: tl.constexpr, NUM_ERASE: tl.constexpr, ERASE_NOISE: tl.constexpr,
):
    pid = tl.program_id(0)
    tiles_x = tl.cdiv(size, BLOCK_X)
    tiles = tl.cdiv(size, BLOCK_Y) * tiles_x
    n = pid // tiles
    tile = pid % tiles
    ys = (tile // tiles_x) * BLOCK_Y + tl.arange(0, BLOCK_Y)
    xs = (tile % tiles_x) * BLOCK_X + tl.arange(0, BLOCK_X)
    inside = (ys < size)[:, None] & (xs < size)[None, :]

    row = table_ptr + n * table_width
    rows = tl.load(row + _ROWS)
    cols = tl.load(row + _COLS)
    partner = tl.load(row + _PARTNER)
    mode = tl.load(row + _MODE)
    spliced = rows * cols > 1
    first = tl.load(row + _CELLS)
    if INDEX_64:
        n = n.to(tl.int64)
        ys = ys.to(tl.int64)
        xs = xs.to(tl.int64)
        first = first.to(tl.int64)
        partner = partner.to(tl.int64)

    # Weight of the primary source (1 = no mix); it does not depend on the channel.
    weight = tl.full((BLOCK_Y, BLOCK_X), 1.0, tl.float32)
    in_box = ((ys >= tl.load(row + _Y0)) & (ys < tl.load(row + _Y1)))[:, None] & \
             ((xs >= tl.load(row + _X0)) & (xs < tl.load(row + _X1)))[None, :]
    weight = tl.where((mode == _BOX) & in_box, 0.0, weight)
    weight = tl.where(mode == _CONSTANT, tl.load(row + _LAM).to(tl.float32, bitcast=True), weight)
    if HAS_MASKS:
        mask_row = tl.maximum(tl.load(row + _MASK_INDEX), 0)
        if INDEX_64:
            mask_row = mask_row.to(tl.int64)
        dense = tl.load(masks_ptr + mask_row * m_n + ys[:, None] * m_y + xs[None, :] * m_x,
                        mask=inside & (mode == _DENSE), other=1.0)
        weight = tl.where(mode == _DENSE, dense.to(tl.float32), weight)
    mixed = mode != 0
    if HAS_RESIZED:  # ResizeMix: inside the box, the whole partner resized to the box (bilinear or nearest)
        box_y0 = tl.load(row + _Y0)
        box_x0 = tl.load(row + _X0)
        nearest = mode == _RESIZED_NEAREST
        resized = ((mode == _RESIZED) | nearest) & in_box
        weight = tl.where(resized, 0.0, weight)
        box_h = tl.zeros_like(ys) + tl.maximum(tl.load(row + _Y1) - box_y0, 1)
        box_w = tl.zeros_like(xs) + tl.maximum(tl.load(row + _X1) - box_x0, 1)
        r_low_y, r_up_y, r_frac_y = _bilinear_taps(tl.maximum(ys - box_y0, 0), box_h, size, ALIGN_CORNERS)
        r_low_x, r_up_x, r_frac_x = _bilinear_taps(tl.maximum(xs - box_x0, 0), box_w, size, ALIGN_CORNERS)
        if nearest:  # one tap, weight 1: F.interpolate's nearest source index
            r_low_y = _nearest_tap(tl.maximum(ys - box_y0, 0), box_h, size)
            r_low_x = _nearest_tap(tl.maximum(xs - box_x0, 0), box_w, size)
            r_up_y, r_up_x = r_low_y, r_low_x
            r_frac_y = tl.zeros_like(r_frac_y)
            r_frac_x = tl.zeros_like(r_frac_x)
    else:
        resized = in_box & False
    pixel = ys[:, None] * s_y + xs[None, :] * s_x
    partner_at = tl.maximum(partner, 0) * s_n + pixel
    first_at = tl.maximum(first, 0) * s_n + pixel

    # Where each destination pixel of a spliced output samples (1-D per axis, cheap).
    cell_y, local_y, extent_y = _axis_cells(ys, rows, size)
    cell_x, local_x, extent_x = _axis_cells(xs, cols, size)
    if AREA:
        lo_y, hi_y = _area_bounds(local_y, extent_y, size)
        lo_x, hi_x = _area_bounds(local_x, extent_x, size)
    else:
        low_y, up_y, frac_y = _bilinear_taps(local_y, extent_y, size, ALIGN_CORNERS)
        low_x, up_x, frac_x = _bilinear_taps(local_x, extent_x, size, ALIGN_CORNERS)

    out_at = n * o_n + ys[:, None] * o_y + xs[None, :] * o_x
    for c in tl.static_range(3):
        scale = scale0 if c == 0 else (scale1 if c == 1 else scale2)
        shift = shift0 if c == 0 else (shift1 if c == 1 else shift2)
        if spliced:
            image = tl.load(row + _CELLS + cell_y[:, None] * cols + cell_x[None, :], mask=inside, other=-1)
            kept = inside & (image >= 0)
            if INDEX_64:
                image = image.to(tl.int64)
            base = tl.maximum(image, 0) * s_n + c * s_c
            value = tl.zeros((BLOCK_Y, BLOCK_X), tl.float32)
            if AREA:
                for ty in tl.static_range(TAPS_Y):
                    iy = lo_y + ty
                    wy = tl.where(iy < hi_y, 1.0 / (hi_y - lo_y).to(tl.float32), 0.0)
                    iy = tl.minimum(iy, size - 1)
                    for tx in tl.static_range(TAPS_X):
                        ix = lo_x + tx
                        wx = tl.where(ix < hi_x, 1.0 / (hi_x - lo_x).to(tl.float32), 0.0)
                        ix = tl.minimum(ix, size - 1)
                        tap = tl.load(src_ptr + base + iy[:, None] * s_y + ix[None, :] * s_x, mask=kept, other=0)
                        value += (wy[:, None] * wx[None, :]) * (tap.to(tl.float32) * scale + shift)
            else:
                row_lo = low_y[:, None] * s_y
                row_up = up_y[:, None] * s_y
                col_lo = low_x[None, :] * s_x
                col_up = up_x[None, :] * s_x
                wy0 = (1.0 - frac_y)[:, None]
                wy1 = frac_y[:, None]
                wx0 = (1.0 - frac_x)[None, :]
                wx1 = frac_x[None, :]
                v00 = tl.load(src_ptr + base + row_lo + col_lo, mask=kept, other=0).to(tl.float32)
                v01 = tl.load(src_ptr + base + row_lo + col_up, mask=kept, other=0).to(tl.float32)
                v10 = tl.load(src_ptr + base + row_up + col_lo, mask=kept, other=0).to(tl.float32)
                v11 = tl.load(src_ptr + base + row_up + col_up, mask=kept, other=0).to(tl.float32)
                value += (wy0 * wx0) * (v00 * scale + shift)
                value += (wy0 * wx1) * (v01 * scale + shift)
                value += (wy1 * wx0) * (v10 * scale + shift)
                value += (wy1 * wx1) * (v11 * scale + shift)
            value = tl.where(image >= 0, value, 0.0)
        else:
            source = tl.load(src_ptr + first_at + c * s_c, mask=inside & (first >= 0), other=0)
            value = tl.where(first >= 0, source.to(tl.float32) * scale + shift, 0.0)
        other = tl.load(src_ptr + partner_at + c * s_c, mask=inside & mixed & ~resized, other=0)
        other = other.to(tl.float32) * scale + shift
        if HAS_RESIZED:
            p_base = tl.maximum(partner, 0) * s_n + c * s_c
            taken = inside & resized
            q00 = tl.load(src_ptr + p_base + r_low_y[:, None] * s_y + r_low_x[None, :] * s_x, mask=taken, other=0)
            q01 = tl.load(src_ptr + p_base + r_low_y[:, None] * s_y + r_up_x[None, :] * s_x, mask=taken, other=0)
            q10 = tl.load(src_ptr + p_base + r_up_y[:, None] * s_y + r_low_x[None, :] * s_x, mask=taken, other=0)
            q11 = tl.load(src_ptr + p_base + r_up_y[:, None] * s_y + r_up_x[None, :] * s_x, mask=taken, other=0)
            fy = r_frac_y[:, None]
            fx = r_frac_x[None, :]
            sampled = ((1.0 - fy) * (1.0 - fx)) * (q00.to(tl.float32) * scale + shift)
            sampled += ((1.0 - fy) * fx) * (q01.to(tl.float32) * scale + shift)
            sampled += (fy * (1.0 - fx)) * (q10.to(tl.float32) * scale + shift)
            sampled += (fy * fx) * (q11.to(tl.float32) * scale + shift)
            other = tl.where(resized, sampled, other)
        value = tl.where(mixed, weight * value + (1.0 - weight) * other, value)
        if NUM_ERASE > 0:
            cscale = cscale0 if c == 0 else (cscale1 if c == 1 else cscale2)
            value = _erase(value, row, erase_at, c, ys, xs, size, cscale, shift, NUM_ERASE, ERASE_NOISE)
        tl.store(out_ptr + out_at + c * o_c, value.to(out_ptr.dtype.element_ty), mask=inside)



INTERPRETED = isinstance(_render_kernel, InterpretedFunction)
"""True under ``TRITON_INTERPRET=1``: the kernel then runs on CPU tensors (slowly), for tests."""

# Block shapes the autotuner tries. At most 8 output pixels per thread: 32x128 tiles on 8 warps (16 per
# thread) hit the 255-register cap and spilled on sm_80 and sm_90, and area resampling (up to 4 x 2
# taps) spilled at 8 per thread, so it gets the 4-per-thread shapes only (`configs_for`); so does ResizeMix's
# second bilinear sampler (16x128 on 8 warps spilled 8-160 B with it). Erase boxes (their noise hash works in
# 64-bit integers) on top of ResizeMix or area resampling spilled 4-36 B at 4 per thread with int64 offsets, so
# those variants get the 2-per-thread shape. Checked for every variant by
# `python -m mlic_pipe.kernels.compile_check` (CI: tests/test_kernel_compile.py).
CONFIGS = [
    triton.Config({"BLOCK_Y": by, "BLOCK_X": bx}, num_warps=warps)
    for by, bx, warps in [(8, 64, 4), (4, 128, 4), (16, 32, 4), (16, 64, 4), (8, 128, 4), (16, 128, 8),
                          (32, 64, 8), (32, 32, 4), (4, 256, 4), (8, 32, 4)]
]
AREA_PIXELS_PER_THREAD = 4
ERASE_PIXELS_PER_THREAD = 2  # with erase boxes and area resampling or ResizeMix


def pixels_per_thread(config: triton.Config) -> float:
    """Output pixels one thread holds: what drives the kernel's register use."""
    return config.kwargs["BLOCK_Y"] * config.kwargs["BLOCK_X"] / (32 * config.num_warps)


def _pixel_limit(area: bool, resized: bool, erase: bool) -> float:
    if not (area or resized):
        return float("inf")
    return ERASE_PIXELS_PER_THREAD if erase else AREA_PIXELS_PER_THREAD


def _fits(config: triton.Config, area: bool, resized: bool, erase: bool = False) -> bool:
    return pixels_per_thread(config) <= _pixel_limit(area, resized, erase)


def configs_for(area: bool, resized: bool = False, erase: bool = False) -> list[triton.Config]:
    """The autotune configs a variant may use: all, or for area resampling or ResizeMix the lighter ones
    (the lightest with erase boxes too)."""
    return [config for config in CONFIGS if _fits(config, area, resized, erase)]


def _prune(configs, named_args, **kwargs):
    flag = lambda name: bool(kwargs.get(name, named_args.get(name, False)))  # noqa: E731
    allowed = configs_for(flag("AREA"), flag("HAS_RESIZED"), flag("NUM_ERASE"))
    return [config for config in configs if config in allowed]


# Triton >= 3.4 keeps autotune timings in its cache directory, so a new process (the next test run, every
# rank of a job) does not tune again; older releases lack the option and tune once per process.
_DISK_CACHE = {"cache_results": True} if "cache_results" in inspect.signature(triton.autotune).parameters else {}
_render_tuned = triton.autotune(configs=CONFIGS, key=["size", "AREA", "TAPS_Y", "TAPS_X", "HAS_RESIZED", "NUM_ERASE",
                                                                 "ERASE_NOISE"],
                                prune_configs_by={"early_config_prune": _prune}, **_DISK_CACHE)(_render_kernel)

CONFIG_VARIABLE = "MLIC_PIPE_RENDER_CONFIG"
_CONFIG_SPEC = re.compile(r"(\d+)x(\d+)w(\d+)")


def parse_configs(spec: str) -> list[triton.Config]:
    """Block configs written ``YxXwW`` (BLOCK_Y x BLOCK_X on W warps), comma-separated: ``"16x64w4,8x64w4"``."""
    configs = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        match = _CONFIG_SPEC.fullmatch(part)
        if match is None:
            raise ValueError(f"{CONFIG_VARIABLE}={spec!r}: {part!r} is not of the form YxXwW, e.g. 8x64w4")
        block_y, block_x, warps = (int(g) for g in match.groups())
        if any(v < 1 or v & (v - 1) for v in (block_y, block_x, warps)):
            raise ValueError(f"{CONFIG_VARIABLE}={spec!r}: block sides and warps must be powers of two, got {part!r}")
        configs.append(triton.Config({"BLOCK_Y": block_y, "BLOCK_X": block_x}, num_warps=warps))
    if not configs:
        raise ValueError(f"{CONFIG_VARIABLE} is set but empty; unset it to autotune, or give e.g. 8x64w4")
    return configs


def fixed_config(area: bool, resized: bool, erase: bool = False) -> triton.Config | None:
    """The block config `MLIC_PIPE_RENDER_CONFIG` fixes for this variant (no autotuning), or None to autotune.

    Autotuning compiles and times every config per image size and variant; the test suite and the GPU
    session's checks, which launch many variants once each, would spend minutes on it. The variable
    lists configs in order of preference; a variant takes the first it may use (area resampling and
    ResizeMix only those of at most `AREA_PIXELS_PER_THREAD` pixels per thread).
    """
    spec = os.environ.get(CONFIG_VARIABLE)
    if spec is None:
        return None
    configs = parse_configs(spec)
    for config in configs:
        if _fits(config, area, resized, erase):
            return config
    limit = _pixel_limit(area, resized, erase)
    raise ValueError(f"{CONFIG_VARIABLE}={spec!r}: no config there suits {'area resampling' if area else 'ResizeMix'}"
                     f"{' with erase boxes' if erase else ''}, which needs at most {limit:g} pixels per thread: "
                     f"add one, e.g. {'8x32w4' if erase else '8x64w4'}")


@functools.lru_cache(maxsize=64)
def area_taps(size: int, parts: int) -> int:
    """The most source pixels one destination pixel averages along an axis cut into `parts` cells.

    The kernel unrolls this many taps per axis (masking the unused ones), so it must be exact.
    """
    most = 1
    edges = cell_edges(parts, size)
    for start, end in zip(edges, edges[1:]):
        extent = end - start
        if extent == 0:  # more parts than pixels: not a valid plan, nothing to sample
            continue
        local = np.arange(extent)
        lo, hi = local * size // extent, ((local + 1) * size + extent - 1) // extent
        most = max(most, int((hi - lo).max()))
    return most


def index_bits(*tensors: torch.Tensor) -> int:
    """32 when every element offset of every tensor fits int32, else 64 (the kernel then uses int64)."""
    for tensor in tensors:
        last = sum((dim - 1) * abs(step) for dim, step in zip(tensor.shape, tensor.stride()) if dim > 0)
        if last > _INT32_MAX:
            return 64
    return 32


def _area_taps_of(plan: MixPlan, size: int) -> tuple[int, int]:
    grid = plan.grid.cpu()  # a no-op for a host plan; a sync only for a device-resident one
    return (max(area_taps(size, int(p)) for p in grid[:, 0].unique()),
            max(area_taps(size, int(p)) for p in grid[:, 1].unique()))


def kernel_arguments(images: torch.Tensor, plan: MixPlan, settings: RenderSettings, out: torch.Tensor,
                     index_64: bool | None = None) -> tuple[tuple, dict]:
    """The kernel's runtime arguments and its constexpr flags (all but the block shape) for one call.

    Shared by `render` and by the ahead-of-time compile check, so both see the same variants.
    """
    size, device = image_size_of(images), images.device
    table = pack_plan(plan, device)
    area = settings.resample == "area"
    taps_y, taps_x = _area_taps_of(plan, size) if area and plan.num_outputs else (1, 1)
    has_masks = plan.masks is not None and bool(plan.masks.numel())
    masks = plan.masks.to(device, non_blocking=True) if has_masks else out
    if has_masks and masks.shape[-2:] != (size, size):
        raise ValueError(f"plan.masks must be (Km, {size}, {size}), got {tuple(masks.shape)}")
    uint8 = images.dtype == torch.uint8
    s_n, s_y, s_x, s_c = images.stride() if uint8 else [images.stride(k) for k in (0, 2, 3, 1)]
    scales, shifts = settings.affine(uint8)
    m_n, m_y, m_x = masks.stride() if has_masks else (0, 0, 0)
    colour_scales = settings.affine(True)[0]  # a 0-255 erase colour, whatever the input dtype
    args = (images, table, masks, out, size, table.shape[1], s_n, s_c, s_y, s_x, *out.stride(), m_n, m_y, m_x,
            *scales, *shifts, *colour_scales, COL_CELLS + plan.cells.shape[1])
    wide = index_bits(images, out, masks) == 64 if index_64 is None else index_64
    has_resized = bool(torch.isin(plan.mask_mode, torch.tensor(RESIZED_MODES, dtype=plan.mask_mode.dtype)).any())  # host
    flags = dict(AREA=area, ALIGN_CORNERS=settings.align_corners, TAPS_Y=taps_y, TAPS_X=taps_x,
                 HAS_MASKS=has_masks, INDEX_64=wide, HAS_RESIZED=has_resized,
                 NUM_ERASE=0 if plan.erase is None else int(plan.erase.shape[1]),
                 ERASE_NOISE=plan.erase is not None and bool((plan.erase[..., ERASE_KIND].cpu() == ERASE_NOISE).any()))
    return args, flags


def render(images: torch.Tensor, plan: MixPlan, settings: RenderSettings | None = None, *,
           out: torch.Tensor | None = None, _block: tuple[int, int] | None = None, _index_bits: int | None = None,
           **options) -> torch.Tensor:
    """Render `plan` from `images` in one kernel launch; the arguments are those of `mlic_pipe.mix.render`.

    `images` are uint8 (N, S, S, 3) or float (N, 3, S, S) with any strides (a DALI buffer, a
    channels_last tensor, a slice). `out`, when given, may have any strides too and is written in
    place. The first call per image size autotunes the block shape (a sync, once; the timings are
    kept in Triton's cache directory), unless `MLIC_PIPE_RENDER_CONFIG` fixes it (`fixed_config`).

    Raises:
        ValueError: bad arguments or a plan that does not fit the batch (checked on the host).
        RuntimeError: CPU tensors without ``TRITON_INTERPRET=1``.
    """
    settings = RenderSettings.resolve(settings, **options)
    size, _ = check_render_call(images, plan, settings, out)
    if size > MAX_IMAGE_SIZE:
        raise ValueError(f"image size {size} exceeds the kernel's limit of {MAX_IMAGE_SIZE}; "
                         "use backend='reference' or a smaller image_size")
    if not images.is_cuda and not INTERPRETED:
        raise RuntimeError("the Triton render kernel needs CUDA tensors (or TRITON_INTERPRET=1 for tests); "
                           "use mlic_pipe.mix.render(..., backend='reference') on the CPU")
    count = plan.num_outputs
    out = settings.empty(count, size, images.device) if out is None else out
    if count == 0:
        return out
    args, flags = kernel_arguments(images, plan, settings, out, None if _index_bits is None else _index_bits == 64)

    def launch_grid(meta):
        return (count * triton.cdiv(size, meta["BLOCK_Y"]) * triton.cdiv(size, meta["BLOCK_X"]),)

    fixed = None if _block is not None or INTERPRETED else fixed_config(flags["AREA"], flags["HAS_RESIZED"],
                                                                                  flags["NUM_ERASE"] > 0)
    if _block is not None or INTERPRETED:
        # the interpreter pays per program: one tile per image keeps the test suite fast
        block_y, block_x = _block or (triton.next_power_of_2(size),) * 2
        _render_kernel[launch_grid](*args, BLOCK_Y=block_y, BLOCK_X=block_x, **flags)
    elif fixed is not None:
        _render_kernel[launch_grid](*args, **fixed.kwargs, num_warps=fixed.num_warps, **flags)
    else:
        _render_tuned[launch_grid](*args, **flags)
    return out
