"""Masks: the mask mixes' plans. FMix's per-sample masks and SaliencyMix's saliency maps, each against the
published method and the direct torch form.

FMix (Harris et al., 2020) draws a random complex spectrum, scales it by 1 / f^delta (low
frequencies dominate), inverse-FFTs it and keeps the top lambda fraction of pixels as the binary
mask. The published code makes *one* mask per batch with numpy on the host. `mlic_pipe.mix.fmix_masks`
makes one per sample (a different lambda and shape for every image), batched on the device.

- ``numpy-per-batch`` (the baseline): the published method, written here from the paper: one
  lambda ~ Beta(1, 1) and one S x S mask per batch, numpy FFT and a partition for the threshold,
  then the mask moved to the device as float16.
- ``torch-full-plane-sort``: B masks as the paper states them, ported to torch directly: the full
  plane's normals, ``ifft2``, and a sort of every row for the threshold (what `fmix_masks` did
  before it drew the equivalent half plane and, on a CPU, ranked by histogram: `rank_ramp`).
- ``mlic-pipe``: `fmix_masks` for B lambdas at once, on the device.

images/s counts images served per second (a batch of B either way), so the ratio is per batch,
while ours and the torch port do B times the published work.

SaliencyMix centres its box on the argmax of OpenCV's fine-grained saliency of the partner; a plan
needs one map per partner (B in place). Same B photographs for every contender:

- ``opencv-per-image`` (the baseline): ``cv2.saliency.StaticSaliencyFineGrained`` per image on the
  host, fed BGR, as the published code calls it (opencv-contrib, in the test extra).
- ``torch-batched``: `saliency_maps_torch`, the whole batch as tensor ops (the GPU's path; it was the
  CPU's too before `mlic_pipe.mix.cpu_saliency`). On a GPU it is what mlic-pipe runs: not repeated.
- ``mlic-pipe``: `saliency_maps` (on a CPU the compiled twin: the same maps).

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


def torch_full_plane_masks(lam: np.ndarray, size: int, seed: int, device: str, decay: float = 3.0) -> torch.Tensor:
    """B FMix masks from the paper ported to torch directly: full-plane normals, ifft2, a sort per row."""
    generator = torch.Generator(device=device).manual_seed(seed)
    freqs = torch.fft.fftfreq(size, device=device)
    magnitude = torch.sqrt(freqs[:, None] ** 2 + freqs[None, :] ** 2).clamp_min(1.0 / size)
    draws = torch.randn((len(lam), size, size, 2), generator=generator, device=device)
    grey = torch.fft.ifft2(torch.view_as_complex(draws) / magnitude**decay).real.reshape(len(lam), -1)
    keep = torch.round(torch.as_tensor(lam, device=device) * size * size).long()
    ordered = torch.sort(grey, dim=1, descending=True).values
    threshold = ordered.gather(1, (keep.clamp(1, size * size) - 1)[:, None])
    return ((grey >= threshold) & (keep[:, None] > 0)).to(torch.float16).reshape(len(lam), size, size)


@pytest.mark.parametrize("name", ["numpy-per-batch", "torch-full-plane-sort", "mlic-pipe"])
@pytest.mark.parametrize("batch, size, device", _cases())
def test_fmix_masks(benchmark, name, batch, size, device):
    benchmark.group = f"masks FMix B={batch} S={size} {device}"
    rng = np.random.default_rng(0)
    sync = synchronizer(device)
    if name == "numpy-per-batch":
        def run():
            mask, _ = numpy_fmix_mask(size, rng)
            return torch.from_numpy(mask).to(device, torch.float16)
    elif name == "torch-full-plane-sort":
        def run():
            return torch_full_plane_masks(rng.beta(1.0, 1.0, size=batch), size, int(rng.integers(2**31)), device)
    else:
        def run():
            return fmix_masks(rng.beta(1.0, 1.0, size=batch), size, seed=int(rng.integers(2**31)), device=device)[0]
    run(), sync()
    benchmark.pedantic(lambda: (run(), sync()), rounds=preset()["rounds"] * 3, warmup_rounds=1, iterations=1)
    record(benchmark, baseline=name == "numpy-per-batch", images=batch, device=device, batch=batch, image_size=size,
           masks_per_batch=1 if name == "numpy-per-batch" else batch, contender=name)


def _photographs(batch: int, size: int) -> torch.Tensor:
    """scikit-image's photographs resized to size x size, repeated to a batch of `batch` (uint8 NHWC RGB)."""
    from PIL import Image
    from skimage import data

    photos = [np.array(Image.fromarray(np.ascontiguousarray(getattr(data, name)()[..., :3])).resize((size, size)))
              for name in ("astronaut", "coffee", "chelsea", "rocket", "cat")]
    return torch.from_numpy(np.stack([photos[i % len(photos)] for i in range(batch)]).astype(np.uint8))


@pytest.mark.parametrize("name", ["opencv-per-image", "torch-batched", "mlic-pipe"])
@pytest.mark.parametrize("batch, size, device", _cases())
def test_saliency_maps(benchmark, name, batch, size, device):
    from mlic_pipe.mix.saliency import saliency_maps, saliency_maps_torch

    benchmark.group = f"masks saliency B={batch} S={size} {device}"
    images = _photographs(batch, size)
    sync = synchronizer(device)
    if name == "opencv-per-image":
        cv2 = pytest.importorskip("cv2")
        if not hasattr(cv2, "saliency"):
            pytest.skip("OpenCV without the contrib saliency module (pip install opencv-contrib-python-headless)")
        detector, host = cv2.saliency.StaticSaliencyFineGrained_create(), images.numpy()

        def run():
            return [detector.computeSaliency(np.ascontiguousarray(image[..., ::-1]))[1] for image in host]
    elif name == "torch-batched":
        if device != "cpu":
            pytest.skip("on a GPU mlic-pipe runs the torch form itself")
        def run():
            return saliency_maps_torch(images)
    else:
        on_device = images.to(device)

        def run():
            return saliency_maps(on_device)
    run(), sync()
    benchmark.pedantic(lambda: (run(), sync()), rounds=preset()["rounds"], warmup_rounds=0, iterations=1)
    record(benchmark, baseline=name == "opencv-per-image", images=batch, device=device, batch=batch, image_size=size,
           contender=name)


def test_the_numpy_baseline_keeps_the_top_lambda_fraction():
    mask, lam = numpy_fmix_mask(64, np.random.default_rng(3))
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert mask.mean() == pytest.approx(round(lam * 64 * 64) / (64 * 64))
