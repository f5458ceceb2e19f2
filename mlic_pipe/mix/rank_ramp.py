"""`rank_ramp`: FMix's threshold and soft edge from each row's pixel ranks, without sorting the rows.

FMix keeps the pixels of a low-frequency grey image whose rank (0 = the largest value) is below
round(lambda S^2), with a linear ramp over the ranks [low, high) when the edge is soft:
``clamp((high - rank) / max(high - low, 1), 0, 1)``. On a GPU a full sort of each row is cheap
(`fmix_masks` does that there); on a CPU it was most of a FMix batch's plan (286 of 458 ms for
B=32 at S=448 on this project's 2-core machine), more than the decode of the batch. Only the ranks
near the threshold matter, so here each row is binned by value (a histogram), the bins around
ranks [low, high) are found by counting down from the top, and only their pixels are sorted:
one pass over the row, a sort of ~1/4096 of it for a hard mask.

Ties are ranked by position (a stable sort by descending value), as `fmix_masks`' sort does, so
both paths give the same masks. Compiled by numba with its disk cache (as `mlic_pipe.mix.cpu_render`);
without numba, `fmix_masks` sorts on the CPU too.
"""
from __future__ import annotations

import time

import numpy as np

from mlic_pipe.mix.host_threads import over_parts

try:
    from numba import njit
    AVAILABLE = True
except ImportError:  # no wheel for this platform: `fmix_masks` sorts instead
    AVAILABLE = False

__all__ = ["AVAILABLE", "compile_seconds", "rank_ramp"]

_BINS = 4096  # a hard mask's threshold bin holds ~pixels / 4096 values (more near the mode): a tiny sort
_compile_seconds: dict[str, float] = {}


def compile_seconds() -> dict[str, float]:
    """Seconds each compiled variant's first call took in this process (compiling once per machine, else loading)."""
    return dict(_compile_seconds)


def rank_ramp(grey: np.ndarray, low: np.ndarray, high: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Fill `out` (K, P) with ``clamp((high - rank) / max(high - low, 1), 0, 1)`` of each row of `grey` (K, P).

    `grey` is float32 or float64; `low` and `high` (K,) int64 (any values: below 0 and past P clip);
    `out` float32 (a hard mask: 0 and 1) or float64 (soft edges, rounded to float16 by the caller).
    Returns `out`.
    """
    if not AVAILABLE:
        raise RuntimeError("rank_ramp needs numba; fmix_masks sorts instead where it is missing")
    if grey.ndim != 2 or out.shape != grey.shape or low.shape != (grey.shape[0],) or high.shape != low.shape:
        raise ValueError(f"rank_ramp needs grey (K, P), low and high (K,) and out like grey, got {grey.shape}, "
                         f"{low.shape}, {high.shape}, {out.shape}")
    started = time.perf_counter()
    low, high = np.ascontiguousarray(low, np.int64), np.ascontiguousarray(high, np.int64)
    over_parts(lambda start, stop: _rows(grey[start:stop], low[start:stop], high[start:stop], out[start:stop]),
               grey.shape[0])  # rows on torch's thread count (`over_parts`)
    _compile_seconds.setdefault(f"{grey.dtype} -> {out.dtype}", time.perf_counter() - started)
    return out


if AVAILABLE:
    @njit(cache=True, nogil=True, fastmath=True)
    def _extremes(values):
        """The row's smallest and largest value (finite values: fastmath lets the reduction vectorize)."""
        bottom, top = values[0], values[0]
        for i in range(values.shape[0]):
            bottom, top = min(bottom, values[i]), max(top, values[i])
        return bottom, top

    @njit(cache=True, nogil=True)
    def _bin(value, bottom, per_unit, bins):
        """The value's bin, in float32: non-decreasing in the value (each rounding is), so equal values share
        one and a higher bin's values are all larger than a lower bin's."""
        return min(np.int32((value - bottom) * per_unit), bins - 1)

    @njit(cache=True, nogil=True)
    def _row(values, low, high, out, bin_of):
        """One row of `rank_ramp`; `bin_of` is scratch of the row's length."""
        count = values.shape[0]
        span = max(high - low, 1)
        first = min(max(low, 0), count)  # ranks below `first` are 1
        last = min(max(high, first + 1), count)  # ranks from `last` on are 0; [first, last) need their rank
        if first >= count:  # every rank is below low
            out[:] = 1.0
            return
        bottom, top = _extremes(values)
        per_unit = np.float32(_BINS / (np.float64(top) - np.float64(bottom)) if top > bottom else 0.0)
        bins = _BINS if top > bottom and np.isfinite(per_unit) else 1  # a flat row (or one too narrow): one bin
        if bins == 1:
            per_unit = np.float32(0.0)
        for i in range(count):
            bin_of[i] = _bin(values[i], bottom, per_unit, bins)
        hist = np.zeros(bins, np.int64)
        for i in range(count):
            hist[bin_of[i]] += 1
        # from the top bin down: the bin holding rank `first`, then the one holding rank `last - 1`
        above, upper = 0, bins - 1
        while above + hist[upper] <= first:
            above += hist[upper]
            upper -= 1
        reached, lower = above, upper
        while reached + hist[lower] <= last - 1:
            reached += hist[lower]
            lower -= 1
        size = 0
        for b in range(lower, upper + 1):
            size += hist[b]
        # the candidates in position order, sorted stably by descending value: their ranks are above + order
        where = np.empty(size, np.int64)
        keys = np.empty(size, np.float64)
        n = 0
        for i in range(count):
            b = bin_of[i]
            if b > upper:
                out[i] = 1.0
            elif b < lower:
                out[i] = 0.0
            else:
                where[n], keys[n] = i, -np.float64(values[i])
                n += 1
        order = np.argsort(keys, kind="mergesort")
        for position in range(size):
            rank = above + position
            ramp = (high - rank) / np.float64(span)
            out[where[order[position]]] = min(max(ramp, 0.0), 1.0)

    @njit(cache=True, nogil=True)
    def _rows(grey, low, high, out):
        bin_of = np.empty(grey.shape[1], np.int32)
        for k in range(grey.shape[0]):
            _row(grey[k], low[k], high[k], out[k], bin_of)
