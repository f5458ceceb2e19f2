"""Mask mixes: CutMix and SaliencyMix (box), ResizeMix (resized partner in a box), FMix (low-frequency
dense mask) and MixUp (constant weight).

Each pairs a primary input with a partner and blends them with a weight map. Two layouts:
``append=False`` mixes in place (the standard B outputs, each input the primary of one output);
``append=True`` keeps the B regular images and appends M = int(B * mix_ratio) mixed ones, like
SpliceMix, so the sources stay in the batch for SUMix and consistency losses. ``lam`` in the plan
is always the *realized* fraction of the primary source (what the pixels show), not the sampled one.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from mlic_pipe.mix import host_threads, normals, rank_ramp
from mlic_pipe.mix.calling import CallableMixer
from mlic_pipe.mix.plan import MASK_BOX, MASK_CONSTANT, MASK_DENSE, MASK_RESIZED, MASK_RESIZED_NEAREST, MixPlan
from mlic_pipe.mix.sampling import check_mix_ratio, check_probability, concatenated_permutations

__all__ = ["CutMix", "FMix", "MixUp", "ResizeMix", "SaliencyMix", "fmix_masks", "fmix_spectrum_weights"]


RESIZE_GEOMETRIES = ("published", "inside")


class _PairMix(CallableMixer):
    """Shared pairing and layout of the mask mixes; subclasses draw the weight maps."""

    min_batch_size = 1  # an image of a batch of one is paired with itself

    def __init__(self, alpha: float, *, append: bool = False, mix_ratio: float = 0.25, prob: float = 1.0):
        if alpha <= 0:
            raise ValueError(f"alpha must be positive (lambda ~ Beta(alpha, alpha)), got {alpha}")
        check_mix_ratio(mix_ratio)
        check_probability("prob", prob)
        self.alpha, self.append, self.mix_ratio, self.prob = alpha, append, mix_ratio, prob

    def __repr__(self) -> str:
        return f"{type(self).__name__}(alpha={self.alpha}, append={self.append}, mix_ratio={self.mix_ratio})"

    def _pairs(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(primary, partner) input rows of the mixed outputs; a partner never equals its primary when B > 1."""
        if not self.append:
            primary = np.arange(batch_size)
            order = rng.permutation(batch_size)  # a random cycle: each input is one output's partner
            partner = np.empty(batch_size, dtype=np.int64)
            partner[order] = np.roll(order, -1)
            return primary, partner
        count = int(batch_size * self.mix_ratio)
        primary = concatenated_permutations(batch_size, count, rng)
        offset = rng.integers(1, batch_size, size=count) if batch_size > 1 else np.zeros(count, dtype=np.int64)
        return primary, (primary + offset) % batch_size

    needs_images = False  # SaliencyMix reads the decoded batch; the others plan blind

    def _weights(self, lam: np.ndarray, image_size: int, rng: np.random.Generator, device) -> dict:
        raise NotImplementedError

    def plan(self, batch_size: int, image_size: int, rng: np.random.Generator, device=None,
             images: torch.Tensor | None = None) -> MixPlan:
        """Draw the plan of one batch of `batch_size` decoded `image_size` x `image_size` images.

        `images` (the decoded batch) is read only by mixers with ``needs_images`` (SaliencyMix).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if image_size < 1:
            raise ValueError(f"image_size must be at least 1, got {image_size}")
        if rng.random() >= self.prob:
            return MixPlan.identity(batch_size)
        primary, partner = self._pairs(batch_size, rng)
        if len(primary) == 0:
            return MixPlan.identity(batch_size)
        lam = rng.beta(self.alpha, self.alpha, size=len(primary))
        if self.needs_images:
            weights = self._weights_from(images, partner, lam, image_size, rng)
        else:
            weights = self._weights(lam, image_size, rng, device)
        num_regular = batch_size if self.append else 0
        n = num_regular + len(primary)

        def full(mixed, fill):
            """Regular rows get `fill`, mixed rows `mixed`."""
            mixed = np.asarray(mixed)
            out = np.full((n, *mixed.shape[1:]), fill, dtype=mixed.dtype)
            out[num_regular:] = mixed
            return out

        lam = weights.pop("lam")
        masks = weights.pop("masks", None)
        plan = MixPlan.build(
            num_regular=num_regular,
            cells=np.concatenate([np.arange(num_regular), primary]).reshape(-1, 1),
            grid=np.ones((n, 2)),
            partner=full(partner, -1),
            mask_mode=full(weights["mask_mode"], 0),
            box=full(weights.get("box", np.zeros((len(primary), 4), dtype=np.int64)), 0),
            mask_index=full(weights.get("mask_index", np.full(len(primary), -1)), -1),
            masks=masks,
        )
        if isinstance(lam, torch.Tensor):  # realized on the device (FMix): keep it there, no sync
            plan.lam = torch.cat([torch.ones(num_regular, device=lam.device), lam.float()])
        else:
            plan.lam = torch.as_tensor(full(lam.astype(np.float32), 1.0), dtype=torch.float32)
        return plan


class CutMix(_PairMix):
    """CutMix (Yun et al.): the partner fills a box of area (1 - lambda) * S^2 at a uniform centre, clipped.

    Args:
        alpha: lambda ~ Beta(alpha, alpha); 1.0 as in the paper.
        append, mix_ratio, prob: layout (see the module docstring) and per-batch probability.
    """

    def __init__(self, alpha: float = 1.0, **kw):
        super().__init__(alpha, **kw)

    def _weights(self, lam, image_size, rng, device):
        side = (image_size * np.sqrt(1.0 - lam)).astype(np.int64)
        cy = rng.integers(0, image_size, size=len(lam))
        cx = rng.integers(0, image_size, size=len(lam))
        y0, x0 = cy - side // 2, cx - side // 2
        box = np.clip(np.stack([y0, x0, y0 + side, x0 + side], axis=1), 0, image_size)
        area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
        return {"mask_mode": np.full(len(lam), MASK_BOX), "box": box, "lam": 1.0 - area / image_size**2}


class ResizeMix(_PairMix):
    """ResizeMix (Qin et al. 2020): the whole partner, resized into a box of tau x S per side, pasted there.

    The partner keeps all its objects (it is shrunk, not cropped), so its labels are true labels;
    lambda (the primary's share) = 1 - box area / S^2. The default is openmixup's published code
    (``geometry="published"``): tau ~ U(scale) and one box per batch, centred uniformly at
    (cy, cx) in [0, S) and clipped at the border, ``[c - cut // 2, c + cut // 2)`` with
    ``cut = int(S * tau)`` (so a box at the border is not square), the partner pasted with
    nearest-neighbour resizing. ``geometry="inside"`` is ours: tau and a square box inside the image
    drawn per output. ``resample="bilinear"`` pastes with bilinear resizing instead.

    Args:
        scale: the range of tau, (0.1, 0.8) as in the paper.
        geometry: "published" (one clipped box per batch) or "inside" (a square inside, per output).
        resample: "nearest" (published) or "bilinear".
        append, mix_ratio, prob: layout (see the module docstring) and per-batch probability.
    """

    def __init__(self, scale: tuple[float, float] = (0.1, 0.8), *, geometry: str = "published",
                 resample: str = "nearest", **kw):
        super().__init__(1.0, **kw)
        low, high = scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {scale}")
        if geometry not in RESIZE_GEOMETRIES:
            raise ValueError(f"geometry must be one of {RESIZE_GEOMETRIES}, got {geometry!r}")
        if resample not in ("nearest", "bilinear"):
            raise ValueError(f"resample must be 'nearest' or 'bilinear', got {resample!r}")
        self.scale, self.geometry, self.resample = (float(low), float(high)), geometry, resample

    def _weights(self, lam, image_size, rng, device):
        count = len(lam)
        if self.geometry == "published":
            half = max(int(image_size * rng.uniform(*self.scale)) // 2, 1)  # one tau and one centre per batch
            cy, cx = rng.integers(0, image_size, size=2)
            y0, y1 = np.clip([cy - half, cy + half], 0, image_size)
            x0, x1 = np.clip([cx - half, cx + half], 0, image_size)
            box = np.tile(np.array([[y0, x0, y1, x1]], dtype=np.int64), (count, 1))
        else:
            side = np.maximum((rng.uniform(*self.scale, size=count) * image_size).astype(np.int64), 1)
            y0 = (rng.random(count) * (image_size - side + 1)).astype(np.int64)
            x0 = (rng.random(count) * (image_size - side + 1)).astype(np.int64)
            box = np.stack([y0, x0, y0 + side, x0 + side], axis=1)
        area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
        mode = MASK_RESIZED_NEAREST if self.resample == "nearest" else MASK_RESIZED
        return {"mask_mode": np.full(count, mode), "box": box, "lam": 1.0 - area / image_size**2}


class SaliencyMix(_PairMix):
    """SaliencyMix (Uddin et al. 2021): CutMix's box, centred on the partner's saliency peak.

    The box is ``[c - cut // 2, c + cut // 2)`` per axis around the peak c, clipped, with
    ``cut = int(S sqrt(1 - lambda))`` and lambda ~ Beta(alpha, alpha), as the published code; the
    peak is the argmax of OpenCV's fine-grained saliency of the partner (`saliency_peaks`, batched
    on the images' device, compiled on a CPU). The partner's pixels at the same place fill the box,
    as in CutMix.
    The published code draws one lambda and takes one peak (of the first partner) and one box for the
    whole batch; by default we draw them per output, so every mixed image gets its own partner's
    peak (a documented departure); ``per_batch=True`` is the published form.

    Args:
        alpha: lambda ~ Beta(alpha, alpha); 1.0 as in the paper.
        per_batch: one lambda, peak and box for the batch, as published.
    """

    needs_images = True

    def __init__(self, alpha: float = 1.0, *, per_batch: bool = False, **kw):
        super().__init__(alpha, **kw)
        self.per_batch = bool(per_batch)

    def _weights_from(self, images, partner, lam, image_size, rng):
        from mlic_pipe.mix.saliency import saliency_peaks

        if images is None:
            raise ValueError("SaliencyMix needs the decoded batch: plan(..., images=images)")
        if self.per_batch:
            lam = np.full(len(lam), lam[0])
            peaks = np.repeat(saliency_peaks(images, rows=torch.tensor([int(partner[0])])).numpy(), len(lam), axis=0)
        else:  # the maps of the partners only (a quarter of the batch with append=True), read in place on a CPU
            partners, which = np.unique(partner, return_inverse=True)
            peaks = saliency_peaks(images, rows=torch.from_numpy(partners)).numpy()[which]
        half = (image_size * np.sqrt(1.0 - lam)).astype(np.int64) // 2
        box = np.clip(np.stack([peaks[:, 0] - half, peaks[:, 1] - half, peaks[:, 0] + half, peaks[:, 1] + half],
                               axis=1), 0, image_size)
        area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
        return {"mask_mode": np.full(len(lam), MASK_BOX), "box": box, "lam": 1.0 - area / image_size**2}


class MixUp(_PairMix):
    """MixUp (Zhang et al.): a constant blend lambda * primary + (1 - lambda) * partner.

    Args:
        alpha: lambda ~ Beta(alpha, alpha); 0.8 as timm's default.
    """

    def __init__(self, alpha: float = 0.8, **kw):
        super().__init__(alpha, **kw)

    def _weights(self, lam, image_size, rng, device):
        return {"mask_mode": np.full(len(lam), MASK_CONSTANT), "lam": lam.astype(np.float32)}


def fmix_spectrum_weights(image_size: int, decay: float, device=None) -> torch.Tensor:
    """(S, S // 2 + 1) float32 weights of the half-plane spectrum `fmix_masks` draws: spread / f^decay.

    The paper's grey image is the real part of the inverse FFT of a full-plane spectrum of complex
    normals scaled by 1 / f^decay (f clamped at 1 / S). The same random image, in distribution, is the
    inverse real FFT of half the plane (non-negative horizontal frequencies): a column whose mirror
    column lies outside the half plane stands for the pair, so its parts have variance 1/2 (spread
    sqrt(1/2)); the columns that are their own mirrors (frequency 0, and S / 2 for an even S) keep
    variance 1. Half the normals and a real FFT: ~2x cheaper (the tests compare the covariances).
    """
    freq_y = torch.fft.fftfreq(image_size, device=device, dtype=torch.float32)
    freq_x = torch.fft.rfftfreq(image_size, device=device, dtype=torch.float32)
    magnitude = torch.sqrt(freq_y[:, None] ** 2 + freq_x[None, :] ** 2).clamp_min(1.0 / image_size)
    spread = torch.full((freq_x.numel(),), 0.5 ** 0.5, device=device, dtype=torch.float32)
    spread[0] = 1.0
    if image_size % 2 == 0:
        spread[-1] = 1.0
    return spread / magnitude**decay


def fmix_masks(lam, image_size: int, *, decay: float = 3.0, max_soft: float = 0.0, seed: int = 0,
               device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample FMix masks, generated on `device`.

    For each lambda: a random complex spectrum over the *full* 2D frequency plane scaled by
    1 / f^decay, an inverse FFT (drawn as the equivalent half plane: `fmix_spectrum_weights`), and
    the top round(lambda * S^2) pixels set to 1 (the primary's share), ties ranked by position. The
    public FMix code builds a degenerate one-row spectrum; this follows the paper. With
    ``max_soft > 0`` the edge is a linear ramp over the ranks within +- soft * S^2 of the threshold
    (soft = min(max_soft, lambda, 1 - lambda)), as in the paper. On a GPU: torch.randn, torch's FFT and
    a sort of each row for the ranks. On a CPU, where this was most of a data step: mask by mask on
    torch's threads (`_host_masks`), the compiled normals (`mlic_pipe.mix.normals`), numpy's FFT, and a
    histogram with a sort of the threshold's bins only (`mlic_pipe.mix.rank_ramp`); the same distribution,
    other draws for a seed than a GPU's.

    Returns:
        masks: (K, S, S) float16 in [0, 1]; realized: (K,) float32, each mask's mean.
    """
    device = torch.device(device or "cpu")
    lam = torch.from_numpy(np.asarray(lam, dtype=np.float64)).to(device, non_blocking=True)  # no wait for the GPU
    count, pixels = lam.numel(), image_size * image_size
    # float32 / complex64: the grey image only ranks pixels, and float64 doubled the cost (mostly randn)
    weights = fmix_spectrum_weights(image_size, decay, device)
    keep = torch.round(lam * pixels)
    soft = torch.minimum(torch.full_like(lam, max_soft), torch.minimum(lam, 1.0 - lam)).clamp_min(0.0)
    low = torch.floor(keep - soft * pixels)
    high = torch.floor(keep + soft * pixels)
    if device.type == "cpu" and normals.AVAILABLE and rank_ramp.AVAILABLE:
        masks = torch.from_numpy(_host_masks(image_size, weights.numpy(), int(seed), low.numpy().astype(np.int64),
                                             high.numpy().astype(np.int64), max_soft != 0))
    else:
        generator = torch.Generator(device=device).manual_seed(int(seed))
        draws = torch.randn((count, *weights.shape, 2), generator=generator, device=device, dtype=torch.float32)
        grey = torch.fft.irfft2(torch.view_as_complex(draws) * weights, s=(image_size, image_size))
        masks = ramp_by_sorting(grey.reshape(count, pixels), low, high).reshape(count, image_size, image_size)
    if max_soft == 0:  # a hard mask's ones are its ranks below `high` (summing the masks took ~11 ms on a CPU core)
        return masks, high.clamp(0, pixels).float() / pixels
    return masks, masks.sum(dim=(1, 2), dtype=torch.float32) / pixels


def ramp_by_sorting(grey: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """(K, P) float16 ``clamp((high - rank) / max(high - low, 1), 0, 1)`` of each row of `grey`, the ranks from a
    stable sort by descending value (ties by position): what a GPU runs (`rank_ramp` is the CPU's twin)."""
    count, pixels = grey.shape
    order = torch.argsort(grey, dim=1, descending=True, stable=True)  # rank 0 = largest value
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(pixels, device=grey.device).expand(count, pixels))
    return ((high[:, None] - ranks) / (high - low).clamp_min(1.0)[:, None]).clamp(0.0, 1.0).to(torch.float16)


def _host_masks(image_size: int, weights: np.ndarray, seed: int, low: np.ndarray, high: np.ndarray,
                soft: bool) -> np.ndarray:
    """(K, S, S) float16 masks on the CPU, image by image on torch's threads: the draws, the inverse FFT, the ranks.

    Each mask's steps run back to back while its spectrum and grey image are in the core's caches (batch-wide
    steps streamed 32 of each through memory between steps: 1.5-2x slower at S=448). The values are those of
    the batch-wide steps: mask k's spectrum is pairs k * (S (S / 2 + 1)) on of the seed's normals
    (`normals.fill_normals`), times `weights`; numpy's float32 inverse real FFT; `rank_ramp`'s ranks.
    """
    count = len(low)
    spectrum_shape = weights.shape
    pairs = math.prod(spectrum_shape)  # complex values per mask: one pair of normals each
    masks = np.empty((count, image_size, image_size), np.float16)

    def part(start: int, stop: int) -> None:  # numba's and numpy's FFT release the GIL
        spectrum, columns = np.empty(spectrum_shape, np.complex64), np.empty(spectrum_shape, np.complex64)
        grey = np.empty((image_size, image_size), np.float32)
        ramp = np.empty((1, image_size * image_size), np.float64 if soft else np.float32)
        for k in range(start, stop):
            normals.fill_normals(spectrum.reshape(-1).view(np.float32), seed, k * pairs)
            spectrum *= weights
            # irfft2 as its two passes, into kept arrays (np.fft.irfft2's own `out` gave wrong values, numpy 2.4)
            np.fft.ifft(spectrum, axis=0, out=columns)
            np.fft.irfft(columns, n=image_size, axis=1, out=grey)
            rank_ramp.rank_ramp(grey.reshape(1, -1), low[k:k + 1], high[k:k + 1], ramp)
            # rounded as `ramp_by_sorting`'s Tensor.to rounds, with no temporary (numpy's conversion to float16
            # is scalar: ~100x torch's)
            torch.from_numpy(masks[k].reshape(1, -1)).copy_(torch.from_numpy(ramp))
    host_threads.over_parts(part, count)
    return masks


class FMix(_PairMix):
    """FMix (Harris et al.): the primary keeps a random low-frequency region of lambda of the image.

    Args:
        alpha: lambda ~ Beta(alpha, alpha); 1.0 as in the paper.
        decay: spectrum decay exponent delta (3 in the paper).
        max_soft: soft-edge width as a fraction of the pixels (0: hard masks).
    """

    def __init__(self, alpha: float = 1.0, *, decay: float = 3.0, max_soft: float = 0.0, **kw):
        super().__init__(alpha, **kw)
        if not 0.0 <= max_soft <= 0.5:
            raise ValueError(f"max_soft must be in [0, 0.5], got {max_soft}")
        self.decay, self.max_soft = decay, max_soft

    def _weights(self, lam, image_size, rng, device):
        seed = int(rng.integers(0, 2**63 - 1))  # the masks' randomness comes from the plan's generator
        masks, realized = fmix_masks(lam, image_size, decay=self.decay, max_soft=self.max_soft, seed=seed,
                                     device=device)
        return {"mask_mode": np.full(len(lam), MASK_DENSE), "mask_index": np.arange(len(lam)), "masks": masks,
                "lam": realized}
