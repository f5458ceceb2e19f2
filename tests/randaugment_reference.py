"""The `randaugment` package's ops (PyPI 1.0.2, ``randaugment/randaugment.py``'s `SubPolicy` and `Cutout`) as
Pillow calls: the reference `mlic_pipe.loading.pypi_randaugment` is held to.

Written from the package's text (its magnitudes: ``np.linspace(low, high, 10)``; the sign a parameter here
rather than ``random.choice``); the package itself does not run on numpy >= 1.24 (``np.int``).
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

FILL = (128, 128, 128)
RANGES = {
    "shear_x": np.linspace(0, 0.3, 10), "shear_y": np.linspace(0, 0.3, 10),
    "translate_x": np.linspace(0, 150 / 331, 10), "translate_y": np.linspace(0, 150 / 331, 10),
    "rotate": np.linspace(0, 30, 10), "color": np.linspace(0.0, 0.9, 10),
    "posterize": np.round(np.linspace(8, 4, 10), 0).astype(int), "solarize": np.linspace(256, 0, 10),
    "contrast": np.linspace(0.0, 0.9, 10), "sharpness": np.linspace(0.0, 0.9, 10),
    "brightness": np.linspace(0.0, 0.9, 10), "cutout": np.round(np.linspace(0, 20, 10), 0).astype(int),
}


def _rotate_with_fill(img, magnitude):
    rotated = img.convert("RGBA").rotate(magnitude)
    return Image.composite(rotated, Image.new("RGBA", rotated.size, (128,) * 4), rotated).convert(img.mode)


def _cutout(img, size, centre):
    """The package's Cutout with its centre given: (x from size[0], y from size[1]) as it draws them."""
    img = img.copy()
    width, height = img.size
    half = int(size) // 2
    x0, y0 = max(0, centre[0] - half), max(0, centre[1] - half)
    x1, y1 = min(width, centre[0] + half), min(height, centre[1] + half)
    pixels = img.load()
    for i in range(x0, x1):
        for j in range(y0, y1):
            pixels[i, j] = (125, 122, 113)
    return img


def apply(img: Image.Image, op: str, index: int, sign: int = 1, centre=(0, 0)) -> Image.Image:
    """`op` at magnitude `index` (sign +-1 where the op takes one; `centre` (x, y): Cutout's) on an RGB image."""
    m = RANGES[op][index] if op in RANGES else 0
    width, height = img.size
    if op == "shear_x":
        return img.transform(img.size, Image.AFFINE, (1, m * sign, 0, 0, 1, 0), Image.BICUBIC, fillcolor=FILL)
    if op == "shear_y":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, m * sign, 1, 0), Image.BICUBIC, fillcolor=FILL)
    if op == "translate_x":
        return img.transform(img.size, Image.AFFINE, (1, 0, m * width * sign, 0, 1, 0), fillcolor=FILL)
    if op == "translate_y":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, m * height * sign), fillcolor=FILL)
    if op == "rotate":
        return _rotate_with_fill(img, m)
    enhancers = {"color": ImageEnhance.Color, "contrast": ImageEnhance.Contrast,
                 "sharpness": ImageEnhance.Sharpness, "brightness": ImageEnhance.Brightness}
    if op in enhancers:
        return enhancers[op](img).enhance(1 + m * sign)
    if op == "posterize":
        return ImageOps.posterize(img, int(m))
    if op == "solarize":
        return ImageOps.solarize(img, m)
    if op == "cutout":
        return _cutout(img, m, centre)
    return {"autocontrast": ImageOps.autocontrast, "equalize": ImageOps.equalize, "invert": ImageOps.invert}[op](img)


def cutout_pil(img: Image.Image, factor: float, centre, colour) -> Image.Image:
    """ML-Decoder's CutoutPIL with its draws given: centre (y, x), colour (r, g, b); a PIL rectangle, far corner
    included (``src_files/helper_functions/helper_functions.py``)."""
    from PIL import ImageDraw

    img = img.copy()
    size_h, size_w = img.size[0], img.size[1]
    cut_h, cut_w = int(factor * size_h + 0.5), int(factor * size_w + 0.5)
    y1, y2 = np.clip(centre[0] - cut_h // 2, 0, size_h), np.clip(centre[0] + cut_h // 2, 0, size_h)
    x1, x2 = np.clip(centre[1] - cut_w // 2, 0, size_w), np.clip(centre[1] + cut_w // 2, 0, size_w)
    ImageDraw.Draw(img).rectangle([int(x1), int(y1), int(x2), int(y2)], fill=tuple(int(c) for c in colour))
    return img
