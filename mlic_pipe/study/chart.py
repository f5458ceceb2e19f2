"""`draw_curves`: validation mAP per epoch per config, mean line and +-1 std band, as a PNG (PIL only)."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from mlic_pipe.study.summary import StudySummary

__all__ = ["draw_curves"]

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127)]
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 900, 560, 70, 190, 40, 50


def _scale(summary: StudySummary):
    epochs = [e for xs, _, _ in summary.curves.values() for e in xs]
    values = [v for _, mean, std in summary.curves.values() for m, s in zip(mean, std) for v in (m - s, m + s)]
    x0, x1 = min(epochs), max(max(epochs), min(epochs) + 1)
    y0, y1 = min(values), max(max(values), min(values) + 1e-3)
    pad = 0.05 * (y1 - y0)
    y0, y1 = y0 - pad, y1 + pad

    def to_pixel(epoch, value):
        x = LEFT + (epoch - x0) / (x1 - x0) * (WIDTH - LEFT - RIGHT)
        y = TOP + (1 - (value - y0) / (y1 - y0)) * (HEIGHT - TOP - BOTTOM)
        return x, y
    return to_pixel, (x0, x1, y0, y1)


def _axes(draw: ImageDraw.ImageDraw, to_pixel, bounds, font, title: str) -> None:
    x0, x1, y0, y1 = bounds
    draw.rectangle([LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM], outline=(0, 0, 0))
    for k in range(6):
        value = y0 + k * (y1 - y0) / 5
        _, y = to_pixel(x0, value)
        draw.line([LEFT - 4, y, LEFT, y], fill=(0, 0, 0))
        draw.text((8, y - 6), f"{100 * value:.1f}", fill=(0, 0, 0), font=font)
    for epoch in sorted({round(x0 + k * (x1 - x0) / 5) for k in range(6)}):
        x, _ = to_pixel(epoch, y0)
        draw.line([x, HEIGHT - BOTTOM, x, HEIGHT - BOTTOM + 4], fill=(0, 0, 0))
        draw.text((x - 6, HEIGHT - BOTTOM + 8), str(epoch), fill=(0, 0, 0), font=font)
    draw.text((LEFT, 12), title, fill=(0, 0, 0), font=font)
    draw.text(((LEFT + WIDTH - RIGHT) // 2 - 20, HEIGHT - 20), "epoch", fill=(0, 0, 0), font=font)
    draw.text((8, TOP - 24), "val mAP %", fill=(0, 0, 0), font=font)


def draw_curves(summary: StudySummary, path: str | Path, title: str = "validation mAP (mean ± 1 std over seeds)"):
    """Write the chart to `path`."""
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    font = ImageFont.load_default()
    to_pixel, bounds = _scale(summary)
    image = image.convert("RGBA")
    for k, (config, (epochs, mean, std)) in enumerate(summary.curves.items()):
        upper = [to_pixel(e, m + s) for e, m, s in zip(epochs, mean, std)]
        lower = [to_pixel(e, m - s) for e, m, s in zip(epochs, mean, std)]
        if len(epochs) > 1:  # each band on its own layer, so overlapping bands both show
            band = Image.new("RGBA", (WIDTH, HEIGHT), (0, 0, 0, 0))
            ImageDraw.Draw(band).polygon(upper + lower[::-1], fill=COLOURS[k % len(COLOURS)] + (45,))
            image = Image.alpha_composite(image, band)
    image = image.convert("RGB")
    draw = ImageDraw.Draw(image)
    _axes(draw, to_pixel, bounds, font, title)
    for k, (config, (epochs, mean, _)) in enumerate(summary.curves.items()):
        colour = COLOURS[k % len(COLOURS)]
        points = [to_pixel(e, m) for e, m in zip(epochs, mean)]
        draw.line(points, fill=colour, width=2) if len(points) > 1 else draw.ellipse(
            [points[0][0] - 3, points[0][1] - 3, points[0][0] + 3, points[0][1] + 3], fill=colour)
        y = TOP + 10 + 18 * k
        draw.line([WIDTH - RIGHT + 12, y + 6, WIDTH - RIGHT + 36, y + 6], fill=colour, width=3)
        draw.text((WIDTH - RIGHT + 42, y), f"{config} (n={len(summary.seeds[config])})", fill=(0, 0, 0), font=font)
    image.save(path)
