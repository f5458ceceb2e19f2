"""The CPU's standard normals (FMix's spectra): Box-Muller on the generator's uniforms, against numpy's libm."""
import math

import numpy as np
import pytest

from mlic_pipe.mix import normals

pytestmark = pytest.mark.skipif(not normals.AVAILABLE, reason="numba is not installed")


def _box_muller(count: int, seed: int) -> np.ndarray:
    """The definition, in float64 with numpy's log, cos and sin: pair j = sqrt(-2 ln u1) (cos, sin)(2 pi u2)."""
    u1, u2 = normals.uniform_pairs((count + 1) // 2, seed)
    radius = np.sqrt(-2.0 * np.log(u1))
    return np.stack([radius * np.cos(2 * np.pi * u2), radius * np.sin(2 * np.pi * u2)], axis=1).ravel()[:count]


@pytest.mark.parametrize("seed", [0, 7, 2**63 + 5, -1])
def test_the_normals_are_box_muller_within_a_float32_rounding(seed):
    drawn = normals.standard_normals(200_001, seed)
    expected = _box_muller(200_001, seed)
    assert drawn.dtype == np.float32 and drawn.shape == (200_001,)
    # the polynomials are within ~1e-12 of libm: at most one float32 step from the correctly rounded value
    step = np.spacing(np.abs(expected).astype(np.float32))
    assert (np.abs(drawn.astype(np.float64) - expected) <= step).all()
    assert (drawn == expected.astype(np.float32)).mean() > 0.999


def test_a_draw_is_a_function_of_seed_and_index():
    assert np.array_equal(normals.standard_normals(7, 3), normals.standard_normals(8, 3)[:7])
    assert np.array_equal(normals.standard_normals(1000, 3), normals.standard_normals(1000, 3))
    assert np.array_equal(normals.standard_normals(10, -1), normals.standard_normals(10, 2**64 - 1))
    assert not np.array_equal(normals.standard_normals(1000, 3), normals.standard_normals(1000, 4))
    assert normals.standard_normals(0, 3).shape == (0,)
    with pytest.raises(ValueError, match="non-negative"):
        normals.standard_normals(-1, 3)


def test_the_normals_are_standard_normal():
    drawn = np.sort(normals.standard_normals(1_000_000, 11).astype(np.float64))
    n = len(drawn)
    assert abs(drawn.mean()) < 5 / math.sqrt(n) and abs(drawn.var() - 1) < 5 * math.sqrt(2 / n)
    cdf = 0.5 * (1 + np.vectorize(math.erf)(drawn / math.sqrt(2)))
    ks = max((np.arange(1, n + 1) / n - cdf).max(), (cdf - np.arange(n) / n).max())
    assert ks < 1.95 / math.sqrt(n)  # Kolmogorov-Smirnov at the 0.1% level


@pytest.mark.parametrize("first, length", [(0, 2), (0, 10_000), (3, 8), (517, 2048), (100_000, 1_026)])
def test_fill_normals_draws_any_run_of_pairs_of_the_stream(first, length):
    """A mask's spectrum drawn alone (`fmix_masks`, mask by mask) = its slice of the batch's draw."""
    out = np.full(length, np.nan, np.float32)
    assert normals.fill_normals(out, 9, first) is out
    np.testing.assert_array_equal(out, normals.standard_normals(2 * first + length, 9)[2 * first:])


def test_fill_normals_names_a_bad_buffer():
    with pytest.raises(ValueError, match="even length"):
        normals.fill_normals(np.zeros(3, np.float32), 1, 0)
    with pytest.raises(ValueError, match="float32"):
        normals.fill_normals(np.zeros(4, np.float64), 1, 0)
    with pytest.raises(ValueError, match="non-negative"):
        normals.fill_normals(np.zeros(4, np.float32), 1, -1)
