"""`mlic-pipe preview`: render one training batch as a captioned PNG grid, to look at before trusting it.

The batch is the loader's own first batch (`MLICLoader` on the CPU): the same DALI crop, flip and
auto-augment, the same plan, erase boxes, `render` and `mix_targets` as training, so every option a
run takes shows here as it will be trained on.
"""
from __future__ import annotations

import textwrap

import torch
from PIL import Image, ImageDraw, ImageFont

from mlic_pipe.datasets.index import LabelIndex
from mlic_pipe.shards.index import ShardIndex
from mlic_pipe.mix import IMAGENET_MEAN, IMAGENET_STD, MixPlan
from mlic_pipe.mix.plan import MASK_BOX, MASK_CONSTANT, MASK_DENSE, MASK_RESIZED, MASK_RESIZED_NEAREST

__all__ = ["preview_grid", "write_preview"]

MIXED_OUTLINE = (255, 64, 32)
MASK_CAPTIONS = {MASK_BOX: "box", MASK_DENSE: "fmix", MASK_CONSTANT: "mixup", MASK_RESIZED: "resized",
                 MASK_RESIZED_NEAREST: "resized"}  # what a reader calls each mode
CAPTION_LINES = 4


def _describe(plan: MixPlan, n: int) -> str:
    rows, cols = plan.grid[n].tolist()
    mode = int(plan.mask_mode[n])
    parts = []
    if rows * cols > 1:
        dropped = int((plan.cells[n, : rows * cols] < 0).sum())
        parts.append(f"splice {rows}x{cols}" + (f", {dropped} dropped" if dropped else ""))
    if mode in MASK_CAPTIONS:
        parts.append(f"{MASK_CAPTIONS[mode]} lam={float(plan.lam[n]):.2f}")
    return "; ".join(parts)


def preview_grid(images: torch.Tensor, plan: MixPlan, targets: torch.Tensor, classes: list[str], *,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, columns: int = 6) -> Image.Image:
    """A PIL image of the rendered batch: tiles captioned with class names, mixed tiles outlined."""
    count, _, size, _ = images.shape
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    pixels = ((images.float().cpu() * std_t + mean_t).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    try:
        font = ImageFont.load_default(size=max(10, size // 18))
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        font = ImageFont.load_default()
    line_height = font.getbbox("Ag")[3] + 2
    caption = line_height * CAPTION_LINES + 6
    columns = min(columns, count)
    rows = -(-count // columns)
    pad = 6
    sheet = Image.new("RGB", (columns * (size + pad) + pad, rows * (size + caption + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    chars = max(8, int(size / (font.getlength("x") or 6)))
    for n in range(count):
        x = pad + (n % columns) * (size + pad)
        y = pad + (n // columns) * (size + caption + pad)
        sheet.paste(Image.fromarray(pixels[n]), (x, y))
        names = [classes[c] for c in torch.nonzero(targets[n] > 0).flatten().tolist()]
        kind = "regular" if n < plan.num_regular else _describe(plan, n) or "mixed"
        if plan.erase is not None and (plan.erase[n, :, 2] > plan.erase[n, :, 0]).any():
            kind += f" + {int((plan.erase[n, :, 2] > plan.erase[n, :, 0]).sum())} erased"
        if n >= plan.num_regular:
            draw.rectangle([x - 3, y - 3, x + size + 2, y + size + 2], outline=MIXED_OUTLINE, width=3)
        lines = [kind] + textwrap.wrap(", ".join(names) or "(no label)", chars)
        if len(lines) > CAPTION_LINES:
            lines = lines[:CAPTION_LINES - 1] + [lines[CAPTION_LINES - 1].rstrip(",") + " ..."]
        for k, line in enumerate(lines[:CAPTION_LINES]):
            draw.text((x, y + size + 3 + k * line_height), line, fill=MIXED_OUTLINE if k == 0 and n >= plan.num_regular
                      else (0, 0, 0), font=font)
    return sheet


def write_preview(index: LabelIndex | ShardIndex, out: str, *, mix="splicemix", batch_size: int = 16,
                  image_size: int = 224, seed: int = 0, **loader_options) -> Image.Image:
    """Render the first training batch of `index` (as `MLICLoader` delivers it) and save the grid PNG at `out`.

    `loader_options` go to `MLICLoader`: crop, auto_augment, erase, normalize, flip_prob, ... .
    """
    from mlic_pipe.loader import MLICLoader

    if batch_size > len(index):
        raise ValueError(f"batch_size {batch_size} exceeds the {len(index)} images of the dataset")
    loader = MLICLoader(index, batch_size, image_size=image_size, train=True, mix=mix, device="cpu", seed=seed,
                        drop_last=True, return_plan=True, **loader_options)
    batch = next(iter(loader))
    mean, std = loader.render_settings.mean, loader.render_settings.std
    sheet = preview_grid(batch.images, batch.plan, batch.targets, index.classes, mean=mean, std=std)
    sheet.save(out)
    return sheet
