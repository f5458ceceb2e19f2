"""FMix's masks: the half-plane spectrum against the paper's full plane, and the CPU's ranks against a sort."""
import numpy as np
import pytest
import torch

from mlic_pipe.mix import fmix_masks, rank_ramp
from mlic_pipe.mix.masks import fmix_spectrum_weights


def _full_plane_map(size: int, decay: float) -> np.ndarray:
    """(P, 2P) linear map from the paper's normals (real parts, then imaginary) to its grey image, in float64:
    Re(ifft2(spectrum / max(|f|, 1/S)^decay)) over the full plane (numpy, written from the paper)."""
    freq = np.fft.fftfreq(size)
    weight = 1.0 / np.maximum(np.hypot(freq[:, None], freq[None, :]), 1.0 / size) ** decay
    columns = []
    for part in (1.0, 1.0j):
        for k in range(size * size):
            unit = np.zeros(size * size, complex)
            unit[k] = part
            columns.append(np.real(np.fft.ifft2(weight * unit.reshape(size, size))).ravel())
    return np.stack(columns, axis=1)


def _half_plane_map(size: int, decay: float) -> np.ndarray:
    """The same map for `fmix_masks`' draws: irfft2 of the half plane weighted by `fmix_spectrum_weights`."""
    weight = fmix_spectrum_weights(size, decay).double()
    half = weight.shape[1]
    units = torch.eye(2 * size * half, dtype=torch.float64).reshape(-1, size, half, 2)
    grey = torch.fft.irfft2(torch.view_as_complex(units.contiguous()) * weight, s=(size, size))
    return grey.reshape(len(units), -1).T.numpy()


@pytest.mark.parametrize("size", [1, 2, 5, 6, 8])
@pytest.mark.parametrize("decay", [3.0, 1.0])
def test_the_half_plane_draws_the_papers_grey_image(size, decay):
    # both grey images are linear in independent standard normals, so equal covariances = equal distributions
    full, half = _full_plane_map(size, decay), _half_plane_map(size, decay)
    expected = full @ full.T
    np.testing.assert_allclose(half @ half.T, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def _ramp_by_sort(row: np.ndarray, low: int, high: int) -> np.ndarray:
    """The formula on ranks from a stable sort by descending value (ties by position)."""
    ranks = np.empty(len(row), np.int64)
    ranks[np.argsort(-row.astype(np.float64), kind="stable")] = np.arange(len(row))
    return np.clip((high - ranks) / max(high - low, 1), 0.0, 1.0)


def _cases(count: int):
    rng = np.random.default_rng(count)
    bounds = [(0, 0), (1, 1), (count // 3, count // 3), (count - 1, count - 1), (count, count), (count + 5, count + 5),
              (-3, -3), (-2, count // 2), (count // 4, 3 * count // 4), (count // 2, count + 4), (-1, count + 1),
              (count // 2, count // 2 + 1)]
    rows = [rng.standard_normal(count).astype(np.float32),
            rng.integers(0, 4, count).astype(np.float32),  # ties everywhere: ranked by position
            np.full(count, 2.5, np.float32),  # a flat row
            (1.0 + 1e-7 * rng.integers(0, 3, count)).astype(np.float32)]  # a range too narrow to spread
    return [(row, low, high) for row in rows for low, high in bounds]


@pytest.mark.parametrize("count", [1, 7, 300, 20000])
def test_rank_ramp_equals_a_stable_sort(count):
    if not rank_ramp.AVAILABLE:
        pytest.skip("numba is not installed")
    cases = _cases(count)
    grey = np.stack([row for row, _, _ in cases])
    low = np.array([lo for _, lo, _ in cases], np.int64)
    high = np.array([hi for _, _, hi in cases], np.int64)
    soft = rank_ramp.rank_ramp(grey, low, high, np.full(grey.shape, -1.0))
    hard_rows = high <= low
    hard = rank_ramp.rank_ramp(grey[hard_rows], low[hard_rows], high[hard_rows],
                               np.full((hard_rows.sum(), count), -1.0, np.float32))
    for k, (row, lo, hi) in enumerate(cases):
        np.testing.assert_array_equal(soft[k], _ramp_by_sort(row, lo, hi), err_msg=f"case {k}: low {lo} high {hi}")
    np.testing.assert_array_equal(hard, soft[hard_rows].astype(np.float32))


def test_rank_ramp_rejects_mismatched_shapes():
    if not rank_ramp.AVAILABLE:
        pytest.skip("numba is not installed")
    grey = np.zeros((2, 5), np.float32)
    with pytest.raises(ValueError, match="rank_ramp needs"):
        rank_ramp.rank_ramp(grey, np.zeros(3, np.int64), np.zeros(3, np.int64), np.zeros((2, 5)))


def _batch_wide_masks(lam, size, max_soft, seed):
    """The CPU's masks computed batch-wide, step by step as the paper's order has them: the seed's normals for the
    whole batch, the weights, numpy's irfft2 of every spectrum at once, then each row ranked by a stable sort (the
    GPU's `ramp_by_sorting`)."""
    from mlic_pipe.mix import normals
    from mlic_pipe.mix.masks import ramp_by_sorting

    weights = fmix_spectrum_weights(size, 3.0).numpy()
    spectrum = normals.standard_normals(len(lam) * weights.size * 2, seed).view(np.complex64)
    grey = np.fft.irfft2(spectrum.reshape(len(lam), *weights.shape) * weights, s=(size, size))
    lam = torch.from_numpy(np.asarray(lam, np.float64))
    keep = torch.round(lam * size * size)
    soft = torch.minimum(torch.full_like(lam, max_soft), torch.minimum(lam, 1.0 - lam)).clamp_min(0.0)
    low, high = torch.floor(keep - soft * size * size), torch.floor(keep + soft * size * size)
    return ramp_by_sorting(torch.from_numpy(grey.reshape(len(lam), -1)), low, high).reshape(-1, size, size)


@pytest.mark.parametrize("size", [31, 64])
@pytest.mark.parametrize("max_soft", [0.0, 0.2])
@pytest.mark.parametrize("threads", [1, 2])
def test_the_cpu_masks_equal_the_batch_wide_steps_and_the_sorting_path(size, max_soft, threads):
    """Mask by mask on the host threads (`_host_masks`) = the batch-wide draws, FFT and sort, bit for bit."""
    if not rank_ramp.AVAILABLE:
        pytest.skip("numba is not installed")
    lam = np.array([0.0, 0.03, 0.37, 0.5, 0.81, 1.0])
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        masks, realized = fmix_masks(lam, size, max_soft=max_soft, seed=11)
    finally:
        torch.set_num_threads(previous)
    assert masks.dtype == torch.float16 and masks.shape == (len(lam), size, size)
    assert torch.equal(masks, _batch_wide_masks(lam, size, max_soft, 11))
    means = masks.float().mean(dim=(1, 2))  # realized: each mask's mean (counted, not summed, for hard masks)
    assert torch.equal(realized, means) if max_soft == 0 else torch.allclose(realized, means, rtol=1e-6, atol=0)
    if max_soft == 0:
        np.testing.assert_array_equal(masks.float().sum(dim=(1, 2)).numpy(), np.round(lam * size * size))
