"""`standard_normals`: float32 standard normals for the CPU, each a pure function of (seed, index), vectorized.

Why: an FMix mask draws 2 S (S / 2 + 1) normals (`fmix_masks`), and ``torch.randn`` makes ~200 million
a second on a CPU core: 31 of the ~70 ms that FMix's masks took for B=32 at S=448 on this project's
2-core machine. numba cannot vectorize ``np.log`` or ``np.cos`` here (it has no vector math library
without Intel's SVML), so this writes them out.

How: pair j of normals comes from one 64-bit SplitMix64 output of (seed, j), split into two 32-bit
uniforms u1 in (0, 1] and u2 in [0, 1), then Box-Muller: ``sqrt(-2 ln u1) * (cos, sin)(2 pi u2)``,
in float64, rounded once to float32. ln u1 is the float64's exponent times ln 2 plus ln of its
mantissa (in [sqrt(1/2), sqrt(2))) by the atanh series; cos and sin are Taylor polynomials within
pi/4 of the nearest quarter turn, rotated by it. Both are within ~1e-15 of libm's values, far below float32's
rounding (the tests compare every value with numpy's log, cos and sin). The tail stops where u1 does:
at sqrt(2 * 32 ln 2) = 6.7 standard deviations (torch's float32 uniforms stop Box-Muller at ~5.8).
Chunks of pairs small enough for L1, each pass over one a loop the compiler vectorizes.
"""
from __future__ import annotations

import math
import time

import numpy as np

from mlic_pipe.mix.host_threads import over_parts

try:
    from numba import njit
    AVAILABLE = True
except ImportError:  # no wheel for this platform: `fmix_masks` draws with torch.randn
    AVAILABLE = False

__all__ = ["AVAILABLE", "compile_seconds", "fill_normals", "standard_normals", "uniform_pairs"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_CHUNK = 512  # pairs per pass
_compile_seconds: dict[str, float] = {}


def compile_seconds() -> dict[str, float]:
    """Seconds the compiled generator's first call took in this process (compiling once per machine, else loading)."""
    return dict(_compile_seconds)


def uniform_pairs(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(u1, u2) of pairs 0 .. count - 1 for `seed`, in float64 (numpy): the generator's uniforms, written
    with numpy's own uint64 arithmetic (the tests' reference, and the definition)."""
    with np.errstate(over="ignore"):
        bits = _splitmix_numpy(_key(seed) + (np.arange(count, dtype=np.uint64) + np.uint64(1)) * _GOLDEN)
    return ((bits >> np.uint64(32)).astype(np.float64) + 1.0) * 2.0**-32, \
        (bits & np.uint64(0xFFFFFFFF)).astype(np.float64) * 2.0**-32


def _key(seed: int) -> np.uint64:
    """The stream's key: SplitMix64's output for `seed` mod 2^64 (numbers of nearby seeds far apart)."""
    with np.errstate(over="ignore"):
        return _splitmix_numpy(np.asarray([int(seed) % 2**64], np.uint64))[0]


def _splitmix_numpy(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def standard_normals(count: int, seed: int) -> np.ndarray:
    """`count` float32 standard normals for `seed` (any integer; taken mod 2^64). Value 2j and 2j + 1 are pair
    j's cos and sin normals, so a prefix of a longer draw is the shorter draw, and any split of the pairs over
    threads (torch's thread count: `over_parts`) draws the same values."""
    if not AVAILABLE:
        raise RuntimeError("standard_normals needs numba; fmix_masks draws with torch.randn where it is missing")
    if count < 0:
        raise ValueError(f"count must be non-negative, got {count}")
    out = np.empty(count + (count & 1), np.float32)
    key = _key(seed)
    started = time.perf_counter()
    over_parts(lambda start, stop: _fill(out[2 * start:2 * stop], key, start), len(out) // 2, grain=1 << 16)
    _compile_seconds.setdefault("float32", time.perf_counter() - started)
    return out[:count]


def fill_normals(out: np.ndarray, seed: int, first_pair: int) -> np.ndarray:
    """Fill the float32 `out` (even length) with pairs ``first_pair`` on of `seed`'s normals, on the calling thread:
    ``standard_normals(count, seed)[2 * first_pair:2 * first_pair + len(out)]``, without drawing the rest. For a
    caller already on one of the host threads, drawing one mask's spectrum at a time (`fmix_masks`)."""
    if not AVAILABLE:
        raise RuntimeError("fill_normals needs numba; fmix_masks draws with torch.randn where it is missing")
    if out.dtype != np.float32 or out.ndim != 1 or len(out) % 2 or not out.flags.c_contiguous:
        raise ValueError(f"out must be a contiguous 1-D float32 array of even length, got {out.dtype} {out.shape}")
    if first_pair < 0:
        raise ValueError(f"first_pair must be non-negative, got {first_pair}")
    started = time.perf_counter()
    _fill(out, _key(seed), first_pair)
    _compile_seconds.setdefault("float32", time.perf_counter() - started)
    return out


if AVAILABLE:
    _JIT = dict(cache=True, nogil=True, error_model="numpy")
    _LN2 = math.log(2.0)
    _TWO_PI = 2.0 * math.pi
    _HALF_PI = 0.5 * math.pi
    _SQRT2 = math.sqrt(2.0)

    @njit(**_JIT)
    def _splitmix(z):
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))

    @njit(**_JIT)
    def _ln_mantissa(m):
        """ln m for m in [sqrt(1/2), sqrt(2)): 2 atanh(t), t = (m - 1) / (m + 1), |t| < 0.172 (to t^15)."""
        t = (m - 1.0) / (m + 1.0)
        t2 = t * t
        series = 1.0 + t2 * (1.0 / 3 + t2 * (1.0 / 5 + t2 * (1.0 / 7 + t2 * (1.0 / 9 + t2 * (
            1.0 / 11 + t2 * (1.0 / 13 + t2 * (1.0 / 15)))))))
        return 2.0 * t * series

    # Taylor coefficients (-1)^k / (2k)! and (-1)^k / (2k + 1)!: multiplied, as divisions kept the loop slow
    _COS = tuple((-1.0) ** k / math.factorial(2 * k) for k in range(8))
    _SIN = tuple((-1.0) ** k / math.factorial(2 * k + 1) for k in range(8))

    @njit(**_JIT)
    def _cos_sin(a):
        """cos a and sin a for |a| <= pi/4: Taylor to a^14 and a^15 (errors below 1e-15; sin keeps its
        relative accuracy near 0)."""
        a2 = a * a
        c = _COS[7]
        s = _SIN[7]
        for k in range(6, -1, -1):
            c = c * a2 + _COS[k]
            s = s * a2 + _SIN[k]
        return c, a * s

    @njit(**_JIT)
    def _fill(out, key, first):
        """Pairs first, first + 1, ... of normals into `out` (2 P, flat: a 2-D store did not vectorize), chunk
        by chunk; separate arrays per pass, so no two alias."""
        pairs = out.shape[0] // 2
        held = np.empty(_CHUNK, np.float64)  # u1 * 2^32: an integer in [1, 2^32]
        held_bits = held.view(np.int64)
        mantissa = np.empty(_CHUNK, np.float64)
        mantissa_bits = mantissa.view(np.int64)
        exponent = np.empty(_CHUNK, np.float64)
        angle = np.empty(_CHUNK, np.float64)  # 4 u2: the quadrant and the fraction of it
        for start in range(0, pairs, _CHUNK):
            size = min(_CHUNK, pairs - start)
            for j in range(size):
                z = _splitmix(key + np.uint64(first + start + j + 1) * _GOLDEN)
                held[j] = np.float64(z >> np.uint64(32)) + 1.0
                angle[j] = np.float64(z & np.uint64(0xFFFFFFFF)) * 2.0**-30
            for j in range(size):  # the float64's exponent and mantissa (in [1, 2)), read from its bits
                word = held_bits[j]
                exponent[j] = np.float64((word >> 52) - 1023 - 32)  # u1 = held * 2^-32
                mantissa_bits[j] = (word & 0xFFFFFFFFFFFFF) | (1023 << 52)
            pair = out[2 * start:2 * (start + size)]
            for j in range(size):
                m, e = mantissa[j], exponent[j]
                big = m > _SQRT2  # ln m on [sqrt(1/2), sqrt(2))
                m = m * 0.5 if big else m
                e = e + 1.0 if big else e
                radius = np.sqrt(-2.0 * (e * _LN2 + _ln_mantissa(m)))
                turns = np.int64(angle[j] + 0.5)  # the nearest quarter turn (0 .. 4), and the rest: |a| <= pi/4
                c, s = _cos_sin((angle[j] - turns) * _HALF_PI)
                odd = (turns & 1) == 1  # a quarter turn: (cos, sin) -> (-sin, cos); a half turn negates both
                x, y = (-s if odd else c), (c if odd else s)
                flip = -1.0 if (turns & 2) == 2 else 1.0
                pair[2 * j] = np.float32(radius * x * flip)
                pair[2 * j + 1] = np.float32(radius * y * flip)
