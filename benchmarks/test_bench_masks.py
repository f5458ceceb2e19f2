"""Masks: our per-sample FMix masks (torch.fft, on the device) vs the published per-batch numpy method.

FMix (Harris et al., 2020) draws a random complex spectrum, scales it by 1 / f^delta (low
frequencies dominate), inverse-FFTs it and keeps the top lambda fraction of pixels as the binary
mask. The published code makes *one* mask per batch with numpy on the host. `mlic_pipe.mix.fmix_masks`
makes one per sample (a different lambda and shape for every image), batched on the device.

- ``numpy-per-batch`` (the baseline): the published method, written here from the paper: one
  lambda ~ Beta(1, 1) and one S x S mask per batch, numpy FFT and a partition for the threshold,
  then the mask moved to the device as float16.
- ``mlic-pipe``: `fmix_masks` for B lambdas at once, on the device.

images/s counts images served per second (a batch of B either way), so the ratio is per batch,
while ours does B times the work.

Run: pytest benchmarks/test_bench_masks.py --benchmark-only
"""
import numpy as np
import pytest
import torch

from mlic_pipe.mix import fmix_masks

from benchmarks.common import devices, preset, record, synchronizer


def numpy_fmix_mask(size: int, rng: np.random.Generator, decay: float = 3.0) -> tuple[np.ndarray, float]:
    """One binary FMix mask from the paper: full 2D spectrum scaled by 1/f^decay, top-lambda threshold."""
    lam = rng.beta(1.0, 1.0)
    freqs = np.fft.fftfreq(size)
    magnitude = np.maximum(np.sqrt(freqs[:, None] ** 2 + freqs[None, :] ** 2), 1.0 / size)
    spectrum = (rng.standard_normal((size, size)) + 1j * rng.standard_normal((size, size))) / magnitude ** decay
    grey = np.real(np.fft.ifft2(spectrum)).ravel()
    keep = int(round(lam * size * size))
    mask = np.zeros(size * size, dtype=np.float32)
    if keep:
        mask[np.argpartition(-grey, keep - 1)[:keep]] = 1.0
    return mask.reshape(size, size), lam


def _cases():
    return [(b, s, d) for b, s in preset()["masks"] for d in devices()]


@pytest.mark.parametrize("name", ["numpy-per-batch", "mlic-pipe"])
@pytest.mark.parametrize("batch, size, device", _cases())
def test_fmix_masks(benchmark, name, batch, size, device):
    benchmark.group = f"masks FMix B={batch} S={size} {device}"
    rng = np.random.default_rng(0)
    sync = synchronizer(device)
    if name == "numpy-per-batch":
        def run():
            mask, _ = numpy_fmix_mask(size, rng)
            return torch.from_numpy(mask).to(device, torch.float16)
    else:
        def run():
            return fmix_masks(rng.beta(1.0, 1.0, size=batch), size, seed=int(rng.integers(2**31)), device=device)[0]
    run(), sync()
    benchmark.pedantic(lambda: (run(), sync()), rounds=preset()["rounds"] * 3, warmup_rounds=1, iterations=1)
    record(benchmark, baseline=name == "numpy-per-batch", images=batch, device=device, batch=batch, image_size=size,
           masks_per_batch=1 if name == "numpy-per-batch" else batch, contender=name)


def test_the_numpy_baseline_keeps_the_top_lambda_fraction():
    mask, lam = numpy_fmix_mask(64, np.random.default_rng(3))
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert mask.mean() == pytest.approx(round(lam * 64 * 64) / (64 * 64))
