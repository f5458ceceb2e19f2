"""`render_cpu`: the render kernel for CPU tensors, compiled by numba, in one pass per output row.

The CPU twin of the Triton kernel (`mlic_pipe.kernels.fused_render`): every output row of every
output image is computed once from the uint8 taps it needs (its cell's source, a mask mix's
partner), normalized with one multiply-add, blended and written once, in the output's dtype and
memory format. A resampled cell is split in two: a vertical blend of whole source rows, channels
still interleaved as decoded, into a row that stays in L1 (contiguous, so it vectorizes), then the
horizontal taps from it, read at a literal stride where a cell is as wide as the source, or 1/2 of
it, and one by one through a table otherwise. The per-row functions run without numba's reference
counting (`_ROW`). Rows go to the cores in runs of consecutive rows handed out as threads come free
(one shared count, taken a step at a time atomically), so the cheap regular rows and the costlier
spliced rows of a batch keep every core busy; the threads are plain ones (`mlic_pipe.mix.host_threads`,
the calling thread and the pool's) rather than numba's ``parallel=True``, whose OpenMP threads spun
between batches on the cores DALI's decode needed (on 2 cores at S=448, two of them cost the loader ~10%
of its images/s against one; two plain ones match one, and the step waits on the render a third less:
benchmarks/results/2026-12-07-cpu-render-plain-threads-before-after.md); ``threads=1`` renders on the
calling thread alone.
The bytes moved are about one read of the sources and one write of the
result: the benchmarks measure the render against a float32 copy of its output (``cpu-copy`` in
``benchmarks/test_bench_render.py``).

Why numba: its wheel ships LLVM, so nothing needs a C compiler, at install or at run time;
``nogil`` lets plain threads share the rows; ``cache=True`` keeps the machine code on disk
(beside this file, or in numba's user cache when that is read-only), so only the first call on a
machine compiles: about 14 s for the usual variant (uint8 in, float32 out), under 1 s to load
afterwards; `compile_seconds` reports what this process paid. Without numba (a platform without
its wheel) `render` falls back to the reference with one warning.

The numbers are those of `render_reference` (``F.interpolate`` per cell): taps and weights use
PyTorch's float32 arithmetic (see the Triton kernel's docstring); normalizing after the blend
instead of before differs by float32 rounding (the weights sum to 1, and 0-255 values blend
exactly enough: within 1e-6 of the reference once normalized); float16 and bfloat16 are
rounded to nearest even from the float32 row, as ``Tensor.to`` rounds.
"""
from __future__ import annotations

import functools
import time

import numpy as np
import torch

from mlic_pipe.mix import plan as table
from mlic_pipe.mix.host_threads import over_parts
from mlic_pipe.mix.plan import COL_CELLS, MixPlan, pack_plan
from mlic_pipe.mix.settings import RenderSettings, check_render_call

try:
    import numba
    from numba import njit
    NUMBA_IMPORT_ERROR: str | None = None
except ImportError as error:  # no wheel for this platform: `render` falls back to the reference
    numba = None
    NUMBA_IMPORT_ERROR = str(error)

__all__ = ["AVAILABLE", "NUMBA_IMPORT_ERROR", "compile_seconds", "render_cpu"]

AVAILABLE = numba is not None
_HALF_KIND = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
_compile_seconds: dict[tuple, float] = {}


def compile_seconds() -> dict[tuple, float]:
    """Seconds each compiled variant's first call took in this process (loading the disk cache or compiling)."""
    return dict(_compile_seconds)


if AVAILABLE:
    _ROWS, _COLS, _PARTNER, _MODE = table.COL_ROWS, table.COL_COLS, table.COL_PARTNER, table.COL_MODE
    _Y0, _X0, _Y1, _X1 = table.COL_Y0, table.COL_X0, table.COL_Y1, table.COL_X1
    _MASK_INDEX, _LAM, _CELLS = table.COL_MASK_INDEX, table.COL_LAM, table.COL_CELLS
    _BOX, _DENSE, _CONSTANT = table.MASK_BOX, table.MASK_DENSE, table.MASK_CONSTANT
    _RESIZED, _RESIZED_NEAREST = table.MASK_RESIZED, table.MASK_RESIZED_NEAREST
    _ERASE_COLUMNS, _ERASE_KIND, _ERASE_SEED, _ERASE_V0 = (table.ERASE_COLUMNS, table.ERASE_KIND, table.ERASE_SEED,
                                                          table.ERASE_V0)
    _ERASE_Y0, _ERASE_X0, _ERASE_Y1, _ERASE_X1 = table.ERASE_Y0, table.ERASE_X0, table.ERASE_Y1, table.ERASE_X1
    _ERASE_NONE, _ERASE_COLOUR, _ERASE_NOISE = table.ERASE_NONE, table.ERASE_COLOUR, table.ERASE_NOISE
    _JIT = dict(cache=True, nogil=True, fastmath=False)
    # Per-row functions allocate nothing, so they run without numba's reference counting: with it, every
    # array passed or sliced costs atomic increments and decrements, ~100 ns a call, and both threads
    # bounce the same counters (the batch's, the output's) between their cores. `_nrt` is numba's own
    # target option (numba.core.options); a numba without it gets the counted, slower code.
    _ROW = dict(_JIT, _nrt=False) if hasattr(numba.core.options.DefaultOptions, "_nrt") else _JIT

    @njit(**_JIT)
    def _bilinear_tap(local, extent, size, align_corners):
        """Lower and upper source index and the upper weight of destination `local` of `extent`, as F.interpolate."""
        if align_corners:
            scale = np.float32(size - 1) / np.float32(max(extent - 1, 1)) if extent > 1 else np.float32(0.0)
            src = scale * np.float32(local)
        else:
            scale = np.float32(size) / np.float32(extent)
            # PyTorch's fused multiply-add, rounded once: the float32 product is exact in float64
            src = np.float32(np.float64(scale) * (np.float64(local) + 0.5) - 0.5)
            src = max(src, np.float32(0.0))
        lower = min(int(np.floor(src)), size - 1)
        frac = min(max(src - np.float32(lower), np.float32(0.0)), np.float32(1.0))
        return lower, min(lower + 1, size - 1), frac

    @njit(**_JIT)
    def _nearest_tap(local, extent, size):
        """F.interpolate's nearest source index: min(floor(dst * float32(size / extent)), size - 1)."""
        scale = np.float32(size) / np.float32(extent)
        return min(int(np.floor(np.float32(local) * scale)), size - 1)

    @njit(**_JIT)
    def _cell_taps(pos, parts, size, align_corners, area):
        """Coordinate `pos` of an axis cut into `parts` cells: its cell, and its source taps within the cell's
        source (bilinear: lower, upper, upper weight; area: the window's first and one-past-last, weight 0)."""
        cell = ((pos + 1) * parts - 1) // size
        start = cell * size // parts
        extent = (cell + 1) * size // parts - start
        local = pos - start
        if area:
            return cell, local * size // extent, ((local + 1) * size + extent - 1) // extent, np.float32(0.0)
        lower, upper, frac = _bilinear_tap(local, extent, size, align_corners)
        return cell, lower, upper, frac

    @njit(**_JIT)
    def _box_tap(local, extent, size, nearest, align_corners):
        """ResizeMix's taps of destination `local` of a box `extent` long: nearest (one tap) or bilinear."""
        if nearest:
            index = _nearest_tap(local, extent, size)
            return index, index, np.float32(0.0)
        return _bilinear_tap(local, extent, size, align_corners)

    @njit(**_JIT)
    def _axis_tables(size, max_parts, align_corners, area):
        """Per grid size p <= max_parts and coordinate x: its taps in its cell (`_cell_taps`), and for bilinear
        cells the runs `_horizontal` reads at a fixed stride.

        ``step[p, cell]`` is 1 or 2 when the cell's lower taps advance by that many pixels per output pixel
        except at a few jumps (a cell as wide as the source, or 1/2 of it: the 1 and 2 column SpliceMix grids at
        224 and 448), else 0 (taps read one by one); ``run[p, x]`` is how many outputs from x on keep
        ``low - step * x``. Not 3 (a third of the source): the compiler vectorizes that stride (9 floats with the
        channels interleaved) as hardware gathers, which measured 1.5x slower than the one-by-one reads on an
        AMD EPYC (Zen 4), where gathers are slow; strides 1 and 2 become shuffles.
        """
        low = np.zeros((max_parts + 1, size), np.uint32)  # unsigned: indexing with them skips wraparound
        up = np.zeros((max_parts + 1, size), np.uint32)
        frac = np.zeros((max_parts + 1, size), np.float32)
        run = np.ones((max_parts + 1, size), np.uint32)
        step = np.zeros((max_parts + 1, max_parts), np.int64)
        for parts in range(1, max_parts + 1):
            for x in range(size):
                _, low[parts, x], up[parts, x], frac[parts, x] = _cell_taps(x, parts, size, align_corners, area)
            for cell in range(parts):
                start, end = cell * size // parts, (cell + 1) * size // parts
                gaps = max(end - start - 1, 1)  # the mean advance per output pixel, rounded
                k = (2 * (np.int64(low[parts, end - 1]) - np.int64(low[parts, start])) + gaps) // (2 * gaps)
                runs = 1
                for x in range(end - 2, start - 1, -1):
                    if np.int64(low[parts, x + 1]) - np.int64(low[parts, x]) == k:
                        run[parts, x] = run[parts, x + 1] + 1
                    else:
                        runs += 1
                if not area and 1 <= k <= 2 and 8 * runs <= end - start:
                    step[parts, cell] = k
        return low, up, frac, run, step

    @njit(**_ROW)
    def _copy_span(src, image, y, x_start, x_end, scale, shift, target, t, ty):
        """Pixels x_start .. x_end - 1 of source row y, normalized (zeros for a dropped image).

        Loops run over slices from 0, so the compiler sees non-negative indices and vectorizes; the three
        channels in one loop read each source pixel once (an interleaved load, not three strided ones).
        """
        red, green, blue = (target[t, 0, ty][x_start:x_end], target[t, 1, ty][x_start:x_end],
                            target[t, 2, ty][x_start:x_end])
        if image < 0:
            red[:], green[:], blue[:] = 0.0, 0.0, 0.0
            return
        line = src[image, y][3 * x_start:3 * x_end]
        s0, s1, s2, h0, h1, h2 = scale[0], scale[1], scale[2], shift[0], shift[1], shift[2]
        for i in range(x_end - x_start):
            red[i] = np.float32(line[3 * i]) * s0 + h0
            green[i] = np.float32(line[3 * i + 1]) * s1 + h1
            blue[i] = np.float32(line[3 * i + 2]) * s2 + h2

    @njit(**_ROW)
    def _vertical(src, image, y_lo, y_hi, fy, area, line):
        """Source rows blended into one row `line` as decoded (x-major, channel-minor), the first half of a resample.

        Bilinear: ``(1 - fy) * row y_lo + fy * row y_hi``; area: the sum of rows y_lo .. y_hi - 1 (`_horizontal`
        divides). Both in the source's scale: `_horizontal` normalizes, once per output pixel. One contiguous loop
        over the row's values, channels together, so it vectorizes with no shuffles; the last pixel is repeated
        past the row's end, where `_horizontal` reads the upper tap of the last one.
        """
        width = src.shape[2]
        row = line[:width]
        first = src[image, y_lo]
        if not area and fy != 0.0:
            second, wy = src[image, y_hi], np.float32(1.0) - fy
            for j in range(width):
                row[j] = wy * np.float32(first[j]) + fy * np.float32(second[j])
        else:  # area, or a cell as tall as the source (1 x C grids: weight 0 on the second row, the row itself)
            for j in range(width):
                row[j] = np.float32(first[j])
            if area:
                for iy in range(y_lo + 1, y_hi):
                    more = src[image, iy]
                    for j in range(width):
                        row[j] += np.float32(more[j])
        for c in range(3):  # element by element: a slice copy within one array may allocate a temporary
            line[width + c] = line[width - 3 + c]

    @njit(**_ROW)
    def _tap_pair(line, at, f, affine, r0, r1, r2, i):
        """Output pixel i, bilinear between the pixels at `at` and `at` + 3 of `line`, normalized."""
        s0, s1, s2, h0, h1, h2 = affine
        g = np.float32(1.0) - f
        r0[i] = (g * line[at] + f * line[at + 3]) * s0 + h0
        r1[i] = (g * line[at + 1] + f * line[at + 4]) * s1 + h1
        r2[i] = (g * line[at + 2] + f * line[at + 5]) * s2 + h2

    @njit(**_ROW)
    def _horizontal(line, low, up, frac, run, step, area, rows, scale, shift, target, t, ty, x_start, x_end):
        """The second half of a resample: output pixels x_start .. x_end - 1 of row ty from `line` (`_vertical`).

        Bilinear: ``(1 - frac) * pixel low + frac * pixel low + 1`` (the pixel past the end repeats the last one,
        so this is the table's upper tap), then normalized. Where the cell's taps advance at a fixed `step` of
        1 or 2 pixels (`_axis_tables`), each run of them is read at that literal stride, which the compiler
        turns into vector loads and shuffles; otherwise the taps are read one at a time. Area: the mean of
        pixels low .. up - 1 of the `rows` rows `line` sums.
        """
        r0, r1, r2 = (target[t, 0, ty][x_start:x_end], target[t, 1, ty][x_start:x_end],
                      target[t, 2, ty][x_start:x_end])
        affine = (scale[0], scale[1], scale[2], shift[0], shift[1], shift[2])
        count = r0.shape[0]
        if area:
            for i in range(count):
                lo, hi = low[i], up[i]
                t0, t1, t2 = np.float32(0.0), np.float32(0.0), np.float32(0.0)
                for ix in range(lo, hi):
                    t0 += line[3 * ix]
                    t1 += line[3 * ix + 1]
                    t2 += line[3 * ix + 2]
                window = np.float32(rows * (hi - lo))
                r0[i], r1[i], r2[i] = (t0 * (scale[0] / window) + shift[0], t1 * (scale[1] / window) + shift[1],
                                       t2 * (scale[2] / window) + shift[2])
        elif step == 0:
            for i in range(count):
                _tap_pair(line, 3 * low[i], frac[i], affine, r0, r1, r2, i)
        else:
            i = 0
            while i < count:
                end = min(count, i + run[i])
                part, f, o0, o1, o2 = line[3 * low[i]:], frac[i:end], r0[i:end], r1[i:end], r2[i:end]
                if step == 1:
                    for m in range(end - i):
                        _tap_pair(part, 3 * m, f[m], affine, o0, o1, o2, m)
                else:
                    for m in range(end - i):
                        _tap_pair(part, 6 * m, f[m], affine, o0, o1, o2, m)
                i = end

    @njit(**_ROW)
    def _splice_row(src, cells, rows, cols, y, size, tables, area, align_corners, scale, shift, target, t, ty,
                    line):
        """A spliced output row, cell by cell: each cell's source resampled to the cell, dropped cells zero."""
        low_x, up_x, frac_x, run_x, step_x = tables
        cy, y_lo, y_hi, fy = _cell_taps(y, rows, size, align_corners, area)
        for cx in range(cols):
            image = cells[cy * cols + cx]
            x_start, x_end = cx * size // cols, (cx + 1) * size // cols
            if image < 0:
                for c in range(3):
                    target[t, c, ty][x_start:x_end] = 0.0
                continue
            _vertical(src, image, y_lo, y_hi, fy, area, line)
            _horizontal(line, low_x[cols, x_start:x_end], up_x[cols, x_start:x_end], frac_x[cols, x_start:x_end],
                        run_x[cols, x_start:x_end], step_x[cols, cx], area, y_hi - y_lo, scale, shift, target, t,
                        ty, x_start, x_end)

    @njit(**_ROW)
    def _resized_row(src, partner, y, box, nearest, align_corners, scale, shift, target, t, ty, line, taps):
        """ResizeMix inside the box on row y: the whole partner resized to the box (bilinear or nearest)."""
        size = src.shape[1]
        y0, x0, y1, x1 = box
        low_x, up_x, frac_x = taps
        for x in range(x1 - x0):
            low_x[x], up_x[x], frac_x[x] = _box_tap(x, x1 - x0, size, nearest, align_corners)
        y_lo, y_hi, fy = _box_tap(y - y0, y1 - y0, size, nearest, align_corners)
        _vertical(src, partner, y_lo, y_hi, fy, False, line)
        # step 0: any box size, so the taps are gathered one by one and no runs are read (`up_x` fills the slot)
        _horizontal(line, low_x[:x1 - x0], up_x[:x1 - x0], frac_x[:x1 - x0], up_x[:x1 - x0], 0, False, 1, scale,
                    shift, target, t, ty, x0, x1)

    @njit(**_ROW)
    def _mix_row(src, plan_row, lam, masks, half_lut, y, size, align_corners, scale, shift, target, t, ty, work):
        """Blend a mask mix's partner into the row: ``w * primary + (1 - w) * partner`` where w < 1."""
        mode, partner = plan_row[_MODE], plan_row[_PARTNER]
        box = (plan_row[_Y0], max(plan_row[_X0], 0), plan_row[_Y1], min(plan_row[_X1], size))
        one, k = np.float32(1.0), max(plan_row[_MASK_INDEX], 0)
        if mode != _CONSTANT and mode != _DENSE and not box[0] <= y < box[2]:
            return  # a box mode on a row the box misses: weight 1 everywhere
        if mode == _BOX:  # weight 0 inside the box: w * p + 1 * q == q
            _copy_span(src, partner, y, box[1], max(box[1], box[3]), scale, shift, target, t, ty)
            return
        if mode == _RESIZED or mode == _RESIZED_NEAREST:
            _resized_row(src, partner, y, box, mode == _RESIZED_NEAREST, align_corners, scale, shift,
                         target, t, ty, work[1], work[2:])
            return
        weight = work[1][:size]
        if mode == _DENSE:  # the mask row once, as float32 (float16 masks through a 65536-entry table)
            for x in range(size):
                weight[x] = half_lut[np.uint16(masks[k, y, x])] if half_lut.size > 1 else np.float32(masks[k, y, x])
        elif mode == _CONSTANT:
            weight[:] = lam
        else:
            return
        # the three channels in one loop: each partner pixel read once (an interleaved load)
        r0, r1, r2, line = target[t, 0, ty], target[t, 1, ty], target[t, 2, ty], src[partner, y]
        s0, s1, s2, h0, h1, h2 = scale[0], scale[1], scale[2], shift[0], shift[1], shift[2]
        for x in range(size):
            w = weight[x]
            v = one - w
            r0[x] = w * r0[x] + v * (np.float32(line[3 * x]) * s0 + h0)
            r1[x] = w * r1[x] + v * (np.float32(line[3 * x + 1]) * s1 + h1)
            r2[x] = w * r2[x] + v * (np.float32(line[3 * x + 2]) * s2 + h2)

    @njit(**_JIT)
    def _half_bits(u, magnitude, bfloat):
        """The float16 or bfloat16 bits nearest (ties to even) to the float32 with bits `u`, |value| `magnitude`."""
        if bfloat:  # the top 16 bits, rounded
            return np.int16(np.int32((u + np.uint32(0x7FFF) + ((u >> 16) & 1)) >> 16))
        sign = np.int32((u >> 16) & 0x8000)
        if magnitude < np.float32(6.103515625e-05):  # float16 subnormals: multiples of 2**-24, exactly
            half = np.int32(np.rint(magnitude * np.float32(16777216.0)))
        else:
            m = u & np.uint32(0x7FFFFFFF)
            half = np.int32((m + np.uint32(0x0FFF) + ((m >> 13) & 1)) >> 13) - ((127 - 15) << 10)
            half = min(half, 0x7C00)  # past 65504 rounds to infinity
        return np.int16(sign | half)

    @njit(**_ROW)
    def _store_row(row, out, strides, n, y, half_kind):
        """Write a float32 scratch row into the output, seen as flat storage with element `strides` (any layout):
        as it is, or as float16 / bfloat16 bits (numba has no half types)."""
        base = n * strides[0] + y * strides[2]
        for c in range(3):
            at, step = base + c * strides[1], strides[3]
            if half_kind == 0:
                for x in range(row.shape[1]):
                    out[at + x * step] = row[c, x]
                continue
            bits = row[c].view(np.uint32)
            for x in range(row.shape[1]):
                out[at + x * step] = _half_bits(np.uint32(bits[x]), abs(row[c, x]), half_kind == 2)

    @njit(**_JIT)
    def _lowbias32(x):
        """`mlic_pipe.mix.noise.lowbias32` in uint32 arithmetic (products taken mod 2^32)."""
        x = np.uint64(x) & np.uint64(0xFFFFFFFF)
        x = ((x ^ (x >> np.uint64(16))) * np.uint64(0x7FEB352D)) & np.uint64(0xFFFFFFFF)
        x = ((x ^ (x >> np.uint64(15))) * np.uint64(0x846CA68B)) & np.uint64(0xFFFFFFFF)
        return x ^ (x >> np.uint64(16))

    @njit(**_JIT)
    def _noise(key, counter):
        """Pixel `counter`'s standard normal value of the box hashed to `key` (see `mlic_pipe.mix.noise`)."""
        h1 = _lowbias32(np.uint64(2 * counter) ^ key)
        h2 = _lowbias32(np.uint64(2 * counter + 1) ^ key)
        u1 = np.float32((h1 >> np.uint64(8)) + np.uint64(1)) * np.float32(1.0 / 16777216.0)
        u2 = np.float32(h2 >> np.uint64(8)) * np.float32(1.0 / 16777216.0)
        return np.sqrt(np.float32(-2.0) * np.log(u1)) * np.cos(np.float32(2.0 * np.pi) * u2)

    @njit(**_ROW)
    def _erase_row(plan_row, values, erase, y, size, shift, target, t, ty):
        """Paint row y of each erase box over the finished row, box by box in order."""
        erase_at, count, colour_scale = erase
        for e in range(count):
            at = erase_at + e * _ERASE_COLUMNS
            kind = plan_row[at + _ERASE_KIND]
            if kind == _ERASE_NONE or not plan_row[at + _ERASE_Y0] <= y < plan_row[at + _ERASE_Y1]:
                continue
            x0, x1 = plan_row[at + _ERASE_X0], plan_row[at + _ERASE_X1]
            key = _lowbias32(plan_row[at + _ERASE_SEED])
            for c in range(3):
                row, value = target[t, c, ty], values[at + _ERASE_V0 + c]
                if kind == _ERASE_COLOUR:
                    value = value * colour_scale[c] + shift[c]
                for x in range(x0, x1):
                    row[x] = _noise(key, (c * size + y) * size + x) if kind == _ERASE_NOISE else value

    @njit(**_ROW)
    def _render_line(src, plan_row, lam, masks, half_lut, y, size, tables, area, align_corners, scale, shift,
                     target, t, ty, work):
        """Output row y: its primary (a source row, or spliced cells), then a mask mix's partner blended in."""
        rows, cols, mode, first = plan_row[_ROWS], plan_row[_COLS], plan_row[_MODE], plan_row[_CELLS]
        if rows * cols == 1 and mode == _BOX and plan_row[_Y0] <= y < plan_row[_Y1]:
            # CutMix: the primary around the box, the partner inside; no pixel written twice
            x0, x1 = min(max(plan_row[_X0], 0), size), min(max(plan_row[_X1], 0), size)
            _copy_span(src, first, y, 0, x0, scale, shift, target, t, ty)
            _copy_span(src, plan_row[_PARTNER], y, x0, max(x0, x1), scale, shift, target, t, ty)
            _copy_span(src, first, y, max(x0, x1), size, scale, shift, target, t, ty)
            return
        if rows * cols == 1:
            _copy_span(src, first, y, 0, size, scale, shift, target, t, ty)
        else:
            _splice_row(src, plan_row[_CELLS:], rows, cols, y, size, tables, area, align_corners, scale, shift,
                        target, t, ty, work[1])
        if mode != 0:
            _mix_row(src, plan_row, lam, masks, half_lut, y, size, align_corners, scale, shift, target, t, ty, work)

    @numba.extending.intrinsic
    def _take_run(typingctx, counter):
        """``counter[0] += 1`` as one atomic step, returning the value before: the next run of rows for the
        calling thread, so several threads share one count without a lock (numba has no CPU atomics)."""
        def codegen(context, builder, signature, args):
            from llvmlite import ir
            array = context.make_array(signature.args[0])(context, builder, args[0])
            return builder.atomic_rmw("add", array.data, ir.Constant(ir.IntType(64), 1), "monotonic")
        return numba.types.int64(counter), codegen

    @njit(**_JIT)
    def _render_rows(src, plan_table, lam, masks, half_lut, target, final, strides, direct, half_kind, scale, shift,
                     tables, erase, area, align_corners, counter, blocks):
        """The output rows cut into `blocks` runs of consecutive rows: renders runs until none is left, taking
        the next one from `counter` (int64, one element, shared by the threads rendering the batch).

        `render_cpu` calls it once on each thread rendering (the calling thread alone, or several), so
        runs go to the threads as they come free. With `direct` the rows are computed in place in `target`,
        the float32 C-contiguous output; otherwise in a scratch row and stored into `final`, the
        output's flat storage, at its element `strides` in its dtype (`_store_row`). It keeps numba's
        reference counting, which the per-row functions go without: it allocates the scratch.
        """
        count, size = plan_table.shape[0], src.shape[1]
        values = plan_table.view(np.float32)  # the erase values are float32 bits in the int32 table
        lines = count * size
        per_block = (lines + blocks - 1) // blocks
        # the scratch output row, the vertical blend (interleaved, one pixel of padding), ResizeMix's horizontal taps
        work = (np.empty((1, 3, 1, size), np.float32), np.empty(3 * size + 3, np.float32),
                np.empty(size, np.uint32), np.empty(size, np.uint32), np.empty(size, np.float32))
        block = _take_run(counter)
        while block < blocks:
            for line in range(block * per_block, min(lines, (block + 1) * per_block)):
                n, y = line // size, line % size
                rows_in, t, ty = (target, n, y) if direct else (work[0], 0 * n, 0 * y)
                _render_line(src, plan_table[n], lam[n], masks, half_lut, y, size, tables, area, align_corners,
                             scale, shift, rows_in, t, ty, work)
                if erase[1]:
                    _erase_row(plan_table[n], values[n], erase, y, size, shift, rows_in, t, ty)
                if not direct:
                    _store_row(work[0][0, :, 0], final, strides, n, y, half_kind)
            block = _take_run(counter)


@functools.lru_cache(maxsize=16)
def _tables(size: int, max_cols: int, align_corners: bool, area: bool) -> tuple:
    """Every column's taps for grids of up to `max_cols` columns (`_axis_tables`), made once per shape."""
    return _axis_tables(size, max_cols, align_corners, area)


@functools.lru_cache(maxsize=1)
def _half_table() -> np.ndarray:
    """float32 value of every float16 bit pattern (index: the bits as uint16); 256 KiB, made once."""
    return np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)


def _arrays(images: torch.Tensor, plan: MixPlan, settings: RenderSettings, out: torch.Tensor) -> tuple:
    """The arrays the compiled function reads and writes: views of the batch and the output where possible.

    The source is read as C-contiguous NHWC: a decoder's uint8 batch as it is; a float NCHW batch
    (the uncommon path) once converted to float32 NHWC. A float32 C-contiguous output is written in
    place; any other (channels_last, a slice, float16, bfloat16) through a per-thread scratch row
    into its flat storage at its strides. Few distinct argument types keep the compiled variants few
    (each costs seconds to compile once per machine).
    """
    uint8 = images.dtype == torch.uint8
    src = (images if uint8 else images.to(torch.float32).permute(0, 2, 3, 1)).contiguous().numpy()
    # seen as (N, S, 3 S): a row, x-major and channel-minor as decoded, is an index (`src[image, y]`), not a
    # reshape in the compiled code, where numba's reshape goes through a C helper (~160 ns a row)
    src = src.reshape(src.shape[0], src.shape[1], 3 * src.shape[2])
    scale, shift = settings.affine(uint8)
    masks, half_lut = plan.masks, np.zeros(1, np.float32)
    if masks is None or not masks.numel():
        masks_array = np.zeros((1, 1, 1), np.int16)
    elif masks.dtype == torch.float16:  # read as its bits (numba has no float16), converted by a table
        masks_array, half_lut = masks.detach().cpu().contiguous().view(torch.int16).numpy(), _half_table()
    else:
        masks_array = masks.detach().cpu().float().numpy()
    direct = out.dtype == torch.float32 and out.is_contiguous()
    if direct:  # written in place: numpy views, no torch op (each costs tens of microseconds cache-cold)
        target = out.numpy()
        final = target.reshape(-1)
    else:
        span = 1 + sum((dim - 1) * step for dim, step in zip(out.shape, out.stride()))
        flat = torch.as_strided(out, (span,), (1,))
        final = flat.numpy() if out.dtype == torch.float32 else flat.view(torch.int16).numpy()
        target = np.zeros((1, 3, 1, 1), np.float32)
    packed = pack_plan(plan, torch.device("cpu")).numpy()
    lam = np.ascontiguousarray(packed[:, table.COL_LAM]).view(np.float32)  # the plan's lam, as packed
    return (src, packed, lam, masks_array, half_lut, target, final, np.asarray(out.stride(), np.int64), direct,
            _HALF_KIND[out.dtype], np.asarray(scale, np.float32), np.asarray(shift, np.float32))


def render_cpu(images: torch.Tensor, plan: MixPlan, settings: RenderSettings | None = None, *,
               out: torch.Tensor | None = None, threads: int | None = None, **options) -> torch.Tensor:
    """Render `plan` from CPU `images` with the compiled one-pass kernel; the arguments of `mlic_pipe.mix.render`.

    `threads`: how many threads render (default: torch's thread count): the calling thread and up to
    ``threads - 1`` of `mlic_pipe.mix.host_threads`' pool; 1 renders on the calling thread alone.

    Raises:
        RuntimeError: numba cannot be imported (`render` checks `AVAILABLE` and falls back instead).
        ValueError: bad arguments or a plan that does not fit the batch.
    """
    if not AVAILABLE:
        raise RuntimeError(f"the compiled CPU renderer needs numba ({NUMBA_IMPORT_ERROR}); pip install numba")
    settings = RenderSettings.resolve(settings, **options)
    size, _ = check_render_call(images, plan, settings, out)
    if images.device.type != "cpu":
        raise ValueError(f"render_cpu renders CPU tensors, got images on {images.device}")
    if threads is not None and (isinstance(threads, bool) or int(threads) != threads or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    out = settings.empty(plan.num_outputs, size, "cpu") if out is None else out
    if plan.num_outputs == 0:
        return out
    arrays = _arrays(images, plan, settings, out)
    area = settings.resample == "area"
    tables = _tables(size, int(arrays[1][:, table.COL_COLS].max()), settings.align_corners, area)
    lines = plan.num_outputs * size
    # runs of >= 16 consecutive rows, 16 per thread, handed out as threads come free (`_take_run`): balances
    # the cheap regular rows and the costlier spliced ones, and cores shared with DALI's threads
    wanted = torch.get_num_threads() if threads is None else int(threads)
    workers = max(1, min(wanted, lines // 16))  # 1: render on this thread alone
    blocks = max(1, min(lines // 16, 16 * workers))
    erase = (COL_CELLS + int(plan.cells.shape[1]), 0 if plan.erase is None else int(plan.erase.shape[1]),
             np.asarray(settings.affine(True)[0], np.float32))
    args = (*arrays, tables, erase, area, settings.align_corners)
    key = (str(images.dtype), str(out.dtype), arrays[8], settings.resample, settings.align_corners)
    started = time.perf_counter()
    counter = np.zeros(1, np.int64)  # the next run of rows, shared by the threads
    over_parts(lambda first, stop: _render_rows(*args, counter, blocks), workers, threads=workers)
    _compile_seconds.setdefault(key, time.perf_counter() - started)
    return out
