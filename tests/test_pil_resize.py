"""The CPU decode's resize against Pillow: `resize_into` and the DALI operator equal Pillow's bilinear resize.

The reference is Pillow itself (``Image.resize(size, Image.BILINEAR)``, what torchvision's Resize and
RandomResizedCrop call on PIL images), on random images of many shapes, downscales, upscales and mixes of the
two; then the CPU pipeline end to end on lossless PNG files, against torchvision's ``Resize((S, S))``.

Pillow up to 12 always runs the horizontal pass first; Pillow 13 runs the vertical pass first when the height
shrinks much more than the width (python-pillow/Pillow#9549), which moves near-ties by one level. So the
reference for every shape is Pillow's two single-axis resizes in Pillow 12's order (`_pil_passes`), and a
direct ``Image.resize`` where every Pillow runs that order (the width shrinks at least as much as the height:
landscape photos to a square, the common case).
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mlic_pipe.loading import pil_resize
from mlic_pipe.pipeline import DecodeSettings, build_pipeline

pytestmark = pytest.mark.skipif(pil_resize.available() is not None,
                                reason=f"the compiled resize cannot be built: {pil_resize.available()}")


def _pil(image: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def _pil_passes(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pillow's horizontal pass, then its vertical pass (each a one-axis `Image.resize`): Pillow <= 12's order."""
    wide = Image.fromarray(image).resize((width, image.shape[0]), Image.BILINEAR)
    return np.asarray(wide.resize((width, height), Image.BILINEAR))


def _horizontal_first_everywhere(source, target) -> bool:
    """Whether every Pillow release runs this resize horizontal pass first (the width shrinks at least as much)."""
    return source[1] / target[1] >= source[0] / target[0]


@pytest.mark.parametrize("source,target", [
    ((480, 640), (224, 224)),  # COCO-sized to S: ~2.1-2.9x down, 5-7 taps
    ((400, 540), (448, 448)),  # up in one axis, down in the other
    ((333, 517), (224, 224)),  # odd sizes, non-integer factors
    ((100, 90), (224, 224)),  # upscaling both ways: 2 taps
    ((2000, 37), (64, 96)),  # 31x down in one axis, up in the other, a non-square output
    ((1, 7), (5, 3)),  # a single source row
    ((9, 1), (1, 1)),  # a single source column to a single pixel
    ((224, 224), (224, 224)),  # same size: weights of one tap, the image back unchanged
    ((64, 24), (33, 8)),  # one whole band of rows, rows of whole words (24 x 3 bytes)
    ((65, 129), (7, 200)),  # a band and one row more; rows of 387 bytes, not whole words
])
def test_resize_equals_pillows_bilinear_bit_for_bit(source, target):
    rng = np.random.default_rng(sum(source) + sum(target))
    image = rng.integers(0, 256, (*source, 3), dtype=np.uint8)
    out = np.empty((*target, 3), np.uint8)
    pil_resize.resize_into(out, image)
    np.testing.assert_array_equal(out, _pil_passes(image, *target))
    if _horizontal_first_everywhere(source, target):
        np.testing.assert_array_equal(out, _pil(image, *target))
    if source == target:
        np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize("rows,columns", [(8, 8), (64, 1928), (1344, 64), (16, 40)])
def test_byte_transpose_equals_numpys(rows, columns):
    """The 8 x 8-block byte transpose the horizontal pass runs on, against numpy's transpose."""
    matrix = np.random.default_rng(rows + columns).integers(0, 256, (rows, columns), dtype=np.uint8)
    target = np.empty((columns, rows), np.uint8)
    pil_resize._transpose_bytes(matrix.reshape(-1).view(np.uint64), rows, columns, target.reshape(-1).view(np.uint64))
    np.testing.assert_array_equal(target, matrix.T)


def test_resize_of_smooth_and_extreme_images_equals_pillow():
    """Saturated values (where rounding and clipping bite) and a smooth ramp (where taps' weights matter)."""
    ramp = np.broadcast_to(np.linspace(0, 255, 701).astype(np.uint8)[None, :, None], (301, 701, 3)).copy()
    extremes = (np.indices((120, 97)).sum(0) % 2 * 255).astype(np.uint8)[..., None].repeat(3, 2)
    for image in (ramp, extremes, np.full((50, 60, 3), 255, np.uint8)):
        out = np.empty((73, 224, 3), np.uint8)
        pil_resize.resize_into(out, image)
        np.testing.assert_array_equal(out, _pil_passes(image, 73, 224))


def test_dali_operator_resizes_each_decoded_window_as_pillow():
    """Through DALI's threads: every sample of a batch (different window shapes) equals Pillow on that window."""
    import nvidia.dali.fn as fn
    from nvidia.dali import pipeline_def

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (int(h), int(w), 3), dtype=np.uint8)
              for h, w in rng.integers(20, 300, (6, 2))]


    @pipeline_def
    def graph():
        decoded = fn.external_source(source=lambda: images, batch=True, layout="HWC")
        return pil_resize.pil_resize(decoded, 64), pil_resize.pil_resize(decoded, 129)

    pipe = graph(batch_size=len(images), num_threads=2, device_id=None)
    pipe.build()
    for _ in range(2):  # the second batch reuses DALI's buffers
        small, large = pipe.run()
        assert small.layout() == large.layout() == "HWC"  # as DALI's resize names it (conditionals compare layouts)
        for i, image in enumerate(images):
            np.testing.assert_array_equal(np.asarray(small.at(i)), _pil_passes(image, 64, 64))
            np.testing.assert_array_equal(np.asarray(large.at(i)), _pil_passes(image, 129, 129))


@pytest.fixture(scope="module")
def pngs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("png")
    rng = np.random.default_rng(1)
    files = []
    for k, (h, w) in enumerate([(480, 640), (375, 500), (300, 300), (200, 150), (640, 427)]):
        yy, xx = np.mgrid[0:h, 0:w]
        smooth = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) % 256], -1)
        noisy = np.clip(smooth + rng.integers(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"{k}.png")
        files.append(str(folder / f"{k}.png"))
    return files


@pytest.mark.parametrize("size", [224, 448])
def test_cpu_pipeline_evaluates_as_torchvisions_resize_on_pil_images(pngs, size):
    """The CPU pipeline's evaluation output (squash: the whole image to S x S) equals the papers' PIL transform."""
    from torchvision import transforms

    settings = DecodeSettings(image_size=size, train=False)
    pipe = build_pipeline(pngs, list(range(len(pngs))), len(pngs), settings, device_id=None, seed=0)
    images, rows = pipe.run()
    resize = transforms.Resize((size, size))  # bilinear, on a PIL image
    for i, path in enumerate(pngs):
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        got = np.asarray(images.at(i))
        np.testing.assert_array_equal(got, _pil_passes(np.asarray(rgb), size, size))
        if _horizontal_first_everywhere(rgb.size[::-1], (size, size)):
            np.testing.assert_array_equal(got, np.asarray(resize(rgb)))


def test_training_pipeline_flips_the_resized_image_where_drawn(pngs):
    """Training (flips drawn per sample): the pixels equal PIL's resize, flipped where the draw says."""
    from mlic_pipe.loading.crops import CropSettings
    from mlic_pipe.loading.order import sample_uniforms
    from mlic_pipe.pipeline import DRAWS

    settings = DecodeSettings(image_size=96, train=True, crop=CropSettings(mode="squash"), flip_prob=0.5)
    rows = list(range(len(pngs)))
    flips = sample_uniforms(1, 0, np.asarray(rows), DRAWS)[:, 4] < 0.5
    assert flips.any() and not flips.all()  # both kinds in the batch (seed 1 draws so)
    trained = build_pipeline(pngs, rows, len(pngs), settings, device_id=None, seed=1).run()[0]
    for i, path in enumerate(pngs):
        with Image.open(path) as image:
            expected = _pil_passes(np.asarray(image.convert("RGB")), 96, 96)
        np.testing.assert_array_equal(np.asarray(trained.at(i)), expected[:, ::-1] if flips[i] else expected)


def test_without_the_compiled_resize_the_pipeline_uses_dalis_and_says_so(pngs, monkeypatch):
    monkeypatch.setattr(pil_resize, "available", lambda: "numba missing (simulated)")
    pil_resize._warn_once.cache_clear()
    settings = DecodeSettings(image_size=64, train=False)
    with pytest.warns(UserWarning, match=r"DALI's resize.*numba missing \(simulated\).*pip install numba"):
        pipe = build_pipeline(pngs, list(range(len(pngs))), len(pngs), settings, device_id=None, seed=0)
    images, _ = pipe.run()
    assert np.asarray(images.at(0)).shape == (64, 64, 3)
    train = DecodeSettings(image_size=64, train=True, flip_prob=1.0)  # DALI's resize, then DALI's flip
    flipped = build_pipeline(pngs, list(range(len(pngs))), len(pngs), train, device_id=None, seed=0).run()[0]
    assert np.asarray(flipped.at(0)).shape == (64, 64, 3)
    pil_resize._warn_once.cache_clear()


def test_resize_dali_keeps_dalis_resize_on_the_cpu(pngs):
    """``resize="dali"``: DALI's antialiased resize (not Pillow's numbers); a bad value names the field."""
    from mlic_pipe.errors import ConfigError

    settings = DecodeSettings(image_size=224, train=False, resize="dali")
    images, _ = build_pipeline(pngs, list(range(len(pngs))), len(pngs), settings, device_id=None, seed=0).run()
    with Image.open(pngs[0]) as image:
        pillow = _pil_passes(np.asarray(image.convert("RGB")), 224, 224)
    got = np.asarray(images.at(0))
    assert got.shape == pillow.shape and not np.array_equal(got, pillow)
    assert np.abs(got.astype(int) - pillow).mean() < 3  # the same picture, resampled another way
    with pytest.raises(ConfigError, match="resize.*'auto' or 'dali'"):
        DecodeSettings(resize="pillow").validate()
