"""ResizeMix and SaliencyMix: plans, the reference and the kernel against F.interpolate, the saliency peak.

The expected pixels are built here from `F.interpolate` and the normalization, independently of the
renderers: the primary everywhere, the whole partner resized (bilinear) inside the box.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from builders import photographs

from mlic_pipe.kernels import INTERPRETED
from mlic_pipe.kernels import render as kernel_render
from mlic_pipe.mix import IMAGENET_MEAN, IMAGENET_STD, ResizeMix, SaliencyMix, create_mixer, render_reference
from mlic_pipe.mix.plan import MASK_BOX, MASK_RESIZED, MASK_RESIZED_NEAREST
from mlic_pipe.mix.saliency import saliency_maps, saliency_peaks

DEVICES = [
    pytest.param("cpu", marks=pytest.mark.skipif(not INTERPRETED, reason="needs TRITON_INTERPRET=1")),
    pytest.param("cuda", marks=pytest.mark.gpu),
]


def _images(n, size, seed):
    return torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _textured(n, size):
    """Grey images with mild noise, like a photo's background."""
    noise = torch.randint(-12, 13, (n, size, size, 1), generator=torch.Generator().manual_seed(7))
    return (90 + noise).clamp(0, 255).to(torch.uint8).expand(n, size, size, 3).contiguous()


def _expected(images, plan, align_corners):
    """Normalized float outputs: each output's primary, with its partner resized into its box (ResizeMix)."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    source = (images.permute(0, 3, 1, 2).double() / 255 - mean.double()) / std.double()
    out = source[plan.cells[:, 0].long()].clone()
    for n in range(plan.num_outputs):
        if int(plan.mask_mode[n]) in (MASK_RESIZED, MASK_RESIZED_NEAREST):
            y0, x0, y1, x1 = plan.box[n].tolist()
            partner = source[int(plan.partner[n])][None]
            resample = dict(mode="bilinear", align_corners=align_corners) \
                if int(plan.mask_mode[n]) == MASK_RESIZED else dict(mode="nearest")
            out[n, :, y0:y1, x0:x1] = F.interpolate(partner, size=(y1 - y0, x1 - x0), **resample)[0]
    return out.float()


def test_resizemix_published_geometry_is_one_clipped_box_per_batch():
    """openmixup's resizemix: tau ~ U(0.1, 0.8) and one centre per batch, box [c - cut // 2, c + cut // 2) clipped,
    cut = int(S * tau); at the border the box is cut off (not square); nearest resizing."""
    sides, clipped = set(), 0
    for seed in range(40):
        plan = ResizeMix().plan(8, 224, np.random.default_rng(seed))
        box = plan.box.numpy()
        assert (box == box[0]).all() and (plan.mask_mode.numpy() == MASK_RESIZED_NEAREST).all()
        y0, x0, y1, x1 = box[0].tolist()
        assert 0 <= y0 < y1 <= 224 and 0 <= x0 < x1 <= 224
        for low, high in ((y0, y1), (x0, x1)):
            full = [2 * (int(224 * tau) // 2) for tau in (0.1, 0.8)]
            assert high - low <= full[1]
            if low > 0 and high < 224:  # not clipped: the full published width, within tau's range
                assert full[0] <= high - low and (high - low) % 2 == 0
                sides.add(high - low)
            else:
                clipped += 1
        assert np.allclose(plan.lam.numpy(), 1 - (y1 - y0) * (x1 - x0) / 224**2)
    assert clipped > 5 and len(sides) > 10  # boxes at the border occur, and tau varies between batches


def test_resizemix_inside_geometry_holds_a_tau_scaled_square_inside_the_image():
    mixer = ResizeMix(geometry="inside", resample="bilinear")
    for seed in range(20):
        plan = mixer.plan(16, 224, np.random.default_rng(seed))
        box = plan.box.numpy()
        side = box[:, 2] - box[:, 0]
        assert (plan.mask_mode.numpy() == MASK_RESIZED).all() and (side == box[:, 3] - box[:, 1]).all()
        assert (side >= int(0.1 * 224)).all() and (side <= int(0.8 * 224)).all()
        assert (box[:, :2] >= 0).all() and (box[:, 2:] <= 224).all()
        assert np.allclose(plan.lam.numpy(), 1 - side**2 / 224**2)
        assert (plan.partner.numpy() != plan.cells[:, 0].numpy()).all()


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("append", [False, True])
def test_the_reference_renders_resizemix_as_f_interpolate(align_corners, append):
    images = _images(6, 40, 1)
    for options in (dict(geometry="inside", resample="bilinear"), dict(geometry="published", resample="nearest"),
                    dict(geometry="inside", resample="nearest")):
        plan = ResizeMix(append=append, mix_ratio=0.5, **options).plan(6, 40, np.random.default_rng(3))
        got = render_reference(images, plan, align_corners=align_corners)
        torch.testing.assert_close(got, _expected(images, plan, align_corners)[:plan.num_outputs], atol=2e-5, rtol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("align_corners", [False, True])
def test_the_kernel_renders_resizemix_as_f_interpolate(device, align_corners):
    images = _images(4, 24, 2)
    for seed, resample in ((5, "bilinear"), (6, "nearest")):
        plan = ResizeMix(scale=(0.2, 0.9), geometry="inside", resample=resample).plan(4, 24, np.random.default_rng(seed))
        got = kernel_render(images.to(device), plan, align_corners=align_corners).cpu()
        torch.testing.assert_close(got, _expected(images, plan, align_corners), atol=2e-5, rtol=0)


def test_saliencymix_centres_cutmix_boxes_on_the_partners_peak():
    images = _textured(8, 96)
    for n in range(8):
        y, x = 12 + 9 * n, 80 - 8 * n
        images[n, y - 4:y + 4, x - 4:x + 4] = 255
    peaks = saliency_peaks(images, 96).numpy()
    mixer = SaliencyMix()
    rng = np.random.default_rng(0)
    plan = mixer.plan(8, 96, rng, images=images)
    box, partner, lam = plan.box.numpy(), plan.partner.numpy(), plan.lam.numpy()
    assert (plan.mask_mode.numpy() == MASK_BOX).all()
    for n in range(8):
        # the published box: [c - cut // 2, c + cut // 2) around the peak, clipped; cut = int(S sqrt(1 - lam0)),
        # with lam0 recovered as the Beta draw that gave this box where nothing is clipped
        y0, x0, y1, x1 = box[n]
        centre = peaks[partner[n]]
        if 0 < y0 and y1 < 96:
            assert (y0 + y1) / 2 == centre[0] and (y1 - y0) % 2 == 0
        if 0 < x0 and x1 < 96:
            assert (x0 + x1) / 2 == centre[1] and (x1 - x0) % 2 == 0
    assert np.allclose(lam, 1 - (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]) / 96**2)
    with pytest.raises(ValueError, match="needs the decoded batch"):
        mixer.plan(8, 96, np.random.default_rng(0))
    batch = SaliencyMix(per_batch=True).plan(8, 96, np.random.default_rng(1), images=images)
    assert (batch.box.numpy() == batch.box.numpy()[0]).all()  # the published form: one box for the batch
    y0, x0, y1, x1 = batch.box.numpy()[0]
    centre = peaks[batch.partner.numpy()[0]]  # around the first partner's peak
    assert y0 <= centre[0] < max(y1, y0 + 1) and x0 <= centre[1] < max(x1, x0 + 1)


def test_the_saliency_map_and_peak_are_opencvs_fine_grained_ones_on_photographs():
    """OpenCV's StaticSaliencyFineGrained (opencv-contrib, a test-only dependency) on each photo, fed BGR as the
    published code feeds it; ours on the RGB batch. OpenCV 5 returns the uint8 map divided by 255."""
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "saliency"):
        pytest.skip("OpenCV without the contrib saliency module (pip install opencv-contrib-python-headless)")
    for image in photographs() + photographs(224):
        ok, expected = cv2.saliency.StaticSaliencyFineGrained_create().computeSaliency(
            np.ascontiguousarray(image[..., ::-1]))
        expected = np.asarray(expected, dtype=np.float64)
        expected = np.round(expected * 255) if expected.max() <= 1.0 else expected
        ours = saliency_maps(torch.from_numpy(image)[None])[0].numpy().astype(np.float64)
        differ = np.abs(ours - expected)
        # OpenCV's float32 integral image against our exact one: a few levels in a few pixels
        assert ok and differ.max() <= 8 and (differ > 0).mean() < 0.005, (differ.max(), (differ > 0).mean())
        peak = np.unravel_index(np.argmax(expected), expected.shape)
        ours_peak = saliency_peaks(torch.from_numpy(image)[None])[0].tolist()
        assert abs(ours_peak[0] - peak[0]) <= 3 and abs(ours_peak[1] - peak[1]) <= 3, (ours_peak, peak)


@pytest.mark.parametrize("mix", ["resizemix", "saliencymix"])
def test_the_loader_and_preview_take_both(mix, tmp_path):
    from mlic_pipe.datasets import load
    from mlic_pipe.loader import MLICLoader
    from mlic_pipe.preview import write_preview

    index = load("demo")
    loader = MLICLoader(index.subset(np.arange(len(index)) < 16), 8, image_size=48, device="cpu", mix=mix,
                        num_threads=1)
    batch = next(iter(loader))
    assert batch.images.shape == (8, 3, 48, 48) and torch.isfinite(batch.images).all()
    assert create_mixer(mix).plan  # registered by name
    write_preview(index, str(tmp_path / "p.png"), mix=mix, batch_size=8, image_size=48)
    assert (tmp_path / "p.png").stat().st_size > 0
