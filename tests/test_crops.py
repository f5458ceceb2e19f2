"""The crop modes: the published MultiScaleCrop's windows, and every mode's pixels read back through DALI.

Geometry is checked on a coordinate image (red = x, green = y, as linear ramps, stored losslessly): an
output column's red value says which source column it came from, so a window can be read back from the
pixels and compared with the window the published transform (or timm's) would cut.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from mlic_pipe.errors import ConfigError
from mlic_pipe.loading.crops import CropSettings, multiscale_windows
from mlic_pipe.loading.order import sample_uniforms
from mlic_pipe.pipeline import DRAWS, DecodeSettings, build_pipeline


def _published_multiscale(image_w, image_h, input_size, scales, max_distort, choose):
    """zuiran/SpliceMix's MultiScaleCrop._sample_crop_size, restated (fix_crop and more_fix_crop on)."""
    base_size = min(image_w, image_h)
    crop_sizes = [int(base_size * x) for x in scales]
    crop_h = [input_size if abs(x - input_size) < 3 else x for x in crop_sizes]
    crop_w = [input_size if abs(x - input_size) < 3 else x for x in crop_sizes]
    pairs = [(w, h) for i, h in enumerate(crop_h) for j, w in enumerate(crop_w) if abs(i - j) <= max_distort]
    crop_w, crop_h = choose(pairs)
    w_step, h_step = (image_w - crop_w) // 4, (image_h - crop_h) // 4
    offsets = [(0, 0), (4 * w_step, 0), (0, 4 * h_step), (4 * w_step, 4 * h_step), (2 * w_step, 2 * h_step),
               (0, 2 * h_step), (4 * w_step, 2 * h_step), (2 * w_step, 4 * h_step), (2 * w_step, 0),
               (w_step, h_step), (3 * w_step, h_step), (w_step, 3 * h_step), (3 * w_step, 3 * h_step)]
    x, y = choose(offsets)
    return x, y, crop_w, crop_h


@pytest.mark.parametrize("size,distort", [(448, 2), (224, 1), (96, 0)])
def test_multiscale_table_holds_every_window_of_the_published_crop_equally_often(size, distort):
    base = size + size // 7
    table = multiscale_windows(size, base, max_distort=distort) * base
    published = []
    for pair_pick, offset_pick in itertools.product(range(25), range(13)):
        picks = iter([pair_pick, offset_pick])
        try:
            published.append(_published_multiscale(base, base, size, (1.0, 0.875, 0.75, 0.66, 0.5), distort,
                                                   lambda options: options[next(picks)]))
        except IndexError:
            continue
    assert np.allclose(np.sort(table, axis=0), np.sort(np.asarray(published, dtype=float), axis=0))
    assert len(table) == len(published) == 13 * sum(1 for i in range(5) for j in range(5) if abs(i - j) <= distort)
    if size == 448:  # SpliceMix at 448: base 512, sides 512, 448, 384, 337, 256
        assert sorted(set(table[:, 2].astype(int))) == [256, 337, 384, 448, 512]


def _coordinate_image(path, width, height):
    x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    Image.fromarray(np.stack([x, y, np.zeros_like(x)], -1).round().astype(np.uint8)).save(path)
    return str(path)


def _decoded(files, settings, seed=3):
    pipe = build_pipeline(files, list(range(len(files))), len(files), settings, device_id=None, seed=seed)
    images, _ = pipe.run()
    return [np.asarray(images.at(i)).astype(float) for i in range(len(files))]


def _window_read_back(image, width, height):
    """(x0, y0, w, h) in source pixels, read from the red and green ramps of an S x S output."""
    size = image.shape[0]
    x = image[size // 2, :, 0] * (width - 1) / 255  # source x of each output column (pixel centres)
    y = image[:, size // 2, 1] * (height - 1) / 255
    slope_x, slope_y = np.polyfit(np.arange(size), x, 1)[0], np.polyfit(np.arange(size), y, 1)[0]
    inner = slice(size // 4, 3 * size // 4)  # away from the borders, where the resize clamps
    x0 = np.mean(x[inner] - (np.arange(size)[inner] + 0.5) * slope_x) + 0.5
    y0 = np.mean(y[inner] - (np.arange(size)[inner] + 0.5) * slope_y) + 0.5
    return np.array([x0, y0, slope_x * size, slope_y * size])


def test_multiscale_crop_decodes_the_window_its_uniform_picks(tmp_path):
    width, height, size = 300, 200, 64
    files = [_coordinate_image(tmp_path / f"{i}.png", width, height) for i in range(8)]
    settings = DecodeSettings(image_size=size, crop=CropSettings(mode="multiscale"), flip_prob=0)
    table = multiscale_windows(size, size + size // 7)
    picks = np.minimum((sample_uniforms(3, 0, np.arange(8), DRAWS)[:, 0] * len(table)).astype(int), len(table) - 1)
    for image, pick in zip(_decoded(files, settings), picks):
        expected = table[pick] * [width, height, width, height]
        assert np.allclose(_window_read_back(image, width, height), expected, atol=2.5), (pick, expected)


def test_center_crop_is_timms_resize_and_centre_crop(tmp_path):
    width, height, size = 300, 200, 64
    files = [_coordinate_image(tmp_path / "a.png", width, height)]
    settings = DecodeSettings(image_size=size, train=False, crop=CropSettings(mode="center", crop_pct=0.8))
    scale_size = int(size / 0.8)  # timm: Resize(floor(S / crop_pct)) on the shorter side, then CenterCrop(S)
    resized_w = scale_size * width / height
    expected = np.array([(resized_w - size) / 2, (scale_size - size) / 2, size, size]) * height / scale_size
    assert np.allclose(_window_read_back(_decoded(files, settings)[0], width, height), expected, atol=2.0)


def test_squash_is_the_whole_image_and_random_stays_inside_it(tmp_path):
    width, height, size = 300, 200, 64
    files = [_coordinate_image(tmp_path / f"{i}.png", width, height) for i in range(4)]
    squash = _decoded(files[:1], DecodeSettings(image_size=size, crop=CropSettings(mode="squash"), flip_prob=0))[0]
    assert np.allclose(_window_read_back(squash, width, height), [0, 0, width, height], atol=2.0)
    random_crop = CropSettings(mode="random", scale=(0.25, 0.3), ratio=(1.0, 1.0))
    for image in _decoded(files, DecodeSettings(image_size=size, crop=random_crop, flip_prob=0)):
        x0, y0, w, h = _window_read_back(image, width, height)
        assert 0.24 <= w * h / (width * height) <= 0.31 and abs(w / h - 1) < 0.05
        assert -2 <= x0 and x0 + w <= width + 2 and -2 <= y0 and y0 + h <= height + 2


def test_bad_crop_arguments_say_which():
    for settings, name in [(CropSettings(mode="zoom"), "crop"), (CropSettings(crop_pct=0), "crop_pct"),
                           (CropSettings(scale=(0.5, 1.5)), "scale"), (CropSettings(max_distort=-1), "max_distort")]:
        with pytest.raises(ConfigError, match=name):
            settings.validate()


def test_loader_takes_every_crop_mode_and_hands_unnormalized_images_on_request(demo):
    import torch

    from mlic_pipe.loader import MLICLoader
    from mlic_pipe.loading.crops import CROPS
    from mlic_pipe.mix import IMAGENET_MEAN, IMAGENET_STD

    subset = demo.subset(np.arange(len(demo.files)) < 4)
    for crop in CROPS:
        batch = next(iter(MLICLoader(subset, 4, image_size=40, crop=crop, seed=5)))
        assert batch.images.shape == (4, 3, 40, 40) and torch.isfinite(batch.images).all()
    plain = next(iter(MLICLoader(subset, 4, image_size=40, crop="multiscale", seed=5, normalize=False))).images
    normalized = next(iter(MLICLoader(subset, 4, image_size=40, crop="multiscale", seed=5))).images
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert 0 <= plain.min() and plain.max() <= 1 and plain.max() > 0.5
    assert torch.allclose(plain, normalized * std + mean, atol=1e-5)
    with pytest.raises(ConfigError, match="crop"):
        MLICLoader(subset, 4, crop=3)
